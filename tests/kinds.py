"""Policies of every kind a JAX RL user trains, written here with the shapes of lerax's.

Each follows lerax's policy protocol and nothing more: `observation_space`,
`action_space`, `__call__(state, observation, *, key=None, action_mask=None)`, `reset`,
and optionally `value` / `q_values`. The shapes follow lerax's repository head (0.0.6):
`MLPSACPolicy` (tanh-squashed Gaussian, its mode scaled to the bounds),
`MLPDeterministicPolicy` (tanh MLP scaled to the bounds), `MLPDiscreteSACPolicy` (argmax
of logits, the mask ignored), and lerax 0.0.5's `MLPQPolicy` (masked argmax of
Q-values). `LayerNormPolicy` is a user's own equinox policy. `FlaxLayerNormPolicy` and
`BraxPPOPolicy` run networks built with Flax and with Brax's own PPO factory (imported
only when such a policy is made). The bench reads this table too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from policyport.policy import (
    Box,
    Dict,
    Discrete,
    MLPActorCriticPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
    Tuple,
)

OBSERVATION = Box(
    np.array([-4.8, -np.inf, -0.42, -np.inf, 0.0, -1.0], dtype=np.float32),
    np.array([4.8, np.inf, 0.42, np.inf, np.inf, 1.0], dtype=np.float32),
)
ACTION_BOX = Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
# A Dict observation with a nested Tuple: leaves observation.position, observation.goal.0 ...
DICT_OBSERVATION = Dict(
    {
        "position": Box(-np.ones(3, np.float32), np.ones(3, np.float32)),
        "goal": Tuple([Discrete(4), Box(-2 * np.ones(2, np.float32), 2 * np.ones(2, np.float32))]),
        "flags": MultiBinary(2),
    }
)
TUPLE_OBSERVATION = Tuple([Box(-np.ones(2, np.float32), np.ones(2, np.float32)), Discrete(3)])


@dataclass(frozen=True)
class Size:
    """How large a kind's networks are.

    `observation` is the length of the observation's Box (the Dict and Tuple kinds: of their
    first Box leaf); 0 keeps the tests' spaces above. `width` is the hidden width of the
    kinds other than actor-critic (`MLPActorCriticPolicy` keeps its own default widths).
    """

    observation: int = 0
    width: int = 32


SMALL = Size()
# The bench's sizes: a 27-dim observation (as its actor-critic cases always had) and
# lerax's default hidden width, 64, so a call does enough work to time.
BENCH = Size(observation=27, width=64)


def _unit_box(n: int) -> Box:
    return Box(-np.ones(n, np.float32), np.ones(n, np.float32))


def observation_space(size: Size = SMALL) -> Box:
    """The Box observation of the flat kinds at `size`."""
    return OBSERVATION if not size.observation else _unit_box(size.observation)


def dict_observation_space(size: Size = SMALL) -> Dict:
    if not size.observation:
        return DICT_OBSERVATION
    return Dict({**DICT_OBSERVATION.spaces, "position": _unit_box(size.observation)})


def tuple_observation_space(size: Size = SMALL) -> Tuple:
    if not size.observation:
        return TUPLE_OBSERVATION
    return Tuple([_unit_box(size.observation), *TUPLE_OBSERVATION.spaces[1:]])


class _Stateless(eqx.Module):
    def reset(self, *, key: jax.Array) -> None:
        return None


class SACLikePolicy(_Stateless):
    """lerax head's `MLPSACPolicy`: the mode is the squashed mean, scaled to the bounds."""

    observation_space: Any
    action_space: Box
    encoder: eqx.nn.MLP
    mean_head: eqx.nn.Linear
    log_std_head: eqx.nn.Linear

    def __init__(self, env: Any, *, key: jax.Array, feature_size: int = 32, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        k1, k2, k3 = jr.split(key, 3)
        self.encoder = eqx.nn.MLP(env.observation_space.flat_size, feature_size, width, 2, key=k1)
        self.mean_head = eqx.nn.Linear(feature_size, env.action_space.flat_size, key=k2)
        self.log_std_head = eqx.nn.Linear(feature_size, env.action_space.flat_size, key=k3)

    def __call__(self, state, observation, *, key=None, action_mask: None = None):
        features = self.encoder(self.observation_space.flatten_sample(observation))
        mean = self.mean_head(features)
        if key is not None:
            std = jnp.exp(-5 + 3.5 * (jnp.tanh(self.log_std_head(features)) + 1))
            mean = mean + std * jr.normal(key, mean.shape)
        low, high = self.action_space.low, self.action_space.high
        return None, low + (high - low) * (jnp.tanh(mean) + 1) / 2


class DeterministicLikePolicy(_Stateless):
    """lerax head's `MLPDeterministicPolicy`: a tanh MLP scaled to the action bounds."""

    observation_space: Any
    action_space: Box
    network: eqx.nn.MLP
    action_scale: jax.Array
    action_bias: jax.Array

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.network = eqx.nn.MLP(
            env.observation_space.flat_size,
            env.action_space.flat_size,
            width,
            2,
            activation=jnp.tanh,
            final_activation=jnp.tanh,
            key=key,
        )
        self.action_scale = (env.action_space.high - env.action_space.low) / 2.0
        self.action_bias = (env.action_space.high + env.action_space.low) / 2.0

    def __call__(self, state, observation, *, key=None, action_mask: None = None):
        raw = self.network(self.observation_space.flatten_sample(observation))
        return None, raw * self.action_scale + self.action_bias


class DiscreteSACLikePolicy(_Stateless):
    """lerax head's `MLPDiscreteSACPolicy`: argmax of logits; the mask is ignored."""

    observation_space: Any
    action_space: Discrete
    network: eqx.nn.MLP

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.network = eqx.nn.MLP(
            env.observation_space.flat_size, env.action_space.n, width, 2, key=key
        )

    def __call__(self, state, observation, *, key=None, action_mask: None = None):
        logits = self.network(self.observation_space.flatten_sample(observation))
        if key is not None:
            return None, jr.categorical(key, logits)
        return None, jnp.argmax(logits)


class QLikePolicy(_Stateless):
    """lerax 0.0.5's `MLPQPolicy`: masked argmax of Q-values, and the Q-values as a head."""

    observation_space: Any
    action_space: Discrete
    q_network: eqx.nn.MLP

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.q_network = eqx.nn.MLP(
            env.observation_space.flat_size, env.action_space.n, width, 2, key=key
        )

    def q_values(self, state, observation):
        return None, self.q_network(self.observation_space.flatten_sample(observation))

    def __call__(self, state, observation, *, key=None, action_mask=None):
        _, q = self.q_values(state, observation)
        if action_mask is not None:
            q = jnp.where(action_mask, q, -jnp.inf)
        return None, jnp.argmax(q)


class LayerNormPolicy(_Stateless):
    """A user's own actor-critic: LayerNorm + tanh encoder, masked categorical, a value."""

    observation_space: Any
    action_space: Discrete
    encoder: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    logits: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        k1, k2, k3 = jr.split(key, 3)
        self.encoder = eqx.nn.Linear(env.observation_space.flat_size, width, key=k1)
        self.norm = eqx.nn.LayerNorm(width)
        self.logits = eqx.nn.Linear(width, env.action_space.n, key=k2)
        self.critic = eqx.nn.Linear(width, "scalar", key=k3)

    def _features(self, observation):
        return jnp.tanh(self.norm(self.encoder(self.observation_space.flatten_sample(observation))))

    def __call__(self, state, observation, *, key=None, action_mask=None):
        logits = self.logits(self._features(observation))
        if action_mask is not None:
            logits = jnp.where(action_mask, logits, -jnp.inf)
        return None, jnp.argmax(logits)

    def value(self, state, observation):
        return None, self.critic(self._features(observation))


def _linen_actor_critic(width: int, actions: int) -> Any:
    """A Flax linen actor-critic: Dense, LayerNorm, swish, Dense, swish; logits and value."""
    import flax.linen as nn

    class ActorCritic(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.swish(nn.LayerNorm()(nn.Dense(width)(x)))
            x = nn.swish(nn.Dense(width)(x))
            return nn.Dense(actions)(x), nn.Dense(1)(x)[0]

    return ActorCritic()


class FlaxLayerNormPolicy(_Stateless):
    """A Flax linen actor-critic behind Brax's clipped observation normaliser: masked
    categorical over the logits, and the value. The weights are fields (a pytree), the
    linen module is called with them."""

    observation_space: Any
    action_space: Discrete
    model: Any
    params: Any
    mean: jax.Array
    std: jax.Array

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        size = env.observation_space.flat_size
        k1, k2, k3 = jr.split(key, 3)
        self.model = _linen_actor_critic(width, env.action_space.n)
        self.params = self.model.init(k1, jnp.zeros(size))
        self.mean = jr.normal(k2, (size,))
        self.std = jr.uniform(k3, (size,), minval=0.5, maxval=2.0)

    def _apply(self, observation):
        x = self.observation_space.flatten_sample(observation)
        return self.model.apply(self.params, jnp.clip((x - self.mean) / self.std, -5.0, 5.0))

    def __call__(self, state, observation, *, key=None, action_mask=None):
        logits, _ = self._apply(observation)
        if action_mask is not None:
            logits = jnp.where(action_mask, logits, -jnp.inf)
        return None, jnp.argmax(logits)

    def value(self, state, observation):
        return None, self._apply(observation)[1]


class BraxPPOPolicy(_Stateless):
    """Brax's own PPO networks (`make_ppo_networks`: swish MLPs, running-statistics
    normaliser, tanh-normal), random weights and non-trivial statistics; the action is
    Brax's deterministic inference function, the value Brax's value network."""

    observation_space: Any
    action_space: Box
    networks: Any
    params: Any

    def __init__(self, env: Any, *, key: jax.Array, width: int = 32):
        from brax.training.acme import running_statistics, specs
        from brax.training.agents.ppo import networks as ppo_networks

        self.observation_space = env.observation_space
        size, actions = env.observation_space.flat_size, env.action_space.flat_size
        self.action_space = Box(-np.ones(actions, np.float32), np.ones(actions, np.float32))
        self.networks = ppo_networks.make_ppo_networks(
            size,
            actions,
            preprocess_observations_fn=running_statistics.normalize,
            policy_hidden_layer_sizes=(width,) * 4,  # Brax's default depth
            value_hidden_layer_sizes=(width,) * 4,
        )
        k1, k2, k3, k4 = jr.split(key, 4)
        statistics = running_statistics.init_state(specs.Array((size,), jnp.float32)).replace(
            mean=jr.normal(k3, (size,)), std=jr.uniform(k4, (size,), minval=0.5, maxval=2.0)
        )
        self.params = (
            statistics,
            self.networks.policy_network.init(k1),
            self.networks.value_network.init(k2),
        )

    def __call__(self, state, observation, *, key=None, action_mask: None = None):
        from brax.training.agents.ppo import networks as ppo_networks

        inference = ppo_networks.make_inference_fn(self.networks)(self.params, deterministic=True)
        return None, inference(self.observation_space.flatten_sample(observation), None)[0]

    def value(self, state, observation):
        x = self.observation_space.flatten_sample(observation)
        return None, self.networks.value_network.apply(self.params[0], self.params[2], x)


Observation = Callable[[Size], Any]
Kind = Callable[..., Any]  # (seed, *, size=SMALL) -> policy


def _actor_critic(observation: Observation, action: Any) -> Kind:
    def make(seed: int, *, size: Size = SMALL) -> Any:
        return MLPActorCriticPolicy(SpacesEnv(observation(size), action), key=jr.key(seed))

    return make


def _kind(cls: type, observation: Observation, action: Any) -> Kind:
    def make(seed: int, *, size: Size = SMALL) -> Any:
        return cls(SpacesEnv(observation(size), action), key=jr.key(seed), width=size.width)

    return make


# name -> (seed, *, size) -> policy. Every kind, every action space, Dict and Tuple observations.
KINDS: dict[str, Kind] = {
    "actor_critic_discrete": _actor_critic(observation_space, Discrete(5)),
    "actor_critic_box": _actor_critic(observation_space, ACTION_BOX),
    "actor_critic_multidiscrete": _actor_critic(observation_space, MultiDiscrete((3, 4, 2))),
    "actor_critic_multibinary": _actor_critic(observation_space, MultiBinary(4)),
    "actor_critic_dict": _actor_critic(dict_observation_space, Discrete(3)),
    "actor_critic_tuple": _actor_critic(tuple_observation_space, MultiDiscrete((2, 3))),
    "q": _kind(QLikePolicy, observation_space, Discrete(5)),
    "q_dict": _kind(QLikePolicy, dict_observation_space, Discrete(4)),
    "sac": _kind(SACLikePolicy, observation_space, ACTION_BOX),
    "deterministic": _kind(DeterministicLikePolicy, observation_space, ACTION_BOX),
    "discrete_sac": _kind(DiscreteSACLikePolicy, observation_space, Discrete(5)),
    "layernorm": _kind(LayerNormPolicy, observation_space, Discrete(5)),
    "flax_layernorm_swish": _kind(FlaxLayerNormPolicy, observation_space, Discrete(5)),
    "brax_ppo": _kind(BraxPPOPolicy, observation_space, ACTION_BOX),
}

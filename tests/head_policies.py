"""Small equinox policies shaped like the policy classes lerax users train.

Each follows lerax's head (RunnersNum40/lerax, `src/lerax/policy/`) in what it computes for
a deterministic action, at a small size so that tests stay fast. They exist to find out
which JAX primitives real policies put in their traces, and to prove that policyport's
own ONNX lowering covers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, Key

from policyport.policy import AbstractSpace, Box, Categorical, Dict, Discrete, Tuple

WIDTH = 16
OBSERVATION = Box(-np.ones(5, np.float32), np.ones(5, np.float32))
# Bounds that are neither symmetric nor unit, so a wrong scale or shift shows.
ACTION_BOX = Box(np.array([-2.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32))
SCALAR_BOX = Box(np.float32(-2.0), np.float32(2.0), shape=())
# lerax's MLPSACPolicy clamps its log-std to this range (through a tanh).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class SACPolicy(eqx.Module):
    """lerax's `MLPSACPolicy`: encoder MLP, mean and log-std heads; the deterministic action
    is the mode of the squashed Gaussian, `low + (high - low) * sigmoid(mean)` (lerax's
    squashing bijector is a Sigmoid then an affine map onto the bounds), or with
    `squash="tanh"` the usual SAC convention `low + (high - low) * (tanh(mean) + 1) / 2`.
    The log-std is computed as lerax computes it, though the mode does not read it."""

    observation_space: AbstractSpace
    action_space: Box
    encoder: eqx.nn.MLP
    mean_head: eqx.nn.Linear
    log_std_head: eqx.nn.Linear
    squash: str = eqx.field(static=True)

    def __init__(
        self,
        observation_space: AbstractSpace,
        action_space: Box,
        *,
        squash: str = "sigmoid",
        key: Key[Array, ""],
    ):
        self.observation_space, self.action_space = observation_space, action_space
        self.squash = squash
        encoder_key, mean_key, log_std_key = jr.split(key, 3)
        self.encoder = eqx.nn.MLP(observation_space.flat_size, WIDTH, WIDTH, 2, key=encoder_key)
        out: int | str = "scalar" if not action_space.shape else action_space.flat_size
        self.mean_head = eqx.nn.Linear(WIDTH, out, key=mean_key)
        self.log_std_head = eqx.nn.Linear(WIDTH, out, key=log_std_key)

    def __call__(
        self, state: None, observation: Any, *, key: Key[Array, ""] | None = None, action_mask=None
    ) -> tuple[None, Float[Array, " a"]]:
        features = self.encoder(self.observation_space.flatten_sample(observation))
        mean = self.mean_head(features)
        log_std = jnp.tanh(self.log_std_head(features))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        std = jnp.exp(log_std)
        low, high = self.action_space.low, self.action_space.high
        if key is not None:
            mean = mean + std * jr.normal(key, mean.shape)
        if self.squash == "tanh":
            return None, low + (high - low) * (jnp.tanh(mean) + 1.0) / 2.0
        return None, low + (high - low) * jax.nn.sigmoid(mean)


class DeterministicPolicy(eqx.Module):
    """lerax's `MLPDeterministicPolicy` (DDPG/TD3): a tanh MLP scaled to the bounds."""

    observation_space: AbstractSpace
    action_space: Box
    network: eqx.nn.MLP
    action_scale: Float[Array, " a"]
    action_bias: Float[Array, " a"]

    def __init__(self, observation_space: AbstractSpace, action_space: Box, *, key: Key[Array, ""]):
        self.observation_space, self.action_space = observation_space, action_space
        self.network = eqx.nn.MLP(
            observation_space.flat_size,
            action_space.flat_size,
            WIDTH,
            2,
            activation=jnp.tanh,
            final_activation=jnp.tanh,
            key=key,
        )
        self.action_scale = (action_space.high - action_space.low) / 2.0
        self.action_bias = (action_space.high + action_space.low) / 2.0

    def __call__(
        self, state: None, observation: Any, *, key: Key[Array, ""] | None = None, action_mask=None
    ) -> tuple[None, Float[Array, " a"]]:
        raw = self.network(self.observation_space.flatten_sample(observation))
        return None, raw * self.action_scale + self.action_bias


class DiscreteSACPolicy(eqx.Module):
    """lerax's `MLPDiscreteSACPolicy`: categorical logits, deterministic action the argmax."""

    observation_space: AbstractSpace
    action_space: Discrete
    network: eqx.nn.MLP

    def __init__(
        self, observation_space: AbstractSpace, action_space: Discrete, *, key: Key[Array, ""]
    ):
        self.observation_space, self.action_space = observation_space, action_space
        self.network = eqx.nn.MLP(observation_space.flat_size, action_space.n, WIDTH, 2, key=key)

    def __call__(
        self, state: None, observation: Any, *, key: Key[Array, ""] | None = None, action_mask=None
    ) -> tuple[None, Int[Array, ""]]:
        logits = self.network(self.observation_space.flatten_sample(observation))
        if key is not None:
            return None, jr.categorical(key, logits)
        return None, jnp.argmax(logits)


class QPolicy(eqx.Module):
    """lerax 0.0.5's `MLPQPolicy`: an MLP Q-network; the greedy action is the argmax of the
    (masked) Q-values, and the Q-values are a head of their own."""

    observation_space: AbstractSpace
    action_space: Discrete
    q_network: eqx.nn.MLP

    def __init__(
        self, observation_space: AbstractSpace, action_space: Discrete, *, key: Key[Array, ""]
    ):
        self.observation_space, self.action_space = observation_space, action_space
        self.q_network = eqx.nn.MLP(observation_space.flat_size, action_space.n, WIDTH, 2, key=key)

    def q_values(self, state: None, observation: Any) -> tuple[None, Float[Array, " n"]]:
        return None, self.q_network(self.observation_space.flatten_sample(observation))

    def __call__(
        self, state: None, observation: Any, *, key: Key[Array, ""] | None = None, action_mask=None
    ) -> tuple[None, Int[Array, ""]]:
        _, q = self.q_values(state, observation)
        distribution = Categorical(logits=q)
        if action_mask is not None:
            distribution = distribution.mask(action_mask)
        return None, distribution.mode()


class LayerNormPolicy(eqx.Module):
    """A custom actor-critic: Linear -> LayerNorm -> tanh, a Gaussian mean clipped to the
    bounds, and a value head: what users write when lerax's MLPs are not enough."""

    observation_space: AbstractSpace
    action_space: Box
    encoder: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, observation_space: AbstractSpace, action_space: Box, *, key: Key[Array, ""]):
        self.observation_space, self.action_space = observation_space, action_space
        k1, k2, k3 = jr.split(key, 3)
        self.encoder = eqx.nn.Linear(observation_space.flat_size, WIDTH, key=k1)
        self.norm = eqx.nn.LayerNorm(WIDTH)
        self.actor = eqx.nn.Linear(WIDTH, action_space.flat_size, key=k2)
        self.critic = eqx.nn.Linear(WIDTH, "scalar", key=k3)

    def _features(self, observation: Any) -> Float[Array, " w"]:
        return jnp.tanh(self.norm(self.encoder(self.observation_space.flatten_sample(observation))))

    def value(self, state: None, observation: Any) -> tuple[None, Float[Array, ""]]:
        return None, self.critic(self._features(observation))

    def __call__(
        self, state: None, observation: Any, *, key: Key[Array, ""] | None = None, action_mask=None
    ) -> tuple[None, Float[Array, " a"]]:
        mean = 3.0 * self.actor(self._features(observation))
        return None, jnp.clip(mean, self.action_space.low, self.action_space.high)


DICT_OBSERVATION = Dict(
    {
        "position": Box(-np.ones(3, np.float32), np.ones(3, np.float32)),
        "grid": Box(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)),
        "speed": Box(np.float32(-5.0), np.float32(5.0), shape=()),
    }
)
TUPLE_OBSERVATION = Tuple(
    (Box(-np.ones(2, np.float32), np.ones(2, np.float32)), Dict({"goal": OBSERVATION}))
)

Factory = Callable[[Key[Array, ""]], eqx.Module]
# The policies whose traces policyport must lower natively, by name.
HEAD_POLICIES: dict[str, Factory] = {
    "sac": lambda key: SACPolicy(OBSERVATION, ACTION_BOX, key=key),
    "sac_tanh": lambda key: SACPolicy(OBSERVATION, ACTION_BOX, squash="tanh", key=key),
    # lerax's heads use `out_size="scalar"` for a scalar Box (Pendulum-like, shape ()).
    "sac_scalar_action": lambda key: SACPolicy(OBSERVATION, SCALAR_BOX, key=key),
    "deterministic": lambda key: DeterministicPolicy(OBSERVATION, ACTION_BOX, key=key),
    "discrete_sac": lambda key: DiscreteSACPolicy(OBSERVATION, Discrete(4), key=key),
    "q": lambda key: QPolicy(OBSERVATION, Discrete(4), key=key),
    "layer_norm": lambda key: LayerNormPolicy(OBSERVATION, ACTION_BOX, key=key),
    "dict_observation": lambda key: DeterministicPolicy(DICT_OBSERVATION, ACTION_BOX, key=key),
    "tuple_observation": lambda key: QPolicy(TUPLE_OBSERVATION, Discrete(3), key=key),
}


def make_head_policy(name: str, seed: int = 0) -> eqx.Module:
    return HEAD_POLICIES[name](jr.key(seed))

"""Small recurrent policies that follow lerax's protocol (`reset(*, key) -> state`), built
as lerax builds its classes (`cls(env, *, key, ...)`), so files of them load from the
command line with `--env` and `--policy-class`."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from policyport.policy import Box, Discrete, SpacesEnv

OBSERVATION = Box(-np.ones(5, np.float32), np.ones(5, np.float32))


def discrete_env() -> SpacesEnv:
    return SpacesEnv(OBSERVATION, Discrete(4))


def frames_env() -> SpacesEnv:
    """uint8 observations (a tiny camera): the artifact declares contract 5 and carries state."""
    return SpacesEnv(Box(0, 255, (5,), dtype=np.uint8), Discrete(4))


def box_env() -> SpacesEnv:
    return SpacesEnv(OBSERVATION, Box(-np.ones(2, np.float32), np.ones(2, np.float32)))


class GRUPolicy(eqx.Module):
    """An equinox GRU cell, a linear actor and critic on its hidden state; reads masks."""

    observation_space: Any
    action_space: Any
    cell: eqx.nn.GRUCell
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, env: Any, *, key: jax.Array, hidden: int = 12):
        k1, k2, k3 = jax.random.split(key, 3)
        self.observation_space, self.action_space = env.observation_space, env.action_space
        size = int(np.prod(self.observation_space.shape))
        self.cell = eqx.nn.GRUCell(size, hidden, key=k1)
        self.actor = eqx.nn.Linear(hidden, self.action_space.n, key=k2)
        self.critic = eqx.nn.Linear(hidden, "scalar", key=k3)

    def reset(self, *, key: jax.Array) -> jax.Array:
        return jnp.zeros(self.cell.hidden_size)

    def _logits(self, state, observation, action_mask):
        hidden = self.cell(observation, state)
        logits = self.actor(hidden)
        if action_mask is not None:
            logits = jnp.where(action_mask, logits, -jnp.inf)
        return hidden, logits

    def __call__(self, state, observation, *, key=None, action_mask=None):
        hidden, logits = self._logits(state, observation, action_mask)
        if key is None:
            return hidden, jnp.argmax(logits)
        return hidden, jax.random.categorical(key, logits)

    def value(self, state, observation):
        hidden = self.cell(observation, state)
        return hidden, self.critic(hidden)

    def evaluate_action(self, state, observation, action, *, action_mask=None):
        hidden, logits = self._logits(state, observation, action_mask)
        log_probs = jax.nn.log_softmax(logits)
        entropy = -jnp.sum(jnp.where(log_probs > -jnp.inf, jnp.exp(log_probs) * log_probs, 0.0))
        # A one-hot sum rather than `log_probs[action]`: TFLite has no dynamic gather.
        chosen = jnp.where(jnp.arange(log_probs.shape[0]) == action, log_probs, 0.0).sum()
        return hidden, self.critic(hidden), chosen, entropy


class KeyedGRUPolicy(GRUPolicy):
    """A GRU whose initial state is drawn from the reset key (needs --reset-seed)."""

    def reset(self, *, key: jax.Array) -> jax.Array:
        return 0.1 * jax.random.normal(key, (self.cell.hidden_size,))


class LSTMPolicy(eqx.Module):
    """An equinox LSTM cell (state `(h, c)`: inputs `state.0`, `state.1`), Box actions."""

    observation_space: Any
    action_space: Any
    cell: eqx.nn.LSTMCell
    actor: eqx.nn.Linear

    def __init__(self, env: Any, *, key: jax.Array, hidden: int = 8):
        k1, k2 = jax.random.split(key)
        self.observation_space, self.action_space = env.observation_space, env.action_space
        size = int(np.prod(self.observation_space.shape))
        self.cell = eqx.nn.LSTMCell(size, hidden, key=k1)
        self.actor = eqx.nn.Linear(hidden, int(np.prod(self.action_space.shape)), key=k2)

    def reset(self, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.zeros(self.cell.hidden_size), jnp.full(self.cell.hidden_size, 0.5)

    def __call__(self, state, observation, *, key=None, action_mask=None):
        state = self.cell(observation, state)
        return state, jnp.tanh(self.actor(state[0]))


def flax_cell_policy(cls: type, hidden: int = 8) -> Any:
    """A Flax linen cell (`GRUCell`, `LSTMCell`, `OptimizedLSTMCell`) and a dense head,
    through `from_function` with the cell's own carry as it comes (a tuple for LSTMs)."""
    import flax.linen as nn

    import policyport

    cell, head = cls(features=hidden), nn.Dense(3)
    carry = cell.initialize_carry(jax.random.key(0), (4,))
    params = cell.init(jax.random.key(1), carry, jnp.zeros(4))
    head_params = head.init(jax.random.key(2), jnp.zeros(hidden))

    def act(carry, observation):
        carry, y = cell.apply(params, carry, observation)
        return carry, jnp.argmax(head.apply(head_params, y))

    def value(carry, observation):
        return jnp.sum(cell.apply(params, carry, observation)[1])

    return policyport.from_function(
        act,
        observation_space=Box(-np.ones(4, np.float32), np.ones(4, np.float32)),
        action_space=Discrete(3),
        value=value,
        initial_state=carry,
        name=cls.__name__,
    )


def ppo_rnn_policy(hidden: int = 8) -> Any:
    """A network shaped as PureJaxRL's `ppo_rnn.py` (written here from its description): an
    `nn.scan` over a GRU cell that resets its carry with `where(done, init, carry)`, on
    time-major `(observations, dones)`; exported one step per call (time and batch of 1)."""
    import functools

    import flax.linen as nn

    import policyport

    class ScannedRNN(nn.Module):
        @functools.partial(
            nn.scan,
            variable_broadcast="params",
            in_axes=0,
            out_axes=0,
            split_rngs={"params": False},
        )
        @nn.compact
        def __call__(self, carry, x):
            inputs, resets = x
            init = nn.GRUCell(features=hidden).initialize_carry(
                jax.random.key(0), (inputs.shape[0], hidden)
            )
            carry = jnp.where(resets[:, None], init, carry)
            return nn.GRUCell(features=hidden)(carry, inputs)

    class ActorCriticRNN(nn.Module):
        @nn.compact
        def __call__(self, carry, x):
            observations, dones = x
            embedding = nn.relu(nn.Dense(hidden)(observations))
            carry, embedding = ScannedRNN()(carry, (embedding, dones))
            logits = nn.Dense(3)(nn.relu(nn.Dense(hidden)(embedding)))
            value = nn.Dense(1)(nn.relu(nn.Dense(hidden)(embedding)))
            return carry, logits, jnp.squeeze(value, -1)

    net = ActorCriticRNN()
    carry = jnp.zeros((1, hidden))
    params = net.init(jax.random.key(0), carry, (jnp.zeros((1, 1, 4)), jnp.zeros((1, 1), bool)))

    def step(carry, observation):  # one env, one step
        x = (observation[None, None], jnp.zeros((1, 1), bool))
        carry, logits, value = net.apply(params, carry[None], x)
        return carry[0], logits[0, 0], value[0, 0]

    def act(carry, observation):
        carry, logits, _ = step(carry, observation)
        return carry, jnp.argmax(logits)

    return policyport.from_function(
        act,
        observation_space=Box(-np.ones(4, np.float32), np.ones(4, np.float32)),
        action_space=Discrete(3),
        value=lambda carry, observation: step(carry, observation)[2],
        initial_state=carry[0],
        name="ppo_rnn",
    )

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

    def __call__(self, state, observation, *, key=None, action_mask=None):
        hidden = self.cell(observation, state)
        logits = self.actor(hidden)
        if action_mask is not None:
            logits = jnp.where(action_mask, logits, -jnp.inf)
        return hidden, jnp.argmax(logits)

    def value(self, state, observation):
        hidden = self.cell(observation, state)
        return hidden, self.critic(hidden)


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

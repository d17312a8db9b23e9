"""The two actor-critics of this example: a GRU one that remembers, a feed-forward one that cannot.

Both follow lerax's policy protocol (`reset(*, key) -> state`, `__call__(state, observation,
*, key=None, action_mask=None) -> (state, action)`, `value(state, observation) -> (state,
value)`) for one observation; training batches them with `jax.vmap`. The recurrent one's
state is the GRU's hidden vector (zeros at an episode's start); the feed-forward one's is
`None`, as for lerax's MLP policies. `step` is what both share with the training loop: the
new state, the logits and the value in one pass.

Files are `eqx.tree_serialise_leaves` of a policy built by `recurrent_policy` /
`feedforward_policy` with the sizes below (the leaves only: the constructor is this file).
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Key

from policyport.policy import Box, Discrete

# The sizes of both networks: an embedding of the observation, a core (a GRU cell or a
# dense layer) of the same width, then separate actor and critic layers.
WIDTH = 32


class RecurrentActorCritic(eqx.Module):
    """Observation -> dense+relu -> GRU cell (the state) -> actor logits and critic value.

    **Arguments:**

    - `observation_space`: a `Box` of shape `(n,)`.
    - `action_space`: a `Discrete`.
    - `width`: the embedding's and the GRU's size (the state is `(width,)` float32).
    - `key`: initialises the weights.
    """

    observation_space: Box
    action_space: Discrete
    embed: eqx.nn.Linear
    cell: eqx.nn.GRUCell
    actor_hidden: eqx.nn.Linear
    actor_out: eqx.nn.Linear
    critic_hidden: eqx.nn.Linear
    critic_out: eqx.nn.Linear

    def __init__(
        self,
        observation_space: Box,
        action_space: Discrete,
        width: int = WIDTH,
        *,
        key: Key[Array, ""],
    ):
        keys = jax.random.split(key, 6)
        (n_obs,) = observation_space.shape
        self.observation_space = observation_space
        self.action_space = action_space
        self.embed = eqx.nn.Linear(n_obs, width, key=keys[0])
        self.cell = eqx.nn.GRUCell(width, width, key=keys[1])
        self.actor_hidden = eqx.nn.Linear(width, width, key=keys[2])
        self.actor_out = eqx.nn.Linear(width, action_space.n, key=keys[3])
        self.critic_hidden = eqx.nn.Linear(width, width, key=keys[4])
        self.critic_out = eqx.nn.Linear(width, "scalar", key=keys[5])

    def reset(self, *, key: Key[Array, ""]) -> Float[Array, " width"]:
        """The state at an episode's start: zeros (it does not depend on `key`)."""
        return jnp.zeros(self.cell.hidden_size)

    def step(
        self, state: Float[Array, " width"], observation: Float[Array, " n"]
    ) -> tuple[Float[Array, " width"], Float[Array, " actions"], Float[Array, ""]]:
        """One step: the new state, the action logits and the value, all from the new state."""
        state = self.cell(jax.nn.relu(self.embed(observation)), state)
        logits = self.actor_out(jax.nn.relu(self.actor_hidden(state)))
        value = self.critic_out(jax.nn.relu(self.critic_hidden(state)))
        return state, logits, value

    def __call__(
        self,
        state: Float[Array, " width"],
        observation: Float[Array, " n"],
        *,
        key: Key[Array, ""] | None = None,
        action_mask: None = None,
    ) -> tuple[Float[Array, " width"], Int[Array, ""]]:
        """The new state and the action: the argmax without `key`, a sample with it."""
        state, logits, _ = self.step(state, observation)
        if key is None:
            return state, jnp.argmax(logits)
        return state, jax.random.categorical(key, logits)

    def value(
        self, state: Float[Array, " width"], observation: Float[Array, " n"]
    ) -> tuple[Float[Array, " width"], Float[Array, ""]]:
        """The new state and the value of `observation` seen from `state`."""
        state, _, value = self.step(state, observation)
        return state, value


class FeedForwardActorCritic(eqx.Module):
    """The same network with the GRU cell replaced by a dense+relu layer: no memory.

    **Arguments:** as `RecurrentActorCritic`'s; the state is always `None`.
    """

    observation_space: Box
    action_space: Discrete
    embed: eqx.nn.Linear
    core: eqx.nn.Linear
    actor_hidden: eqx.nn.Linear
    actor_out: eqx.nn.Linear
    critic_hidden: eqx.nn.Linear
    critic_out: eqx.nn.Linear

    def __init__(
        self,
        observation_space: Box,
        action_space: Discrete,
        width: int = WIDTH,
        *,
        key: Key[Array, ""],
    ):
        keys = jax.random.split(key, 6)
        (n_obs,) = observation_space.shape
        self.observation_space = observation_space
        self.action_space = action_space
        self.embed = eqx.nn.Linear(n_obs, width, key=keys[0])
        self.core = eqx.nn.Linear(width, width, key=keys[1])
        self.actor_hidden = eqx.nn.Linear(width, width, key=keys[2])
        self.actor_out = eqx.nn.Linear(width, action_space.n, key=keys[3])
        self.critic_hidden = eqx.nn.Linear(width, width, key=keys[4])
        self.critic_out = eqx.nn.Linear(width, "scalar", key=keys[5])

    def reset(self, *, key: Key[Array, ""]) -> None:
        """Stateless."""
        return None

    def step(
        self, state: None, observation: Float[Array, " n"]
    ) -> tuple[None, Float[Array, " actions"], Float[Array, ""]]:
        """One step: `None`, the action logits and the value."""
        latent = jax.nn.relu(self.core(jax.nn.relu(self.embed(observation))))
        logits = self.actor_out(jax.nn.relu(self.actor_hidden(latent)))
        value = self.critic_out(jax.nn.relu(self.critic_hidden(latent)))
        return None, logits, value

    def __call__(
        self,
        state: None,
        observation: Float[Array, " n"],
        *,
        key: Key[Array, ""] | None = None,
        action_mask: None = None,
    ) -> tuple[None, Int[Array, ""]]:
        """The action: the argmax without `key`, a sample with it."""
        _, logits, _ = self.step(state, observation)
        if key is None:
            return None, jnp.argmax(logits)
        return None, jax.random.categorical(key, logits)

    def value(self, state: None, observation: Float[Array, " n"]) -> tuple[None, Float[Array, ""]]:
        """The value of `observation`."""
        return None, self.step(state, observation)[2]


def spaces(num_bits: int) -> tuple[Box, Discrete]:
    """MemoryChain's spaces: `[time left, query, context bits]` in [-1, 1]; 2 actions.

    gymnax declares `Box(0, 2 * num_bits)`, but the context bits are shown as -1 / +1 and
    the query is at most `num_bits - 1`.
    """
    high = max(1.0, float(num_bits - 1))
    return Box(-1.0, high, shape=(num_bits + 2,)), Discrete(2)


def recurrent_policy(num_bits: int, *, key: Key[Array, ""]) -> RecurrentActorCritic:
    """A fresh recurrent policy of this example's sizes."""
    return RecurrentActorCritic(*spaces(num_bits), key=key)


def feedforward_policy(num_bits: int, *, key: Key[Array, ""]) -> FeedForwardActorCritic:
    """A fresh feed-forward policy of this example's sizes."""
    return FeedForwardActorCritic(*spaces(num_bits), key=key)


def load_recurrent(path: Path, num_bits: int) -> RecurrentActorCritic:
    """The trained recurrent policy: its leaves read into a fresh policy of the same sizes."""
    return eqx.tree_deserialise_leaves(path, recurrent_policy(num_bits, key=jax.random.key(0)))

"""`MLPQPolicy`: lerax 0.0.5's epsilon-greedy Q-policy of that name, API and numbers alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax.random as jr
from jax import lax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key

from .._errors import InputError
from . import _serialization
from ._distributions import Categorical
from ._spaces import AbstractSpace, Discrete, as_space


class MLPQPolicy(eqx.Module):
    """Epsilon-greedy policy over the Q-values an MLP computes from the flat observation.

    Fields are declared in lerax's order (`action_space`, `observation_space`, `epsilon`,
    `q_network`), so files lerax's `serialize` wrote load into this class. `epsilon` is a
    plain float field as in lerax (a leaf of the file, not a static hyperparameter).

    **Arguments:**

    - `env`: anything with `observation_space` and a Discrete `action_space` (ours or
      lerax's).
    - `epsilon`: the probability of sampling (from the softmax of the Q-values, as lerax
      does) instead of taking the greedy action, when `__call__` is given a key.
    - `width_size`, `depth`: the Q-network's hidden width and number of hidden layers.
    - `key`: a JAX PRNG key for the initial parameters.
    """

    name: ClassVar[str] = "MLPQPolicy"

    action_space: Discrete
    observation_space: AbstractSpace

    epsilon: float
    q_network: eqx.nn.MLP

    def __init__(
        self,
        env: Any,
        *,
        epsilon: float = 0.1,
        width_size: int = 64,
        depth: int = 2,
        key: Key[Array, ""],
    ):
        action_space = as_space(env.action_space)
        if not isinstance(action_space, Discrete):
            raise InputError(
                f"MLPQPolicy needs a Discrete action space (one Q-value per action), found "
                f"{action_space!r}. Use MLPActorCriticPolicy for other action spaces."
            )
        self.action_space = action_space
        self.observation_space = as_space(env.observation_space)
        self.epsilon = epsilon
        self.q_network = eqx.nn.MLP(
            in_size=self.observation_space.flat_size,
            out_size=self.action_space.n,
            width_size=width_size,
            depth=depth,
            key=key,
        )

    def reset(self, *, key: Key[Array, ""]) -> None:
        """The policy is stateless: its state is always None."""
        return None

    def q_values(self, state: None, observation: ArrayLike) -> tuple[None, Float[Array, " n"]]:
        """One Q-value per action."""
        return None, self.q_network(self.observation_space.flatten_sample(observation))

    def __call__(
        self,
        state: None,
        observation: ArrayLike,
        *,
        action_mask: Bool[ArrayLike, " n"] | None = None,
        key: Key[Array, ""] | None = None,
    ) -> tuple[None, Int[Array, ""]]:
        """The greedy (legal) action when `key` is None or epsilon <= 0; else epsilon-greedy."""
        state, q_values = self.q_values(state, observation)
        dist = Categorical(q_values)
        if action_mask is not None:
            dist = dist.mask(action_mask)
        if key is None or self.epsilon <= 0.0:
            return state, dist.mode()
        epsilon_key, action_key = jr.split(key, 2)
        action = lax.cond(
            jr.uniform(epsilon_key, shape=()) < self.epsilon,
            lambda: dist.sample(action_key),
            lambda: dist.mode(),
        )
        return state, action

    def serialize(self, path: str | Path, no_suffix: bool = False) -> None:
        """Write a self-describing `.eqx` file: a JSON header, then equinox's leaves.

        Like lerax, a suffix other than `.eqx` is replaced unless `no_suffix` is True.
        """
        _serialization.write_policy(self, Path(path), no_suffix=no_suffix)

    @classmethod
    def deserialize(cls, path: str | Path, *args: Any, **kwargs: Any) -> MLPQPolicy:
        """Load a policy file.

        A file written by `serialize` needs nothing else. A file written by lerax's own
        `serialize` (leaves only, with or without lerax 0.0.6's structure fingerprint)
        needs the env and the non-default constructor kwargs it was built with:
        `deserialize(path, env, width_size=128)`; `key` is optional.
        """
        return _serialization.read_policy(cls, Path(path), args, kwargs)

    def constructor_kwargs(self) -> dict[str, Any]:
        """The keyword arguments (other than env and key) that rebuild this policy."""
        # An int epsilon stays an int: it is a leaf, and the rebuilt policy must match.
        epsilon = self.epsilon if isinstance(self.epsilon, int | float) else float(self.epsilon)
        return {
            "epsilon": epsilon,
            "width_size": self.q_network.width_size,
            "depth": self.q_network.depth,
        }

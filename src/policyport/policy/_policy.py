"""`MLPActorCriticPolicy`: lerax 0.0.5's class of that name, API and numbers alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Key

from . import _serialization
from ._action_layer import ActionLayer
from ._spaces import AbstractSpace, as_space


class MLPActorCriticPolicy(eqx.Module):
    """Actor-critic policy with MLP components.

    An MLP encodes the flattened observation into `feature_size` features; one MLP maps
    them to a value, another to the parameters of the action space's distribution.

    **Arguments:**

    - `env`: anything with `observation_space` and `action_space` (ours or lerax's).
    - `feature_size`, `feature_width`, `feature_depth`: the encoder's output size, hidden
      width and depth.
    - `value_width`, `value_depth`: the value head's hidden width and depth.
    - `action_width`, `action_depth`: the action head's hidden width and depth (the
      distribution layer counts as one of `action_depth`).
    - `log_std_init`: initial log standard deviation for Box action spaces.
    - `key`: a JAX PRNG key for the initial parameters.
    """

    name: ClassVar[str] = "MLPActorCriticPolicy"

    action_space: AbstractSpace
    observation_space: AbstractSpace

    encoder: eqx.nn.MLP
    value_head: eqx.nn.MLP
    action_head: ActionLayer

    def __init__(
        self,
        env: Any,
        *,
        feature_size: int = 16,
        feature_width: int = 64,
        feature_depth: int = 2,
        value_width: int = 64,
        value_depth: int = 2,
        action_width: int = 64,
        action_depth: int = 2,
        log_std_init: float = 0.0,
        key: Key[Array, ""],
    ):
        self.action_space = as_space(env.action_space)
        self.observation_space = as_space(env.observation_space)
        feat_key, val_key, act_key = jr.split(key, 3)
        self.encoder = eqx.nn.MLP(
            in_size=self.observation_space.flat_size,
            out_size=feature_size,
            width_size=feature_width,
            depth=feature_depth,
            key=feat_key,
        )
        self.value_head = eqx.nn.MLP(
            in_size=feature_size,
            out_size="scalar",
            width_size=value_width,
            depth=value_depth,
            key=val_key,
        )
        self.action_head = ActionLayer(
            self.action_space,
            feature_size,
            action_width,
            action_depth,
            key=act_key,
            log_std_init=log_std_init,
        )

    def reset(self, *, key: Key[Array, ""]) -> None:
        """The policy is stateless: its state is always None."""
        return None

    def _features(self, observation: ArrayLike) -> Float[Array, " feature_size"]:
        return self.encoder(self.observation_space.flatten_sample(observation))

    def __call__(
        self,
        state: None,
        observation: ArrayLike,
        *,
        key: Key[Array, ""] | None = None,
        action_mask: ArrayLike | None = None,
    ) -> tuple[None, Array]:
        """An action: the distribution's mode when `key` is None, else a sample."""
        dist = self.action_head(self._features(observation), action_mask=action_mask)
        return None, dist.mode() if key is None else dist.sample(key)

    def action_and_value(
        self,
        state: None,
        observation: ArrayLike,
        *,
        key: Key[Array, ""],
        action_mask: ArrayLike | None = None,
    ) -> tuple[None, Array, Float[Array, ""], Float[Array, ""]]:
        """A sampled action, the observation's value and the action's log-probability."""
        features = self._features(observation)
        value = self.value_head(features)
        dist = self.action_head(features, action_mask=action_mask)
        action, log_prob = dist.sample_and_log_prob(key)
        return None, action, value, log_prob.sum().squeeze()

    def value(self, state: None, observation: ArrayLike) -> tuple[None, Float[Array, ""]]:
        """The value of an observation."""
        return None, self.value_head(self._features(observation))

    def evaluate_action(
        self,
        state: None,
        observation: ArrayLike,
        action: ArrayLike,
        *,
        action_mask: ArrayLike | None = None,
    ) -> tuple[None, Float[Array, ""], Float[Array, ""], Array]:
        """The value, the action's log-probability and the distribution's entropy."""
        features = self._features(observation)
        dist = self.action_head(features, action_mask=action_mask)
        value = self.value_head(features)
        log_prob = dist.log_prob(action)
        return None, value, log_prob.sum().squeeze(), dist.entropy().squeeze()

    def serialize(self, path: str | Path, no_suffix: bool = False) -> None:
        """Write a self-describing `.eqx` file: a JSON header, then equinox's leaves.

        Like lerax, a suffix other than `.eqx` is replaced unless `no_suffix` is True.
        """
        _serialization.write_policy(self, Path(path), no_suffix=no_suffix)

    @classmethod
    def deserialize(cls, path: str | Path, *args: Any, **kwargs: Any) -> MLPActorCriticPolicy:
        """Load a policy file.

        A file written by `serialize` needs nothing else, and takes lerax's call as well:
        `deserialize(path, env, key=key)` (or `env=env`), the env's spaces and any kwargs
        checked against the file. A file written by lerax's own `serialize` (leaves only)
        needs the env and the non-default constructor kwargs it was built with:
        `deserialize(path, env, feature_width=128)`; `key` is optional and ignored.
        """
        return _serialization.read_policy(cls, Path(path), args, kwargs)

    def constructor_kwargs(self) -> dict[str, Any]:
        """The keyword arguments (other than env and key) that rebuild this architecture."""
        return {
            "feature_size": self.encoder.out_size,
            "feature_width": self.encoder.width_size,
            "feature_depth": self.encoder.depth,
            "value_width": self.value_head.width_size,
            "value_depth": self.value_head.depth,
            "action_width": self.action_head.mlp.width_size,
            "action_depth": self.action_head.mlp.depth + 1,
        }

"""The artifact contract: the inputs, outputs and metadata every format carries.

Contract versions (bump when a consumer would need to change):

- 1 (2026-11-25): inputs `observation` float32 `[batch, *obs_shape]` and, for maskable
  action spaces, `action_mask` bool `[batch, mask_size]`; outputs `action` (int64
  `[batch]` for Discrete, int64 `[batch, k]` for MultiDiscrete and MultiBinary, float32
  `[batch, *act_shape]` for Box) and `value` float32 `[batch]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from ..policy import Box, Discrete, MLPActorCriticPolicy, weights_sha256

CONTRACT_VERSION = 1
# The contract versions a consumer of this release understands.
SUPPORTED_CONTRACT_VERSIONS = (1,)


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output, with its per-sample shape (the batch axis comes first)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def batched_shape(self, batch: int | str) -> tuple[int | str, ...]:
        return (batch, *self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": ["batch", *self.shape], "dtype": self.dtype}


def input_specs(policy: MLPActorCriticPolicy) -> tuple[TensorSpec, ...]:
    """`observation`, then `action_mask` when the action space is maskable."""
    observation = TensorSpec("observation", tuple(policy.observation_space.shape), "float32")
    mask_size = policy.action_space.mask_size
    if mask_size is None:
        return (observation,)
    return observation, TensorSpec("action_mask", (mask_size,), "bool")


def output_specs(policy: MLPActorCriticPolicy) -> tuple[TensorSpec, ...]:
    """`action` and `value`."""
    space = policy.action_space
    if isinstance(space, Box):
        action = TensorSpec("action", tuple(space.shape), "float32")
    elif isinstance(space, Discrete):
        action = TensorSpec("action", (), "int64")
    else:
        action = TensorSpec("action", (space.flat_size,), "int64")
    return action, TensorSpec("value", (), "float32")


def metadata(
    policy: MLPActorCriticPolicy, *, format_name: str, parity: dict[str, Any] | None = None
) -> dict[str, str]:
    """The key/value metadata embedded in every artifact (values are strings, JSON inside)."""
    fields: dict[str, Any] = {
        "policyport_version": __version__,
        "contract_version": CONTRACT_VERSION,
        "format": format_name,
        "policy_class": type(policy).name,
        "observation_space": policy.observation_space.to_json(),
        "action_space": policy.action_space.to_json(),
        "policy_kwargs": policy.constructor_kwargs(),
        "inputs": [s.to_json() for s in input_specs(policy)],
        "outputs": [s.to_json() for s in output_specs(policy)],
        "weights_sha256": weights_sha256(policy),
        "all_masked_row_action": 0,
    }
    if parity is not None:
        fields["parity"] = parity
    return {
        f"policyport.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in fields.items()
    }


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype({"float32": np.float32, "int64": np.int64, "bool": np.bool_}[name])

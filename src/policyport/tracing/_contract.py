"""The artifact contract: the inputs, outputs and metadata every format carries.

Contract versions (bump when a consumer would need to change):

- 1 (2026-11-25): inputs `observation` float32 `[batch, *obs_shape]` and, for maskable
  action spaces, `action_mask` bool `[batch, mask_size]`; outputs `action` (int64
  `[batch]` for Discrete, int64 `[batch, k]` for MultiDiscrete and MultiBinary, float32
  `[batch, *act_shape]` for Box) and `value` float32 `[batch]`.
- 2 (2026-12-02): any policy that follows lerax's protocol. Inputs: one float32 input per
  observation leaf (`observation` for an array space; `observation.<key>` /
  `observation.<i>` for the leaves of Dict and Tuple spaces, nested keys joined by dots,
  in the space's order), then `action_mask` when the policy uses the mask (decided from
  the trace; metadata `mask_input`). Outputs: `action` as in 1, then the policy's extra
  heads by name, only those it has: `value` float32 `[batch]`, `q_values` float32
  `[batch, n]`. Metadata `inputs` / `outputs` list them all; a consumer reads them
  instead of assuming names.
- 3 (2026-12-02): the sampling path (`sample=True`), as its own entry point: beside the
  default entry `<stem><suffix>` (version 2, the deterministic outputs only) goes the
  sample entry `<stem>.sample<suffix>`, with a last input `noise` float32
  `[batch, noise_size]` (blocks in metadata `noise`) and last outputs `sampled_action`
  (as `action`) and `log_prob` float32 `[batch]`. Both name the entries in metadata
  `entry` and `entries`. Artifacts without the sampling path keep declaring 2, so every
  version-2 consumer still runs them. Optional metadata `action_clip` (with
  `clip_actions=True`) changes no input or output and needs no version.
- 4 (2026-12-05): recurrent policies (`reset` returns a state). Inputs after the mask:
  the state leaves (`state` for one array, else `state.<path>`, float32 `[batch, *shape]`)
  and `reset` bool `[batch]` (rows start from the initial state, selected in the graph);
  outputs after the heads: `next_state` / `next_state.<path>`. Metadata `state`. Both
  entries of a sampled recurrent export declare 4; stateless artifacts keep 2 or 3.
- 5 (2026-12-05): observation inputs in their Box's element type: an integer Box
  (`dtype` uint8, int8, uint16, int16 or int32; e.g. camera frames) is taken as that
  type, not float32, and its description in `observation_space` carries `dtype`. Only
  artifacts with such an input declare 5 (the sampling entry's inputs and outputs as in
  3, the state's as in 4: a consumer of 5 runs 4's too); artifacts whose observations
  are all float32 keep their version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InputError
from .._version import __version__

CONTRACT_VERSION = 2
# What an artifact with the sampling path declares (a consumer must feed `noise`).
SAMPLING_CONTRACT_VERSION = 3
# What a recurrent artifact declares (state inputs, `reset`, `next_state` outputs).
RECURRENT_CONTRACT_VERSION = 4
RESET = "reset"
STATE, NEXT_STATE = "state", "next_state"
# The contract versions a consumer of this release understands (`check` refuses others).
# tests/golden/contract_v1 holds artifacts written at version 1; they must keep checking.
# What an artifact with an observation input that is not float32 declares (`uint8`...).
TYPED_OBSERVATION_CONTRACT_VERSION = 5
SUPPORTED_CONTRACT_VERSIONS = (1, 2, 3, 4, 5)
VERSION_KEY = "policyport.contract_version"
# The extra heads a policy may have: method name -> (output name, per-sample rank).
HEADS = {"value": 0, "q_values": 1}
ACTION = "action"
MASK = "action_mask"
# Entry points: a `sample=True` export writes two artifacts, since a runtime computes every
# output of a graph; their metadata names both (file names, which sit side by side).
DEFAULT_ENTRY, SAMPLE_ENTRY = "default", "sample"
ENTRY_KEY, ENTRIES_KEY = "policyport.entry", "policyport.entries"


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


@dataclass(frozen=True)
class PolicyDescription:
    """What the metadata says about the policy an artifact was made from."""

    policy_class: str
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    policy_kwargs: dict[str, Any] | None
    weights_sha256: str
    mask_input: bool
    heads: tuple[str, ...]
    # With sampling: the blocks of the `noise` input (`_sampling.NoiseBlock.to_json`).
    noise: tuple[dict[str, Any], ...] | None = None
    # With clip_actions: the bounds Box actions are clipped to (None: unbounded there).
    action_clip: dict[str, Any] | None = None
    # With bake_wrappers: the transforms inside, in the order they run (`_wrappers.py`).
    wrappers: tuple[dict[str, Any], ...] | None = None
    # A recurrent policy: its state leaves, reset input and initial state (`_state.py`).
    state: dict[str, Any] | None = None


def metadata(
    description: PolicyDescription,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    *,
    format_name: str,
    parity: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The key/value metadata embedded in every artifact (values are strings, JSON inside)."""
    fields: dict[str, Any] = {
        "policyport_version": __version__,
        "contract_version": contract_version(description, inputs),
        "format": format_name,
        "policy_class": description.policy_class,
        "observation_space": description.observation_space,
        "action_space": description.action_space,
        "policy_kwargs": description.policy_kwargs,
        "inputs": [s.to_json() for s in inputs],
        "outputs": [s.to_json() for s in outputs],
        "mask_input": description.mask_input,
        "heads": list(description.heads),
        "weights_sha256": description.weights_sha256,
        "all_masked_row_action": 0,
    }
    if description.state is not None:
        fields["state"] = description.state
    if description.noise is not None:
        fields["noise"] = list(description.noise)
    if description.action_clip is not None:
        fields["action_clip"] = description.action_clip
    if description.wrappers is not None:
        fields["wrappers"] = list(description.wrappers)
    if parity is not None:
        fields["parity"] = parity
    return {
        f"policyport.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in fields.items()
    }


def contract_version(description: PolicyDescription, inputs: tuple[TensorSpec, ...]) -> int:
    """The lowest version whose consumers can run the artifact (versions are cumulative: a
    consumer of 5 runs 4's state inputs too)."""
    if any(s.dtype not in ("float32", "bool") for s in inputs):
        return TYPED_OBSERVATION_CONTRACT_VERSION
    if description.state is not None:
        return RECURRENT_CONTRACT_VERSION
    return CONTRACT_VERSION if description.noise is None else SAMPLING_CONTRACT_VERSION


# The tensor types of the contract: float32, int64 and bool, and an integer Box's type.
_NUMPY_DTYPES = ("float32", "int64", "bool", "uint8", "int8", "uint16", "int16", "int32")


def numpy_dtype(name: str) -> np.dtype:
    if name not in _NUMPY_DTYPES:
        raise KeyError(name)
    return np.dtype(name)


def check_contract(meta: dict[str, str], artifact: object) -> int:
    """The artifact's contract version, if this release understands it; else `InputError`.

    `meta` is the artifact's embedded metadata (string values, as every format stores it).
    """
    if VERSION_KEY not in meta:
        raise InputError(
            f"{artifact} has no {VERSION_KEY!r} metadata: it is not a policyport artifact "
            "(or its metadata was stripped). Check the artifacts policyport wrote, or "
            "export it again."
        )
    raw = meta[VERSION_KEY]
    producer = meta.get("policyport.policyport_version", "an unknown policyport version")
    supported = ", ".join(map(str, SUPPORTED_CONTRACT_VERSIONS))
    try:
        version = int(raw)
    except ValueError:
        version = None
    if version not in SUPPORTED_CONTRACT_VERSIONS:
        newer = version is not None and version > max(SUPPORTED_CONTRACT_VERSIONS)
        advice = (
            "Upgrade policyport to check it"
            if newer
            else "Export the policy again with this release"
        )
        raise InputError(
            f"{artifact} follows artifact contract version {raw!r} (written by policyport "
            f"{producer}), but this release (policyport {__version__}) understands versions "
            f"{supported}. {advice}."
        )
    return version

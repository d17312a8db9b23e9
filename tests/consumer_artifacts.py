"""Artifacts beyond `observation` -> `action`/`value`, shared by the consumer tests.

The C++, Node.js and browser consumers read an artifact's inputs and outputs from the
artifact itself (contract 2). Two policies prove it:

- `q`: lerax 0.0.5's own `MLPQPolicy` (inputs `observation`, `action_mask`; outputs
  `action`, `q_values` [batch, 3]: no `value` head at all).
- `dict`: an `MLPActorCriticPolicy` on a Dict observation space with a Box and a Discrete
  leaf (inputs `observation.pos` [batch, 3], `observation.kind` [batch], `action_mask`).

And `contract1()`: a file written under contract 1 by an older policyport, which every
consumer must still run.

Each is exported once per test session (`check=False`: the export's own parity check is
tested elsewhere; here the consumer is compared with JAX directly).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

import policyport
from policyport.checks import ATOL, RTOL, reference_outputs, sample_inputs

CASES = ("q", "dict")
# A real contract-1 file, written by the policyport of 2026-11-25 (see its README.md).
CONTRACT1 = Path(__file__).parent / "data" / "contract1"


@dataclass(frozen=True)
class Case:
    """An exported artifact, a batch of inputs for it, and what JAX computes on them."""

    name: str
    path: Path
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


def make_policy(case: str) -> Any:
    from policyport.policy import Box, Dict, Discrete, MLPActorCriticPolicy, SpacesEnv

    if case == "q":
        import lerax.policy
        import lerax.space

        # lerax's MLPQPolicy refuses any Discrete but its own: the env holds lerax's spaces.
        ones = np.ones(4, dtype=np.float32)
        env = SpacesEnv(lerax.space.Box(-ones, ones), lerax.space.Discrete(3))
        return lerax.policy.MLPQPolicy(env, width_size=16, depth=2, key=jax.random.key(7))
    if case == "dict":
        ones = np.ones(3, dtype=np.float32)
        observation = Dict({"pos": Box(-ones, ones), "kind": Discrete(4)})
        return MLPActorCriticPolicy(SpacesEnv(observation, Discrete(3)), key=jax.random.key(8))
    raise ValueError(f"unknown case {case!r}; expected one of {CASES}")


@functools.cache
def exported(case: str, folder: Path, batch: int = 64) -> Case:
    """`case`'s policy exported to `folder/<case>.onnx`, inputs (seed 0) and JAX's outputs."""
    policy = make_policy(case)
    path = folder / "consumer_artifacts" / f"{case}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    policyport.export(policy, "onnx", path, check=False, force=True)
    inputs = sample_inputs(policy, seed=0, batch=batch, all_false_rows=2)
    return Case(case, path, inputs, reference_outputs(policy, inputs))


def contract1() -> Case:
    """The golden contract-1 artifact, the inputs it was written with and JAX's outputs."""
    with np.load(CONTRACT1 / "discrete_io.npz") as arrays:
        stored = {name: arrays[name] for name in arrays.files}
    part = {
        kind: {k.split(".", 1)[1]: v for k, v in stored.items() if k.startswith(kind + ".")}
        for kind in ("input", "output")
    }
    return Case("contract1", CONTRACT1 / "discrete.onnx", part["input"], part["output"])


def assert_matches(case: Case, outputs: dict[str, Any]) -> None:
    """`outputs` (by name) are JAX's: the same names, actions identical, floats within
    `ATOL + RTOL * |jax|` (1e-5 + 1e-5 |x|, the tolerances of the export's own check)."""
    assert sorted(outputs) == sorted(case.expected), (sorted(outputs), sorted(case.expected))
    for name, want in case.expected.items():
        got = np.asarray(outputs[name]).reshape(want.shape)
        if want.dtype == np.int64:
            np.testing.assert_array_equal(got, want, err_msg=f"{case.name}: {name}")
        else:
            worst = np.max(np.abs(got - want))
            print(f"{case.name}: {name} worst difference {worst:.3g}")
            assert np.all(np.abs(got - want) <= ATOL + RTOL * np.abs(want)), (name, worst)

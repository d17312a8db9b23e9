"""The stress check: extreme observations, and only what must hold there.

Parity is checked on inputs a deployed policy sees (`_inputs.py`). Here observations are
pushed to float32's extremes (|x| up to 3.4e38, where logits overflow to +-inf), and only
the promises that hold for every finite observation are checked, in the artifact's own
runtime: no masked action is chosen (docs/artifact.md), and the artifact never gives NaN
where the JAX policy does not (NaN from the network's own overflow, inf - inf, is outside
the contract for values and Box actions alike, so it is counted, not failed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..formats import Runner
from ..tracing import MASK, TracedPolicy
from ._inputs import sample_inputs
from ._reference import reference_outputs

# Magnitudes of the extreme observations: float32's max and values that overflow a
# layer or two of a typical MLP.
EXTREMES = (float(np.finfo(np.float32).max), 1e38, 1e30, 1e20, 1e10)
STRESS_ROWS = 256
# Leading rows of the stress batch whose mask is all False (they must give action 0).
ALL_FALSE_ROWS = 4


@dataclass(frozen=True)
class StressReport:
    """What held on extreme observations."""

    rows: int
    masked_actions: int  # rows choosing a masked action (all-False rows must choose 0)
    artifact_nan: dict[str, int]  # rows with NaN in each float output, in the artifact
    jax_nan: dict[str, int]  # ... and in the JAX policy
    new_nan: dict[str, int]  # rows NaN in the artifact but not in JAX
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        nan = ", ".join(f"{k} {self.artifact_nan[k]} (jax {self.jax_nan[k]})" for k in self.jax_nan)
        return (
            f"stress {status}: {self.rows} rows of extreme observations (|x| up to 3.4e38): "
            f"masked actions chosen {self.masked_actions}; NaN rows {nan or 'none possible'}; "
            f"NaN where JAX has none {sum(self.new_nan.values())}"
        )


def stress_inputs(traced: TracedPolicy, *, seed: int, rows: int = STRESS_ROWS) -> dict:
    """Inputs with every observation entry at +-an extreme (half the rows) or mixed with
    ordinary values (the other half); random masks, the first rows all False."""
    inputs = sample_inputs(traced, seed=seed, batch=rows, all_false_rows=ALL_FALSE_ROWS)
    rng = np.random.default_rng(seed)
    for spec in traced.observation_inputs:
        values = inputs[spec.name]
        extreme = rng.choice(EXTREMES, size=values.shape) * rng.choice([-1.0, 1.0], values.shape)
        # The first half of the rows extreme everywhere, the rest in about half their
        # entries; every fourth row with one sign throughout (logits overflow together).
        rows_shape = (rows,) + (1,) * (values.ndim - 1)
        everywhere = (np.arange(rows) < rows // 2).reshape(rows_shape)
        take = everywhere | (rng.random(values.shape) < 0.5)
        one_sign = np.arange(rows) % 4 == 0
        signs = np.broadcast_to(rng.choice([-1.0, 1.0], size=rows_shape), values.shape)
        extreme[one_sign] = np.abs(extreme[one_sign]) * signs[one_sign]
        inputs[spec.name] = np.where(take, extreme, values).astype(np.float32)
    return inputs


def _nan_rows(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return np.zeros(len(array), dtype=bool)
    return np.isnan(array.reshape(len(array), -1)).any(axis=1)


def stress_runner(traced: TracedPolicy, run: Runner, *, seed: int = 0) -> StressReport:
    """Run `run` on extreme observations; check the promises that hold there."""
    inputs = stress_inputs(traced, seed=seed)
    actual = run(inputs)
    expected = reference_outputs(traced, inputs)
    masked = 0
    if MASK in inputs:
        actions = np.asarray(actual["action"])
        masked = int(traced.action_space.illegal_rows(actions, inputs[MASK]).sum())
    floats = [s.name for s in traced.outputs if s.dtype == "float32"]
    artifact_nan = {k: int(_nan_rows(actual[k]).sum()) for k in floats}
    jax_nan = {k: int(_nan_rows(expected[k]).sum()) for k in floats}
    new_nan = {k: int((_nan_rows(actual[k]) & ~_nan_rows(expected[k])).sum()) for k in floats}
    return StressReport(
        rows=len(next(iter(inputs.values()))),
        masked_actions=masked,
        artifact_nan=artifact_nan,
        jax_nan=jax_nan,
        new_nan=new_nan,
        passed=masked == 0 and not any(new_nan.values()),
    )

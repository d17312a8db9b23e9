"""The stress check: extreme observations, and only what must hold there.

Parity is checked on inputs a deployed policy sees (`_inputs.py`). Here observations are
pushed to float32's extremes (|x| up to 3.4e38, where logits overflow to +-inf), and only
the promises that hold for every finite observation are checked, in the artifact's own
runtime: no masked action is chosen (docs/artifact.md). NaN is counted per output, in the
artifact and in JAX, and reported: where the network overflows, runtimes differ between
inf and NaN (inf - inf, fused or not). Rows whose logits are NaN (in JAX, or in the
artifact, seen as NaN in its float outputs where JAX's are finite) are outside the
contract: a NaN cannot be ordered, so their actions are not counted; the report warns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._backend import on_reference_backend
from ..formats import Runner
from ..tracing import MASK, TracedPolicy
from ._compiled import run_compiled
from ._inputs import rows_for, sample_inputs
from ._reference import reference_outputs

# Magnitudes of the extreme observations: float32's max and values that overflow a
# layer or two of a typical MLP.
EXTREMES = (float(np.finfo(np.float32).max), 1e38, 1e30, 1e20, 1e10)
STRESS_ROWS = 256
# For big observations (frames), as many rows as this many bytes of observations hold
# (a power of two, at least MIN_STRESS_ROWS): 64 rows of 84x84x4 uint8 frames.
STRESS_BYTES = 2 << 20
MIN_STRESS_ROWS = 32
# Leading rows of the stress batch whose mask is all False (they must give action 0).
ALL_FALSE_ROWS = 4


@dataclass(frozen=True)
class StressReport:
    """What held on extreme observations."""

    rows: int
    masked_actions: int  # rows choosing a masked action (all-False rows must choose 0)
    nan_logit_rows: int  # rows whose logits are NaN in JAX: outside the contract, not counted
    artifact_nan: dict[str, int]  # rows with NaN in each float output, in the artifact
    jax_nan: dict[str, int]  # ... and in the JAX policy
    # Rows NaN in the artifact where JAX's output is finite: the artifact's arithmetic
    # overflows differently (reported with a warning; masked actions there not counted).
    new_nan: dict[str, int]
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        nan = ", ".join(f"{k} {self.artifact_nan[k]} (jax {self.jax_nan[k]})" for k in self.jax_nan)
        new = sum(self.new_nan.values())
        warning = " (warning: the artifact overflows where JAX does not)" if new else ""
        return (
            f"stress {status}: {self.rows} rows of extreme observations (|x| up to 3.4e38): "
            f"masked actions chosen {self.masked_actions} (rows with NaN logits, outside the "
            f"contract, excluded: {self.nan_logit_rows}); NaN rows {nan or 'none possible'}; "
            f"NaN where JAX is finite {new}{warning}"
        )


def stress_inputs(traced: TracedPolicy, *, seed: int, rows: int | None = None) -> dict:
    """Inputs with every observation entry at +-an extreme (half the rows) or mixed with
    ordinary values (the other half); random masks, the first rows all False. `rows`
    defaults to STRESS_ROWS, fewer for big observations (`STRESS_BYTES`)."""
    rows = rows or rows_for(traced, STRESS_ROWS, STRESS_BYTES, MIN_STRESS_ROWS)
    inputs = sample_inputs(traced, seed=seed, batch=rows, all_false_rows=ALL_FALSE_ROWS)
    rng = np.random.default_rng(seed)
    spaces = dict(traced.observation_space.leaves())
    for spec in traced.observation_inputs:
        values = inputs[spec.name]
        if spec.dtype != "float32":
            inputs[spec.name] = _integer_extremes(spaces[spec.name], values, rng)
            continue
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


def _integer_extremes(space: Any, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An integer leaf (uint8 frames) at its bounds, the only extremes it can hold: the
    first quarter of the rows at `low` everywhere, the second at `high`, the rest with
    about half their entries at one bound or the other."""
    rows = len(values)
    low = np.broadcast_to(np.asarray(space.low), values.shape)
    high = np.broadcast_to(np.asarray(space.high), values.shape)
    bound = np.where(rng.random(values.shape) < 0.5, low, high)
    bound[: rows // 4] = low[: rows // 4]
    bound[rows // 4 : rows // 2] = high[rows // 4 : rows // 2]
    rows_shape = (rows,) + (1,) * (values.ndim - 1)
    take = (np.arange(rows) < rows // 2).reshape(rows_shape) | (rng.random(values.shape) < 0.5)
    return np.where(take, bound, values).astype(values.dtype)


def _finite_rows(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return np.ones(len(array), dtype=bool)
    return np.isfinite(array.reshape(len(array), -1)).all(axis=1)


def _nan_rows(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return np.zeros(len(array), dtype=bool)
    return np.isnan(array.reshape(len(array), -1)).any(axis=1)


@on_reference_backend
def stress_runner(traced: TracedPolicy, run: Runner, *, seed: int = 0) -> StressReport:
    """Run `run` on extreme observations; check the promises that hold there."""
    inputs = stress_inputs(traced, seed=seed)
    actual = run(inputs)
    expected = reference_outputs(traced, inputs)
    masked = 0
    outside = np.zeros(len(next(iter(inputs.values()))), dtype=bool)
    if traced.discrete:
        arrays = [jnp.asarray(inputs[n]) for n in traced.input_names]
        outside = np.asarray(run_compiled(traced, "has_nan", arrays))
    floats = [s.name for s in traced.outputs if s.dtype == "float32"]
    # Rows where the artifact's own network overflowed to NaN (seen in its float outputs)
    # while JAX's did not: its logits may be NaN too, which the mask cannot order.
    diverged = np.zeros_like(outside)
    for k in floats:
        diverged |= _nan_rows(actual[k]) & _finite_rows(expected[k])
    if MASK in inputs:
        actions = np.asarray(actual["action"])
        illegal = traced.action_space.illegal_rows(actions, inputs[MASK])
        masked = int((illegal & ~outside & ~diverged).sum())
    artifact_nan = {k: int(_nan_rows(actual[k]).sum()) for k in floats}
    jax_nan = {k: int(_nan_rows(expected[k]).sum()) for k in floats}
    new_nan = {k: int((_nan_rows(actual[k]) & _finite_rows(expected[k])).sum()) for k in floats}
    return StressReport(
        rows=len(next(iter(inputs.values()))),
        masked_actions=masked,
        nan_logit_rows=int(outside.sum()),
        artifact_nan=artifact_nan,
        jax_nan=jax_nan,
        new_nan=new_nan,
        passed=masked == 0,
    )

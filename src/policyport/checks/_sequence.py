"""Sequence parity for recurrent policies: many steps, the state carried, random resets.

A one-step check (`_parity.py`) feeds random states; a deployed recurrent policy feeds its
own `next_state` back for hundreds of steps, where a small per-step error could grow. Two
passes over the same B rows x T steps of observations and resets:

- **free-running**: the artifact carries its own `next_state`, the reference JAX's, as
  deployed; states and heads may drift apart by the float rounding of each step;
- **teacher-forced**: the artifact is fed JAX's state at every step, so each step is held
  to the one-step tolerance and a per-step error is told apart from drift.

Actions are identical in both (near-ties excepted, as in `_report.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..formats import Runner
from ..tracing import ACTION, LOG_PROB, MASK, RESET, SAMPLED_ACTION, TracedPolicy
from ._inputs import sample_inputs
from ._reference import reference_and_margins
from ._report import ATOL, RTOL, OutputCheck, compare_output

SEQUENCE_ROWS = 16
SEQUENCE_STEPS = 32
# Each row resets (starts from the initial state) with this probability per step, and
# every row at step 0.
RESET_PROBABILITY = 0.1
# Free-running states and heads: |artifact - jax| <= DRIFT_ATOL + DRIFT_RTOL * |jax|. Each
# step adds float32 rounding of ~1e-7 relative (reordered sums); a gated cell (GRU, LSTM)
# does not amplify it, so 32 steps stay orders of magnitude inside 10x the one-step rule.
DRIFT_ATOL = 1e-4
DRIFT_RTOL = 1e-4


@dataclass(frozen=True)
class SequenceCheck:
    """The sequence parity of one artifact: both passes, per output, and per step."""

    rows: int
    steps: int
    resets: int
    tolerances: dict[str, float]
    teacher_forced: list[OutputCheck]
    free_running: list[OutputCheck]
    # Per step, the worst |artifact - jax| over the state and head outputs.
    per_step_teacher_forced: list[float]
    per_step_free_running: list[float]
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "steps": self.steps,
            "worst_step_teacher_forced": max(self.per_step_teacher_forced, default=0.0),
            "worst_step_free_running": max(self.per_step_free_running, default=0.0),
            "end_of_sequence_free_running": self.per_step_free_running[-1],
            "mismatched_rows": {
                f"{o.name} ({mode})": o.mismatched_rows
                for mode, checks in (
                    ("teacher-forced", self.teacher_forced),
                    ("free-running", self.free_running),
                )
                for o in checks
            },
        }

    def lines(self) -> list[str]:
        status = "PASS" if self.passed else "FAIL"
        tf, fr = self.per_step_teacher_forced, self.per_step_free_running
        out = [
            f"sequence {status}: {self.rows} rows x {self.steps} steps, {self.resets} resets; "
            f"worst |diff| of states and heads per step: teacher-forced {max(tf):.2e} "
            f"(step {int(np.argmax(tf))}), free-running {max(fr):.2e} (step "
            f"{int(np.argmax(fr))}), end of sequence {fr[-1]:.2e}; free-running tolerance "
            f"{DRIFT_ATOL:g} + {DRIFT_RTOL:g}*|jax|, teacher-forced {ATOL:g} + {RTOL:g}*|jax|"
        ]
        for mode, checks in (
            ("teacher-forced", self.teacher_forced),
            ("free-running", self.free_running),
        ):
            for o in checks:
                out += [f"✗ sequence {mode} {o.name}: {p}" for p in o.problems]
        return out


def _steps(traced: TracedPolicy, seed: int, rows: int, steps: int) -> list[dict[str, np.ndarray]]:
    """Per step: observations (and masks) drawn as the one-step check draws them, resets."""
    rng = np.random.default_rng(seed)
    # One draw for every step (the noise of a sampling path is drawn by jax.random once).
    every = sample_inputs(traced, seed=seed + 7919, batch=rows * steps)
    out = []
    for t in range(steps):
        inputs = {k: v[t * rows : (t + 1) * rows] for k, v in every.items()}
        inputs[RESET] = np.ones(rows, bool) if t == 0 else rng.random(rows) < RESET_PROBABILITY
        out.append(inputs)
    return out


def _worst(expected: dict, actual: dict, names: list[str]) -> float:
    return max(
        (
            float(np.max(np.abs(expected[n].astype(np.float64) - actual[n]), initial=0.0))
            for n in names
            if n in actual and actual[n].shape == expected[n].shape
        ),
        default=float("inf"),
    )


def sequence_check(
    traced: TracedPolicy,
    run: Runner,
    *,
    seed: int = 0,
    rows: int = SEQUENCE_ROWS,
    steps: int = SEQUENCE_STEPS,
) -> SequenceCheck:
    """Run `rows` x `steps` through `run` twice (free-running, teacher-forced) against JAX."""
    assert traced.state is not None
    state_in = [s.name for s in traced.state.inputs]
    state_out = [s.name for s in traced.state.outputs]
    floats = [s.name for s in traced.outputs if s.dtype == "float32"]
    zeros = {s.name: np.zeros((rows, *s.shape), np.float32) for s in traced.state.inputs}
    jax_state, own_state = dict(zeros), dict(zeros)
    expected, forced, free, margins, masks = [], [], [], [], []
    per_forced, per_free = [], []
    sequence = _steps(traced, seed, rows, steps)
    for inputs in sequence:
        fed = {**inputs, **jax_state}
        want, margin = reference_and_margins(traced, fed)
        got_forced = run(fed)
        got_free = run({**inputs, **own_state})
        expected.append(want)
        forced.append(got_forced)
        free.append(got_free)
        margins.append(margin)
        masks.append(inputs.get(MASK))
        per_forced.append(_worst(want, got_forced, floats))
        per_free.append(_worst(want, got_free, floats))
        jax_state = {i: want[o] for i, o in zip(state_in, state_out, strict=True)}
        own_state = {
            i: np.asarray(got_free.get(o, zeros[i]), np.float32)
            for i, o in zip(state_in, state_out, strict=True)
        }

    # With a sampling path the margins are the action's, then the sampled action's.
    decided = (ACTION, SAMPLED_ACTION) if traced.sampling is not None else (ACTION,)
    split = {
        name: [None if m is None else np.split(m, len(decided), axis=1)[i] for m in margins]
        for i, name in enumerate(decided)
    }

    def compare(actual: list[dict], atol: float, rtol: float) -> list[OutputCheck]:
        return [
            compare_output(
                traced.action_space,
                spec.name,
                spec.dtype,
                [e[spec.name] for e in expected],
                [a.get(spec.name) for a in actual],
                split.get(spec.name, [None] * steps),
                masks if spec.name in split else [None] * steps,
                nan_where_expected=spec.name == LOG_PROB,
                atol=atol,
                rtol=rtol,
            )
            for spec in traced.outputs
        ]

    teacher = compare(forced, ATOL, RTOL)
    running = compare(free, DRIFT_ATOL, DRIFT_RTOL)
    return SequenceCheck(
        rows=rows,
        steps=steps,
        resets=int(sum(s[RESET].sum() for s in sequence)),
        tolerances={
            "atol": ATOL,
            "rtol": RTOL,
            "drift_atol": DRIFT_ATOL,
            "drift_rtol": DRIFT_RTOL,
        },
        teacher_forced=teacher,
        free_running=running,
        per_step_teacher_forced=per_forced,
        per_step_free_running=per_free,
        passed=all(o.passed for o in (*teacher, *running)),
    )

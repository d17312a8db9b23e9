"""One comparison and one report, shared by every runtime."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..policy import AbstractSpace

# Discrete actions must be identical in every component whose two best legal logits differ
# by more than this, relative to the larger logit's magnitude (at least 1): float32 matmuls
# in different runtimes may sum in different orders and differ by a few ulps (~1e-7
# relative), which can only flip a decision this close.
NEAR_TIE = 1e-5
# Continuous outputs: |artifact - jax| <= ATOL + RTOL * |jax|. Values are float32 dot
# products of ~64 terms; reordered sums differ by ~1e-7 relative, far inside these.
ATOL = 1e-5
RTOL = 1e-5


@dataclass(frozen=True)
class OutputCheck:
    """How one output of an artifact compares with the JAX policy."""

    name: str
    shape: list[int]
    dtype: str
    kind: str  # "discrete" or "continuous"
    rows: int
    max_abs_diff: float
    max_rel_diff: float
    mismatched_rows: int
    near_tie_rows: int
    near_tie_mismatches: int
    illegal_actions: int
    problems: list[str]
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    """The result of running one artifact in its runtime against the JAX policy."""

    format: str
    artifact: str
    runtime: str
    seed: int
    batch_sizes: list[int]
    tolerances: dict[str, float]
    outputs: list[OutputCheck]
    passed: bool
    notes: list[str] = field(default_factory=list)
    inputs: str = ""  # how the check inputs were drawn (`checks._inputs.INPUT_RULE`)
    reference: str = ""  # where the JAX reference ran (`checks._backend.describe_reference`)
    # Recurrent policies: the sequence check's result (`_sequence.SequenceCheck.to_json`).
    sequence: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The short form embedded in the artifact's metadata."""
        return {
            "passed": self.passed,
            "runtime": self.runtime,
            "seed": self.seed,
            "batch_sizes": self.batch_sizes,
            "tolerances": self.tolerances,
            "max_abs_diff": {o.name: o.max_abs_diff for o in self.outputs},
            "mismatched_rows": {o.name: o.mismatched_rows for o in self.outputs},
            **({} if self.sequence is None else {"sequence": self.sequence["summary"]}),
        }

    def to_table(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        head = (
            f"Parity {status}: {self.format} artifact {self.artifact}\n"
            f"  runtime {self.runtime}; seed {self.seed}; batch sizes {self.batch_sizes}\n"
        )
        columns = (
            "",
            "output",
            "shape",
            "dtype",
            "worst abs",
            "worst rel",
            "mismatch",
            "near-ties",
            "illegal",
        )
        rows = [columns]
        for o in self.outputs:
            rows.append(
                (
                    "✓" if o.passed else "✗",
                    o.name,
                    "x".join(str(d) for d in o.shape) or "scalar",
                    o.dtype,
                    f"{o.max_abs_diff:.2e}",
                    f"{o.max_rel_diff:.2e}",
                    f"{o.mismatched_rows}/{o.rows}",
                    f"{o.near_tie_rows} ({o.near_tie_mismatches} differ)",
                    str(o.illegal_actions) if o.kind == "discrete" else "-",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
        lines = [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        problems = [f"  ✗ {o.name}: {p}" for o in self.outputs for p in o.problems]
        tol = (
            f"  tolerances: discrete actions identical in every component unless its two best "
            f"legal logits are within {NEAR_TIE:g} x max(1, |best|); continuous "
            f"|artifact - jax| <= {ATOL:g} + {RTOL:g}*|jax|; masked actions chosen: 0"
        )
        inputs = [f"  inputs: {self.inputs}"] if self.inputs else []
        inputs += [f"  reference: {self.reference}"] if self.reference else []
        notes = [f"  note: {n}" for n in self.notes]
        return head + "\n".join(lines + problems + [tol, *inputs, *notes])

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def compare_output(
    action_space: AbstractSpace,
    name: str,
    expected_dtype: str,
    expected: list[np.ndarray],
    actual: list[np.ndarray | None],
    margins: list[np.ndarray | None],
    masks: list[np.ndarray | None],
    nan_where_expected: bool = False,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> OutputCheck:
    """Compare one output over every checked batch.

    `nan_where_expected`: a NaN where JAX gives NaN agrees (the log-probability of a row
    whose mask leaves nothing legal is NaN in JAX; docs/artifact.md).
    """
    problems: list[str] = []
    shape: list[int] = []
    dtype = "missing"
    rows = mismatched = near_ties = near_tie_mismatches = illegal = 0
    max_abs = max_rel = 0.0
    discrete = expected_dtype == "int64"
    for want, got, margin, mask in zip(expected, actual, margins, masks, strict=True):
        if got is None:
            problems.append("the artifact has no output of this name")
            continue
        dtype, shape = str(got.dtype), list(got.shape)
        if got.dtype != np.dtype(expected_dtype):
            problems.append(f"dtype {got.dtype}, expected {expected_dtype}")
        if got.shape != want.shape:
            problems.append(f"shape {list(got.shape)}, expected {list(want.shape)}")
            continue
        rows += len(want)
        if discrete:
            # Per component: a near-tie in one component excuses only that component.
            differs = want.reshape(len(want), -1) != got.reshape(len(got), -1)
            tie = (
                margin.reshape(differs.shape) <= NEAR_TIE
                if margin is not None
                else np.zeros(differs.shape, dtype=bool)
            )
            mismatched += int(differs.any(axis=1).sum())
            near_ties += int(tie.any(axis=1).sum())
            near_tie_mismatches += int((differs & tie).any(axis=1).sum())
            max_abs = max(max_abs, float(np.max(np.abs(want.astype(np.float64) - got), initial=0)))
            wrong = (differs & ~tie).any(axis=1)
            if np.any(wrong):
                problems.append(f"{int(wrong.sum())} row(s) chose another action")
            if mask is not None:
                illegal += int(action_space.illegal_rows(got, mask).sum())
        else:
            diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
            if nan_where_expected:
                both = np.isnan(want) & np.isnan(got)
                want, got, diff = want[~both], got[~both], diff[~both]
            if not np.all(np.isfinite(got)):
                problems.append("non-finite values in the artifact's output")
            max_abs = max(max_abs, float(np.nanmax(diff, initial=0)))
            rel = diff / np.maximum(np.abs(want.astype(np.float64)), np.finfo(np.float32).tiny)
            max_rel = max(max_rel, float(np.nanmax(rel, initial=0)))
            bad = ~(diff <= atol + rtol * np.abs(want))
            mismatched += int(np.any(bad.reshape(len(want), -1), axis=1).sum())
            if np.any(bad):
                problems.append(f"{int(bad.sum())} value(s) outside the tolerance")
    if illegal:
        problems.append(f"{illegal} row(s) chose a masked action")
    return OutputCheck(
        name=name,
        shape=shape,
        dtype=dtype,
        kind="discrete" if discrete else "continuous",
        rows=rows,
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        mismatched_rows=mismatched,
        near_tie_rows=near_ties,
        near_tie_mismatches=near_tie_mismatches,
        illegal_actions=illegal,
        problems=sorted(set(problems), key=problems.index),
        passed=not problems,
    )


def tolerances() -> dict[str, float]:
    return {"near_tie": NEAR_TIE, "atol": ATOL, "rtol": RTOL}

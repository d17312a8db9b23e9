"""The bench's own arithmetic: interleaving order, per-round ratios, run-to-run agreement.

Timing itself is not asserted (it depends on the machine); what is asserted is how the
bench turns timings into the figures RESULTS.md reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import report
import run


def test_rounds_alternate_and_reverse():
    """Warm-up, then JAX and every runtime take turns; odd rounds run in reverse order."""
    seen: list[str] = []
    calls = {name: (lambda n=name: seen.append(n)) for name in (run.REFERENCE, "a", "b")}
    results = run.interleaved(calls, rounds=3)
    turns = [name for i, name in enumerate(seen) if i == 0 or seen[i - 1] != name]
    warm_up, rounds = turns[:3], turns[3:]
    assert warm_up == [run.REFERENCE, "a", "b"]
    # R a b | b a R | R a b, each runtime's turn one block of calls.
    assert rounds == [run.REFERENCE, "a", "b", "a", run.REFERENCE, "a", "b"]
    for name, entry in results.items():
        assert len(entry["cpu_rounds_us"]) == len(entry["wall_rounds_us"]) == 3
        # Each turn: one untimed call, then the round's fixed number of timed calls.
        timed = 3 * (1 + entry["calls_per_round"])
        assert entry["calls_per_round"] >= run.MIN_CALLS
        assert seen.count(name) > timed


def _entry(cpu: list[float], wall: list[float]) -> dict:
    import numpy as np

    return {
        "cpu_rounds_us": cpu,
        "wall_rounds_us": wall,
        "cpu_us": float(np.median(cpu)),
        "wall_us": float(np.median(wall)),
    }


def test_ratios_are_ratios_of_medians_with_per_round_quartiles():
    results = {
        run.REFERENCE: _entry([10.0, 20.0, 30.0], [40.0, 40.0, 40.0]),
        "ort": _entry([5.0, 10.0, 30.0], [10.0, 20.0, 40.0]),
    }
    out = run._with_ratios(results, batch=4)
    assert out["ort"]["vs_jax_cpu"] == pytest.approx(20.0 / 10.0)
    assert out["ort"]["vs_jax_wall"] == pytest.approx(40.0 / 20.0)
    # Per-round CPU ratios 2, 2, 1: quartiles 1.5 and 2.
    assert out["ort"]["vs_jax_cpu_quartiles"] == pytest.approx([1.5, 2.0])
    assert out["ort"]["obs_per_cpu_s"] == pytest.approx(4 / 10e-6)
    assert out[run.REFERENCE]["vs_jax_cpu"] == 1.0


def test_disagreement_is_symmetric_and_relative_to_the_smaller():
    assert report.disagreement(1.0, 1.1) == pytest.approx(0.1)
    assert report.disagreement(1.1, 1.0) == pytest.approx(0.1)
    assert report.disagreement(2.0, 2.0) == 0.0

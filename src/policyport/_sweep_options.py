"""The export options a sweep applies to every model: `policyport.export`'s own keywords.

A frozen dataclass rather than a loose dict, so a misspelt or forgotten option is an
error where the sweep is planned, and a job stays plain data that pickles to a worker.
Its fields are `export()`'s keyword parameters, in the same order and with the same
defaults, except the two in `NOT_SWEPT`; tests/test_sweep.py asserts it, so the two
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# `export()`'s keyword parameters a sweep does not take as options, and why.
NOT_SWEPT = {
    "source": "each model's own file, set per job",
    "progress": "a callable of one process; a sweep reports per model instead",
}


@dataclass(frozen=True)
class SweepOptions:
    """`policyport.export`'s keyword options, as plain data (see its docstring for each)."""

    opset: int | None = None
    check: bool = True
    force: bool = False
    seed: int = 0
    allow_nonfinite: bool = False
    rollouts: int = 0
    # `MODULE:ATTR`, imported in the worker: `export()` takes the env itself, which may
    # not pickle. The loader reads it too (for files written by lerax).
    env: str | None = None
    rollout_steps: int = 500
    sample: bool = False
    clip_actions: bool = False
    bake_wrappers: bool = False
    check_in: tuple[str, ...] = ()
    target: str | None = None

    def export_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `export()` in this process (`env` imported when the
        export uses it: closed-loop rollouts or baked wrappers)."""
        from ._loading import import_env

        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        uses_env = bool(self.env) and bool(self.rollouts or self.bake_wrappers)
        kwargs["env"] = import_env(self.env) if uses_env else None
        return kwargs

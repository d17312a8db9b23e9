"""`ExportSettings`: every option of an export, in one frozen object of plain data.

`export`, `export_many`, both command lines (single model and sweep) and the stages of an
export all read this one object, so an option is one field here (its default, its help,
its validation in `__post_init__`) plus the code that uses it: the `export-policy` flag is
generated from the field (`_cli.add_settings_arguments`), and `export(**keywords)` and
`export_many(**keywords)` accept it by name. Plain data, so a sweep's job pickles to a
worker process or a Dask cluster.

The policy, the env object, the output path and the progress callback are not settings:
they are what an export runs on, not how.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._errors import InputError
from .formats import (
    ALL,
    DEFAULT_OPSET,
    FORMATS,
    MAX_OPSET,
    MIN_OPSET,
    RUNTIMES,
    TARGETS,
    resolve_target,
)


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A field with the help text of its `export-policy` flag; `flag` holds what argparse
    needs beyond the default (`type`, `choices`, `metavar`, `required`). A bool field is a
    switch: `--name` when it defaults to False, `--no-name` when it defaults to True."""
    return field(default=default, metadata={"help": help, "flag": flag})


def _runtime_list(text: str) -> tuple[str, ...]:
    """`openvino, tract` -> `("openvino", "tract")` (the `--check-in` flag's parser)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class ExportSettings:
    """How to export: the format, what to check, and what the artifact holds.

    Build one directly (`ExportSettings(format="ort", seed=3)`) or let `export` and
    `export_many` build it from their keywords; an invalid value raises `InputError` here,
    before anything is loaded, traced or written.
    """

    format: str = setting("onnx", "artifact format, or all", choices=[*FORMATS, ALL], required=True)
    opset: int | None = setting(
        None,
        f"ONNX opset for onnx/ort, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})",
        type=int,
    )
    # A bool's help is its switch's: `--no-check` here (the default is True).
    check: bool = setting(True, "skip the parity check")
    target: str | None = setting(
        None,
        "deployment target of an onnx/ort artifact: its opset, batch and operator choices "
        "(docs/embedding.md); default: onnxruntime's",
        choices=list(TARGETS),
    )
    check_in: tuple[str, ...] = setting(
        (),
        "also check parity in these runtimes, comma-separated (e.g. openvino,tract; "
        f"registered: {', '.join(RUNTIMES)})",
        type=_runtime_list,
        metavar="RUNTIMES",
    )
    force: bool = setting(False, "replace existing artifacts")
    seed: int = setting(0, "seed of the check inputs", type=int)
    allow_nonfinite: bool = setting(False, "export weights holding NaN or inf")
    rollouts: int = setting(
        0,
        "also compare N closed-loop episodes in --env (JAX policy vs artifact)",
        type=int,
        metavar="N",
    )
    rollout_steps: int = setting(500, "steps per episode (500)", type=int, metavar="T")
    sample: bool = setting(
        False,
        "add the stochastic path: input `noise`, outputs `sampled_action` and `log_prob`",
    )
    clip_actions: bool = setting(
        False, "clip Box actions to the action space's finite bounds inside the artifact"
    )
    bake_wrappers: bool = setting(
        False, "put --env's pure lerax wrapper transforms inside (base env's spaces in and out)"
    )
    reset_seed: int | None = setting(
        None,
        "recurrent policies whose reset draws from its key: bake in reset(key=jax.random.key(N))"
        " as the initial state (recorded in the metadata)",
        type=int,
        metavar="N",
    )

    def __post_init__(self) -> None:
        # A list or a comma-separated string from Python callers: one spelling inside.
        runtimes = self.check_in
        if isinstance(runtimes, str):
            runtimes = _runtime_list(runtimes)
        object.__setattr__(self, "check_in", tuple(runtimes))
        if self.format != ALL and self.format not in FORMATS:
            raise InputError(
                f"Unknown format {self.format!r}. Choose one of: {', '.join([*FORMATS, ALL])}."
            )
        if self.opset is not None and not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError(
                f"--opset {self.opset} is out of range: choose {MIN_OPSET}..{MAX_OPSET}."
            )
        if self.seed < 0:
            raise InputError(f"--seed must be a non-negative integer, found {self.seed}.")
        if self.reset_seed is not None and self.reset_seed < 0:
            raise InputError(
                f"--reset-seed must be a non-negative integer, found {self.reset_seed}."
            )
        if self.rollouts < 0 or self.rollout_steps <= 0:
            raise InputError("--rollouts must be >= 0 and --rollout-steps > 0.")
        if self.check_in and not self.check:
            raise InputError("--check-in runs the parity check in more runtimes: drop --no-check.")
        if self.target is not None:
            resolve_target(self.target)  # an unknown name raises, listing the known ones

    @classmethod
    def of(cls, settings: ExportSettings | None = None, **changes: Any) -> ExportSettings:
        """`settings` (or the defaults) with `changes`, by field name: how `export(**keywords)`
        becomes settings. An unknown name is a `TypeError`, as for any bad keyword."""
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(changes) - names):
            raise TypeError(
                f"Unknown export option(s) {', '.join(unknown)}; the options are the fields "
                f"of policyport.ExportSettings: {', '.join(sorted(names))}."
            )
        return dataclasses.replace(settings or cls(), **changes)

    @property
    def formats(self) -> list[str]:
        """The formats this export writes (`all` is every registered one), in order."""
        return list(FORMATS) if self.format == ALL else [self.format]

    @property
    def uses_env(self) -> bool:
        """Whether the export steps or wraps the env (closed-loop rollouts, baked wrappers),
        so the caller must hand `export` the env object itself."""
        return bool(self.rollouts or self.bake_wrappers)

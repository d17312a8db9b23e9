"""What a deployment asks of an export: a target's options, and the runtimes to check in.

Validated before anything is traced or written, so a wrong name, a runtime not installed
or one that cannot open the format fails at once with what to do (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._errors import InputError, MissingDependencyError
from ._settings import ExportSettings
from .formats import DEFAULT_OPSET, RUNTIMES, ExportOptions, resolve_target


def resolve_check_in(check_in: Sequence[str], formats: list[str]) -> tuple[str, ...]:
    """The extra runtimes to check in, validated before anything is traced or written.

    Each must be registered, installed here, and read at least one of `formats` (with
    `format="all"` a runtime checks the formats it reads and skips the others).
    """
    names = tuple(dict.fromkeys(check_in))
    for name in names:
        if name not in RUNTIMES:
            raise InputError(
                f"Unknown runtime {name!r} in --check-in. Choose among: {', '.join(RUNTIMES)}."
            )
        if (missing := RUNTIMES[name].missing()) is not None:
            raise MissingDependencyError(f"--check-in {name}: {missing}")
        readable = RUNTIMES[name].formats
        if not any(f in readable for f in formats):
            raise InputError(
                f"--check-in {name}: runtime {name!r} cannot open {' or '.join(formats)} "
                f"artifacts; it reads {', '.join(readable)}. Choose another runtime or format."
            )
    return names


def deployment(
    settings: ExportSettings, progress: Callable[[str], None] | None
) -> tuple[ExportOptions, tuple[str, ...]]:
    """What `settings` ask of the formats (opset, target), and every runtime to check in
    besides each format's own: `check_in`, then the target's runtimes installed here (a
    missing one is said, not fatal; none without the parity check)."""
    formats = settings.formats
    if settings.target is None:
        opset = DEFAULT_OPSET if settings.opset is None else settings.opset
        return ExportOptions(opset=opset), resolve_check_in(settings.check_in, formats)
    name = settings.target
    chosen = resolve_target(name)
    if any(f not in chosen.formats for f in formats):
        raise InputError(
            f"--target {name} applies to {' and '.join(chosen.formats)} artifacts, not "
            f"{', '.join(f for f in formats if f not in chosen.formats)}."
        )
    if settings.opset is not None and settings.opset > chosen.max_opset:
        raise InputError(
            f"--opset {settings.opset} is above what --target {name} reads (at most "
            f"{chosen.max_opset}). Drop --opset to use {chosen.opset}."
        )
    installed = [r for r in chosen.check_in if RUNTIMES[r].missing() is None]
    skipped = [r for r in chosen.check_in if r not in installed]
    if skipped and progress is not None:
        progress(f"target {name}: not installed here, not checked in: {', '.join(skipped)}")
    opset = settings.opset if settings.opset is not None else chosen.opset
    check_in = (*settings.check_in, *(installed if settings.check else ()))
    return ExportOptions(opset=opset, target=name), resolve_check_in(check_in, formats)

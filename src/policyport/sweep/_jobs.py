"""One model of a sweep: its job (plain data that pickles) and how it ended.

`plan_jobs` makes one `SweepJob` per model file and refuses two models writing one path
before any runs. `export_one` runs a job and never raises for the model's own faults:
every model ends as a `ModelResult` that says `exported`, `failed` (its parity check
failed; nothing written), `refused` (a bad file or argument, with the message) or `error`
(a bug, with the exception's name).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import InputError, ParityError, PolicyportError
from .._export import default_output
from .._export import destinations as destinations_of
from .._settings import ExportSettings
from ._paths import expand_models, find_collisions, output_paths, template_refusals

Status = Literal["exported", "failed", "refused", "error"]
STATUSES: tuple[Status, ...] = ("exported", "failed", "refused", "error")
# Stages an export times once for all its formats (each format's result repeats them).
_SHARED_STAGES = frozenset({"trace", "publish"})
# Called after each model ends, with its result, how many ended and how many there are.
SweepProgress = Callable[["ModelResult", int, int], None]


@dataclass(frozen=True)
class SweepJob:
    """Everything one model's export needs; plain data, so it crosses process boundaries."""

    model: str  # absolute path of the policy file
    output: str | None  # absolute `-o` path for this model, or None: beside the model
    label: str  # the model as the user named it, for messages
    settings: ExportSettings = field(default_factory=ExportSettings)
    # `MODULE:ATTR`, imported in the worker (an env object may not pickle): for files
    # written by lerax, with the class and kwargs the policy was built with, and for
    # settings that step or wrap the env (`ExportSettings.uses_env`).
    env: str | None = None
    policy_class: str | None = None
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    # Why this model is refused before it is loaded (a bad output path of its own), or "".
    refusal: str = ""


@dataclass(frozen=True)
class ModelResult:
    """How one model of a sweep ended."""

    model: str  # as the user named it
    status: Status
    paths: tuple[str, ...] = ()  # what was written (only when exported)
    message: str = ""  # why not, when not exported
    seconds: dict[str, float] = field(default_factory=dict)  # load, trace, lower, check, ...
    parity: list[dict[str, Any]] = field(default_factory=list)  # one report per format
    worker: str = ""  # host:pid that ran it

    @property
    def ok(self) -> bool:
        return self.status == "exported"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _worker() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def export_one(job: SweepJob) -> ModelResult:
    """Load and export one model; its own faults become its result, never an exception."""
    from .._export import export
    from .._loading import import_env, load_policy

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    parity: list[dict[str, Any]] = []

    def ended(status: Status, message: str = "", paths: tuple[str, ...] = ()) -> ModelResult:
        seconds["total"] = time.perf_counter() - start
        return ModelResult(job.label, status, paths, message, seconds, parity, _worker())

    if job.refusal:
        return ended("refused", job.refusal)
    try:
        policy = load_policy(
            Path(job.model),
            job.env,
            dict(job.policy_kwargs),
            job.policy_class,
            job.settings.bake_wrappers,
        )
        seconds["load"] = time.perf_counter() - start
        env = import_env(job.env) if job.env and job.settings.uses_env else None
        results = export(
            policy, output=job.output, settings=job.settings, source=job.model, env=env
        )
    except ParityError as e:
        if e.report is not None and hasattr(e.report, "to_json"):
            parity.append(e.report.to_json())
        return ended("failed", str(e).split("\n", 1)[0])
    except PolicyportError as e:
        return ended("refused", str(e))
    except SystemExit as e:  # only the user's code (--env, --policy-class) exits
        return ended(
            "refused",
            f"stopped by SystemExit({e.code!r}), raised by code named with --env or "
            "--policy-class; point MODULE:ATTR at an env (or policy class), not a program",
        )
    except Exception as e:  # a bug: reported for this model, the others go on
        where = traceback.extract_tb(e.__traceback__)[-1]
        return ended(
            "error",
            f"internal error {type(e).__name__}: {str(e)[:300]} (at {where.filename}:"
            f"{where.lineno}); please report it",
        )
    for result in results:
        for stage, value in result.seconds.items():
            # One trace and one publish serve every format; the other stages add up.
            shared = stage in _SHARED_STAGES
            seconds[stage] = value if shared else seconds.get(stage, 0.0) + value
        if result.report is not None:
            parity.append(result.report.to_json())
    paths = tuple(str(p) for r in results for p in r.paths)
    return ended("exported", paths=paths)


def plan_jobs(
    models: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None,
    settings: ExportSettings,
    *,
    env: str | None = None,
    policy_class: str | None = None,
    policy_kwargs: dict[str, Any] | None = None,
) -> list[SweepJob]:
    """One job per model file; two models writing one path are refused before any runs."""
    formats = settings.formats
    files = expand_models(models)
    outputs = output_paths(files, output, settings.format)
    refusals = template_refusals(files, output)
    destinations = []
    for i, (model, out) in enumerate(zip(files, outputs, strict=True)):
        base = out if out is not None else Path(os.path.abspath(model))
        destinations.append(
            []
            if i in refusals  # refused on its own: it writes nothing
            else [
                path
                for name in formats
                for path in destinations_of(
                    base if len(formats) == 1 and out is not None else default_output(base, name),
                    name,
                    settings.sample,
                )
            ]
        )
    clash = find_collisions(files, destinations)
    if clash is not None:
        path, first, second = clash
        raise InputError(
            f"{first} and {second} would both write {path}; nothing was exported. Name "
            "outputs apart with a template, e.g. -o 'out/{relstem}.onnx' or "
            "'out/{parent}-{stem}.onnx'."
        )
    return [
        SweepJob(
            model=os.path.abspath(model),
            output=None if out is None else os.path.abspath(out),
            label=str(model),
            settings=settings,
            env=env,
            policy_class=policy_class,
            policy_kwargs=dict(policy_kwargs or {}),
            refusal=refusals.get(i, ""),
        )
        for i, (model, out) in enumerate(zip(files, outputs, strict=True))
    ]

"""A sweep: many checkpoints exported in one process, on local workers, or on Dask.

Each model is one job (`SweepJob`, plain data that pickles) run by `export_one`, which
never raises for the model's own faults: every model ends as a `ModelResult` that says
`exported`, `failed` (its parity check failed; nothing written), `refused` (a bad file
or argument, with the message) or `error` (a bug, with the exception's name). Work that
does not depend on the weights is done once per architecture and process: the imports,
the JAX reference's compilation (`checks/_compiled.py`), which is most of a single
export's time, and the batched trace the ONNX lowering starts from
(`formats/_batched_trace.py`). Local workers are a
`concurrent.futures.ProcessPoolExecutor` (spawned: JAX does not survive a fork); Dask runs
the same function through `Client.map`.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from .._errors import InputError, ParityError, PolicyportError
from .._export import default_output
from .._export import destinations as destinations_of
from .._settings import ExportSettings
from ._paths import expand_models, find_collisions, output_paths

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
    destinations = []
    for model, out in zip(files, outputs, strict=True):
        base = out if out is not None else model
        destinations.append(
            [
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
            model=str(model.absolute()),
            output=None if out is None else str(out.absolute()),
            label=str(model),
            settings=settings,
            env=env,
            policy_class=policy_class,
            policy_kwargs=dict(policy_kwargs or {}),
        )
        for model, out in zip(files, outputs, strict=True)
    ]


def _make_folders(jobs: Sequence[SweepJob]) -> list[Path]:
    """Create the missing output folders (a template may name new ones); return them."""
    made: list[Path] = []
    for job in jobs:
        if job.output is None:
            continue
        missing = []
        folder = Path(job.output).parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir()
            made.append(path)
    return made


def _remove_empty(folders: list[Path]) -> None:
    """Folders this sweep made and nothing was published into go again."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # not empty: it holds artifacts
            folder.rmdir()


def _outcome(future: Any, job: SweepJob) -> ModelResult:
    """A finished future's result; a worker that died (killed, out of memory) fails only
    its own model."""
    try:
        return future.result()
    except Exception as e:
        return ModelResult(
            job.label, "error", message=f"the worker running it was lost: {type(e).__name__}: {e}"
        )


def _run_local(
    jobs: Sequence[SweepJob], workers: int, progress: SweepProgress | None
) -> list[ModelResult]:
    results: list[ModelResult | None] = [None] * len(jobs)
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = export_one(job)
            if progress is not None:
                progress(results[i], i + 1, len(jobs))
        return results  # type: ignore[return-value]
    # Spawned, not forked: a forked JAX process can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(export_one, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = _outcome(future, jobs[futures[future]])
            if progress is not None:
                progress(results[futures[future]], done, len(jobs))
    return results  # type: ignore[return-value]


def _run_dask(jobs: Sequence[SweepJob], client: Any, progress: SweepProgress | None):
    from distributed import as_completed as dask_completed

    futures = client.map(export_one, list(jobs), pure=False)
    index = {future.key: i for i, future in enumerate(futures)}
    results: list[ModelResult | None] = [None] * len(jobs)
    for done, future in enumerate(dask_completed(futures), start=1):
        results[index[future.key]] = _outcome(future, jobs[index[future.key]])
        future.release()
        if progress is not None:
            progress(results[index[future.key]], done, len(jobs))
    return results


def run_jobs(
    jobs: Sequence[SweepJob],
    *,
    workers: int = 1,
    client: Any = None,
    progress: SweepProgress | None = None,
) -> list[ModelResult]:
    """Run every job (in this process, on `workers` local processes, or on `client`'s
    Dask cluster); one result per job, in the jobs' order."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, found {workers}.")
    if client is not None and workers != 1:
        raise InputError("Give either local workers or a Dask client, not both.")
    made = _make_folders(jobs)
    try:
        if client is not None:
            return _run_dask(jobs, client, progress)
        return _run_local(jobs, workers, progress)
    finally:
        _remove_empty(made)


def export_many(
    models: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    format: str | None = None,
    output: str | os.PathLike[str] | None = None,
    *,
    settings: ExportSettings | None = None,
    workers: int = 1,
    client: Any = None,
    progress: SweepProgress | None = None,
    env: str | None = None,
    policy_class: str | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> list[ModelResult]:
    """Export every model file named by `models`, each checked, one result per model.

    **Arguments:**

    - `models`: policy files, folders (every `*.eqx` below) and globs (`runs/**/*.eqx`).
    - `output`: None (beside each model), a folder, or a template such as
      `"out/{relstem}.onnx"` (fields in `policyport.sweep._paths.TEMPLATE_FIELDS`).
    - `settings`, `format` and keyword `options`: applied to every model, as in
      `policyport.export`.
    - `workers`: local processes to export on; `client`: a `distributed.Client` to run
      on a Dask cluster instead (its workers must see the same paths).
    - `env`, `policy_class`, `policy_kwargs`: for files written by lerax, as the CLI's
      `--env`, `--policy-class`, `--policy-kwargs`; `env` (`MODULE:ATTR`, imported in each
      worker) is also the env of `rollouts` and `bake_wrappers`.

    **Returns:** one `ModelResult` per model file, sorted by path. A model that fails
    never stops the others; usage errors (no model found, two models writing one path, an
    invalid setting) raise `InputError` before anything is exported.
    """
    if isinstance(models, str | os.PathLike):
        models = [models]
    if format is not None:
        options["format"] = format
    jobs = plan_jobs(
        models,
        output,
        ExportSettings.of(settings, **options),
        env=env,
        policy_class=policy_class,
        policy_kwargs=policy_kwargs,
    )
    return run_jobs(jobs, workers=workers, client=client, progress=progress)

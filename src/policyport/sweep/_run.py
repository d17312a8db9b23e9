"""A sweep: many checkpoints exported in one process, on local workers, or on Dask.

Each model is one job (`_jobs.py`). Work that does not depend on the weights is done once
per architecture and process: the imports, the JAX reference's compilation
(`checks/_compiled.py`), which is most of a single export's time, and the batched trace
the ONNX lowering starts from (`formats/_batched_trace.py`). Local workers are a
`concurrent.futures.ProcessPoolExecutor` (spawned: JAX does not survive a fork); Dask runs
the same function through `Client.map`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .._errors import InputError
from .._settings import ExportSettings
from ._jobs import ModelResult, SweepJob, SweepProgress, export_one, plan_jobs


def _make_folders(jobs: Sequence[SweepJob], made: list[Path]) -> list[SweepJob]:
    """Create the missing output folders (a template may name new ones), appending each to
    `made`; a job whose folder cannot be made (a file in the way, no permission) is
    refused on its own, and the others go on."""
    ready = []
    for job in jobs:
        if job.output is None or job.refusal:
            ready.append(job)
            continue
        missing = []
        folder = Path(os.path.abspath(job.output)).parent
        while not os.path.lexists(folder):
            missing.append(folder)
            folder = folder.parent
        try:
            for path in reversed(missing):
                try:
                    path.mkdir()
                except FileExistsError:  # another job or process made it meanwhile
                    continue
                made.append(path)
        except OSError as e:
            job = dataclasses.replace(
                job,
                refusal=f"Cannot create the output folder {path} for {job.label}: "
                f"{e.strerror or e}. Choose another -o path.",
            )
        ready.append(job)
    return ready


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
            results[i] = result = export_one(job)
            if progress is not None:
                progress(result, i + 1, len(jobs))
        return results  # type: ignore[return-value]
    # Spawned, not forked: a forked JAX process can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(export_one, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = result = _outcome(future, jobs[futures[future]])
            if progress is not None:
                progress(result, done, len(jobs))
    return results  # type: ignore[return-value]


def _run_dask(jobs: Sequence[SweepJob], client: Any, progress: SweepProgress | None):
    from distributed import as_completed as dask_completed

    futures = client.map(export_one, list(jobs), pure=False)
    index = {future.key: i for i, future in enumerate(futures)}
    results: list[ModelResult | None] = [None] * len(jobs)
    for done, future in enumerate(dask_completed(futures), start=1):
        results[index[future.key]] = result = _outcome(future, jobs[index[future.key]])
        future.release()
        if progress is not None:
            progress(result, done, len(jobs))
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
    # Never more processes than models: `--workers 10**23` is as many as there are jobs
    # (a process pool that large overflows a C int).
    workers = min(workers, max(len(jobs), 1))
    made: list[Path] = []
    try:
        jobs = _make_folders(jobs, made)
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

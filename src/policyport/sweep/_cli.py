"""`export-policy` over many models: the sweep's flags, and its run from parsed arguments.

Exit codes of a sweep: 0 every model exported; 4 some models failed their check or were
refused (the others were exported; the table and the JSON report say which); 2 a usage
error before anything ran (no model found, two models writing one path, a bad flag);
3 an internal error of the sweep itself. One model's bug is that model's `error` row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .._settings import ExportSettings

EXIT_SOME_FAILED = 4


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="export N models at a time, in N local processes (several models only)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the exports on the Dask cluster at ADDRESS (tcp://host:8786); its workers "
        "must see the models and outputs at the same paths (needs policyport[dask])",
    )


def is_sweep(args: argparse.Namespace) -> bool:
    """More than one model, a folder, a glob, an `-o` template or a sweep flag: one model
    keeps the single-model output and exit codes."""
    models = args.model
    if len(models) != 1 or args.workers is not None or args.dask is not None:
        return True
    if args.output is not None and "{" in str(args.output):
        return True
    # os.path's tests say False where pathlib's raise (an unsearchable folder): such a
    # path is one model, and loading it gives the clear message.
    return os.path.isdir(models[0]) or (
        any(c in models[0] for c in "*?[") and not os.path.exists(models[0])
    )


def _client(address: str):
    from .._errors import InputError, missing_dependency

    try:
        from distributed import Client
    except ImportError as e:
        raise missing_dependency("distributed", "dask", "--dask") from e
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise InputError(
            f"--dask {address}: cannot reach a Dask scheduler there ({type(e).__name__}: "
            f"{str(e)[:200]}). Start one (`dask scheduler`) or check the address."
        ) from e


def run_sweep(args: argparse.Namespace, settings: ExportSettings) -> int:
    """Export every model `args` names with `settings`; print the table; write the JSON
    report."""
    from .._errors import InputError, PolicyportError
    from .._loading import parse_policy_kwargs
    from ._jobs import plan_jobs
    from ._report import (
        SweepProgress,
        default_report_path,
        report_json,
        summary_line,
        summary_table,
        write_json,
    )
    from ._run import run_jobs

    try:
        if args.workers is not None and args.dask is not None:
            raise InputError("Give --workers or --dask, not both.")
        report = args.report or default_report_path()
        if not report.parent.is_dir() or not os.access(report.parent, os.W_OK):
            raise InputError(f"--report folder {report.parent} is not a writable folder.")
        jobs = plan_jobs(
            args.model,
            args.output,
            settings,
            env=args.env,
            policy_class=args.policy_class,
            policy_kwargs=parse_policy_kwargs(args.policy_kwargs),
        )
        workers = 1 if args.workers is None else args.workers
        if workers < 1:
            raise InputError(f"--workers must be at least 1, found {workers}.")
        workers = min(workers, len(jobs))  # never more processes than models
        client = _client(args.dask) if args.dask else None
    except PolicyportError as e:
        print(f"export-policy: error: {e}", file=sys.stderr)
        return 2
    where = f"dask {args.dask}" if client is not None else f"{workers} local"
    print(f"[policyport] {len(jobs)} models, {settings.format}, workers: {where}", file=sys.stderr)
    progress = SweepProgress(len(jobs))
    start = time.perf_counter()
    try:
        results = run_jobs(jobs, workers=workers, client=client, progress=progress)
    finally:
        progress.close()
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    print(summary_table(results))
    print(summary_line(results, seconds))
    write_json(report, report_json(results, format=settings.format, seconds=seconds, workers=where))
    print(f"report: {report}")
    return 0 if all(r.ok for r in results) else EXIT_SOME_FAILED

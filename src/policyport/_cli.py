"""`export-policy`: a thin shell over `policyport.export`.

Exit codes: 0 success, 1 parity failure, 2 usage or input error (a full disk included),
3 internal error (a bug: the message asks for a report; the traceback goes to a log file),
4 some models of a sweep were not exported (`sweep/_cli.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from ._errors import ParityError, PolicyportError
from ._loading import SOURCES
from ._settings import ExportSettings
from .checks import ParityReport
from .sweep._cli import add_sweep_arguments, is_sweep, run_sweep
from .sweep._report import write_json

EXIT_PARITY, EXIT_INPUT, EXIT_INTERNAL = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export-policy",
        description="Export a trained JAX policy (policyport's, lerax's, Brax's or a plain "
        "function) to ONNX, .ort, SavedModel, StableHLO or TFLite, and prove each artifact "
        "computes what the JAX policy computes.",
    )
    parser.add_argument(
        "model",
        nargs="+",
        help="policy file (.eqx) from policyport or lerax, or a checkpoint folder with --from; "
        "several files, folders or globs ('runs/**/*.eqx') export a sweep",
    )
    parser.add_argument(
        "--from",
        dest="source",
        choices=SOURCES,
        default="policy",
        help="what MODEL is: a policy file (default), or a Brax PPO / SAC checkpoint folder",
    )
    parser.add_argument(
        "-o",
        "--output",
        # Text, not a Path: a Path drops the trailing `/` that says "a folder".
        help="output path (default: MODEL with the format's suffix); a folder (an existing "
        "one, or a path ending in '/') gets MODEL's name with the format's suffix; for "
        "several models a folder or a template such as 'out/{stem}.onnx'",
    )
    parser.add_argument(
        "--env", help="MODULE:ATTR of the env, for files saved by lerax (e.g. lerax.env:CartPole)"
    )
    parser.add_argument(
        "--policy-class",
        metavar="MODULE:ATTR",
        help="class of a lerax-saved policy (default policyport.policy:MLPActorCriticPolicy; "
        "e.g. lerax.policy:MLPQPolicy)",
    )
    parser.add_argument("--policy-kwargs", help="JSON constructor kwargs of a lerax-saved policy")
    parser.add_argument("--report", type=Path, help="write the parity report(s) as JSON here")
    add_settings_arguments(parser)
    add_sweep_arguments(parser)
    return parser


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of `ExportSettings`, from the field's name, default and help."""
    for setting in dataclasses.fields(ExportSettings):
        flag = "--" + setting.name.replace("_", "-")
        keywords = {"dest": setting.name, "help": setting.metadata["help"]}
        if isinstance(setting.default, bool):
            # A switch turns the default over: `--sample` on, `--no-check` off.
            flag = flag if not setting.default else "--no-" + flag.removeprefix("--")
            keywords["action"] = "store_false" if setting.default else "store_true"
        else:
            keywords |= {"default": setting.default, **setting.metadata["flag"]}
        parser.add_argument(flag, **keywords)


def settings_of(args: argparse.Namespace) -> ExportSettings:
    """The parsed flags as settings (an invalid value raises `InputError`)."""
    return ExportSettings(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(ExportSettings)}
    )


def _progress(line: str) -> None:
    print(f"[policyport] {line}", file=sys.stderr, flush=True)


def _result_json(result) -> dict:
    return {
        "format": result.format,
        "entry": result.entry,
        "paths": [str(p) for p in result.paths],
        "seconds": result.seconds,
        "parity": None if result.report is None else result.report.to_json(),
        "closed_loop": None if result.rollouts is None else result.rollouts.to_json(),
        "check_in": [report.to_json() for report in result.check_in],
    }


def _crash_log(error: BaseException) -> Path | None:
    """Write the traceback of an unexpected error to a fresh log file; return its path."""
    text = "".join(traceback.format_exception(error))
    try:
        fd, path = tempfile.mkstemp(prefix="policyport-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(f"export-policy {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError:
        return None
    return Path(path)


@contextlib.contextmanager
def _escaping_output() -> Iterator[None]:
    """stdout and stderr print what they cannot encode as escapes while the CLI runs: a
    path that is not valid UTF-8 (a model found by a glob, a --report file) must not turn
    the printing of a finished export into a crash."""
    restore = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        with contextlib.suppress(AttributeError, ValueError, OSError):
            cast(io.TextIOWrapper, stream).reconfigure(errors="backslashreplace")
            restore.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in restore:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                cast(io.TextIOWrapper, stream).reconfigure(errors=errors)


def run(argv: list[str] | None = None) -> int:
    """Parse `argv`, export, print the reports; return the exit code.

    An exception policyport did not raise on purpose is a bug, not a parity failure: it
    gets its own exit code and a short message; the traceback goes to a log file.
    """
    with _escaping_output():
        return _run_cli(argv)


def _run_cli(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_of(args)
    except PolicyportError as e:
        print(f"export-policy: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        if args.source != "policy":
            if len(args.model) != 1 or args.workers is not None or args.dask is not None:
                print(
                    f"export-policy: error: --from {args.source} exports one checkpoint folder "
                    "at a time; sweeps (several models, --workers, --dask) read policy files.",
                    file=sys.stderr,
                )
                return EXIT_INPUT
        elif is_sweep(args):
            return run_sweep(args, settings)
        args.model = Path(args.model[0])
        return _run(args, settings)
    except SystemExit as e:
        # Only code the user named runs inside (an --env or --policy-class module, its
        # constructor): argparse's own exits happen above.
        print(
            f"export-policy: error: the export was stopped by SystemExit({e.code!r}), "
            "raised by code named with --env or --policy-class. Check that MODULE:ATTR "
            "points at an env (or policy class) and not at a program.",
            file=sys.stderr,
        )
        return EXIT_INPUT
    except Exception as e:
        log = _crash_log(e)
        where = f"the traceback is in {log}" if log else "the traceback could not be saved"
        print(
            f"export-policy: internal error: {type(e).__name__}: {str(e)[:300]}\n"
            f"This is a bug in policyport (or a library it uses), not a problem with your "
            f"input; {where}. Please report it, with that file, to policyport's issue tracker.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def single_output(text: str | None, model: Path, settings: ExportSettings) -> Path | None:
    """`-o` of one model: None (beside MODEL), the path as given (absolute, normalised
    once), or, for a folder (an existing one or a path ending in `/`), MODEL's name with
    the format's suffix inside it (with `--format all`, each format's)."""
    from ._export import default_output, output_base
    from .sweep._paths import names_folder

    if text is None:
        return None
    if names_folder(text):
        inside = output_base(text) / Path(os.path.abspath(model)).name
        return inside if len(settings.formats) != 1 else default_output(inside, settings.format)
    return output_base(text)


def _run(args: argparse.Namespace, settings: ExportSettings) -> int:
    from . import export
    from ._errors import InputError
    from ._export import refuse_unwritable
    from ._loading import import_env, load_checkpoint, load_policy, parse_policy_kwargs

    try:
        args.output = single_output(args.output, args.model, settings)
        if args.report is not None and not args.report.parent.is_dir():
            raise InputError(f"--report folder {args.report.parent} does not exist.")
        if args.report is not None and args.report.is_dir():
            raise InputError(f"--report {args.report} is a folder; give a file path.")
        if args.report is not None and not os.access(args.report.parent, os.W_OK):
            raise InputError(f"--report folder {args.report.parent} is not writable.")
        if settings.rollouts and args.env is None:
            raise InputError("--rollouts needs the env to step: pass --env MODULE:ATTR.")
        # A format this environment cannot write is refused before the model is loaded.
        refuse_unwritable(settings.formats)
        start = time.perf_counter()
        if args.source != "policy":
            _refuse_file_options(args)
            policy = load_checkpoint(args.source, args.model)
        else:
            policy = load_policy(
                args.model,
                args.env,
                parse_policy_kwargs(args.policy_kwargs),
                args.policy_class,
                settings.bake_wrappers,
            )
        _progress(f"load   {time.perf_counter() - start:6.2f} s  {args.model}")
        results = export(
            policy,
            output=args.output,
            settings=settings,
            source=args.model,
            env=import_env(args.env) if settings.uses_env else None,
            progress=_progress,
        )
    except ParityError as e:
        print(f"export-policy: parity check failed: {e}", file=sys.stderr)
        if args.report is not None and isinstance(e.report, ParityReport):
            write_json(args.report, [{"failed": e.report.to_json()}])
        return EXIT_PARITY
    except PolicyportError as e:
        print(f"export-policy: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    for result in results:
        if result.report is not None:
            print(result.report.to_table())
        for report in result.check_in:
            print(report.to_table())
        if result.rollouts is not None:
            print(result.rollouts.to_table())
        print(f"wrote {', '.join(str(p) for p in result.paths)}")
    if args.report is not None:
        write_json(args.report, [_result_json(r) for r in results])
    return 0


def _refuse_file_options(args: argparse.Namespace) -> None:
    from ._errors import InputError

    given = [
        flag
        for flag, value in (
            ("--env", args.env),
            ("--policy-class", args.policy_class),
            ("--policy-kwargs", args.policy_kwargs),
        )
        if value is not None
    ]
    if given:
        raise InputError(
            f"--from {args.source} reads everything from the checkpoint folder; "
            f"{', '.join(given)} only apply to policy files. Drop them."
        )


def main() -> None:
    sys.exit(run())

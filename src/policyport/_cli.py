"""`export-policy`: a thin shell over `policyport.export`.

Exit codes: 0 success, 1 parity failure, 2 usage or input error (a full disk included),
3 internal error (a bug: the message asks for a report; the traceback goes to a log file),
4 some models of a sweep were not exported (`_sweep_cli.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ._errors import ParityError, PolicyportError
from ._sweep_cli import add_sweep_arguments, is_sweep, run_sweep
from ._sweep_report import write_json
from .formats import ALL, DEFAULT_OPSET, FORMATS, MAX_OPSET, MIN_OPSET, RUNTIMES, TARGETS

EXIT_PARITY, EXIT_INPUT, EXIT_INTERNAL = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export-policy",
        description="Export a trained MLPActorCriticPolicy to portable artifacts and prove "
        "each computes what the JAX policy computes.",
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
        choices=["policy", "brax-ppo", "brax-sac"],
        default="policy",
        help="what MODEL is: a policy file (default), or a Brax PPO / SAC checkpoint folder",
    )
    parser.add_argument(
        "--format", required=True, choices=[*FORMATS, ALL], help="artifact format, or all"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output path (default: MODEL with the format's suffix); for several models a "
        "folder or a template such as 'out/{stem}.onnx'",
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
    parser.add_argument(
        "--opset",
        type=int,
        help=f"ONNX opset for onnx/ort, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument(
        "--target",
        choices=list(TARGETS),
        help="deployment target of an onnx/ort artifact: its opset, batch and operator "
        "choices (docs/embedding.md); default: onnxruntime's",
    )
    parser.add_argument(
        "--check-in",
        metavar="RUNTIMES",
        default="",
        help="also check parity in these runtimes, comma-separated (e.g. openvino,tract; "
        f"registered: {', '.join(RUNTIMES)})",
    )
    parser.add_argument("--report", type=Path, help="write the parity report(s) as JSON here")
    parser.add_argument("--force", action="store_true", help="replace existing artifacts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the check inputs")
    parser.add_argument(
        "--allow-nonfinite", action="store_true", help="export weights holding NaN or inf"
    )
    parser.add_argument(
        "--rollouts",
        type=int,
        default=0,
        metavar="N",
        help="also compare N closed-loop episodes in --env (JAX policy vs artifact)",
    )
    parser.add_argument(
        "--rollout-steps", type=int, default=500, metavar="T", help="steps per episode (500)"
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="add the stochastic path: input `noise`, outputs `sampled_action` and `log_prob`",
    )
    parser.add_argument(
        "--clip-actions",
        action="store_true",
        help="clip Box actions to the action space's finite bounds inside the artifact",
    )
    parser.add_argument(
        "--bake-wrappers",
        action="store_true",
        help="put --env's pure lerax wrapper transforms inside (base env's spaces in and out)",
    )
    add_sweep_arguments(parser)
    return parser


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


def run(argv: list[str] | None = None) -> int:
    """Parse `argv`, export, print the reports; return the exit code.

    An exception policyport did not raise on purpose is a bug, not a parity failure: it
    gets its own exit code and a short message; the traceback goes to a log file.
    """
    args = build_parser().parse_args(argv)
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
            return run_sweep(args)
        args.model = Path(args.model[0])
        return _run(args)
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


def _run(args: argparse.Namespace) -> int:
    from . import export
    from ._errors import InputError
    from ._export import refuse_unwritable, resolve_formats
    from ._loading import import_env, load_checkpoint, load_policy, parse_policy_kwargs

    try:
        if args.report is not None and not args.report.parent.is_dir():
            raise InputError(f"--report folder {args.report.parent} does not exist.")
        if args.report is not None and args.report.is_dir():
            raise InputError(f"--report {args.report} is a folder; give a file path.")
        if args.report is not None and not os.access(args.report.parent, os.W_OK):
            raise InputError(f"--report folder {args.report.parent} is not writable.")
        if args.rollouts < 0 or args.rollout_steps <= 0:
            raise InputError("--rollouts must be >= 0 and --rollout-steps > 0.")
        if args.rollouts and args.env is None:
            raise InputError("--rollouts needs the env to step: pass --env MODULE:ATTR.")
        # A format this environment cannot write is refused before the model is loaded.
        refuse_unwritable(resolve_formats(args.format))
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
                args.bake_wrappers,
            )
        _progress(f"load   {time.perf_counter() - start:6.2f} s  {args.model}")
        results = export(
            policy,
            args.format,
            args.output,
            source=args.model,
            opset=args.opset,
            check=not args.no_check,
            force=args.force,
            seed=args.seed,
            allow_nonfinite=args.allow_nonfinite,
            rollouts=args.rollouts,
            env=import_env(args.env) if args.rollouts or args.bake_wrappers else None,
            rollout_steps=args.rollout_steps,
            sample=args.sample,
            clip_actions=args.clip_actions,
            bake_wrappers=args.bake_wrappers,
            progress=_progress,
            check_in=[name.strip() for name in args.check_in.split(",") if name.strip()],
            target=args.target,
        )
    except ParityError as e:
        print(f"export-policy: parity check failed: {e}", file=sys.stderr)
        if args.report is not None and e.report is not None:
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

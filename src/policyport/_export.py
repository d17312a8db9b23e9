"""The orchestration: load -> trace once -> lower per format -> check per runtime -> publish.

`export` and `check` are the only places that know formats, runtimes and checks at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deployment import deployment
from ._errors import (
    InputError,
    MissingDependencyError,
    ParityError,
    PolicyportError,
    UnsupportedError,
)
from ._pause import test_pause
from ._publish import disk_error, probe_writable, publish, remove_stale_staging, staging_dir
from ._settings import ExportSettings
from .checks import (
    DEFAULT_BATCH_SIZES,
    ParityReport,
    RolloutReport,
    compare_runner,
    stress_runner,
)
from .checks import compare_rollouts as _closed_loop
from .formats import (
    FORMATS,
    RUNTIMES,
    TARGET_KEY,
    ExportOptions,
    Runner,
    fixed_batch_of,
    in_rows,
)
from .tracing import (
    DEFAULT_ENTRY,
    ENTRIES_KEY,
    ENTRY_KEY,
    SAMPLE_ENTRY,
    TracedPolicy,
    check_contract,
    metadata,
    trace,
    unwrap,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    """What one format's export wrote, how it checked, and how long each stage took."""

    format: str
    paths: tuple[Path, ...]
    report: ParityReport | None  # None with check=False
    seconds: dict[str, float] = field(default_factory=dict)
    rollouts: RolloutReport | None = None  # when closed-loop episodes were asked for
    # One report per runtime of `check_in` that reads this format, in the order asked.
    check_in: tuple[ParityReport, ...] = ()
    # Which entry point this artifact is: `default` (the deterministic outputs), or, with
    # `sample=True`, `sample` (the same outputs plus the sampling path), written beside it.
    entry: str = DEFAULT_ENTRY


@contextmanager
def _stage(name: str, seconds: dict[str, float], progress: Progress | None) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start
    if progress is not None:
        progress(f"{name:<6} {seconds[name]:6.2f} s")


def refuse_unwritable(formats: Sequence[str]) -> None:
    """Refuse (exit 2, before tracing) formats whose toolchain cannot work with the JAX
    installed here, rather than fail their parity check for reasons not the policy's."""
    for name in formats:
        if (why := FORMATS[name].refusal()) is not None:
            raise UnsupportedError(why)


def default_output(model_path: Path, format: str) -> Path:
    """`model.eqx` -> `model.onnx`, `model.ort`, `model.savedmodel`, `model.stablehlo`."""
    return model_path.with_suffix(FORMATS[format].suffix)


def sample_entry(primary: Path, format: str) -> Path:
    """Where the sample entry of the artifact at `primary` goes: `policy.onnx` ->
    `policy.sample.onnx` (`policy.savedmodel` -> `policy.sample.savedmodel`, ...)."""
    suffix = FORMATS[format].suffix
    return primary.with_name(f"{primary.name.removesuffix(suffix)}.{SAMPLE_ENTRY}{suffix}")


def entry_points(primary: Path, format: str, sample: bool) -> dict[str, Path]:
    """Each entry point an export writes for `format`, by name, with its primary path."""
    entries = {DEFAULT_ENTRY: primary}
    if sample:
        entries[SAMPLE_ENTRY] = sample_entry(primary, format)
    return entries


def destinations(primary: Path, format: str, sample: bool) -> tuple[Path, ...]:
    """Every path an export of `format` to `primary` occupies, every entry's companions too."""
    fmt = FORMATS[format]
    return tuple(
        path
        for entry in entry_points(primary, format, sample).values()
        for path in fmt.destinations(entry)
    )


def _entry_metadata(entries: dict[str, Path], entry: str) -> dict[str, str]:
    """Metadata naming a multi-entry artifact's entries (file names, relative to each other)."""
    if len(entries) == 1:
        return {}  # a plain export: one entry, its metadata unchanged
    names = {name: path.name for name, path in entries.items()}
    return {ENTRY_KEY: entry, ENTRIES_KEY: json.dumps(names, sort_keys=True)}


def _replaceable(path: Path, format: str) -> str | None:
    """Why `--force` must not replace `path` with a `format` artifact, or None if it may.

    Only a file may replace a file, and only a previous artifact folder of the same format
    may be replaced by a new one: `--force` must never delete somebody's unrelated folder.
    """
    marker = FORMATS[format].marker
    wants_folder = marker is not None
    if path.is_dir() and not wants_folder:
        return f"{path} is a folder, but a {format} artifact is a file"
    if path.exists() and not path.is_dir() and wants_folder:
        return f"{path} is a file, but a {format} artifact is a folder"
    if path.is_dir() and marker is not None and not (path / marker).exists():
        return f"{path} is a folder that is not a {format} artifact (no {marker} inside)"
    return None


def _check_destination(paths: tuple[Path, ...], force: bool, format: str) -> None:
    for path in paths:
        parent = path.parent
        if not parent.exists():
            raise InputError(
                f"Output folder {parent} does not exist. Create it or choose another -o path."
            )
        if not parent.is_dir():
            raise InputError(
                f"Output folder {parent} is not a folder (it is a file). Choose another -o path."
            )
        if path.exists() and not force:
            raise InputError(f"{path} already exists. Pass --force (force=True) to replace it.")
        if path.exists() and (reason := _replaceable(path, format)) is not None:
            raise InputError(f"{reason}: it is left alone. Choose another -o path.")
        probe_writable(parent)


def output_base(path: str | Path) -> Path:
    """The output path (or the source it is named after) made absolute and normalised once
    (`os.path.abspath`: `out/../x.onnx` is `x.onnx`, as a shell's `cd` reads it), so the
    staging folder and the artifacts beside it are compared as the same text; a path no
    runtime can open is refused here, before anything is traced."""
    text = os.fspath(path)
    if "\0" in text:
        raise InputError(f"Output path {text!r} holds a NUL character. Choose another -o path.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        char = ord(text[e.start])
        what = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"{chr(char)!r}"
        raise InputError(
            f"Output path {text!r} is not valid UTF-8 ({what} at character {e.start}); the "
            "runtimes that check and load an artifact take UTF-8 paths only. Choose a UTF-8 "
            "name with -o (or rename the model file)."
        ) from e
    return Path(os.path.abspath(text))


def _check_finite(traced: TracedPolicy) -> None:
    if traced.nonfinite_weights is not None:
        raise InputError(
            f"The policy's weights hold NaN or inf (first at {traced.nonfinite_weights}); the "
            "exported policy would compute garbage. Fix the training run, or pass "
            "--allow-nonfinite (allow_nonfinite=True) to export anyway."
        )


def export(
    policy: Any,
    format: str | None = None,
    output: str | Path | None = None,
    *,
    settings: ExportSettings | None = None,
    source: str | Path | None = None,
    env: Any = None,
    progress: Progress | None = None,
    **options: Any,
) -> list[ExportResult]:
    """Export `policy` to one format (or `"all"`), checking parity in each format's runtime.

    **Arguments:**

    - `policy`: any object following lerax's policy protocol (`observation_space`,
      `action_space`, `__call__(state, observation, *, key=None, action_mask=None)`, and
      optionally `value` / `q_values`): policyport's and lerax's classes, or your own.
    - `format`: `onnx` (the default), `ort`, `savedmodel`, `stablehlo`, `tflite` or `all`.
    - `output`: the artifact's path; with `format="all"`, a path whose suffix each format
      replaces. Defaults to `source` (the policy file) with the format's suffix.
    - `settings`: an `ExportSettings`; `format` and any keyword `options` (its field names:
      `opset`, `check`, `force`, `seed`, `rollouts`, `sample`, `check_in`, `target`, ...;
      each documented on its field) replace its values. A failed check raises
      `ParityError` and writes nothing.
    - `env`: the env object, for `rollouts` (closed-loop episodes compared between the JAX
      policy and the artifact) and `bake_wrappers` (a lerax wrapper chain).
    - `progress`: called with one line per stage.

    **Returns:** one `ExportResult` per format and entry point (with `sample`, the
    default entry, then the sample entry), in the order exported.
    """
    if format is not None:
        options["format"] = format
    settings = ExportSettings.of(settings, **options)
    # A trace made with `sample=True` carries the sampling path: it gets both entries.
    if isinstance(policy, TracedPolicy) and policy.sampling is not None:
        settings = dataclasses.replace(settings, sample=True)
    formats = settings.formats
    refuse_unwritable(formats)
    lowering, also = deployment(settings, progress)
    named = output if output is not None else source
    if named is None:
        raise InputError("Give an output path (or the source policy file to name it after).")
    base = output_base(named)
    primaries = {
        name: (base if len(formats) == 1 and output is not None else default_output(base, name))
        for name in formats
    }
    if base.parent.is_dir():
        remove_stale_staging(base.parent)  # finish (or undo) what a killed export left
    for name, primary in primaries.items():
        _check_destination(destinations(primary, name, settings.sample), settings.force, name)
    if settings.rollouts and env is None:
        raise InputError("Closed-loop rollouts need the env to step: pass --env MODULE:ATTR.")
    if settings.bake_wrappers and env is None:
        raise InputError("--bake-wrappers needs the wrapped env: pass --env MODULE:ATTR.")
    wrappers = unwrap(env) if settings.bake_wrappers else None
    if wrappers is not None and wrappers.left_out and progress is not None:
        progress(f"wrappers left out (not pure): {', '.join(wrappers.left_out)}")
    # With baked wrappers the artifact drives the base env (JAX applies them on its side).
    driven = env if wrappers is None else wrappers.base_env

    seconds: dict[str, float] = {}
    with _stage("trace", seconds, progress):
        traced = trace(
            policy,
            sample=settings.sample,
            clip_actions=settings.clip_actions,
            wrappers=wrappers,
            reset_seed=settings.reset_seed,
        )
    if not settings.allow_nonfinite:
        _check_finite(traced)
    first = primaries[formats[0]]
    results: list[ExportResult] = []
    moves: list[tuple[Path, Path]] = []
    # One staging folder for every format: all are written and checked before any of
    # them is published, and then published together (all or nothing).
    with staging_dir(first) as staging:
        for name in formats:
            fmt = FORMATS[name]
            entries = entry_points(primaries[name], name, settings.sample)
            # The default entry is the trace without its sampling path: a runtime computes
            # every output of a graph, so the deterministic one gets its own.
            traces = {DEFAULT_ENTRY: traced.deterministic, SAMPLE_ENTRY: traced}
            for entry, primary in entries.items():
                result, staged = _stage_one(
                    traces[entry],
                    name,
                    primary,
                    staging / (name if entry == DEFAULT_ENTRY else f"{name}.{entry}"),
                    settings,
                    lowering,
                    driven,
                    progress,
                    dict(seconds),
                    tuple(r for r in also if name in RUNTIMES[r].formats),
                    entry_metadata=_entry_metadata(entries, entry),
                )
                results.append(dataclasses.replace(result, entry=entry))
                pairs = zip(staged, fmt.destinations(primary), strict=True)
                moves.extend(reversed(list(pairs)))  # companions first, the primary last
        test_pause("checked")
        start = time.perf_counter()
        try:
            publish(moves, staging, force=settings.force)
        except OSError as e:
            if (clear := disk_error(e, "the artifacts", first.parent)) is None:
                raise
            raise clear from e
        elapsed = time.perf_counter() - start
        if progress is not None:
            paths = f"{len(moves)} path{'' if len(moves) == 1 else 's'}"
            progress(f"publish {elapsed:6.2f} s  ({paths}, all or nothing)")
    for result in results:
        result.seconds["publish"] = elapsed
    return results


def _open(runtime: str, artifact: Path, format: str) -> Runner:
    """The artifact opened in `runtime`; one its runtime cannot even load fails the check.

    A fixed-batch artifact (its target says so) is fed that many rows at a time."""
    try:
        run = RUNTIMES[runtime].load(artifact)
        rows = fixed_batch_of(FORMATS[format].read_metadata(artifact))
        return run if rows is None else in_rows(run, rows)
    except PolicyportError:
        raise
    except Exception as e:  # the runtime's own errors: any of them means the artifact is bad
        raise ParityError(
            f"The {format} artifact fails to load in {runtime} ({type(e).__name__}: "
            f"{str(e)[:500]}); nothing was written. Try another format or opset, and please "
            "report this policy's architecture."
        ) from e


class _Recorder:
    """A runner that remembers every input batch it ran and the outputs it gave."""

    def __init__(self, run: Runner):
        self._run = run
        self.calls: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._run(inputs)
        self.calls.append((inputs, {k: np.array(v, copy=True) for k, v in outputs.items()}))
        return outputs


def _runtime_failure(format: str, runtime: str, e: Exception) -> ParityError:
    return ParityError(
        f"The {format} artifact fails to run in {runtime} ({type(e).__name__}: "
        f"{str(e)[:500]}); nothing was written. Try another format or opset, and please "
        "report this policy's architecture."
    )


def _parity(
    traced: TracedPolicy,
    run: Runner,
    artifact: Path,
    format: str,
    seed: int,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    runtime: str | None = None,
) -> ParityReport:
    """Parity on realistic inputs, then the stress check on extreme ones (a note in the
    report; a stress failure fails the report)."""
    runtime = runtime or FORMATS[format].runtime
    try:
        report = compare_runner(
            traced,
            run,
            format=format,
            artifact=str(artifact),
            runtime=RUNTIMES[runtime].version(),
            seed=seed,
            batch_sizes=batch_sizes,
        )
        stress = stress_runner(traced, run, seed=seed)
    except PolicyportError:
        raise
    except Exception as e:  # the runtime's own errors: any of them means the artifact is bad
        raise _runtime_failure(format, runtime, e) from e
    return dataclasses.replace(
        report, notes=[*report.notes, stress.line()], passed=report.passed and stress.passed
    )


def _same_outputs(checked: dict[str, np.ndarray], final: dict[str, np.ndarray]) -> bool:
    if set(checked) != set(final):
        return False
    return all(
        np.asarray(final[k]).shape == v.shape
        and np.array_equal(v, np.asarray(final[k]), equal_nan=v.dtype.kind == "f")
        for k, v in checked.items()
    )


def _verify_final_bytes(staged: Path, format: str, recorder: _Recorder, primary: Path) -> None:
    """The published bytes must be the checked bytes: when a format rewrote the artifact
    after its check (to embed the parity result), the rewritten artifact must give the
    checked outputs bit for bit on every checked input, in the same runtime."""
    runtime = FORMATS[format].runtime
    run = _open(runtime, staged, format)
    for i, (inputs, checked) in enumerate(recorder.calls):
        try:
            final = run(inputs)
        except Exception as e:  # the runtime's own errors: the final bytes are bad
            raise _runtime_failure(format, runtime, e) from e
        if not _same_outputs(checked, final):
            raise ParityError(
                f"The {format} artifact changed when its parity result was embedded: its "
                f"final bytes compute other outputs than the checked ones (batch {i} of "
                f"{len(recorder.calls)}); nothing was written to {primary}. Please report "
                "this: the metadata rewrite must not touch the computation."
            )


def compare_rollouts(
    policy: Any,
    artifact: str | Path,
    env: Any,
    *,
    format: str | None = None,
    episodes: int = 5,
    max_steps: int = 500,
    seed: int = 0,
) -> RolloutReport:
    """Drive `env` for `episodes` episodes with the JAX policy and with `artifact`; compare."""
    artifact = Path(artifact)
    format = format or format_of(artifact)
    return _closed_loop(
        trace(policy),
        _open(FORMATS[format].runtime, artifact, format),
        env,
        format=format,
        artifact=str(artifact),
        episodes=episodes,
        max_steps=max_steps,
        seed=seed,
    )


def format_of(artifact: Path) -> str:
    """The registered format whose suffix `artifact` has."""
    for name, fmt in FORMATS.items():
        if artifact.suffix == fmt.suffix:
            return name
    suffixes = ", ".join(f.suffix for f in FORMATS.values())
    raise InputError(f"Cannot tell the format of {artifact}: expected a suffix among {suffixes}.")


def check(
    policy: Any,
    artifact: str | Path,
    *,
    format: str | None = None,
    runtime: str | None = None,
    seed: int = 0,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
) -> ParityReport:
    """Run `artifact` in a runtime on sampled inputs and compare it with the JAX policy.

    `format` defaults to the one whose suffix `artifact` has (`.onnx`, `.ort`, ...);
    `runtime` to the format's own (any registered runtime that reads the format works).
    """
    artifact = Path(artifact)
    format = format or format_of(artifact)
    if format not in FORMATS:
        raise InputError(f"Unknown format {format!r}. Choose one of: {', '.join(FORMATS)}.")
    if runtime is not None:
        readers = [name for name, r in RUNTIMES.items() if format in r.formats]
        if runtime not in readers:
            raise InputError(
                f"Runtime {runtime!r} cannot run {format} artifacts; runtimes that can: "
                f"{', '.join(readers)}."
            )
    if artifact.parent.is_dir():
        remove_stale_staging(artifact.parent)  # finish (or undo) what a killed export left
    if not artifact.exists():
        raise InputError(f"Artifact not found: {artifact}. Give the path export wrote.")
    meta = FORMATS[format].read_metadata(artifact)
    check_contract(meta, artifact)
    runtime = runtime or FORMATS[format].runtime
    if (missing := RUNTIMES[runtime].missing()) is not None:
        raise MissingDependencyError(missing)
    runner = _open(runtime, artifact, format)
    # Traced as it was exported: with the sampling path and clipping when the artifact has them.
    traced = trace(
        policy,
        sample="policyport.noise" in meta,
        clip_actions="policyport.action_clip" in meta,
        reset_seed=_reset_seed(meta),
    )
    return _parity(traced, runner, artifact, format, seed, batch_sizes, runtime)


def _reset_seed(meta: dict[str, str]) -> int | None:
    """The seed a recurrent artifact's initial state was made with (None: any key)."""
    if "policyport.state" not in meta:
        return None
    seed = json.loads(meta["policyport.state"]).get("reset_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _stage_one(
    traced: TracedPolicy,
    name: str,
    primary: Path,
    folder: Path,
    settings: ExportSettings,
    options: ExportOptions,
    env: Any,
    progress: Progress | None,
    seconds: dict[str, float],
    check_in: tuple[str, ...] = (),
    entry_metadata: dict[str, str] | None = None,
) -> tuple[ExportResult, tuple[Path, ...]]:
    """Write and check one format (one entry) inside `folder` (in the staging folder);
    publish nothing.

    `options` is what `settings` ask of the format (`_deployment.deployment`); `env` is
    stepped for the closed-loop episodes `settings.rollouts` asks for.
    Returns the result and the staged paths, in the format's `destinations` order.
    """
    fmt = FORMATS[name]
    seed = settings.seed
    entry_metadata = entry_metadata or {}
    label = name if traced.sampling is None else f"{name} ({SAMPLE_ENTRY} entry)"
    say = (lambda line: progress(f"{label}: {line}")) if progress else None
    folder.mkdir()
    try:
        with _stage("lower", seconds, say):
            meta = metadata(traced.description, traced.inputs, traced.outputs, format_name=name)
            meta |= _target_key(options) | entry_metadata
            staged = fmt.write(traced, folder, primary.name.removesuffix(fmt.suffix), options, meta)
    except OSError as e:
        if (clear := disk_error(e, f"the {name} artifact", primary.parent)) is None:
            raise
        raise clear from e
    test_pause("written")
    report = None
    recorder = None
    if settings.check:
        with _stage("check", seconds, say):
            recorder = _Recorder(_open(fmt.runtime, staged[0], name))
            report = _parity(traced, recorder, staged[0], name, seed)
            report = dataclasses.replace(report, artifact=str(primary))
        if not report.passed:
            raise ParityError(
                f"The {name} artifact does not compute what the JAX policy computes; "
                f"nothing was written to {primary}.\n{report.to_table()}",
                report,
            )
    also = tuple(
        _check_in_one(traced, runtime, staged[0], name, primary, seed, seconds, say)
        for runtime in check_in
    )
    rollouts = None
    if settings.rollouts:
        with _stage("rollouts", seconds, say):
            rollouts = _closed_loop(
                traced,
                _open(fmt.runtime, staged[0], name),
                env,
                format=name,
                artifact=str(primary),
                episodes=settings.rollouts,
                max_steps=settings.rollout_steps,
                seed=seed,
            )
        if not rollouts.passed:
            raise ParityError(
                f"The {name} artifact drives the env differently from the JAX policy; "
                f"nothing was written to {primary}.\n{rollouts.to_table()}",
                rollouts,
            )
    if report is not None and recorder is not None:
        parity = report.summary()
        if rollouts is not None:
            parity["closed_loop"] = rollouts.summary()
        final = (
            metadata(
                traced.description, traced.inputs, traced.outputs, format_name=name, parity=parity
            )
            | _target_key(options)
            | entry_metadata
        )
        try:
            fmt.set_metadata(staged, final)
        except OSError as e:
            if (clear := disk_error(e, f"the {name} artifact", primary.parent)) is None:
                raise
            raise clear from e
        with _stage("verify", seconds, say):
            _verify_final_bytes(staged[0], name, recorder, primary)
    result = ExportResult(name, fmt.destinations(primary), report, seconds, rollouts, also)
    return result, staged


def _target_key(options: ExportOptions) -> dict[str, str]:
    return {} if options.target is None else {TARGET_KEY: options.target}


def _check_in_one(
    traced: TracedPolicy,
    runtime: str,
    staged: Path,
    format: str,
    primary: Path,
    seed: int,
    seconds: dict[str, float],
    say: Progress | None,
) -> ParityReport:
    """The staged artifact checked in one more runtime: same inputs, same tolerances."""
    with _stage(f"check in {runtime}", seconds, say):
        report = _parity(
            traced, _open(runtime, staged, format), staged, format, seed, runtime=runtime
        )
        report = dataclasses.replace(report, artifact=str(primary))
    if not report.passed:
        raise ParityError(
            f"The {format} artifact does not compute what the JAX policy computes when run "
            f"in {runtime}; nothing was written to {primary}.\n{report.to_table()}",
            report,
        )
    return report

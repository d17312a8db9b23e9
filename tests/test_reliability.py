"""Issue 8: every bad input gets a clear error and exit code 2; nothing partial is left.

Bad inputs already covered in test_cli.py (not repeated here): MODEL missing, lerax file
without --env, --env not importable / without spaces / malformed, --policy-kwargs not JSON /
with unknown keys, unknown --format, --opset 40, output in a missing folder, output exists
without --force.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policyport
from conftest import make_policy
from policyport import InputError, ModelFileError, ParityError, UnsupportedError
from policyport._cli import run
from policyport._publish import PLAN, host_name, remove_stale_staging
from policyport.formats import FORMATS
from policyport.policy import MLPActorCriticPolicy
from policyport.policy._serialization import _LENGTH, MAGIC
from refusals import assert_refused, run_cases

LERAX_FILE = Path("examples/cartpole/policy.eqx")
STAGING = "*.policyport-staging-*"
NOBODY = 65534


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.eqx"
    make_policy("Discrete", seed=2).serialize(path)
    return path


def _split(data: bytes) -> tuple[dict, bytes]:
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack(data[len(MAGIC) : start])
    return json.loads(data[start : start + length]), data[start + length :]


def _join(header: dict, leaves: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded + leaves


def _cli_error(capsys, args: list[str]) -> str:
    """Run the CLI, expect exit code 2, return its stderr."""
    assert run(args) == 2
    return capsys.readouterr().err


@contextlib.contextmanager
def _unprivileged() -> Iterator[None]:
    """Run the block without root's power to ignore file permissions.

    The suite runs as root, which reads and writes through any mode bits. Dropping the
    effective uid/gid to nobody (and back: the saved uid stays 0) makes permissions bite
    for real, in this process.
    """
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder nobody can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="policyport-reliability-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


# ---------------------------------------------------------------------------------------
# The model file


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), r"Model file is empty: .*Re-save"),
        (lambda p: p.write_bytes(p.read_bytes()[:10]), r"not a policy file"),
        (lambda p: p.write_bytes(p.read_bytes()[:17]), r"the file ends inside the header"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), r"do not match the hash"),
        (lambda p: p.write_bytes(p.read_bytes()[:300]), r"header length \d+ runs past the end"),
        (lambda p: p.write_text("hello, I am a text file\n"), r"is not a policy file"),
        (
            lambda p: p.write_bytes(
                p.read_bytes().replace(b'"format_version": 2', b'"format_version": 9')
            ),
            r"format version 9 .*reads versions \[1, 2\]. Upgrade policyport",
        ),
        (
            lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])),
            r"weights do not match the hash in the file's header.*altered",
        ),
    ],
    ids=[
        "empty",
        "truncated-in-magic",
        "truncated-in-length",
        "truncated-in-leaves",
        "truncated-in-header",
        "text",
        "format-version",
        "hash",
    ],
)
def test_damaged_model_files_exit_2(model, capsys, damage, message):
    damage(model)
    err = _cli_error(capsys, [str(model), "--format", "onnx"])
    assert re.search(message, err), err
    assert list(model.parent.iterdir()) == [model]


def test_model_path_is_a_directory_without_models(tmp_path, capsys):
    # A folder is a sweep over the *.eqx files below it (docs/sweep.md); none there: exit 2.
    err = _cli_error(capsys, [str(tmp_path), "--format", "onnx"])
    assert re.search(r"Folder .* holds no \*\.eqx file .*Name the model files or a glob", err)


def test_model_path_is_a_fifo_does_not_block(tmp_path, capsys):
    fifo = tmp_path / "model.eqx"
    os.mkfifo(fifo)  # opening it for reading would wait forever for a writer
    err = _cli_error(capsys, [str(fifo), "--format", "onnx"])
    assert "not a regular file (a FIFO, socket or device)" in err


def test_model_under_a_file_is_not_found(model, capsys):
    err = _cli_error(capsys, [str(model / "inner.eqx"), "--format", "onnx"])
    assert "Model file not found" in err and "a parent of it is a file" in err


def test_unreadable_model(shared_dir, capsys):
    path = shared_dir / "model.eqx"
    make_policy("Discrete").serialize(path)
    path.chmod(0o000)
    with _unprivileged():
        code = run([str(path), "--format", "onnx"])
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(r"Cannot read model file .*: Permission denied\. Check its permissions", err)


def test_model_in_an_unsearchable_folder(shared_dir, capsys):
    path = shared_dir / "private" / "model.eqx"
    path.parent.mkdir()
    make_policy("Discrete").serialize(path)
    path.parent.chmod(0o700)
    with _unprivileged():
        code = run([str(path), "--format", "onnx"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Cannot read model file" in err and "Permission denied" in err
    assert "not found" not in err  # it exists: saying otherwise would mislead


def test_lerax_file_with_kwargs_that_do_not_fit(tmp_path, capsys):
    pytest.importorskip("lerax.env")
    args = [str(LERAX_FILE), "--format", "onnx", "-o", str(tmp_path / "c.onnx")]
    err = _cli_error(
        capsys, [*args, "--env", "lerax.env:CartPole", "--policy-kwargs", '{"feature_width": 32}']
    )
    assert re.search(r"holds \d+ bytes of weights, but a policy built .* needs \d+", err)
    assert "saved with other constructor kwargs" in err
    err = _cli_error(capsys, [*args, "--env", "lerax.env:Acrobot"])  # another env's spaces
    assert "saved with other constructor kwargs" in err  # Acrobot's sizes differ too
    err = _cli_error(
        capsys,
        [*args, "--env", "lerax.env:CartPole", "--policy-kwargs", '{"feature_width": "wide"}'],
    )
    assert "--policy-kwargs feature_width must be a non-negative integer, found 'wide'" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# Other arguments


def test_opset_below_range(model, capsys):
    err = _cli_error(capsys, [str(model), "--format", "onnx", "--opset", "12"])
    assert "--opset 12 is out of range: choose 13..26" in err


def test_output_under_a_file(model, capsys):
    out = model.parent / "model.eqx" / "policy.onnx"  # the "folder" is the model file
    err = _cli_error(capsys, [str(model), "--format", "onnx", "-o", str(out)])
    assert re.search(r"Output folder .*model\.eqx is not a folder \(it is a file\)", err)


def test_output_where_nothing_can_be_created(model, capsys):
    # /proc refuses new files even to root; os.access still says "writable" there.
    err = _cli_error(capsys, [str(model), "--format", "onnx", "-o", "/proc/policy.onnx"])
    assert re.search(r"Cannot create files in the output folder /proc: .*Choose another -o", err)


def test_output_folder_not_writable(shared_dir, capsys):
    model = shared_dir / "model.eqx"
    make_policy("Discrete").serialize(model)
    out = shared_dir / "readonly"
    out.mkdir(mode=0o555)
    out.chmod(0o555)
    with _unprivileged():
        code = run([str(model), "--format", "onnx", "-o", str(out / "p.onnx")])
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(r"Cannot create files in the output folder .*readonly: Permission denied", err)
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------------
# What a format cannot express; weights that are not finite


class _WindowMin(eqx.Module):
    """A layer followed by a sliding-window minimum: `reduce_window_min`, which jax2onnx
    0.17 cannot lower (and a policy file cannot carry, so it is built in Python)."""

    linear: eqx.nn.Linear

    def __call__(self, x):
        return jax.lax.reduce_window(self.linear(x), jnp.inf, jax.lax.min, (2,), (1,), "SAME")


def _policy_with_reduce_window_min() -> MLPActorCriticPolicy:
    policy = make_policy("Discrete")
    return eqx.tree_at(
        lambda p: p.encoder.layers[-1], policy, _WindowMin(policy.encoder.layers[-1])
    )


def test_unsupported_primitive_names_it_and_suggests_another_format(tmp_path):
    policy = _policy_with_reduce_window_min()
    for format in ("onnx", "ort"):
        with pytest.raises(UnsupportedError) as info:
            policyport.export(policy, format, tmp_path / f"p.{format}")
        message = str(info.value)
        assert "reduce_window_min" in message and "onnx format" in message
        assert "--format stablehlo" in message
    assert list(tmp_path.iterdir()) == []
    # The suggestion holds: stablehlo exports it, with parity.
    [result] = policyport.export(policy, "stablehlo", tmp_path / "p.stablehlo")
    assert result.report.passed


def test_unsupported_primitive_exits_2_from_the_cli(model, capsys, monkeypatch):
    # A file cannot hold a custom layer, so hand the CLI the policy the loader would return.
    import policyport._loading

    monkeypatch.setattr(
        policyport._loading, "load_policy", lambda *_: _policy_with_reduce_window_min()
    )
    err = _cli_error(capsys, [str(model), "--format", "onnx"])
    assert "reduce_window_min" in err and "--format stablehlo" in err
    assert not (model.parent / "model.onnx").exists()


def _nonfinite_box_policy(value: float) -> MLPActorCriticPolicy:
    # log_std does not change the deterministic action, so parity can still pass.
    policy = make_policy("Box")
    log_std = policy.action_head.action_dist.log_std
    return eqx.tree_at(
        lambda p: p.action_head.action_dist.log_std, policy, log_std.at[0].set(value)
    )


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_refused_by_the_api(tmp_path, value):
    policy = _nonfinite_box_policy(value)
    with pytest.raises(InputError, match=r"hold NaN or inf \(first at .*log_std\).*allow"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx")
    assert list(tmp_path.iterdir()) == []
    [result] = policyport.export(policy, "onnx", tmp_path / "p.onnx", allow_nonfinite=True)
    assert result.report.passed and (tmp_path / "p.onnx").is_file()


def test_nonfinite_weights_through_the_cli(tmp_path, capsys):
    model = tmp_path / "nan.eqx"
    _nonfinite_box_policy(np.nan).serialize(model)
    err = _cli_error(capsys, [str(model), "--format", "onnx"])
    assert "weights hold NaN or inf" in err and "--allow-nonfinite" in err
    assert not (tmp_path / "nan.onnx").exists()
    assert run([str(model), "--format", "onnx", "--allow-nonfinite"]) == 0
    assert (tmp_path / "nan.onnx").is_file()


# ---------------------------------------------------------------------------------------
# The header is data


_HOSTILE = {
    "class": ("class", "os.system"),
    "space-type": ("observation_space", {"type": "__import__", "name": "subprocess"}),
    "space-extra-key": ("action_space", {"type": "Discrete", "n": 5, "module": "os:system"}),
    "kwargs-callable": (
        "kwargs",
        {"feature_size": 16, "activation": "subprocess:Popen", "feature_width": 64},
    ),
    "extra-key": ("__reduce__", ["os.system", "touch /tmp/pwned"]),
    "producer": ("producer", {"__class__": "builtins.eval", "args": ["1/0"]}),
    "dtype": ("dtype", "numpy.dtype:object"),
}


@pytest.mark.parametrize("name", list(_HOSTILE))
def test_hostile_header_imports_and_calls_nothing(model, monkeypatch, name):
    MLPActorCriticPolicy.deserialize(model)  # warm: any lazy import happens now
    key, value = _HOSTILE[name]
    header, leaves = _split(model.read_bytes())
    header[key] = value
    model.write_bytes(_join(header, leaves))

    imports: list[str] = []  # every `import` statement run while loading
    dynamic: list[str] = []  # importlib.import_module calls
    calls: list[str] = []
    real_import, real_import_module = builtins.__import__, importlib.import_module
    monkeypatch.setattr(
        builtins, "__import__", lambda n, *a, **k: imports.append(n) or real_import(n, *a, **k)
    )
    monkeypatch.setattr(
        importlib, "import_module", lambda n, *a: dynamic.append(n) or real_import_module(n, *a)
    )
    monkeypatch.setattr(os, "system", lambda *a: calls.append(f"os.system{a}"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(f"Popen{a}"))
    modules = set(sys.modules)
    imports.clear()  # monkeypatch.setattr imports `inspect` itself
    try:
        MLPActorCriticPolicy.deserialize(model)
    except ModelFileError as e:
        error = e
    else:
        error = None
    recorded = list(imports)  # before pytest's own reporting imports anything
    monkeypatch.undo()
    assert error is not None and re.search(r"header is invalid: .*re-save the policy", str(error))
    assert dynamic == [] and calls == []
    # Building a valid space runs jax, whose dispatch does `from jax.experimental import
    # ...` inside functions, and numpy, whose dtype names do `from numpy._core import ...`
    # (both already loaded: sys.modules stays the same); nothing the header names is imported.
    assert not [n for n in recorded if not n.startswith(("jax", "numpy._core."))]
    assert set(sys.modules) == modules


# ---------------------------------------------------------------------------------------
# No partial output (in process)


def _tree_bytes(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or `path` itself) with its bytes."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _snapshot(folder: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: _tree_bytes(p) for p in folder.iterdir()}


@pytest.mark.parametrize("format", ["onnx", "stablehlo"])
def test_failed_parity_check_leaves_the_destination_untouched(tmp_path, monkeypatch, format):
    from policyport import _export

    out = tmp_path / f"p{FORMATS[format].suffix}"
    policyport.export(make_policy("Discrete", seed=1), format, out)
    before = _snapshot(tmp_path)
    real_check = _export.compare_runner
    monkeypatch.setattr(
        _export,
        "compare_runner",
        lambda *a, **k: dataclasses.replace(real_check(*a, **k), passed=False),
    )
    with pytest.raises(ParityError, match=f"nothing was written to {re.escape(str(out))}"):
        policyport.export(make_policy("Discrete", seed=2), format, out, force=True)
    assert _snapshot(tmp_path) == before


def test_artifact_its_runtime_cannot_load_fails_the_check(tmp_path, monkeypatch):
    from policyport.formats import RUNTIMES

    def broken(path):
        raise RuntimeError("NOT_IMPLEMENTED: Could not find an implementation for Where(16)")

    broken_runtime = dataclasses.replace(RUNTIMES["onnxruntime"], load=broken)
    monkeypatch.setitem(RUNTIMES, "onnxruntime", broken_runtime)
    with pytest.raises(ParityError, match=r"fails to load in onnxruntime \(RuntimeError: NOT_IMPL"):
        policyport.export(make_policy("Discrete"), "onnx", tmp_path / "p.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("previous", [False, True])
def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, previous):
    out = tmp_path / "p.stablehlo"
    if previous:
        policyport.export(make_policy("Discrete", seed=1), "stablehlo", out)
    before = _snapshot(tmp_path)
    fmt = FORMATS["stablehlo"]
    real_write = fmt.write

    def write_half_then_fail(traced, staging, stem, options, meta):
        staged = real_write(traced, staging, stem, options, meta)
        (staged[0] / "exported.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fmt, "write", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        policyport.export(make_policy("Discrete", seed=2), "stablehlo", out, force=True)
    assert _snapshot(tmp_path) == before  # no staging folder either


def test_stale_staging_folders_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = host_name()
    stale = [
        tmp_path / f".p.onnx.policyport-staging-{host}-{int(dead.stdout)}-abc",
        # A killed export that had our PID (PIDs are reused, e.g. in fresh containers).
        tmp_path / f".p.onnx.policyport-staging-{host}-{os.getpid()}-xyz",
    ]
    for path in stale:
        (path / "p.onnx").parent.mkdir()
        (path / "p.onnx").write_bytes(b"partial")
    live = tmp_path / f".q.onnx.policyport-staging-{host}-{os.getppid()}-live"
    live.mkdir()
    assert sorted(remove_stale_staging(tmp_path)) == sorted(stale)
    assert [p.name for p in tmp_path.iterdir()] == [live.name]


# ---------------------------------------------------------------------------------------
# The kill test: SIGKILL export-policy at several points, in a subprocess


@dataclasses.dataclass
class _Kill:
    format: str
    stage: str
    previous: bool
    folder: Path | None = None
    process: subprocess.Popen | None = None
    before: dict | None = None

    @property
    def output(self) -> Path:
        # With --format all, each format replaces the suffix of -o.
        suffix = ".onnx" if self.format == "all" else FORMATS[self.format].suffix
        return self.folder / f"policy{suffix}"

    @property
    def name(self) -> str:
        return f"{self.format}@{self.stage}{'+previous' if self.previous else ''}"


def _start(case: _Kill, model: Path, root: Path) -> None:
    case.folder = root / case.name.replace("@", "-").replace("+", "-")
    case.folder.mkdir()
    if case.previous:  # a complete artifact from another policy, to be replaced with --force
        policyport.export(make_policy("Discrete", seed=1), case.format, case.output)
    case.before = _snapshot(case.folder)
    script = Path(sys.executable).parent / "export-policy"
    args = [str(script), str(model), "--format", case.format, "-o", str(case.output), "--force"]
    env = {**os.environ, "POLICYPORT_TEST_PAUSE": f"{case.stage}:120"}
    with (case.folder.parent / f"{case.folder.name}.stderr").open("w") as stderr:
        case.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True
        )


def _wait_for_pause(case: _Kill, deadline: float) -> None:
    stream = case.process.stdout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        if not ready:
            case.process.kill()
            pytest.fail(f"{case.name}: no test pause within the time limit")
        line = stream.readline()
        if not line:
            stderr = (case.folder.parent / f"{case.folder.name}.stderr").read_text()
            pytest.fail(f"{case.name}: exited before its pause:\n{stderr}")
        if f"test pause at {case.stage}" in line:
            return


def _kill_cases(model: Path, root: Path, cases: list[_Kill]) -> None:
    for case in cases:
        _start(case, model, root)
    deadline = time.monotonic() + 600
    for case in cases:
        _wait_for_pause(case, deadline)
        # The staged artifact exists right now: the kill lands mid-export.
        assert list(case.folder.glob(STAGING)), case.name
        case.process.send_signal(signal.SIGKILL)
        case.process.wait()
        case.process.stdout.close()
        assert case.process.returncode == -signal.SIGKILL
    for case in cases:
        after = {k: v for k, v in _snapshot(case.folder).items() if "policyport-staging" not in k}
        # Nothing (first export) or the previous artifact byte for byte: never a partial one.
        assert after == case.before, case.name
    # The next export into each folder cleans up what the killed one left.
    for case in cases:
        policyport.export(make_policy("Discrete", seed=3), case.format, case.output, force=True)
        assert list(case.folder.glob(STAGING)) == [], case.name
        assert sorted(p.name for p in case.folder.iterdir()) == sorted(
            p.name for p in FORMATS[case.format].destinations(case.output)
        )


def test_sigkill_during_export_onnx_and_stablehlo(model, tmp_path):
    cases = [
        _Kill(format, stage, previous)
        for format in ("onnx", "stablehlo")
        for stage in ("written", "checked")
        for previous in (False, True)
    ]
    _kill_cases(model, tmp_path, cases)


def test_sigkill_during_export_savedmodel_and_ort(model, tmp_path):
    pytest.importorskip("tensorflow")
    cases = [_Kill("savedmodel", "checked", True), _Kill("ort", "written", True)]
    _kill_cases(model, tmp_path, cases)


def _new_set(case: _Kill, move: int) -> dict[str, dict[str, bytes]]:
    """At a pause before move `move`, the complete new set: moved paths at their
    destinations, the rest still in the staging folder, as the committed plan lists them."""
    [staging] = case.folder.glob(STAGING)
    plan = json.loads((staging / PLAN).read_text())
    new = {
        target: _tree_bytes(case.folder / target if j < move else staging / source)
        for j, (source, target) in enumerate(plan)
    }
    return {**{k: v for k, v in case.before.items() if k not in new}, **new}


@pytest.mark.parametrize(
    ("format", "move"),
    # all: onnx (0), ort's config (1) and .ort (2), savedmodel (3), stablehlo (4), tflite (5).
    [("all", 2), ("all", 5), ("ort", 0), ("ort", 1)],
    ids=["all@between-the-ort-pair", "all@last", "ort@first", "ort@between-the-pair"],
)
def test_sigkill_between_the_renames_of_a_set_recovers_the_complete_new_set(
    model, tmp_path, format, move
):
    """Killed after the commit point, mid-way through the renames: the next export (or
    check) in that folder finishes the committed publish, so the set is the complete new one;
    killed before it, the previous set stays untouched (the tests above)."""
    if format == "all":
        pytest.importorskip("tensorflow")
    case = _Kill(format, f"move-{move}", True)
    _start(case, model, tmp_path)
    _wait_for_pause(case, time.monotonic() + 600)
    new = _new_set(case, move)
    assert new != case.before
    case.process.send_signal(signal.SIGKILL)
    case.process.wait()
    case.process.stdout.close()
    mixed = {k: v for k, v in _snapshot(case.folder).items() if "policyport-staging" not in k}
    assert mixed != new  # the kill landed mid-publish
    [staging] = case.folder.glob(STAGING)
    assert remove_stale_staging(case.folder) == [staging]  # what every export runs first
    assert _snapshot(case.folder) == new


def test_sigkill_after_the_commit_point_before_any_rename(model, tmp_path):
    case = _Kill("ort", "committed", False)
    _start(case, model, tmp_path)
    _wait_for_pause(case, time.monotonic() + 300)
    new = _new_set(case, 0)
    case.process.kill()
    case.process.wait()
    case.process.stdout.close()
    assert {k for k in _snapshot(case.folder) if "policyport-staging" not in k} == set()
    policyport.check(make_policy("Discrete", seed=2), case.output)  # recovers, then checks
    assert _snapshot(case.folder) == new


def test_sigkill_leaves_a_stale_folder_only_a_dead_pid_owns(model, tmp_path):
    """The staging folder a killed export leaves is named after its host and (dead) PID."""
    case = _Kill("onnx", "written", False)
    _start(case, model, tmp_path)
    _wait_for_pause(case, time.monotonic() + 300)
    pid = case.process.pid
    [staging] = case.folder.glob(STAGING)
    assert f"policyport-staging-{host_name()}-{pid}-" in staging.name
    assert remove_stale_staging(case.folder) == []  # still running: not stale
    case.process.kill()
    case.process.wait()
    case.process.stdout.close()
    assert remove_stale_staging(case.folder) == [staging]


@pytest.mark.parametrize(
    ("format", "make", "message"),
    [
        ("onnx", "folder", "is a folder, but a onnx artifact is a file"),
        ("savedmodel", "file", "is a file, but a savedmodel artifact is a folder"),
        ("stablehlo", "folder", r"not a stablehlo artifact \(no exported.bin inside\)"),
    ],
)
def test_force_never_replaces_something_that_is_not_a_previous_artifact(
    tmp_path, capsys, format, make, message
):
    model = tmp_path / "p.eqx"
    make_policy("Discrete").serialize(model)
    # Where the export writes by default: `-o FOLDER` names a folder to write into.
    target = tmp_path / f"p{FORMATS[format].suffix}"
    if make == "folder":
        target.mkdir()
        (target / "keep.txt").write_text("important")
    else:
        target.write_text("important")
    assert run([str(model), "--format", format, "--force"]) == 2
    assert re.search(message, capsys.readouterr().err)
    kept = target / "keep.txt" if make == "folder" else target
    assert kept.read_text() == "important"


def test_report_path_that_is_a_folder_is_refused_before_exporting(tmp_path, capsys):
    model = tmp_path / "p.eqx"
    make_policy("Discrete").serialize(model)
    (tmp_path / "reports").mkdir()
    args = [str(model), "--format", "onnx", "--report", str(tmp_path / "reports")]
    assert run(args) == 2
    assert "is a folder; give a file path" in capsys.readouterr().err
    assert not (tmp_path / "p.onnx").exists()


def test_negative_seed_is_an_input_error(tmp_path, capsys):
    model = tmp_path / "p.eqx"
    make_policy("Discrete").serialize(model)
    assert run([str(model), "--format", "onnx", "--seed", "-1"]) == 2
    assert "--seed must be a non-negative integer" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Exit codes (issue 13, item 7)


def test_an_internal_error_has_its_own_exit_code_and_a_log(model, capsys, monkeypatch):
    def broken_export(*args, **kwargs):
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(policyport, "export", broken_export)
    monkeypatch.setattr(tempfile, "tempdir", str(model.parent))  # where the log goes
    assert run([str(model), "--format", "onnx"]) == 3
    err = capsys.readouterr().err
    assert re.search(r"internal error: KeyError: .*a bug, not the user's input", err), err
    assert re.search(r"This is a bug in policyport .*Please report it", err)
    assert "Traceback" not in err  # one short message; the traceback is in the log
    [log] = model.parent.glob("policyport-crash-*.log")
    assert str(log) in err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "broken_export" in text


def test_exit_codes_are_documented():
    readme = Path(__file__).parent.parent / "README.md"
    section = readme.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    for code, meaning in [(0, "success"), (1, "parity failure"), (2, "input error")]:
        assert re.search(rf"{code} {meaning}", section), (code, section)
    assert re.search(r"3 internal error", section)


# ---------------------------------------------------------------------------------------
# lerax files: kwargs bounded for every class before anything is built (issue 25)

# A class policyport has no closed form for: lerax's own, subclassed where the user works.
_OWN_CLASS = """
from lerax.policy import MLPActorCriticPolicy


class MyPolicy(MLPActorCriticPolicy):
    pass
"""


def _lerax_kwargs_cases() -> dict[str, tuple[list[str], str]]:
    """name -> (extra CLI arguments, what the refusal must say)."""
    lerax_ac = ["--policy-class", "lerax.policy:MLPActorCriticPolicy"]
    lerax_q = ["--policy-class", "lerax.policy:MLPQPolicy"]
    deep = '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"
    return {
        "lerax feature_depth 1e6": (
            [*lerax_ac, "--policy-kwargs", '{"feature_depth": 1000000}'],
            r"feature_depth must be an integer in 0\.\.64, found 1000000",
        ),
        "lerax widths beyond 2^28 weights": (
            [*lerax_ac, "--policy-kwargs", '{"feature_width": 60000, "value_width": 60000}'],
            r"\d+ weights in all; the limit is 268435456",
        ),
        "lerax Q depth 1e6": (
            [*lerax_q, "--policy-kwargs", '{"depth": 1000000}'],
            r"depth must be an integer in 0\.\.64, found 1000000",
        ),
        "own class feature_depth 1e6": (
            [
                "--policy-class",
                "own_policy:MyPolicy",
                "--policy-kwargs",
                '{"feature_depth": 1000000}',
            ],
            r"kwarg feature_depth=1000000 is beyond policyport's limits .* \(65 for a kwarg",
        ),
        "own class feature_width 1e9": (
            [
                "--policy-class",
                "own_policy:MyPolicy",
                "--policy-kwargs",
                '{"feature_width": 1000000000}',
            ],
            r"kwarg feature_width=1000000000 is beyond .* \(65536 for a kwarg",
        ),
        "5000-digit integer": (
            [*lerax_ac, "--policy-kwargs", '{"feature_width": ' + "9" * 5000 + "}"],
            r"--policy-kwargs holds an integer of 5000 digits",
        ),
        "50k-deep JSON": (
            [*lerax_ac, "--policy-kwargs", deep],
            r"--policy-kwargs nests deeper than Python can parse",
        ),
        "100-deep JSON": (
            [*lerax_ac, "--policy-kwargs", "[" * 100 + "]" * 100],
            r"--policy-kwargs nests 100 levels deep",
        ),
    }


def test_lerax_kwargs_are_bounded_for_every_class_before_building(tmp_path):
    pytest.importorskip("lerax.env")
    (tmp_path / "own_policy.py").write_text(_OWN_CLASS)
    out = tmp_path / "never.onnx"
    base = [str(LERAX_FILE.resolve()), "--env", "lerax.env:CartPole", "--format", "onnx"]
    cases = _lerax_kwargs_cases()
    argv = {name: [*base, *extra, "-o", str(out)] for name, (extra, _) in cases.items()}
    outcomes = run_cases(argv, cwd=tmp_path)
    matches = {name: match for name, (_, match) in cases.items()}
    assert_refused(outcomes, matches, r"pass .*kwargs", out)

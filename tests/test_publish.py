"""Issue 13, items 5, 6 and 10: what is published is what was checked, all of it or none
of it, one export at a time; a full disk or a file-size limit leaves nothing behind.

The SIGKILL tests of the same promises live in test_reliability.py (with the others).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

import policyport
from conftest import make_policy
from policyport import ParityError
from policyport._export import check as check_artifact
from policyport._publish import (
    FOREIGN_STALE_SECONDS,
    PLAN,
    host_name,
    remove_stale_staging,
    staging_dir,
)
from policyport.formats import FORMATS, RUNTIMES
from policyport.formats._onnx import OnnxFormat

EXPORT_POLICY = Path(sys.executable).parent / "export-policy"


def _digest(path: Path) -> str:
    """A hash of a file, or of every file (name and bytes) under a folder."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else "").encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------
# Item 5: the published bytes are the checked bytes


@pytest.mark.parametrize("format", list(FORMATS))
def test_published_bytes_are_the_bytes_the_runtime_ran(tmp_path, monkeypatch, format):
    fmt = FORMATS[format]
    runtime = RUNTIMES[fmt.runtime]
    ran: list[str] = []  # the digest of every artifact the runtime opened, in order

    def recording_load(path):
        ran.append(_digest(Path(path)))
        return runtime.load(path)

    monkeypatch.setitem(RUNTIMES, fmt.runtime, dataclasses.replace(runtime, load=recording_load))
    out = tmp_path / f"p{fmt.suffix}"
    [result] = policyport.export(make_policy("Discrete"), format, out)
    assert result.report.passed
    assert ran, "the check never opened the artifact"
    # The last bytes the runtime ran are the bytes now at the destination.
    assert ran[-1] == _digest(out)


def test_a_metadata_rewrite_that_changes_the_computation_is_caught(tmp_path, monkeypatch):
    other = tmp_path / "other.onnx"
    policyport.export(make_policy("Discrete", seed=9), "onnx", other)
    real = OnnxFormat.set_metadata

    def rewrite_and_swap(self, staged, metadata):
        real(self, staged, metadata)
        model = onnx.load_model(other)  # another policy's graph: other computations
        del model.metadata_props[:]
        onnx.save_model(model, staged[0])

    monkeypatch.setattr(OnnxFormat, "set_metadata", rewrite_and_swap)
    out = tmp_path / "p.onnx"
    with pytest.raises(ParityError, match=r"changed when its parity result was embedded.*p\.onnx"):
        policyport.export(make_policy("Discrete", seed=2), "onnx", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.onnx"]


# ---------------------------------------------------------------------------------------
# Item 6: a multi-format export publishes all or nothing


def test_a_later_format_failing_publishes_none_of_the_formats(tmp_path, monkeypatch):
    from policyport import _export

    real_check = _export.compare_runner

    def stablehlo_fails(traced, run, *, format, **kwargs):
        report = real_check(traced, run, format=format, **kwargs)
        return dataclasses.replace(report, passed=report.passed and format != "stablehlo")

    monkeypatch.setattr(_export, "compare_runner", stablehlo_fails)
    model = tmp_path / "policy.eqx"
    make_policy("Discrete").serialize(model)
    with pytest.raises(ParityError, match=r"stablehlo artifact does not compute.*nothing was"):
        policyport.export(make_policy("Discrete"), "all", source=model)
    # onnx, ort and savedmodel passed their checks, but none of them is published.
    assert [p.name for p in tmp_path.iterdir()] == ["policy.eqx"]


# ---------------------------------------------------------------------------------------
# Item 10: two exports to one path at once; a file-size limit mid-write


def _export_process(model: Path, out: Path, format: str, env: dict) -> subprocess.Popen:
    args = [str(EXPORT_POLICY), str(model), "--format", format, "-o", str(out), "--no-check"]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_exports_to_one_path_at_once_one_wins_the_other_is_told(tmp_path):
    models = []
    for seed in (4, 5):
        models.append(tmp_path / f"m{seed}.eqx")
        make_policy("Discrete", seed=seed).serialize(models[-1])
    out = tmp_path / "out" / "policy.ort"
    out.parent.mkdir()
    # Both pause after their up-front checks (the destination is free for both), so they
    # reach the publish step together: the second must not overwrite the first.
    env = {**os.environ, "POLICYPORT_TEST_PAUSE": "checked:6"}
    processes = [_export_process(m, out, "ort", env) for m in models]
    finished = [p.communicate(timeout=300) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], finished
    [loser_err] = [err for p, (_, err) in zip(processes, finished, strict=True) if p.returncode]
    taken = r"out/policy\.\S+ was created by someone else .*nothing was written"
    assert re.search(taken, loser_err)
    # One complete pair, from the winner: the .ort checks against its policy.
    winner = next(m for m, p in zip(models, processes, strict=True) if p.returncode == 0)
    seed = int(winner.stem[1:])
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "policy.ort",
        "policy.required_operators.config",
    ]
    assert check_artifact(make_policy("Discrete", seed=seed), out).passed


# `ulimit -f` for the command it runs (a preexec_fn would fork a process with JAX's threads).
_LIMITED = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0})); "
_LIMITED += "os.execv(sys.argv[1], sys.argv[1:])"


@pytest.mark.parametrize("format", ["onnx", "stablehlo"])
def test_a_file_size_limit_mid_write_is_a_clear_error_and_leaves_nothing(tmp_path, format):
    model = tmp_path / "model.eqx"
    make_policy("Discrete").serialize(model)
    out = tmp_path / f"out{FORMATS[format].suffix}"
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of dying.
    start = time.monotonic()
    # 16 KiB: smaller than the artifact; the model file is read, not written.
    limited = [sys.executable, "-c", _LIMITED.format(16 * 1024), str(EXPORT_POLICY)]
    process = subprocess.run(
        [*limited, str(model), "--format", format, "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
    )
    assert process.returncode == 2, process.stderr
    assert re.search(
        rf"Writing the {format} artifact in .* failed: a file-size limit was hit \(File too "
        r"large\)\. Nothing was written\. .*ulimit -f",
        process.stderr,
    ), process.stderr
    assert time.monotonic() - start < 300
    assert [p.name for p in tmp_path.iterdir()] == ["model.eqx"]


@pytest.mark.parametrize("stage", ["write", "set_metadata"])
def test_a_full_disk_mid_write_is_a_clear_error_and_leaves_nothing(
    tmp_path, monkeypatch, capsys, stage
):
    """ENOSPC cannot be provoked safely on a shared disk: the format's own write fails with
    it, after writing half, as a full disk would."""
    from policyport._cli import run

    model = tmp_path / "model.eqx"
    make_policy("Discrete").serialize(model)
    real = getattr(OnnxFormat, stage)

    def half_then_full(self, *args):
        real(self, *args)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(OnnxFormat, stage, half_then_full)
    assert run([str(model), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"error: Writing the onnx artifact in .* failed: the disk is full \(No space left on "
        r"device\)\. Nothing was written\. Free some space",
        err,
    ), err
    assert [p.name for p in tmp_path.iterdir()] == ["model.eqx"]


# ---------------------------------------------------------------------------------------
# Staging folders in an output folder shared by several machines (Dask workers)

HERE = "gpu-node-1"  # this machine's name in these tests, with "-" as real names have
ELSEWHERE = "gpu-node-2"


def _dead_pid() -> int:
    """The PID of a process that has exited (a reused PID would be an unlikely race)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _staging(folder: Path, name: str, age: float = 0.0) -> Path:
    """A staging folder holding a partial artifact, last changed `age` seconds ago."""
    path = folder / f".p.onnx.policyport-staging-{name}"
    path.mkdir()
    (path / "p.onnx").write_bytes(b"partial")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_a_staging_folder_is_named_after_its_host_and_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu node/7:a")
    assert host_name() == "gpu_node_7_a"  # safe in a file name
    with staging_dir(tmp_path / "p.onnx") as staging:
        assert staging.name.startswith(f".p.onnx.policyport-staging-gpu_node_7_a-{os.getpid()}-")
        assert remove_stale_staging(tmp_path) == []  # ours, and in use
    assert list(tmp_path.iterdir()) == []


def test_staging_folders_of_other_hosts_are_judged_by_age_not_pid(tmp_path, monkeypatch):
    """On this host a dead PID makes a staging folder stale; another host's PIDs mean
    nothing here (its live export would be deleted), so only a day's age does."""
    monkeypatch.setattr(socket, "gethostname", lambda: HERE)
    dead, live, old = _dead_pid(), os.getppid(), FOREIGN_STALE_SECONDS + 60
    stale = [
        _staging(tmp_path, f"{HERE}-{dead}-a"),  # this host, dead PID
        _staging(tmp_path, f"{HERE}-{os.getpid()}-b"),  # our PID, not made by us: reused
        _staging(tmp_path, f"{ELSEWHERE}-{live}-c", age=old),  # a live PID here means nothing
        _staging(tmp_path, f"{dead}-d", age=old),  # no host (older policyport): by age
    ]
    kept = [
        _staging(tmp_path, f"{HERE}-{live}-e", age=old),  # this host, live PID, however old
        _staging(tmp_path, f"{ELSEWHERE}-{dead}-f"),  # fresh: that machine's export may run
        _staging(tmp_path, f"{ELSEWHERE}-{dead}-g", age=FOREIGN_STALE_SECONDS - 60),
        _staging(tmp_path, f"{dead}-h"),
    ]
    assert sorted(remove_stale_staging(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_an_old_committed_staging_folder_of_another_host_is_rolled_forward(tmp_path, monkeypatch):
    """A foreign export that died after its commit point completes, as a local one does."""
    monkeypatch.setattr(socket, "gethostname", lambda: HERE)
    staging = _staging(tmp_path, f"{ELSEWHERE}-{os.getpid()}-a")
    (staging / PLAN).write_text(json.dumps([["p.onnx", "p.onnx"]]))
    old = time.time() - FOREIGN_STALE_SECONDS - 60
    os.utime(staging, (old, old))  # writing the plan made it fresh
    assert remove_stale_staging(tmp_path) == [staging]
    assert [p.name for p in tmp_path.iterdir()] == ["p.onnx"]
    assert (tmp_path / "p.onnx").read_bytes() == b"partial"

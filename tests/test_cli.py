"""`export-policy`: exit codes, messages, default paths, --force, --report, lerax files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_policy
from policyport._cli import run
from policyport.formats import FORMATS

pytest.importorskip("lerax.env", reason="the test install includes lerax")


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.eqx"
    make_policy("Discrete", seed=2).serialize(path)
    return path


def test_default_output_path_and_report(model, capsys):
    report = model.parent / "report.json"
    assert run([str(model), "--format", "onnx", "--report", str(report)]) == 0
    out, err = capsys.readouterr()
    assert (model.parent / "model.onnx").is_file()
    assert "Parity PASS: onnx" in out and "✓  action" in out
    # One publish for every format of an export (all or nothing), after each one's checks.
    stages = ("load", "trace", "onnx: lower", "onnx: check", "onnx: verify", "publish")
    for stage in stages:
        assert f"[policyport] {stage}" in err
    [entry] = json.loads(report.read_text())
    assert entry["format"] == "onnx" and entry["paths"] == [str(model.parent / "model.onnx")]
    assert entry["parity"]["passed"] and entry["closed_loop"] is None
    assert {o["name"] for o in entry["parity"]["outputs"]} == {"action", "value"}


@pytest.mark.parametrize("format", ["onnx", "all"])
def test_relative_paths_as_the_quick_start_gives_them(model, monkeypatch, format):
    """`export-policy examples/x/policy.eqx ...` from another folder: relative model and
    output paths (the staging folder is absolute; publishing must still see them beside)."""
    monkeypatch.chdir(model.parent.parent)
    relative = Path(model.parent.name) / model.name
    assert run([str(relative), "--format", format]) == 0
    assert (model.parent / "model.onnx").is_file()
    assert run([str(relative), "--format", "onnx", "-o", f"{model.parent.name}/o.onnx"]) == 0
    assert (model.parent / "o.onnx").is_file()
    assert not list(model.parent.glob(".*staging*"))


def test_existing_output_needs_force(model, capsys):
    assert run([str(model), "--format", "onnx"]) == 0
    before = (model.parent / "model.onnx").stat().st_mtime_ns
    assert run([str(model), "--format", "onnx"]) == 2
    assert "already exists. Pass --force" in capsys.readouterr().err
    assert (model.parent / "model.onnx").stat().st_mtime_ns == before
    assert run([str(model), "--format", "onnx", "--force"]) == 0
    assert (model.parent / "model.onnx").stat().st_mtime_ns != before


def test_all_formats_with_output_stem(model, tmp_path):
    out = tmp_path / "out" / "policy"
    out.parent.mkdir()
    assert run([str(model), "--format", "all", "-o", str(out)]) == 0
    names = sorted(p.name for p in out.parent.iterdir())
    # Each format's files: its primary path and companions (.ort's config, c's header).
    assert names == sorted(
        p.name for f in FORMATS.values() for p in f.destinations(out.with_suffix(f.suffix))
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx", "--opset", "40"], r"--opset 40 is out of range: choose 13..26"),
        (["--format", "onnx", "-o", "/nonexistent/dir/x.onnx"], "does not exist"),
        (["--format", "onnx", "--policy-kwargs", "{nope"], "is not valid JSON"),
        (
            ["--format", "onnx", "--policy-kwargs", '{"hidden": 3}'],
            r"unknown key\(s\) \['hidden'\]",
        ),
        (["--format", "onnx", "--env", "nosuchmodule:Env"], "cannot import module 'nosuchmodule'"),
        (["--format", "onnx", "--env", "json:loads"], r"calling loads\(\) to make the env failed"),
        (["--format", "onnx", "--env", "json:decoder"], "has no observation_space"),
        (["--format", "onnx", "--env", "CartPole"], "must look like MODULE:ATTR"),
    ],
)
def test_input_errors_exit_2_with_a_message(model, capsys, args, message):
    assert run([str(model), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (model.parent / "model.onnx").exists()


def test_unknown_format_exits_2(model, capsys):
    # argparse's own usage errors exit 2 too.
    with pytest.raises(SystemExit) as info:
        run([str(model), "--format", "tensorrt"])
    assert info.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_missing_model_exits_2(tmp_path, capsys):
    assert run([str(tmp_path / "nope.eqx"), "--format", "onnx"]) == 2
    assert "Model file not found" in capsys.readouterr().err


def test_lerax_file_through_the_cli(tmp_path, capsys):
    assert (
        run(
            [
                "examples/cartpole/policy.eqx",
                "--format",
                "onnx",
                "--env",
                "lerax.env:CartPole",
                "-o",
                str(tmp_path / "cartpole.onnx"),
            ]
        )
        == 0
    )
    assert (tmp_path / "cartpole.onnx").is_file()
    assert (
        run(["examples/cartpole/policy.eqx", "--format", "onnx", "-o", str(tmp_path / "x.onnx")])
        == 2
    )
    assert "--env MODULE:ATTR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "kwargs"),
    [
        ("lerax.env:Pendulum", {"feature_size": 8, "action_depth": 3}),
        ("lerax.env:Acrobot", {"feature_width": 32, "value_depth": 1}),
    ],
)
def test_lerax_files_with_non_default_architectures(tmp_path, env, kwargs):
    import jax
    import lerax.env
    from lerax.policy import MLPActorCriticPolicy as LeraxPolicy

    lerax_env = getattr(lerax.env, env.split(":")[1])()
    LeraxPolicy(lerax_env, key=jax.random.key(0), **kwargs).serialize(tmp_path / "p.eqx")
    jax.effects_barrier()
    args = [str(tmp_path / "p.eqx"), "--format", "all", "--env", env]
    assert run(args) == 2  # the kwargs are needed
    assert run([*args, "--policy-kwargs", json.dumps(kwargs)]) == 0
    assert (tmp_path / "p.savedmodel").is_dir() and (tmp_path / "p.ort").is_file()


def test_the_console_script_runs(model):
    script = Path(sys.executable).parent / "export-policy"
    done = subprocess.run(
        [str(script), str(model), "--format", "stablehlo"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Parity PASS: stablehlo" in done.stdout
    assert (model.parent / "model.stablehlo" / "exported.bin").is_file()


def test_rollouts_through_the_cli(tmp_path, capsys):
    report = tmp_path / "report.json"
    args = [
        "examples/cartpole/policy.eqx",
        "--format",
        "onnx",
        "--env",
        "lerax.env:CartPole",
        "-o",
        str(tmp_path / "c.onnx"),
        "--rollouts",
        "2",
        "--report",
        str(report),
    ]
    assert run(args) == 0
    assert "Closed loop PASS: onnx" in capsys.readouterr().out
    [entry] = json.loads(report.read_text())
    episodes = entry["closed_loop"]["episodes"]
    assert len(episodes) == 2
    assert all(e["return_jax"] == e["return_artifact"] == 500.0 for e in episodes)


def test_rollouts_need_an_env(model, capsys):
    assert run([str(model), "--format", "onnx", "--rollouts", "2"]) == 2
    assert "--rollouts needs the env" in capsys.readouterr().err


def test_env_from_the_current_directory(tmp_path, capsys):
    # Like `python -m`, --env finds a project's own module from the working directory.
    args = [
        "examples/gridworld/policy.eqx",
        "--format",
        "onnx",
        "-o",
        str(tmp_path / "g.onnx"),
        "--rollouts",
        "3",
        "--rollout-steps",
        "50",
        "--env",
        "examples.gridworld.gridworld:Gridworld",
    ]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "Closed loop PASS: onnx" in out and "episodes whose actions differ: 0" in out

"""`export-policy`: exit codes, messages, default paths, --force, --report, lerax files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        # The user's code exiting is an input error naming it, not a silent exit 0.
        (["--format", "onnx", "--env", "sys:exit"], r"--env sys:exit: calling exit\(\)"),
        # A path is not a module name (importlib said TypeError: exit 3).
        (["--format", "onnx", "--env", "../../etc/passwd:x"], "is not a module name"),
        (["--format", "onnx", "--env", "envs/maze:Maze"], "is not a module name"),
        (["--format", "onnx", "--policy-class", "os.path:.."], "not an attribute name"),
        # A non-UTF-8 path (bytes the shell passes through) is no parity failure.
        (["--format", "onnx", "-o", "\udcff.onnx"], r"is not valid UTF-8 \(byte 0xff"),
        (["--format", "onnx", "-o", "x\0.onnx"], "holds a NUL character"),
    ],
)
def test_input_errors_exit_2_with_a_message(model, capsys, args, message):
    assert run([str(model), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (model.parent / "model.onnx").exists()


def test_an_env_module_that_exits_while_imported(tmp_path, model, monkeypatch, capsys):
    """Whatever the user's module raises when imported (SystemExit, RecursionError, ...)
    is an input error naming it."""
    (tmp_path / "quits.py").write_text("raise SystemExit(5)\n")
    (tmp_path / "recurses.py").write_text("def f(): return f()\nf()\n")
    monkeypatch.chdir(tmp_path)
    for module, raised in (("quits", "SystemExit: 5"), ("recurses", "RecursionError")):
        args = [str(model), "--format", "onnx", "--rollouts", "1", "--env", f"{module}:Env"]
        assert run(args) == 2
        err = capsys.readouterr().err
        assert f"--env {module}:Env: importing module {module!r} failed: {raised}" in err, err
    assert not (model.parent / "model.onnx").exists()


def test_output_paths_with_dotdot(model, monkeypatch):
    """`-o ../x.onnx` is normalised once: the staging folder and the artifact are beside
    each other by the text too (it failed with exit 3)."""
    sub = model.parent / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert run([str(model), "--format", "onnx", "-o", "../x.onnx"]) == 0
    assert run([str(model), "--format", "onnx", "-o", "../sub/../y.onnx"]) == 0
    assert (model.parent / "x.onnx").is_file() and (model.parent / "y.onnx").is_file()
    assert not [p for p in model.parent.rglob("*") if "staging" in p.name]


def test_output_folder(model, tmp_path, capsys):
    """`-o FOLDER/` (or an existing folder) writes FOLDER/<model stem>.<suffix>, as
    docs/sweep.md says; the slash was dropped and a file named FOLDER written."""
    out = tmp_path / "out"
    out.mkdir()
    assert run([str(model), "--format", "onnx", "-o", f"{out}/"]) == 0
    assert (out / "model.onnx").is_file()
    assert run([str(model), "--format", "ort", "-o", str(out)]) == 0
    ort = [p.name for p in FORMATS["ort"].destinations(out / "model.ort")]
    assert sorted(p.name for p in out.iterdir()) == sorted([*ort, "model.onnx"])
    # A folder that is meant to be one but does not exist is not written as a file.
    assert run([str(model), "--format", "onnx", "-o", f"{tmp_path}/new/"]) == 2
    assert re.search(r"Output folder .*new does not exist", capsys.readouterr().err)
    assert not (tmp_path / "new").exists()


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


# Random argument vectors, as a careless or hostile shell user types them: the CLI must
# answer with a documented exit code (0 exported, 1 parity failure, 2 input error, 4 some
# models of a sweep not exported; 3 is a bug) and leave nothing half-written. Kept to what
# runs in a few seconds each: no --dask (a 10 s connect timeout), no --workers > 1
# (spawned processes), no env that matches the policy (--rollouts N would run N episodes).
_PATH_CHARS = st.sampled_from([*"ab./{}*?[]:-_ ", "\udcff", "é", "\0", "/.."])
_TEXT = st.lists(_PATH_CHARS, max_size=10).map("".join)
_MODELS = st.sampled_from(
    [
        "runs/a/model.eqx",
        "runs/a/...eqx",
        "runs",
        "runs/**/*.eqx",
        "runs/*/model.eqx",
        "runs/b/broken.eqx",
        "missing.eqx",
        "runs/../runs/a/model.eqx",
        "nothing/**",
    ]
)
_OUTPUTS = st.sampled_from(
    [
        "out.onnx",
        "../x.onnx",
        "out/",
        "runs",
        "out/{stem}.onnx",
        "out/{relstem}.onnx",
        "out/{stem}/{index:02d}.onnx",
        "{stem}/../{parent}.onnx",
        "out/{bad}.onnx",
        "out/{stem:d}.onnx",
        "\udcff.onnx",
        "runs/a/model.eqx",
        "runs/a/model.eqx/x.onnx",
    ]
)
_NUMBERS = st.one_of(
    st.integers(-3, 30).map(str),
    st.sampled_from(["99999999999999999999999", "-99999999999999999999", "1e3", "nan"]),
)
_OPTIONS = st.one_of(
    st.tuples(st.just("-o"), st.one_of(_OUTPUTS, _TEXT)),
    st.tuples(st.just("--format"), st.sampled_from(["onnx", "ort", "c", "pdf", ""])),
    st.tuples(
        st.just("--env"),
        st.one_of(
            st.sampled_from(
                ["sys:exit", "os:abort.x", "../../etc/passwd:x", "json:loads", "nosuch:X"]
            ),
            _TEXT,
        ),
    ),
    st.tuples(
        st.just("--policy-class"), st.sampled_from(["sys:exit", "a/b:C", "json:JSONDecoder"])
    ),
    st.tuples(st.just("--policy-kwargs"), st.sampled_from(["{", "[]", '{"feature_width": 1e999}'])),
    st.tuples(
        st.just("--report"), st.sampled_from(["r.json", "../r.json", "out/", "\udcffr.json"])
    ),
    st.tuples(
        st.sampled_from(["--opset", "--seed", "--rollouts", "--rollout-steps", "--workers"]),
        _NUMBERS,
    ),
    st.tuples(st.just("--target"), st.sampled_from(["mobile", "mcu", "nope"])),
    st.tuples(st.just("--check-in"), st.sampled_from(["onnx-reference", "nope", ",,"])),
    st.tuples(st.just("--from"), st.sampled_from(["brax-ppo", "policy"])),
    st.sampled_from(["--force", "--no-check", "--sample", "--clip-actions", "--bake-wrappers"]).map(
        lambda flag: (flag,)
    ),
)
# `--format` is required: it comes first, so that most vectors get past argparse (a
# `--format` drawn later replaces it).
_ARGV = st.tuples(st.lists(_MODELS, min_size=0, max_size=3), st.lists(_OPTIONS, max_size=5)).map(
    lambda drawn: [
        *drawn[0],
        "--format",
        "onnx",
        *(word for option in drawn[1] for word in option),
    ]
)


class _Hang(Exception):
    pass


@pytest.fixture(scope="module")
def fuzz_source(tmp_path_factory) -> Path:
    """`runs/{a,b}/model.eqx` (small, different weights), `runs/a/...eqx` (stem `..`), a
    truncated file, and a symlink loop `runs/a/loop -> ..`."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    small = {"feature_size": 8, "feature_width": 16, "value_width": 16, "action_width": 16}
    for seed, name in enumerate(["a", "b"]):
        (root / "runs" / name).mkdir(parents=True)
        make_policy("Discrete", seed=seed, **small).serialize(root / "runs" / name / "model.eqx")
    (root / "runs/a/...eqx").write_bytes((root / "runs/a/model.eqx").read_bytes())
    (root / "runs/b/broken.eqx").write_bytes((root / "runs/a/model.eqx").read_bytes()[:300])
    (root / "runs/a/loop").symlink_to("..")
    return root


def _half_written(root: Path) -> list[str]:
    """Staging folders left behind, and artifacts or reports that are not whole."""
    import onnx

    bad = []
    for folder, subfolders, files in os.walk(root):  # symlinks not followed
        for name in subfolders + files:
            path = Path(folder) / name
            if "policyport-staging" in name:
                bad.append(f"staging left: {path}")
            elif name.endswith(".onnx") and path.is_file():
                try:
                    onnx.load(path)
                except Exception as e:
                    bad.append(f"{path}: {type(e).__name__}")
            elif name.endswith(".json") and path.is_file():
                try:
                    json.loads(path.read_text())
                except ValueError:
                    bad.append(f"{path}: not whole JSON")
    return bad


def test_random_argument_vectors(fuzz_source, capsys):
    """Hypothesis-made argument vectors through `run(argv)` in this process (argparse's
    own usage errors are its `SystemExit(2)`); each case in a fresh copy of the folder."""
    import signal
    import tempfile
    from collections import Counter

    counts: Counter[str] = Counter()
    wrong: list[tuple[list[str], object]] = []

    def hang(*_):
        raise _Hang

    @settings(max_examples=200, derandomize=True, deadline=None, database=None)
    @given(argv=_ARGV)
    def case(argv):
        counts["cases"] += 1
        home = os.getcwd()
        with tempfile.TemporaryDirectory() as work:
            shutil.copytree(fuzz_source, work, dirs_exist_ok=True, symlinks=True)
            os.chdir(work)
            old = signal.signal(signal.SIGALRM, hang)
            signal.setitimer(signal.ITIMER_REAL, 60)
            try:
                code = run(argv)
            except SystemExit as e:  # argparse: --help 0, usage errors 2
                code = e.code
            except _Hang:
                code = "hang"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                os.chdir(home)
            _, err = capsys.readouterr()
            counts[f"exit {code}"] += 1
            if code == 3:
                counts["crashes"] += 1
            elif code == "hang":
                counts["hangs"] += 1
            elif code not in (0, 1, 2, 4):
                counts["wrong exits"] += 1
            if code not in (0, 1, 2, 4):
                wrong.append((argv, code, err[-600:]))
            left = _half_written(Path(work))
            counts["half-written"] += bool(left)
            assert not left, (argv, left)
            # A message goes with every refusal.
            assert code != 2 or "error" in err, (argv, err)

    case()
    with capsys.disabled():
        print(f"\nexport-policy random argument vectors: {dict(sorted(counts.items()))}")
    assert not wrong, wrong

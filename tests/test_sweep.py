"""Sweeps: many checkpoints in one call, one outcome each, on local workers and on Dask."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import policyport
import policyport._export
from conftest import ACTION_SPACES, make_policy
from policyport import ExportSettings
from policyport._cli import run
from policyport.checks import sample_inputs
from policyport.checks._reference import reference_and_margins
from policyport.sweep._cli import EXIT_SOME_FAILED
from policyport.sweep._jobs import SweepJob
from policyport.tracing import trace

# Small policies: the sweep's logic, not the network's size, is under test.
SMALL = {"feature_size": 8, "feature_width": 16, "value_width": 16, "action_width": 16}
SEEDS = (0, 1, 2)


def _checkpoints(root: Path) -> list[Path]:
    """`runs/lr{0,1}/seed{s}/policy.eqx`: same architecture, different weights; plus a
    truncated file `runs/lr1/broken/policy.eqx`."""
    paths = []
    for i, seed in enumerate(SEEDS):
        path = root / "runs" / f"lr{i % 2}" / f"seed{seed}" / "policy.eqx"
        path.parent.mkdir(parents=True)
        make_policy("Discrete", seed=seed, **SMALL).serialize(path)
        paths.append(path)
    broken = root / "runs" / "lr1" / "broken" / "policy.eqx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(paths[0].read_bytes()[:200])
    return [*paths, broken]


@pytest.fixture(scope="module")
def sweep_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    _checkpoints(root)
    return root


@pytest.fixture
def runs(sweep_source, tmp_path) -> Path:
    """A fresh copy of the checkpoints per test (exports write beside them)."""
    shutil.copytree(sweep_source / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _graph_weights(path: Path) -> list[np.ndarray]:
    return [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]


def test_folder_with_a_corrupted_checkpoint(runs, tmp_path, capsys):
    """The broken file is refused with its message; every other one is exported; exit 4."""
    report = tmp_path / "report.json"
    out = tmp_path / "out"
    args = [str(runs), "--format", "onnx", "-o", f"{out}/{{relstem}}.onnx", "--report", str(report)]
    assert run(args) == EXIT_SOME_FAILED
    stdout, stderr = capsys.readouterr()
    assert _files(out) == [
        "lr0",
        "lr0/seed0",
        "lr0/seed0/policy.onnx",
        "lr0/seed2",
        "lr0/seed2/policy.onnx",
        "lr1",
        "lr1/seed1",
        "lr1/seed1/policy.onnx",
    ]  # no folder, file or staging folder for the broken one
    data = json.loads(report.read_text())
    assert data["counts"] == {"exported": 3, "failed": 0, "refused": 1, "error": 0}
    by_model = {Path(m["model"]).parent.name: m for m in data["models"]}
    assert by_model["broken"]["status"] == "refused"
    assert "damaged" in by_model["broken"]["message"]
    assert all(by_model[f"seed{s}"]["parity"][0]["passed"] for s in SEEDS)
    assert "4 models" in stdout and "3 exported, 1 refused" in stdout
    assert "refused" in stdout and "broken/policy.eqx" in stdout
    assert "4/4" in stderr  # plain progress lines when not a terminal
    # Each artifact holds its own checkpoint's weights.
    weights = [_graph_weights(out / f"lr{s % 2}" / f"seed{s}" / "policy.onnx") for s in SEEDS]
    assert not np.array_equal(weights[0][0], weights[1][0])


def test_glob_and_default_outputs_beside_each_model(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["runs/lr0/**/policy.eqx", "--format", "onnx", "--report", "r.json"]) == 0
    assert (runs / "lr0" / "seed0" / "policy.onnx").is_file()
    assert (runs / "lr0" / "seed2" / "policy.onnx").is_file()
    assert not (runs / "lr1" / "seed1" / "policy.onnx").exists()
    assert "2 models" in capsys.readouterr().out


def test_name_collisions_are_refused_before_anything_runs(runs, tmp_path, capsys):
    """Every checkpoint is `policy.eqx`: `-o FOLDER/` would write `policy.onnx` thrice."""
    out = tmp_path / "out"
    out.mkdir()
    assert run([str(runs), "--format", "onnx", "-o", f"{out}/"]) == 2
    err = capsys.readouterr().err
    assert "would both write" in err and "{relstem}" in err
    assert _files(out) == []


def test_a_sample_entry_colliding_with_another_model_is_refused(tmp_path, capsys):
    """`x.eqx`'s sample entry is `x.sample.onnx`: what `x.sample.eqx` exports to."""
    for name in ("x.eqx", "x.sample.eqx"):
        make_policy("Box").serialize(tmp_path / name)
    models = [str(tmp_path / "x.eqx"), str(tmp_path / "x.sample.eqx")]
    assert run([*models, "--format", "onnx", "--sample"]) == 2
    assert "would both write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.eqx", "x.sample.eqx"]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("out/{seed}.onnx", "unknown field"),
        ("out/{}.onnx", "unknown field"),
        ("out/one.onnx", "names one file"),
    ],
)
def test_bad_outputs_exit_2(runs, tmp_path, output, message, capsys):
    assert run([str(runs), "--format", "onnx", "-o", str(tmp_path / output)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_globs_and_folders_matching_nothing_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run([str(tmp_path / "empty"), "--format", "onnx"]) == 2
    assert "holds no *.eqx" in capsys.readouterr().err
    assert run([str(tmp_path / "nothing" / "*.eqx"), "--format", "onnx"]) == 2
    assert "No file matches" in capsys.readouterr().err


def test_template_fields(runs, tmp_path):
    results = policyport.export_many(
        [runs / "lr0" / "seed0" / "policy.eqx", runs / "lr1" / "seed1" / "policy.eqx"],
        "onnx",
        tmp_path / "{index}-{parent}-{stem}.{format}",
    )
    assert [r.status for r in results] == ["exported", "exported"]
    assert _files(tmp_path) >= ["0-seed0-policy.onnx", "1-seed1-policy.onnx"]


def test_one_model_with_a_template_is_a_sweep(runs, tmp_path, capsys):
    model = runs / "lr0" / "seed0" / "policy.eqx"
    args = [str(model), "--format", "onnx", "-o", f"{tmp_path}/{{parent}}.onnx"]
    assert run([*args, "--report", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "seed0.onnx").is_file()
    assert "1 model in" in capsys.readouterr().out


def test_a_failed_parity_check_is_reported_and_writes_nothing(runs, tmp_path, monkeypatch):
    """A model whose check fails ends `failed`, without an artifact; the rest export."""
    real = policyport._export._parity

    def fail_seed1(traced, *args, **kwargs):
        report = real(traced, *args, **kwargs)
        seed1 = make_policy("Discrete", seed=1, **SMALL)
        failed = traced.description.weights_sha256 == trace(seed1).description.weights_sha256
        return dataclasses.replace(report, passed=report.passed and not failed)

    monkeypatch.setattr(policyport._export, "_parity", fail_seed1)
    results = policyport.export_many(sorted(runs.glob("*/seed*/policy.eqx")), "onnx")
    assert [(Path(r.model).parent.name, r.status) for r in results] == [
        ("seed0", "exported"),
        ("seed2", "exported"),
        ("seed1", "failed"),
    ]
    assert "does not compute what the JAX policy computes" in results[2].message
    assert results[2].parity and not results[2].parity[0]["passed"]
    assert _files(runs / "lr1" / "seed1") == ["policy.eqx"]


def test_all_exported_exits_0_and_existing_outputs_are_refused_per_model(runs, tmp_path, capsys):
    args = [str(runs / "lr0"), "--format", "onnx", "--report", str(tmp_path / "r.json")]
    assert run(args) == 0
    assert run(args) == EXIT_SOME_FAILED  # now the artifacts exist: refused without --force
    assert "already exists" in capsys.readouterr().out
    assert run([*args, "--force"]) == 0


def test_reference_compiled_per_architecture_is_bit_identical():
    """The reference with the weights as arguments (one compilation per architecture)
    computes exactly what a reference compiled with the weights inside computes."""
    for action in ACTION_SPACES:
        for seed in (0, 1):
            traced = trace(make_policy(action, seed=seed, **SMALL))
            inputs = sample_inputs(traced, seed=3, batch=256, all_false_rows=4)
            arrays = [jnp.asarray(inputs[n]) for n in traced.input_names]
            baked = jax.jit(jax.vmap(traced.forward))(*arrays)
            expected, margins = reference_and_margins(traced, inputs)
            for spec, value in zip(traced.outputs, baked, strict=True):
                assert np.array_equal(
                    np.asarray(value).astype(expected[spec.name].dtype), expected[spec.name]
                ), (action, seed, spec.name)
            if traced.margins is not None:
                baked_margins = jax.jit(jax.vmap(traced.margins))(*arrays)
                assert np.array_equal(np.asarray(baked_margins), margins)


def test_two_local_workers(runs, tmp_path):
    """Two spawned processes: same outcomes, same bytes as one process."""
    serial = policyport.export_many(runs, "onnx", tmp_path / "one" / "{relstem}.onnx")
    parallel = policyport.export_many(runs, "onnx", tmp_path / "two" / "{relstem}.onnx", workers=2)
    assert [(r.model, r.status) for r in serial] == [(r.model, r.status) for r in parallel]
    assert all(r.worker.endswith(f":{os.getpid()}") for r in serial)
    assert not any(r.worker.endswith(f":{os.getpid()}") for r in parallel)  # in the workers
    for s in SEEDS:
        rel = Path(f"lr{s % 2}") / f"seed{s}" / "policy.onnx"
        one, two = (tmp_path / "one" / rel).read_bytes(), (tmp_path / "two" / rel).read_bytes()
        assert one == two


def test_dask_local_cluster_with_two_workers(runs, tmp_path, capsys):
    """The same sweep on a Dask LocalCluster (2 worker processes), through the CLI."""
    distributed = pytest.importorskip("distributed", reason="the [test] extra installs it")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        report = tmp_path / "report.json"
        args = [str(runs), "--format", "onnx", "-o", f"{tmp_path}/out/{{relstem}}.onnx"]
        code = run([*args, "--dask", cluster.scheduler_address, "--report", str(report)])
    assert code == EXIT_SOME_FAILED
    data = json.loads(report.read_text())
    assert data["counts"] == {"exported": 3, "failed": 0, "refused": 1, "error": 0}
    assert data["workers"].startswith("dask tcp://")
    workers = {m["worker"] for m in data["models"]}
    assert workers and not any(w.endswith(f":{os.getpid()}") for w in workers)  # on the cluster
    for s in SEEDS:
        assert (tmp_path / "out" / f"lr{s % 2}" / f"seed{s}" / "policy.onnx").is_file()
    assert not (tmp_path / "out" / "lr1" / "broken").exists()


def test_one_compilation_per_architecture():
    """Checkpoints of one architecture share one compiled reference; another architecture
    gets its own."""
    from policyport.checks import _compiled

    def reference(seed: int, width: int) -> None:
        traced = trace(make_policy("Discrete", seed=seed, **{**SMALL, "feature_width": width}))
        reference_and_margins(traced, sample_inputs(traced, seed=0, batch=32))

    before = _compiled._compiled.cache_info()
    for seed in (10, 11, 12):
        reference(seed, width=12)
    after = _compiled._compiled.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
    traced = trace(make_policy("Discrete", seed=13, **{**SMALL, "feature_width": 12}))
    compiled = _compiled._compiled(_compiled._Architecture.of(traced), "outputs_and_margins")
    assert compiled._cache_size() == 1  # one XLA compilation served all three checkpoints
    reference(14, width=13)
    assert _compiled._compiled.cache_info().misses == after.misses + 1


def test_batched_trace_per_architecture_lowers_to_the_same_bytes():
    """The batched trace made once per architecture and filled with a checkpoint's weights
    lowers to the very ONNX bytes that tracing that checkpoint's batched function gives."""
    from policyport.formats._onnx_lowering import lower_function, lower_natively

    for action in ACTION_SPACES:
        for seed in (0, 1):  # the second one reuses the first one's batched trace
            traced = trace(make_policy(action, seed=seed, **SMALL))
            cached = lower_natively(traced, 21).SerializeToString()
            direct = lower_function(traced.batched, traced.inputs, traced.outputs, 21)
            assert cached == direct.SerializeToString(), (action, seed)


def test_export_many_takes_every_setting_by_keyword(monkeypatch, runs):
    """`export_many(**keywords)` and `export(**keywords)` take the same options: the fields
    of `ExportSettings`, one of which (`rollout_steps`) `export_many` once lacked."""
    planned = []
    monkeypatch.setattr(
        "policyport.sweep._run.run_jobs", lambda jobs, **_: planned.extend(jobs) or []
    )
    policyport.export_many(runs / "lr0", "ort", seed=3, rollout_steps=9, check_in=["tract"])
    expected = ExportSettings(format="ort", seed=3, rollout_steps=9, check_in=("tract",))
    assert [job.settings for job in planned] == [expected, expected]  # seed0, seed2
    with pytest.raises(TypeError, match=r"Unknown export option\(s\) rollout_step;"):
        policyport.export_many(runs / "lr0", rollout_step=9)


def test_a_job_is_plain_data_that_pickles():
    settings = ExportSettings(seed=3, check_in=("openvino",))
    job = SweepJob("/m/policy.eqx", None, "policy.eqx", settings, env="lerax.env:CartPole")
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'seed'"):
        settings.seed = 4  # type: ignore[misc]


def test_outputs_with_dotdot(runs, tmp_path, monkeypatch, capsys):
    """`-o ../out/{relstem}.onnx` from a subfolder: every model was an `error` (the output
    was compared with the staging folder unnormalised)."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    args = ["../runs/lr0", "--format", "onnx", "-o", "../out/{relstem}.onnx", "--report", "r.json"]
    assert run(args) == 0, capsys.readouterr()
    assert _files(tmp_path / "out") == [
        "seed0",
        "seed0/policy.onnx",
        "seed2",
        "seed2/policy.onnx",
    ]
    jobs = policyport.sweep._jobs.plan_jobs(
        ["../runs/lr0"], "../out/{relstem}.onnx", ExportSettings()
    )
    assert all(".." not in job.output.split(os.sep) for job in jobs)


def test_a_model_named_dots_is_refused_alone(runs, tmp_path, capsys):
    """`...eqx` has the stem `..`: `out/{stem}/x.onnx` would be `out/../x.onnx`. It aborted
    the whole sweep (FileExistsError, exit 3); now it is refused and the others export."""
    shutil.copy(runs / "lr0" / "seed0" / "policy.eqx", runs / "lr0" / "seed0" / "...eqx")
    out = tmp_path / "out"
    args = [str(runs / "lr0"), "--format", "onnx", "-o", f"{out}/{{parent}}/{{stem}}/x.onnx"]
    assert run([*args, "--report", str(tmp_path / "r.json")]) == EXIT_SOME_FAILED
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["counts"] == {"exported": 2, "failed": 0, "refused": 1, "error": 0}
    [refused] = [m for m in data["models"] if m["status"] == "refused"]
    assert refused["model"].endswith("...eqx") and "{stem} is '..'" in refused["message"]
    assert _files(out) == [
        "seed0",
        "seed0/policy",
        "seed0/policy/x.onnx",
        "seed2",
        "seed2/policy",
        "seed2/policy/x.onnx",
    ]
    assert not (tmp_path / "x.onnx").exists()


def test_an_output_folder_that_cannot_be_made_refuses_that_model_alone(runs, tmp_path):
    """A file where a template's folder goes refuses that model; the sweep goes on."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed0").write_text("a file, not a folder")
    results = policyport.export_many(
        runs / "lr0", format="onnx", output=f"{out}/{{parent}}/sub/{{stem}}.onnx"
    )
    status = {Path(r.model).parent.name: r.status for r in results}
    assert status == {"seed0": "refused", "seed2": "exported"}
    assert "Cannot create the output folder" in results[0].message


def test_a_folder_output_ending_in_slash_is_made(tmp_path, capsys):
    """`-o new/` over several models is a folder (docs/sweep.md); the slash was dropped
    and the sweep refused it as one file."""
    for name in ("a.eqx", "b.eqx"):
        make_policy("Discrete", **SMALL).serialize(tmp_path / name)
    models = [str(tmp_path / "a.eqx"), str(tmp_path / "b.eqx")]
    assert run([*models, "--format", "onnx", "-o", f"{tmp_path}/new/"]) == 0
    assert _files(tmp_path / "new") == ["a.onnx", "b.onnx"]


def test_globs_cut_symlink_loops(runs, tmp_path, monkeypatch, capsys):
    """`**` follows a symlink only into a folder not visited yet: one loop exported the
    same model 41 times, two loops never finished."""
    (runs / "lr0" / "seed0" / "up").symlink_to("../..")  # a loop
    (runs / "lr1" / "again").symlink_to("..")  # a second one
    (runs / "lr1" / "seed0-link").symlink_to("../lr0/seed0")  # a folder seen twice
    (tmp_path / "elsewhere" / "x").mkdir(parents=True)  # only reachable by a link
    shutil.copy(runs / "lr0" / "seed0" / "policy.eqx", tmp_path / "elsewhere" / "x")
    (runs / "lr1" / "outside").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)

    def hang(*_):
        raise TimeoutError("the glob did not finish in 20 s")

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        found = policyport.sweep._paths.expand_models(["runs/**/policy.eqx"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert [str(p) for p in found] == [
        "runs/lr0/seed0/policy.eqx",
        "runs/lr0/seed2/policy.eqx",
        "runs/lr1/broken/policy.eqx",
        "runs/lr1/outside/x/policy.eqx",
        "runs/lr1/seed1/policy.eqx",
    ]
    assert run(["runs/**/policy.eqx", "--format", "onnx", "--no-check"]) == EXIT_SOME_FAILED
    assert "5 models" in capsys.readouterr().out


def test_more_workers_than_models(runs, tmp_path, capsys):
    """`--workers 10**23` is as many processes as models (a pool that large overflowed a
    C int: exit 3); `--workers 0` is refused (it was taken as 1)."""
    models = [str(runs / "lr0" / "seed0" / "policy.eqx"), "--format", "onnx", "--no-check"]
    assert run([*models, "--workers", str(10**23)]) == 0
    assert "workers: 1 local" in capsys.readouterr().err
    assert run([*models, "--force", "--workers", "0"]) == 2
    assert "--workers must be at least 1, found 0" in capsys.readouterr().err

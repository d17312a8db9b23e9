"""More runtimes for ONNX artifacts: OpenVINO, tract, ONNX's ReferenceEvaluator and
onnxruntime 1.20 (own folder, own process), and `--check-in`.

The matrix is every registered runtime that reads ONNX x the four action spaces, masked
where the space allows it; a runtime registered later is in it automatically.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import policyport
from conftest import ACTION_SPACES, MASKABLE, make_policy
from policyport import InputError, ParityError
from policyport._cli import run as cli
from policyport._errors import MissingDependencyError
from policyport.formats import RUNTIMES
from policyport.formats._onnx import load_onnxruntime
from policyport.formats._runtime_io import missing_package

ONNX_RUNTIMES = [name for name, r in RUNTIMES.items() if "onnx" in r.formats]
# Parity at a smaller large batch than an export's 4096: the ReferenceEvaluator is numpy
# op by op, and the rows compared are the same kind either way.
BATCHES = (1, 512)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, tuple[object, object]]:
    """Each action space's policy and its ONNX artifact (written unchecked: the matrix
    checks it in every runtime, onnxruntime 1.32 included)."""
    folder = tmp_path_factory.mktemp("runtimes")
    made = {}
    for space in ACTION_SPACES:
        # One trace per policy, shared by every check: its compiled JAX reference is cached.
        policy = policyport.trace(make_policy(space, seed=3))
        [result] = policyport.export(policy, "onnx", folder / f"{space}.onnx", check=False)
        made[space] = policy, result.paths[0]
    return made


def test_the_matrix_holds_every_onnx_runtime():
    assert {"onnxruntime", "openvino", "tract", "onnx-reference", "onnxruntime-1.20"} <= set(
        ONNX_RUNTIMES
    )


@pytest.mark.parametrize("space", list(ACTION_SPACES))
@pytest.mark.parametrize("runtime", ONNX_RUNTIMES)
def test_every_runtime_matches_jax_for_every_action_space(artifacts, runtime, space):
    policy, path = artifacts[space]
    report = policyport.check(policy, path, runtime=runtime, batch_sizes=BATCHES)
    assert report.passed, report.to_table()
    assert report.runtime.split()[0] == RUNTIMES[runtime].version().split()[0]
    action = next(o for o in report.outputs if o.name == "action")
    if space in MASKABLE:  # masked: the artifact takes the mask and never picks a masked action
        assert policy.description.mask_input
        assert action.illegal_actions == 0 and action.mismatched_rows == 0
    else:
        assert action.max_abs_diff <= 1e-5  # the contract's continuous tolerance


@pytest.fixture(scope="module")
def sample_entries(tmp_path_factory) -> dict[str, tuple[object, object]]:
    """Each action space's sampling trace and its sample entry (`<stem>.sample.onnx`),
    written unchecked like `artifacts`."""
    folder = tmp_path_factory.mktemp("sample_entries")
    made = {}
    for space in ACTION_SPACES:
        policy = policyport.trace(make_policy(space, seed=3), sample=True)
        results = policyport.export(policy, "onnx", folder / f"{space}.onnx", check=False)
        [sample] = [r for r in results if r.entry == "sample"]
        made[space] = policy, sample.paths[0]
    return made


@pytest.mark.parametrize("space", list(ACTION_SPACES))
@pytest.mark.parametrize("runtime", ONNX_RUNTIMES)
def test_every_runtime_samples_as_jax_for_every_action_space(sample_entries, runtime, space):
    """The sample entry in every runtime: `sampled_action` and `log_prob` for each row's
    own key's noise, as the parity check compares them in onnxruntime."""
    policy, path = sample_entries[space]
    report = policyport.check(policy, path, runtime=runtime, batch_sizes=BATCHES)
    assert report.passed, report.to_table()
    sampled = next(o for o in report.outputs if o.name == "sampled_action")
    assert sampled.illegal_actions in (0, None) and sampled.passed


@pytest.mark.parametrize("space", list(ACTION_SPACES))
def test_the_sample_entry_has_no_int64_cast(sample_entries, space):
    """tract types `Cast(to=INT64)` as a symbolic dim and cannot return it: the sampled
    action, an int32 `Where` (all-masked rows take 0) widened at the end, goes through
    `CastLike` instead (it failed in tract before, 2026-12-03)."""
    _, path = sample_entries[space]
    casts = [n for n in onnx.load(path).graph.node if n.op_type == "Cast"]
    assert all(a.i != TensorProto.INT64 for n in casts for a in n.attribute if a.name == "to")


@pytest.mark.parametrize("space", ["MultiDiscrete", "MultiBinary"])
def test_integer_actions_end_without_an_int64_cast(artifacts, space):
    """tract types `Cast(to=INT64)` as a symbolic dim and cannot return it (issue 17):
    MultiDiscrete's action is ArgMax's own int64, MultiBinary's a CastLike (opset 15+)."""
    _, path = artifacts[space]
    graph = onnx.load(path).graph
    producer = next(n for n in graph.node if "action" in n.output)
    assert producer.op_type == {"MultiDiscrete": "Concat", "MultiBinary": "CastLike"}[space]
    casts = [n for n in graph.node if n.op_type == "Cast"]
    assert all(a.i != TensorProto.INT64 for n in casts for a in n.attribute if a.name == "to")
    assert all(a.i != TensorProto.INT32 for n in casts for a in n.attribute if a.name == "to")


def test_openvino_is_compiled_with_f32_precision(artifacts):
    import openvino as ov

    from policyport.formats._openvino import CPU_CONFIG

    _, path = artifacts["Discrete"]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", CPU_CONFIG)
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_onnxruntime_1_20_runs_in_its_own_process(artifacts):
    import onnxruntime

    _, path = artifacts["Discrete"]
    run = RUNTIMES["onnxruntime-1.20"].load(path)
    rows = np.zeros((3, 6), np.float32), np.ones((3, 5), bool)
    got = run({"observation": rows[0], "action_mask": rows[1]})
    assert onnxruntime.__version__ != "1.20.1"  # this process kept its own onnxruntime
    assert got["action"].dtype == np.int64 and got["action"].shape == (3,)
    want = load_onnxruntime(path)({"observation": rows[0], "action_mask": rows[1]})
    np.testing.assert_array_equal(got["action"], want["action"])


def test_a_missing_legacy_onnxruntime_says_how_to_install_it(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    policy, path = artifacts["Discrete"]
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps --target .*1\.20\.1"):
        policyport.check(policy, path, runtime="onnxruntime-1.20")


def test_a_missing_package_names_the_extra():
    message = missing_package("policyport_no_such_module", "openvino", "openvino")
    assert message is not None and "pip install 'policyport[openvino]'" in message
    assert missing_package("numpy", "x", "x") is None


# ---------------------------------------------------------------- --check-in


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.eqx"
    make_policy("MultiDiscrete", seed=4).serialize(path)
    return path


def test_check_in_runs_one_report_per_runtime(model_file, tmp_path, capsys):
    out = tmp_path / "p.onnx"
    assert (
        cli([str(model_file), "--format", "onnx", "-o", str(out), "--check-in", "openvino,tract"])
        == 0
    )
    printed, err = capsys.readouterr()
    for runtime in ("onnxruntime 1.32", "openvino", "tract"):
        assert f"runtime {runtime}" in printed
    assert printed.count("Parity PASS") == 3
    assert "onnx: check in openvino" in err and "onnx: check in tract" in err
    assert out.is_file()


def test_check_in_refuses_an_unknown_runtime(model_file, tmp_path, capsys):
    out = tmp_path / "p.onnx"
    assert cli([str(model_file), "--format", "onnx", "-o", str(out), "--check-in", "tvm"]) == 2
    assert "Unknown runtime 'tvm' in --check-in" in capsys.readouterr().err
    assert not out.exists()


def test_check_in_refuses_a_runtime_that_is_not_installed(
    model_file, tmp_path, capsys, monkeypatch
):
    gone = dataclasses.replace(
        RUNTIMES["openvino"],
        missing=lambda: missing_package("no_such_module", "openvino", "openvino"),
    )
    monkeypatch.setitem(RUNTIMES, "openvino", gone)
    out = tmp_path / "p.onnx"
    assert cli([str(model_file), "--format", "onnx", "-o", str(out), "--check-in", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "--check-in openvino" in err and "pip install 'policyport[openvino]'" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_check_in_refuses_a_runtime_that_cannot_open_the_format():
    with pytest.raises(InputError, match="runtime 'tract' cannot open savedmodel artifacts"):
        policyport.export(make_policy("Discrete"), "savedmodel", "p.savedmodel", check_in=["tract"])
    with pytest.raises(InputError, match="drop --no-check"):
        policyport.export(
            make_policy("Discrete"), "onnx", "p.onnx", check=False, check_in=["tract"]
        )


def test_a_runtime_that_disagrees_fails_the_export_and_writes_nothing(tmp_path, monkeypatch):
    def load_skewed(path):
        run = load_onnxruntime(path)

        def skewed(inputs):
            outputs = run(inputs)
            return {**outputs, "value": outputs["value"] + 1e-3}

        return skewed

    skewed = dataclasses.replace(RUNTIMES["onnx-reference"], name="skewed", load=load_skewed)
    monkeypatch.setitem(RUNTIMES, "skewed", skewed)
    out = tmp_path / "p.onnx"
    with pytest.raises(ParityError, match="when run in skewed") as failure:
        policyport.export(make_policy("Discrete"), "onnx", out, check_in=["skewed"])
    value = next(o for o in failure.value.report.outputs if o.name == "value")
    assert not value.passed and value.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert not list(tmp_path.iterdir())


def test_the_reference_evaluator_reads_an_int64_where():
    """The MultiBinary rewrite's Where of int64 constants, evaluated by the standard's
    reference: it is the operator's defined meaning, not a runtime's quirk."""
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(
        [helper.make_node("Where", ["b", "one", "zero"], ["y"])],
        "g",
        [helper.make_tensor_value_info("b", TensorProto.BOOL, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [None, 2])],
        [
            onnx.numpy_helper.from_array(np.array(1, np.int64), "one"),
            onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (y,) = ReferenceEvaluator(model).run(None, {"b": np.array([[True, False]])})
    assert y.dtype == np.int64 and y.tolist() == [[1, 0]]


def test_multibinary_below_opset_15_reaches_tract_through_where(artifacts, tmp_path):
    """No CastLike before opset 15: the bits become int64 through Where, which tract reads."""
    policy, _ = artifacts["MultiBinary"]
    [result] = policyport.export(policy, "onnx", tmp_path / "p.onnx", opset=13, check=False)
    producer = next(n for n in onnx.load(result.paths[0]).graph.node if "action" in n.output)
    assert producer.op_type == "Where"
    report = policyport.check(policy, result.paths[0], runtime="tract", batch_sizes=BATCHES)
    assert report.passed, report.to_table()

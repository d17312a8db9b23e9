"""`--opset` from 13, and `--target` profiles: each a set of ONNX choices, checked in the
runtimes installable here. The matrix of profiles comes from `TARGETS`."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

import policyport
from conftest import make_policy
from policyport import InputError, ParityError, UnsupportedError
from policyport._cli import run as cli
from policyport.formats import MAX_OPSET, MIN_OPSET, RUNTIMES, TARGET_KEY, TARGETS
from policyport.formats import _onnx as onnx_format
from policyport.formats._onnx_builder import NotLowerable
from policyport.formats._targets import SENTIS_OPS, check_ops

OPSETS = (13, 15, 17, 21, MAX_OPSET)
# onnxruntime 1.20.1 reads IR <= 10 (opset <= 21, measured): opset 26 (IR 13) it refuses.
LEGACY_MAX_OPSET = 21
BATCHES = (1, 512)


@pytest.fixture(scope="module")
def policy():
    # Masked, the most ops of the four spaces; traced once so that every check below
    # reuses one compiled JAX reference.
    return policyport.trace(make_policy("MultiDiscrete", seed=5))


def test_opsets_start_at_13():
    assert MIN_OPSET == 13 and OPSETS[0] == MIN_OPSET


@pytest.mark.parametrize("opset", OPSETS)
def test_each_opset_runs_in_onnxruntime_1_20_and_1_32(policy, tmp_path, opset):
    [result] = policyport.export(policy, "onnx", tmp_path / "p.onnx", opset=opset, check=False)
    model = onnx.load(result.paths[0])
    assert model.opset_import[0].version == opset
    assert model.ir_version == helper.find_min_ir_version_for(list(model.opset_import))
    report = policyport.check(policy, result.paths[0], batch_sizes=BATCHES)
    assert report.passed, report.to_table()
    if opset <= LEGACY_MAX_OPSET:
        legacy = policyport.check(
            policy, result.paths[0], runtime="onnxruntime-1.20", batch_sizes=BATCHES
        )
        assert legacy.passed, legacy.to_table()
    else:
        with pytest.raises(ParityError, match=r"fails to load in onnxruntime-1\.20"):
            policyport.check(policy, result.paths[0], runtime="onnxruntime-1.20")


def test_below_opset_18_a_policy_needing_jax2onnx_is_refused_with_why(policy, monkeypatch):
    def refuse(traced, opset):
        raise NotLowerable("primitive 'erf'")

    monkeypatch.setattr(onnx_format, "lower_natively", refuse)
    with pytest.raises(UnsupportedError, match=r"lacks primitive 'erf'.*jax2onnx.*--opset 18"):
        onnx_format.lower_to_onnx(policyport.trace(policy), opset=15)


def test_an_opset_below_13_is_refused(policy, tmp_path):
    with pytest.raises(InputError, match=r"choose 13\.\.26"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", opset=12)


# ---------------------------------------------------------------- --target


@pytest.fixture(scope="module")
def targeted(policy, tmp_path_factory) -> dict[str, tuple[onnx.ModelProto, object]]:
    """Every target's artifact of the masked MultiDiscrete policy, exported with its check
    and its runtimes' checks (the export raises if any fails)."""
    folder = tmp_path_factory.mktemp("targets")
    made = {}
    for name in TARGETS:
        [result] = policyport.export(policy, "onnx", folder / f"{name}.onnx", target=name)
        made[name] = onnx.load(result.paths[0]), result
    return made


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_writes_its_choices_and_passes_in_its_runtimes(targeted, name):
    model, result = targeted[name]
    target = TARGETS[name]
    assert result.report.passed
    assert model.opset_import[0].version == target.opset
    assert {p.key: p.value for p in model.metadata_props}[TARGET_KEY] == name
    installed = [r for r in target.check_in if RUNTIMES[r].missing() is None]
    assert [r.runtime.split()[0] for r in result.check_in] == [
        RUNTIMES[r].version().split()[0] for r in installed
    ]
    assert all(r.passed for r in result.check_in)
    batch = [v.type.tensor_type.shape.dim[0] for v in (*model.graph.input, *model.graph.output)]
    if target.fixed_batch is None:
        assert all(d.dim_param == "batch" for d in batch)
    else:
        assert all(d.dim_value == target.fixed_batch for d in batch)
    if target.ops is not None:
        assert {n.op_type for n in model.graph.node} <= target.ops


def test_the_runtimes_of_tract_openvino_and_sentis_are_installed_here():
    # The test install (extras openvino, tract; scripts/test-deps) must check them for real.
    for name in ("tract", "openvino", "sentis"):
        assert all(RUNTIMES[r].missing() is None for r in TARGETS[name].check_in), name


def _nnapi(model: onnx.ModelProto):
    from onnxruntime.tools.mobile_helpers.usability_checker import check_nnapi_partitions

    return check_nnapi_partitions(onnx.shape_inference.infer_shapes(model), True)


def test_mobile_gives_nnapi_the_graph_that_the_default_keeps_from_it(targeted):
    """onnxruntime's usability checker: NNAPI takes no node of a dynamic-batch graph."""
    dynamic, fixed = _nnapi(targeted["onnxruntime"][0]), _nnapi(targeted["mobile"][0])
    assert dynamic.num_supported_nodes == 0
    assert dynamic.nodes_unsupported_due_to_dynamic_input == dynamic.num_nodes
    assert fixed.nodes_unsupported_due_to_dynamic_input == 0
    # MultiDiscrete: only its three ArgMax nodes are outside NNAPI's operator list.
    assert fixed.num_supported_nodes == fixed.num_nodes - 3, fixed.unsupported_ops
    assert fixed.unsupported_ops == {"ai.onnx:ArgMax"}


def test_a_fixed_batch_artifact_is_rechecked_row_by_row(policy, targeted):
    _, result = targeted["mobile"]
    report = policyport.check(policy, result.paths[0], batch_sizes=(1, 64))
    assert report.passed and report.batch_sizes == [1, 64]


def test_sentis_refuses_an_operator_it_does_not_list():
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,ij->i")],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(graph)
    assert "Einsum" not in SENTIS_OPS
    with pytest.raises(InputError, match="--target sentis: the graph uses Einsum"):
        check_ops(model, TARGETS["sentis"])
    # The same graph as a sample entry (a `noise` input): the message names --sample.
    noise = helper.make_tensor_value_info("noise", onnx.TensorProto.FLOAT, ["batch", 2])
    graph.input.append(noise)
    with pytest.raises(InputError, match=r"the sample entry \(--sample\) uses Einsum.*without"):
        check_ops(helper.make_model(graph), TARGETS["sentis"])


def test_target_errors(policy, tmp_path, capsys):
    with pytest.raises(InputError, match="above what --target sentis reads"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", target="sentis", opset=16)
    with pytest.raises(
        InputError, match="--target tract applies to onnx and ort artifacts, not savedmodel"
    ):
        policyport.export(policy, "savedmodel", tmp_path / "p.savedmodel", target="tract")
    with pytest.raises(InputError, match="Unknown target 'unity'"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", target="unity")
    model = tmp_path / "m.eqx"
    make_policy("MultiDiscrete", seed=5).serialize(model)
    with pytest.raises(SystemExit) as usage:
        cli([str(model), "--format", "onnx", "--target", "unity"])
    assert usage.value.code == 2
    assert "invalid choice: 'unity'" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))


def test_a_target_without_the_check_writes_its_choices(policy, tmp_path):
    [result] = policyport.export(policy, "onnx", tmp_path / "p.onnx", target="tract", check=False)
    assert result.report is None and result.check_in == ()
    model = onnx.load(result.paths[0])
    assert {p.key: p.value for p in model.metadata_props}[TARGET_KEY] == "tract"

"""Pixel policies: integer (uint8) Box observations end to end, and convolutions lowered
natively (one NatureCNN export; the emitters themselves are held to JAX in test_lowering)."""

from __future__ import annotations

import json
from collections import Counter

import gymnasium
import gymnax.environments.spaces as gymnax_spaces
import jax
import numpy as np
import onnx
import pytest

import policyport
from pixel_policies import equinox_conv_pool, frames, nature_cnn
from policyport import InputError
from policyport.checks._inputs import batch_sizes_for
from policyport.checks._stress import stress_inputs
from policyport.formats import FORMATS
from policyport.formats._onnx import lowering_of
from policyport.policy import Box, Discrete, MLPActorCriticPolicy, SpacesEnv, as_space
from policyport.policy._spaces import space_from_json
from policyport.tracing import trace


def test_an_integer_box_holds_its_type_and_integers():
    space = Box(-1.5, 300, (4, 3, 2), dtype=np.uint8)  # bounds rounded inwards, clipped
    assert space.dtype == "uint8" and space.low.dtype == np.uint8
    assert int(space.low.min()) == 0 and int(space.high.max()) == 255
    drawn = space.sample_numpy(np.random.default_rng(0), 512)
    assert drawn.dtype == np.uint8 and drawn.shape == (512, 4, 3, 2)
    assert drawn.min() == 0 and drawn.max() == 255  # both bounds reached
    sample = space.sample(key=jax.random.key(0))
    assert sample.dtype == np.uint8 and space.contains(sample)
    assert not space.contains(np.full((4, 3, 2), 0.5))
    assert Box(0, 255, (2,), dtype=np.uint8) != Box(0.0, 255.0, (2,))


def test_an_int32_box_over_its_whole_range_samples_across_it():
    """`high + 1` overflows int32 at the type's maximum (an unbounded int32 Box): draws
    still spread over the range, never stuck at the low bound."""
    for box in (
        Box(-np.inf, np.inf, (64,), dtype=np.int32),
        Box(0, 2**31 - 1, (64,), dtype=np.int32),
    ):
        drawn = np.asarray(box.sample(key=jax.random.key(0)))
        assert drawn.dtype == np.int32 and len(np.unique(drawn)) > 32
        assert (drawn >= np.asarray(box.low)).all() and (drawn <= np.asarray(box.high)).all()


def test_descriptions_carry_the_dtype_and_old_ones_read_as_float32():
    space = frames((3, 3, 1))
    described = space.to_json()
    assert described["dtype"] == "uint8"
    assert space_from_json(json.loads(json.dumps(described))) == space
    vector = Box(-np.ones(3, np.float32), np.ones(3, np.float32))
    assert "dtype" not in vector.to_json()  # float32 descriptions as before the field
    assert space_from_json(vector.to_json()) == vector
    with pytest.raises(InputError, match=r"Box dtype float64 is not supported: use one of"):
        Box(0, 1, (2,), dtype=np.float64)


def test_other_libraries_boxes_keep_their_integer_type():
    gym = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    assert as_space(gym) == frames((8, 8, 3))
    wide = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)  # read as JAX does: float32
    assert as_space(wide).dtype == "float32"
    assert as_space(gymnax_spaces.Box(0, 255, (4, 4), np.uint8)).dtype == "uint8"


def test_a_policy_file_keeps_a_uint8_observation_space(tmp_path):
    env = SpacesEnv(frames((6, 6, 2)), Discrete(3))
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
    policy.serialize(tmp_path / "policy.eqx")
    loaded = MLPActorCriticPolicy.deserialize(tmp_path / "policy.eqx")
    assert loaded.observation_space == frames((6, 6, 2))


def test_the_artifact_takes_uint8_and_declares_contract_5(tmp_path):
    policy = nature_cnn((36, 36, 2), actions=4)
    traced = trace(policy)
    assert [(s.name, s.dtype) for s in traced.inputs] == [("observation", "uint8")]
    stress = stress_inputs(traced, seed=0)["observation"]
    # The stress rows: frames at the bounds (all 0, all 255), then mixed with ordinary ones.
    assert stress.dtype == np.uint8 and (stress[0] == 0).all()
    assert (stress[len(stress) // 4] == 255).all()
    [result] = policyport.export(policy, "onnx", tmp_path / "cnn.onnx")
    assert result.report.passed
    model = onnx.load(tmp_path / "cnn.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["policyport.contract_version"] == "5"
    assert json.loads(meta["policyport.observation_space"])["dtype"] == "uint8"
    assert lowering_of(model) == "policyport"
    ops = Counter(n.op_type for n in model.graph.node)
    # NHWC frames: one Transpose (to NCHW, at the input); the flatten before the dense
    # layer is folded into the dense weights.
    assert ops["Transpose"] == 1 and ops["Conv"] == 3 and "Gather" not in ops


def test_an_equinox_conv_and_max_pool_policy_exports_natively(tmp_path):
    [result] = policyport.export(equinox_conv_pool(), "onnx", tmp_path / "pool.onnx")
    assert result.report.passed
    model = onnx.load(tmp_path / "pool.onnx")
    ops = Counter(n.op_type for n in model.graph.node)
    assert lowering_of(model) == "policyport"
    assert ops["MaxPool"] == 1 and ops["Conv"] == 2 and "Transpose" not in ops  # CHW as is


def test_parity_batches_shrink_for_frames_and_keep_batch_one():
    assert batch_sizes_for(trace(nature_cnn())) == (1, 256)  # 28,224 bytes a frame
    assert batch_sizes_for(trace(equinox_conv_pool())) == (1, 4096)  # 2 KiB a frame
    assert len(stress_inputs(trace(nature_cnn()), seed=0)["observation"]) == 64


def test_a_nature_cnn_exports_to_every_format_with_parity(tmp_path):
    results = policyport.export(nature_cnn(), "all", tmp_path / "cnn.onnx")
    assert results and all(r.report.passed for r in results), [
        (r.format, r.report.passed) for r in results
    ]
    assert all(r.report.batch_sizes == [1, 256] for r in results)


def test_an_equinox_conv_and_max_pool_policy_exports_to_every_format(tmp_path):
    results = policyport.export(equinox_conv_pool(), "all", tmp_path / "pool.onnx")
    assert {r.format for r in results} == set(FORMATS)
    assert all(r.report.passed for r in results), [(r.format, r.report.passed) for r in results]


def test_an_export_prints_no_library_lines(tmp_path, capfd):
    # A transposed convolution (lhs_dilation): policyport's lowering leaves it to jax2onnx,
    # whose onnx-ir logs a WARNING per untyped constant: none reaches the terminal.
    kernel = np.asarray(jax.random.normal(jax.random.key(0), (3, 3, 2, 4)), np.float32)

    def act(x):
        y = jax.lax.conv_general_dilated(
            x[None], kernel, (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip
        return jax.numpy.argmax(y.reshape(-1)[:5])

    space = Box(np.zeros((8, 8, 2), np.float32), np.ones((8, 8, 2), np.float32))
    policy = policyport.from_function(act, observation_space=space, action_space=Discrete(5))
    capfd.readouterr()
    [result] = policyport.export(policy, "onnx", tmp_path / "fallback.onnx")
    assert result.report.passed
    assert lowering_of(onnx.load(tmp_path / "fallback.onnx")).startswith("jax2onnx")
    out, err = capfd.readouterr()
    assert out == "" and err == ""

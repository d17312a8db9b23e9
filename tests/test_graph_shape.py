"""The exported ONNX graph's shape, pinned: a regression shows here without any timing."""

from __future__ import annotations

from collections import Counter

import equinox as eqx
import jax
import numpy as np
import onnx
import pytest

import policyport
from conftest import make_policy
from policyport import trace
from policyport.formats._onnx import lower_to_onnx

# Default architecture: encoder 3 layers, value head 3, action head 1 hidden layer plus
# the distribution layer, which the optimiser folds into the layer before it (-1 Gemm).
# Relu after every hidden layer: encoder 2, value head 2, action head 1. A categorical mask
# is applied arithmetically before ArgMax or Sigmoid (Cast, Mul, Add, Clip, Add), not Where.
EXPECTED_OPS = {
    "Box": {"Gemm": 8, "Relu": 5, "Squeeze": 1},
    "Discrete": {
        "Gemm": 8,
        "Relu": 5,
        "Cast": 1,
        "Mul": 1,
        "Add": 2,
        "Clip": 1,
        "ArgMax": 1,
        "Squeeze": 1,
    },
    "MultiDiscrete": {
        "Gemm": 8,
        "Relu": 5,
        "Split": 2,
        "Cast": 3,  # the masks' only: the actions stay ArgMax's int64 (tract, issue 17)
        "Mul": 3,
        "Add": 6,
        "Clip": 3,
        "ArgMax": 3,
        "Unsqueeze": 3,
        "Concat": 1,
        "Squeeze": 1,
    },
    "MultiBinary": {
        "Gemm": 8,
        "Relu": 5,
        "Mul": 1,
        "Add": 2,
        "Clip": 1,
        "Sigmoid": 1,
        "Greater": 1,
        "Cast": 1,  # the mask's; the bits become int64 through CastLike (tract, issue 17)
        "CastLike": 1,
        "Squeeze": 1,
    },
}


@pytest.mark.parametrize("action", list(EXPECTED_OPS))
def test_default_policy_graph(action):
    model = lower_to_onnx(trace(make_policy(action)), opset=21)
    ops = Counter(node.op_type for node in model.graph.node)
    assert dict(ops) == EXPECTED_OPS[action]
    assert model.doc_string == "lowered by policyport"
    used = {name for node in model.graph.node for name in node.input}
    assert all(init.name in used for init in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs == {"transB": 1} and len(node.input) == 3  # bias fused in


@pytest.mark.parametrize("depth", [1, 3])
def test_gemm_count_follows_the_architecture(depth):
    policy = make_policy("Discrete", feature_depth=depth, value_depth=depth, action_depth=depth)
    model = lower_to_onnx(trace(policy), opset=21)
    ops = Counter(node.op_type for node in model.graph.node)
    # Layers: encoder depth+1, value head depth+1, action head max(depth-1,0)+1 plus the
    # distribution layer, folded into the action head's last layer.
    assert ops["Gemm"] == (depth + 1) + (depth + 1) + max(depth - 1, 0) + 1
    assert ops["Relu"] == depth + depth + max(depth - 1, 0)
    assert "Transpose" not in ops


def test_primitives_outside_our_lowering_go_through_jax2onnx(tmp_path):
    # An encoder with an exact GELU uses `erf`, which only jax2onnx lowers.
    policy = make_policy("Discrete")
    gelu = eqx.nn.Lambda(lambda x: jax.nn.gelu(x, approximate=False))
    policy = eqx.tree_at(lambda p: p.encoder.activation, policy, gelu.fn)
    model = lower_to_onnx(trace(policy), opset=21)
    assert model.doc_string.startswith("lowered by jax2onnx")
    assert "erf" in model.doc_string
    ops = Counter(node.op_type for node in model.graph.node)
    assert "Transpose" not in ops and ops["Gemm"] == 8
    [result] = policyport.export(policy, "onnx", tmp_path / "gelu.onnx")
    assert result.report.passed


@pytest.mark.parametrize("action", ["Discrete", "MultiDiscrete", "MultiBinary"])
def test_masks_hold_for_huge_and_infinite_logits(action):
    # The arithmetic mask must keep masked actions out even when logits are enormous or
    # infinite (observations up to 1e38 overflow the float32 layers to +-inf).
    import numpy as np
    import onnxruntime as ort

    policy = make_policy(action, seed=4)
    model = lower_to_onnx(trace(policy), opset=21)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = 4000
    scale = 10.0 ** rng.integers(0, 39, size=(rows, 1))
    observation = (rng.normal(size=(rows, 6)) * scale).astype(np.float32)
    mask = policy.action_space.random_masks(rng, rows)
    (chosen,) = session.run(["action"], {"observation": observation, "action_mask": mask})
    chosen = chosen.reshape(rows, -1)
    if action == "MultiBinary":
        assert not np.any((chosen != 0) & ~mask)
    else:
        nvec = [5] if action == "Discrete" else [3, 4, 2]
        offsets = np.cumsum([0, *nvec[:-1]])
        assert mask[np.arange(rows)[:, None], offsets + chosen].all()


@pytest.mark.parametrize("masked", [True, False])
def test_lerax_objects_argmax_raw_logits(masked):
    """lerax's categorical mode is argmax(log_softmax(where(mask, log_softmax(x), -inf))):
    the graph drops both log-softmaxes (per-row shifts keep the argmax) and keeps the
    arithmetic mask. Parity of the result is checked in tests/test_lerax_classes.py."""
    import lerax.env
    import lerax.policy

    policy = lerax.policy.MLPActorCriticPolicy(lerax.env.CartPole(), key=jax.random.key(0))
    model = lower_to_onnx(trace(policy), opset=21)
    ops = Counter(node.op_type for node in model.graph.node)
    assert not {"Exp", "Log", "ReduceSum", "ReduceMax", "Where"} & set(ops), ops
    assert ops["ArgMax"] == 1 and ops["Gemm"] == 8
    observation = np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32) * 3
    mask = np.random.default_rng(1).random((512, 2)) < 0.7
    mask[:, 0] |= ~mask.any(axis=1)
    inputs = {"observation": observation, "action_mask": mask if masked else np.ones_like(mask)}
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (chosen,) = session.run(["action"], inputs)
    expected = jax.vmap(lambda o, m: policy(None, o, action_mask=m)[1])(
        inputs["observation"], inputs["action_mask"]
    )
    np.testing.assert_array_equal(chosen, np.asarray(expected))

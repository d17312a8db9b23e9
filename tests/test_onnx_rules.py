"""Every ONNX graph rule (`formats/_onnx_optimize.RULES`) earns its place: it fires on a
graph we ship, or the rule is dead weight. The graphs: every kind of `tests/kinds.py`, the
sampling entries of the four action spaces, lerax's own policy (its log-softmax argmax),
a policy only jax2onnx lowers (its Transpose-wrapped layers) and equinox GRU and LSTM
cells (their gate matmuls batched as `[gates, batch]`)."""

from __future__ import annotations

import logging
from collections import Counter

import equinox as eqx
import jax
import pytest

from conftest import ACTION_SPACES, make_policy
from kinds import KINDS
from policyport.formats import _onnx_optimize
from policyport.formats._onnx import lower_to_onnx
from policyport.tracing import trace
from recurrent_policies import GRUPolicy, LSTMPolicy, box_env, discrete_env

SMALL = {"feature_width": 16, "value_width": 16, "action_width": 16}


def _gelu_policy():
    """An exact GELU uses `erf`, which only jax2onnx lowers: the fallback graph."""
    policy = make_policy("Discrete", **SMALL)
    gelu = eqx.nn.Lambda(lambda x: jax.nn.gelu(x, approximate=False))
    return eqx.tree_at(lambda p: p.encoder.activation, policy, gelu.fn)


def _lerax_policy():
    import lerax.env
    import lerax.policy

    return lerax.policy.MLPActorCriticPolicy(lerax.env.CartPole(), key=jax.random.key(0))


def _traces():
    for name, make in KINDS.items():
        yield name, trace(make(0))
    for action in ACTION_SPACES:
        yield f"sample {action}", trace(make_policy(action, **SMALL), sample=True)
    yield "lerax CartPole", trace(_lerax_policy())
    yield "jax2onnx fallback", trace(_gelu_policy())
    yield "equinox GRU", trace(GRUPolicy(discrete_env(), key=jax.random.key(0)))
    yield "equinox LSTM", trace(LSTMPolicy(box_env(), key=jax.random.key(0)))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fired() -> dict[str, Counter[str]]:
    """graph name -> how often each rule fired while optimizing it (from the log)."""
    logger = logging.getLogger(_onnx_optimize.__name__)
    handler = _Records()
    records = handler.records
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    counts = {}
    try:
        for name, traced in _traces():
            records.clear()
            lower_to_onnx(traced, opset=21)
            [record] = [r for r in records if hasattr(r, "rules_fired")]
            counts[name] = Counter(record.rules_fired)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return counts


def test_every_rule_fires_on_a_shipped_graph(fired):
    never = [
        rule.__name__
        for rule in _onnx_optimize.RULES
        if not any(counts[rule.__name__] for counts in fired.values())
    ]
    assert not never, f"rules that fire on no shipped graph (delete or test them): {never}"


def test_the_firing_record_names_only_rules(fired):
    names = {rule.__name__ for rule in _onnx_optimize.RULES}
    assert all(set(counts) <= names for counts in fired.values())
    # The plain actor-critic is the common case: its bias Adds all go into the Gemms.
    assert fired["actor_critic_discrete"]["_bias_into_gemm"] > 0


def test_outputs_computing_the_same_tensor_keep_their_names():
    """onnx-ir's CSE merges two outputs that compute the same thing (and its identity pass
    would then rename one to the other): each contract output keeps its own name."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in "abc"]
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Relu", ["x"], ["b"]),
        helper.make_node("Identity", ["a"], ["c"]),
    ]
    graph = helper.make_graph(nodes, "same", [x], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    optimized = _onnx_optimize.optimize(onnx.ModelProto.FromString(model.SerializeToString()))
    onnx.checker.check_model(optimized, full_check=True)
    assert [o.name for o in optimized.graph.output] == ["a", "b", "c"]
    assert [n.op_type for n in optimized.graph.node].count("Relu") == 1
    rows = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    session = ort.InferenceSession(
        optimized.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for got in session.run(["a", "b", "c"], {"x": rows}):
        np.testing.assert_array_equal(got, np.maximum(rows, 0))

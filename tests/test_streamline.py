"""The sample entry's jaxpr rewrites (tracing/_streamline.py): each fires, the graph is
as small as pinned, and the outputs are the reference jaxpr's on every kind of row
(masked, all-masked, a block all-masked, huge, infinite and NaN observations)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from jax.extend.core import jaxpr_as_fun

from conftest import make_policy
from policyport.checks import ATOL, RTOL
from policyport.formats._onnx import lower_to_onnx
from policyport.tracing import trace
from policyport.tracing._rewrite import rewrite
from policyport.tracing._streamline import RULES

lerax_env = pytest.importorskip("lerax.env", reason="the test install includes lerax")
from lerax.policy import MLPActorCriticPolicy as LeraxACPolicy  # noqa: E402

KINDS = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")

# ONNX nodes of the default policy's sample entry (before the rewrites: 23, 73, 218, 73).
# The plain graph's nodes (tests/test_graph_shape.py), then per categorical block the
# mask as `x + log(legal)` (Log, Add; its Cast is the action's arithmetic mask's, merged by
# onnx-ir's CSE), one log-softmax (ReduceMax, Sub, Exp,
# ReduceSum, Log, Sub and two Unsqueeze), its poison (ReduceMax, Sub, Add), the validity
# test (Sub, Equal), the draw (Add, ArgMax, Cast, Where) and the log-probability
# (Unsqueeze, Equal, Where, ReduceSum); MultiBinary one log-sigmoid of the sampled bit's
# sign instead of two.
SAMPLE_NODES = {"Box": 23, "Discrete": 44, "MultiDiscrete": 114, "MultiBinary": 47}
# Per categorical block the sample entry keeps one Exp and two Logs (there were three Exp),
# no softmax (Div), no validity reductions (ReduceMin, GreaterOrEqual) and no Where with
# a -inf fill (onnxruntime's slow broadcast path).
BLOCKS = {"Discrete": 1, "MultiDiscrete": 3}


def _policies():
    return {
        **{kind: make_policy(kind) for kind in KINDS},
        "lerax-cartpole": LeraxACPolicy(lerax_env.CartPole(), key=jax.random.key(0)),
    }


@pytest.fixture(scope="module")
def traces():
    return {name: trace(policy, sample=True) for name, policy in _policies().items()}


@pytest.mark.parametrize("kind", KINDS)
def test_sample_entry_graph_is_small(traces, kind):
    model = lower_to_onnx(traces[kind], opset=21)
    ops = Counter(node.op_type for node in model.graph.node)
    assert len(model.graph.node) == SAMPLE_NODES[kind], dict(ops)
    if kind in BLOCKS:
        blocks = BLOCKS[kind]
        assert (ops["Exp"], ops["Log"]) == (blocks, 2 * blocks)
        assert ops["Div"] == ops["ReduceMin"] == ops["GreaterOrEqual"] == ops["Or"] == 0
        constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        fills = [
            n
            for n in model.graph.node
            if n.op_type == "Where" and np.all(np.isneginf(constants.get(n.input[2], 0.0)))
        ]
        assert not fills
    if kind == "MultiBinary":
        assert (ops["Exp"], ops["Log"], ops["Abs"]) == (1, 1, 1)


def _sizes(traced, rules) -> tuple[int, int]:
    """The rewritten jaxpr's equations and its ONNX graph's nodes."""
    closed = rewrite(traced.jaxpr, rules)[0]
    model = lower_to_onnx(dataclasses.replace(traced, lowered=closed), opset=21)
    return len(closed.jaxpr.eqns), len(model.graph.node)


def test_every_rule_fires(traces):
    """Without any one rule, some sample entry's jaxpr (what TensorFlow and XLA formats
    convert) or ONNX graph is larger: no rule is dead or subsumed by the others."""
    full = {name: _sizes(t, RULES) for name, t in traces.items()}
    for rule in RULES:
        others = tuple(r for r in RULES if r is not rule)
        without = {name: _sizes(t, others) for name, t in traces.items()}
        grew = [
            name
            for name in traces
            if any(w > f for w, f in zip(without[name], full[name], strict=True))
        ]
        assert grew, rule.__name__


def test_lowered_is_what_formats_see(traces):
    for traced in traces.values():
        assert traced.lowered is not None and traced.artifact_jaxpr is traced.lowered
        assert traced.deterministic.lowered is None  # the default entry is untouched
        assert len(traced.lowered.jaxpr.eqns) < len(traced.jaxpr.jaxpr.eqns)


def _inputs(traced, rows: int, seed: int, extreme: bool) -> dict[str, np.ndarray]:
    """Random rows; masks with whole rows (and, for MultiDiscrete, one block) all-False;
    with `extreme`, also observations up to 1e38, +-inf and NaN."""
    rng = np.random.default_rng(seed)
    observation = traced.observation_space.sample_numpy(rng, rows)
    if extreme:
        scale = 10.0 ** rng.integers(0, 39, size=(rows // 4, 1))
        observation[: rows // 4] = rng.normal(size=observation[: rows // 4].shape) * scale
        observation[rows // 4 : rows // 4 + 8, 0] = np.inf
        observation[rows // 4 + 8 : rows // 4 + 16, 1] = -np.inf
        observation[rows // 4 + 16 : rows // 4 + 24, 2] = np.nan
    inputs = {"observation": observation.astype(np.float32)}
    if traced.description.mask_input:
        mask = traced.action_space.random_masks(rng, rows)
        mask[rows // 2 : rows // 2 + 16] = False  # nothing legal
        mask[-16:, : mask.shape[1] // 3] = False  # MultiDiscrete: its first block
        inputs["action_mask"] = mask
    blocks = traced.sampling.blocks
    noise = []
    for block in blocks:
        draw = {"gumbel": rng.gumbel, "uniform": rng.random, "standard_normal": rng.normal}
        noise.append(draw[block.distribution](size=(rows, block.size)))
    inputs["noise"] = np.concatenate(noise, axis=1).astype(np.float32)
    return inputs


def _agree(name: str, expected: np.ndarray, got: np.ndarray) -> None:
    expected, got = np.asarray(expected), np.asarray(got)
    assert expected.shape == got.shape and expected.dtype.kind == got.dtype.kind, name
    if expected.dtype.kind != "f":
        np.testing.assert_array_equal(got, expected, err_msg=name)
        return
    # NaN exactly where the reference has NaN, inf where it has inf; the rules change float
    # rounding only, well within the parity check's own tolerances (ATOL, RTOL).
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=name)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(
        got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)]
    )
    np.testing.assert_allclose(got[finite], expected[finite], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("name", [*KINDS, "lerax-cartpole"])
def test_lowered_jaxpr_computes_the_reference(traces, name):
    traced = traces[name]
    inputs = _inputs(traced, rows=512, seed=3, extreme=True)
    arrays = [inputs[n] for n in traced.input_names]
    expected = jax.jit(jax.vmap(jaxpr_as_fun(traced.jaxpr)))(*arrays)
    got = jax.jit(jax.vmap(jaxpr_as_fun(traced.lowered)))(*arrays)
    for output, want, have in zip(traced.output_names, expected, got, strict=True):
        _agree(output, want, have)
    if name in BLOCKS:
        log_prob = np.asarray(got[traced.output_names.index("log_prob")])
        assert np.all(np.isnan(log_prob[256:272]))  # all-False rows: NaN, as in JAX


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_sample_entry_computes_the_reference(traces, kind):
    """The lowered graph in onnxruntime against the unrewritten jaxpr in JAX, on finite
    observations with masked and all-masked rows."""
    traced = traces[kind]
    model = lower_to_onnx(traced, opset=21)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = _inputs(traced, rows=512, seed=5, extreme=False)
    arrays = [inputs[n] for n in traced.input_names]
    expected = jax.jit(jax.vmap(jaxpr_as_fun(traced.jaxpr)))(*arrays)
    got = session.run(None, inputs)
    for output, want, have in zip(traced.output_names, expected, got, strict=True):
        want = np.asarray(want)
        _agree(output, want.astype(have.dtype) if want.dtype.kind == "i" else want, have)


@pytest.mark.parametrize("kind", ["Discrete", "MultiDiscrete", "MultiBinary"])
def test_sample_entry_action_is_the_default_entry_action(traces, kind):
    """The mode keeps its arithmetic mask beside the sampling path's Where: with logits
    overflowed to +-inf, the sample entry's `action` is the default entry's."""
    traced = traces[kind]
    sessions = [
        ort.InferenceSession(
            lower_to_onnx(t, opset=21).SerializeToString(), providers=["CPUExecutionProvider"]
        )
        for t in (traced.deterministic, traced)
    ]
    rng = np.random.default_rng(0)
    rows = 2000
    scale = 10.0 ** rng.integers(0, 39, size=(rows, 1))
    inputs = {
        "observation": (rng.normal(size=(rows, 6)) * scale).astype(np.float32),
        "action_mask": traced.action_space.random_masks(rng, rows),
    }
    (plain,) = sessions[0].run(["action"], inputs)
    (sampled,) = sessions[1].run(
        ["action"], {**inputs, "noise": _inputs(traced, rows, 1, False)["noise"]}
    )
    np.testing.assert_array_equal(sampled, plain)

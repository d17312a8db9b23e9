"""What Flax and Brax policies are made of, lowered by policyport's own ONNX lowering.

Every activation a Brax network config can name, Flax's layer norms (linen and nnx),
Brax's running-statistics normaliser (with and without clipping), the tanh-normal and
normal modes, then whole Brax PPO and SAC policies: each must lower natively (no jax2onnx
fallback) and compute in onnxruntime what JAX computes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from brax.training import distribution
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.sac import networks as sac_networks
from flax import nnx

import policyport
import policyport.brax
from policyport.formats._onnx import lower_to_onnx, lowering_of
from policyport.formats._onnx_lowering import lower_function, lower_natively
from policyport.formats._onnx_optimize import optimize
from policyport.tracing import TensorSpec

# A few float32 ops in a row, each of which may round differently in XLA and onnxruntime
# (exp, tanh, logistic, log1p are separate implementations; reductions sum in another
# order): a few ulps of the largest intermediate, relative and absolute.
RTOL, ATOL = 1e-5, 1e-5
WIDTH = 6

# Brax's activations that are not elementwise functions of a hidden layer's vector: glu
# halves it, one_hot needs integers, `compact` is not an activation in this flax version.
NOT_ELEMENTWISE = {"compact", "glu", "one_hot"}
BRAX_ACTIVATIONS = sorted(set(brax_networks.ACTIVATION) - NOT_ELEMENTWISE)

_rng = np.random.default_rng(0)
MEAN = _rng.normal(size=WIDTH).astype(np.float32)
STD = _rng.uniform(0.5, 2.0, size=WIDTH).astype(np.float32)


def _normalizer_state(size: int = WIDTH):
    """Brax running statistics with a non-trivial mean and std."""
    state = running_statistics.init_state(specs.Array((size,), jnp.float32))
    rng = np.random.default_rng(size)
    return state.replace(
        mean=jnp.asarray(rng.normal(size=size), jnp.float32),
        std=jnp.asarray(rng.uniform(0.5, 2.0, size=size), jnp.float32),
    )


def _linen_layer_norm() -> Callable:
    module = nn.LayerNorm()
    params = module.init(jax.random.key(0), jnp.zeros(WIDTH))
    # Non-trivial scale and bias, so a dropped affine part would show.
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(1), p.shape), params)
    return lambda x: module.apply(params, x)


def _nnx_layer_norm() -> Callable:
    module = nnx.LayerNorm(WIDTH, rngs=nnx.Rngs(0))
    module.scale[...] = jax.random.normal(jax.random.key(2), (WIDTH,))
    module.bias[...] = jax.random.normal(jax.random.key(3), (WIDTH,))
    return module


PATTERNS: dict[str, Callable] = {
    **{f"brax_activation_{name}": brax_networks.ACTIVATION[name] for name in BRAX_ACTIVATIONS},
    "flax_swish": nn.swish,
    "gelu_tanh_approximation": functools.partial(jax.nn.gelu, approximate=True),
    "linen_layer_norm": _linen_layer_norm(),
    "nnx_layer_norm": _nnx_layer_norm(),
    "brax_normalizer": lambda x: running_statistics.normalize(x, _normalizer_state()),
    "brax_normalizer_clipped": lambda x: running_statistics.normalize(
        x, _normalizer_state(), max_abs_value=1.5
    ),
    # The deterministic action of Brax's distributions: location first, scale second.
    "tanh_normal_mode": lambda x: distribution.NormalTanhDistribution(WIDTH // 2).mode(x),
    "normal_mode": lambda x: distribution.NormalDistribution(WIDTH // 2).mode(
        (x[: WIDTH // 2], jnp.abs(x[WIDTH // 2 :]))  # PolicyModuleWithStd's (mean, std)
    ),
    # PolicyModuleWithStd's `mean_clip_scale`: a soft clip of the mean.
    "mean_clip_scale": lambda x: 2.0 * (x / (1.0 + jnp.abs(x))),
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_lowers_natively_and_matches_jax(name):
    fn = jax.vmap(PATTERNS[name])
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, WIDTH), np.float32))
    # lower_function never falls back: it raises NotLowerable for a missing primitive.
    model = lower_function(
        lambda x: [fn(x)],
        [TensorSpec("x", (WIDTH,), "float32")],
        [TensorSpec("y", out.shape[1:], "float32")],
        opset=21,
    )
    onnx.checker.check_model(model, full_check=True)
    # Around the normaliser's clip and beyond: |x| up to ~12.
    x = (np.random.default_rng(1).normal(size=(33, WIDTH)) * 4).astype(np.float32)
    (got,) = _session(model).run(None, {"x": x})
    np.testing.assert_allclose(got, jax.jit(fn)(x), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- whole Brax policies

OBSERVATION_SIZE, ACTION_SIZE = 9, 3


def _ppo(**kwargs):
    networks = ppo_networks.make_ppo_networks(
        OBSERVATION_SIZE,
        ACTION_SIZE,
        preprocess_observations_fn=kwargs.pop("normalize", running_statistics.normalize),
        policy_hidden_layer_sizes=(32, 32),
        value_hidden_layer_sizes=(32, 32),
        **kwargs,
    )
    key_policy, key_value = jax.random.split(jax.random.key(0))
    params = (
        _normalizer_state(OBSERVATION_SIZE),
        networks.policy_network.init(key_policy),
        networks.value_network.init(key_value),
    )
    return policyport.brax.from_ppo_params(networks, params)


def _sac(**kwargs):
    networks = sac_networks.make_sac_networks(
        OBSERVATION_SIZE,
        ACTION_SIZE,
        preprocess_observations_fn=running_statistics.normalize,
        hidden_layer_sizes=(32, 32),
        **kwargs,
    )
    params = (_normalizer_state(OBSERVATION_SIZE), networks.policy_network.init(jax.random.key(1)))
    return policyport.brax.from_sac_params(networks, params)


# name -> (policy, Gemms in its ONNX graph): PPO's default swish tanh-normal (action and
# value networks, 3 layers each), a `normal` one with a clipped mean, elu and a clipping
# normaliser, and SAC with layer norm.
BRAX_POLICIES: dict[str, tuple[Callable, int]] = {
    "ppo_swish_tanh_normal": (lambda: _ppo(), 6),
    "ppo_elu_normal_clipped": (
        lambda: _ppo(
            activation=nn.elu,
            distribution_type="normal",
            mean_clip_scale=2.0,
            normalize=functools.partial(running_statistics.normalize, max_abs_value=3.0),
        ),
        6,
    ),
    "sac_relu_layer_norm": (lambda: _sac(policy_network_layer_norm=True), 3),
}


@pytest.mark.parametrize("name", sorted(BRAX_POLICIES))
def test_brax_policy_lowers_natively_with_parity(name, tmp_path):
    make, gemms = BRAX_POLICIES[name]
    policy = make()
    lower_natively(policyport.trace(policy), opset=21)  # raises NotLowerable if it cannot
    [result] = policyport.export(policy, "onnx", tmp_path / "policy.onnx")
    assert result.report.passed, result.report.to_table()
    model = onnx.load(tmp_path / "policy.onnx")
    assert lowering_of(model) == "policyport"
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == gemms, ops
    # Plain graphs: no layout plumbing, and the mode's unread scale columns never computed.
    assert not {"Transpose", "Einsum", "Expand", "Split"} & set(ops), ops


def test_unread_split_pieces_drop_their_gemm_columns():
    """Of three pieces of one layer's output, the middle one is never read: the Gemm keeps
    the other columns only, and a Split of two pieces remains."""
    w = np.asarray(jax.random.normal(jax.random.key(4), (WIDTH, 7)), np.float32)
    b = np.asarray(jax.random.normal(jax.random.key(5), (7,)), np.float32)

    def row(x):
        first, _, last = jnp.split(x @ w + b, [2, 5])
        return jnp.concatenate([jnp.tanh(first), 2.0 * last])

    fn = jax.vmap(row)
    spec = TensorSpec("x", (WIDTH,), "float32")
    out_spec = TensorSpec("y", (4,), "float32")
    traced_model = lower_function(lambda x: [fn(x)], [spec], [out_spec], opset=21)
    optimized = optimize(onnx.ModelProto.FromString(traced_model.SerializeToString()))
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in optimized.graph.initializer}
    [gemm] = [n for n in optimized.graph.node if n.op_type == "Gemm"]
    assert constants[gemm.input[1]].shape == (WIDTH, 4)  # 7 columns, 3 unread
    [split] = [n for n in optimized.graph.node if n.op_type == "Split"]
    assert len(split.output) == 2
    x = (np.random.default_rng(2).normal(size=(17, WIDTH)) * 2).astype(np.float32)
    (before,) = _session(traced_model).run(None, {"x": x})
    (after,) = _session(optimized).run(None, {"x": x})
    # The kept columns are the same dot products: identical to the unoptimised graph.
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(after, jax.jit(fn)(x), rtol=RTOL, atol=ATOL)


def test_brax_graph_is_the_layers_and_nothing_else():
    """Brax's default PPO policy: normaliser, three Gemms with swish between, tanh."""
    model = lower_to_onnx(policyport.trace(_ppo()), opset=21)
    ops = [n.op_type for n in model.graph.node]
    action_ops = ops[: ops.index("Tanh") + 1]
    assert action_ops == ["Sub", "Div", *["Gemm", "Sigmoid", "Mul"] * 2, "Gemm", "Tanh"], ops


@pytest.mark.parametrize("name", ["linen_layer_norm", "nnx_layer_norm"])
def test_flax_layer_norm_stays_unfused_below_opset_17(name):
    """LayerNormalization is opset 17+: at 15 (the sentis target) the graph keeps Flax's
    ops, is valid, and computes Flax's layer norm."""
    fn = jax.vmap(PATTERNS[name])
    spec = TensorSpec("x", (WIDTH,), "float32")
    lowered = lower_function(lambda x: [fn(x)], [spec], [TensorSpec("y", (WIDTH,), "float32")], 15)
    model = optimize(lowered)
    onnx.checker.check_model(model, full_check=True)
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    x = _layer_norm_rows(np.random.default_rng(3))[:16]
    (got,) = _session(model).run(None, {"x": x})
    np.testing.assert_allclose(got, np.asarray(jax.jit(fn)(x)), rtol=RTOL, atol=ATOL)


def _layer_norm_rows(rng: np.random.Generator) -> np.ndarray:
    """Ordinary rows, then rows where Flax's `mean(x^2) - mean^2` cancels: a constant row
    of large values, large values with a tiny spread, and zeros."""
    ordinary = rng.normal(size=(16, WIDTH)) * 4
    constant = np.full((1, WIDTH), 1000.0)
    tiny_spread = 1000.0 + rng.normal(size=(2, WIDTH)) * 1e-3
    return np.concatenate([ordinary, constant, tiny_spread, np.zeros((1, WIDTH))]).astype(
        np.float32
    )


@pytest.mark.parametrize("name", ["linen_layer_norm", "nnx_layer_norm"])
def test_flax_layer_norm_becomes_one_layer_normalization(name):
    fn = jax.vmap(PATTERNS[name])
    spec = TensorSpec("x", (WIDTH,), "float32")
    lowered = lower_function(lambda x: [fn(x)], [spec], [TensorSpec("y", (WIDTH,), "float32")], 21)
    model = optimize(lowered)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    # Only the centring is left outside the fused op (mean, then x - mean).
    unit_axis = "Unsqueeze" if "linen" in name else "Reshape"
    assert ops == ["ReduceSum", "Div", unit_axis, "Sub", "LayerNormalization"], ops
    x = _layer_norm_rows(np.random.default_rng(3))
    (got,) = _session(model).run(None, {"x": x})
    expected = np.asarray(jax.jit(fn)(x))
    assert np.all(np.isfinite(got))
    # Ordinary rows: the same function to a few ulps (the rounding differs, not the maths).
    np.testing.assert_allclose(got[:16], expected[:16], rtol=RTOL, atol=ATOL)
    # A constant row is exactly the bias in both (x - mean is exactly 0).
    np.testing.assert_array_equal(got[16], expected[16])
    # Where Flax's variance cancels, the fused op (exact variance of the centred input) is
    # at least as close as Flax to the layer norm computed in float64. The affine part is
    # the graph's own (the ordinary rows above prove it is Flax's).
    [fused] = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scale, bias = (constants[name].astype(np.float64) for name in fused.input[1:])
    wide = x.astype(np.float64)
    centred = wide - wide.mean(axis=1, keepdims=True)
    exact = centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + 1e-6) * scale + bias
    ours_error = np.abs(got[17:19] - exact[17:19]).max()
    flax_error = np.abs(expected[17:19] - exact[17:19]).max()
    assert ours_error <= flax_error, (ours_error, flax_error)

"""policyport's own jaxpr -> ONNX lowering, one emitter at a time, against onnxruntime.

Every entry of `EMITTERS` has a case in `CASES` (a test fails when one is missing): a tiny
function that uses the primitive, batched over a symbolic batch as a traced policy is,
lowered natively only (no jax2onnx), run in onnxruntime at two batch sizes and compared
with JAX. The emitter itself must run (a fold in JAX would prove nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from flax.linen import pooling as flax_pooling
from jax import lax

import policyport
from head_policies import HEAD_POLICIES, make_head_policy
from policyport.formats import MAX_OPSET, MIN_OPSET
from policyport.formats import _onnx as onnx_format
from policyport.formats._onnx import (
    LOWERING_KEY,
    _jaxpr_primitives,
    lower_to_onnx,
    lowering_of,
    set_model_metadata,
)
from policyport.formats._onnx_lowering import (
    EMITTERS,
    NotLowerable,
    lower_function,
    lower_natively,
)
from policyport.tracing import TensorSpec

Inputs = Callable[[np.random.Generator, int], list[np.ndarray]]

# Tolerances. Exact (0) where ONNX computes what XLA computes (selection, layout, integer
# and comparison results, IEEE-exact ops). FLOAT: one op where either side may round
# differently (libm vs XLA's own approximations: exp, tanh, sin...), a few float32 ulps.
# SUM: reductions and products whose summation order differs between the runtimes.
EXACT = (0.0, 0.0)
FLOAT = (2e-6, 1e-6)  # (rtol, atol)
SUM = (1e-5, 1e-5)
# RELATIVE: functions whose point is accuracy near 0 (log1p, expm1): no absolute slack,
# so a naive log(1 + x) fails on x = 1e-8 and 1e-30.
RELATIVE = (2e-6, 0.0)
BATCHES = (1, 7)


def floats(*shapes: tuple[int, ...], scale: float = 2.0) -> Inputs:
    return lambda rng, n: [(rng.normal(size=(n, *s)) * scale).astype(np.float32) for s in shapes]


def uniform(low: float, high: float, *shapes: tuple[int, ...]) -> Inputs:
    return lambda rng, n: [rng.uniform(low, high, size=(n, *s)).astype(np.float32) for s in shapes]


def small_ints(*shapes: tuple[int, ...]) -> Inputs:
    """Floats with many exact ties (-2..2), for equality tests."""
    return lambda rng, n: [rng.integers(-2, 3, size=(n, *s)).astype(np.float32) for s in shapes]


def bools(*shapes: tuple[int, ...]) -> Inputs:
    return lambda rng, n: [rng.random(size=(n, *s)) < 0.5 for s in shapes]


def special(shape: tuple[int, ...]) -> Inputs:
    """Tiny, ordinary, huge and non-finite values: where naive formulas lose accuracy."""
    values = np.array(
        [0.0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-4, -0.5, 0.5, 3.0, -3.0, -1.0, 80.0, -80.0,
         1e30, -1e30, np.inf, -np.inf, np.nan, 2.5, -2.5],
        np.float32,
    )  # fmt: skip
    return lambda rng, n: [rng.choice(values, size=(n, *shape)).astype(np.float32)]


@dataclass(frozen=True)
class Case:
    """A function of per-sample arrays (vmapped unless `batched`) and how to feed it."""

    fn: Callable[..., object]
    inputs: Inputs
    tolerance: tuple[float, float] = EXACT
    batched: bool = False
    dtypes: tuple[str, ...] = field(default=())  # input dtypes; float32 unless given


W = np.asarray(jax.random.normal(jax.random.key(1), (4, 3)), np.float32)
V = np.asarray(jax.random.normal(jax.random.key(2), (4,)), np.float32)


def _kernel(seed: int, *shape: int) -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(seed), shape), np.float32) * 0.3


K8, K4, K2 = _kernel(3, 8, 8, 2, 4), _kernel(4, 4, 4, 2, 3), _kernel(5, 2, 2, 2, 5)
KG = _kernel(6, 3, 3, 1, 4)  # 2 groups: 1 input channel each, 2 outputs each
K24, DENSE = _kernel(8, 2, 2, 4, 5), _kernel(7, 5 * 5 * 5, 3)


def _conv(x, kernel, strides, padding, dilation=(1, 1), groups=1):
    """One HWC frame through an HWIO kernel, as Flax's Conv calls lax."""
    return lax.conv_general_dilated(
        x[None],
        kernel,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )[0]


def _unary(f: Callable, inputs: Inputs | None = None, tolerance=FLOAT) -> Case:
    return Case(f, inputs or floats((5,)), tolerance)


CASES: dict[str, Case] = {
    # arithmetic; each also adds a constant and broadcasts two partial operands
    "add": Case(
        lambda x, y: (
            x + y,
            x + 2.0,
            x[:, None] + y[None, :],
            # two broadcasts, neither full: ONNX sees [batch, 1] + [batch, 1] unless expanded
            jnp.broadcast_to(x[0], (4,)) + jnp.broadcast_to(y[1], (4,)),
        ),
        floats((5,), (5,)),
    ),
    "sub": Case(lambda x, y: (x - y, 1.0 - x, x[:, None] - y[None, :]), floats((5,), (5,))),
    "mul": Case(lambda x, y: (x * y, x * V[0], x[:, None] * y[None, :]), floats((5,), (5,))),
    "div": Case(
        lambda x, y: (
            x / (jnp.abs(y) + 0.5),
            x / 3.0,
            (3.0 * x).astype(jnp.int32) // 2,  # integer division truncates, then floors
        ),
        floats((5,), (5,)),
        FLOAT,
    ),
    "rem": Case(
        lambda x, y: (lax.rem(3.0 * x, jnp.abs(y) + 0.5), lax.rem((3.0 * x).astype(jnp.int32), 2)),
        floats((5,), (5,)),
        FLOAT,
    ),
    # pow: XLA's and onnxruntime's pow are separate implementations; a few ulps apart.
    "pow": Case(lambda x, y: lax.pow(jnp.abs(x) + 0.1, y), floats((5,), (5,)), SUM),
    "max": Case(lambda x, y: (jnp.maximum(x, y), jnp.maximum(x, 0.0)), floats((5,), (5,))),
    "min": Case(lambda x, y: (jnp.minimum(x, y), jnp.minimum(x, 0.0)), floats((5,), (5,))),
    "gt": Case(lambda x, y: (x > y, x > 0.0), small_ints((5,), (5,))),
    "lt": Case(lambda x, y: (x < y, x < 0.0), small_ints((5,), (5,))),
    "ge": Case(lambda x, y: (x >= y, x >= 0.0), small_ints((5,), (5,))),
    "le": Case(lambda x, y: (x <= y, x <= 0.0), small_ints((5,), (5,))),
    "eq": Case(
        lambda x, y: (x == y, x == 1.0, jax.nn.one_hot(jnp.argmax(x), 5)),  # iota: folded
        small_ints((5,), (5,)),
    ),
    "ne": Case(lambda x, y: (x != y, x != 1.0), small_ints((5,), (5,))),
    "and": Case(lambda p, q: p & q, bools((5,), (5,)), dtypes=("bool", "bool")),
    "or": Case(lambda p, q: p | q, bools((5,), (5,)), dtypes=("bool", "bool")),
    "xor": Case(lambda p, q: p ^ q, bools((5,), (5,)), dtypes=("bool", "bool")),
    "not": Case(lambda p: ~p, bools((5,)), dtypes=("bool",)),
    "clamp": Case(lambda x: (lax.clamp(-0.5, x, 0.5), lax.clamp(-V, x[:4], V)), floats((5,))),
    "select_n": Case(
        lambda x, y: (
            jnp.where(x > 0, x, y),
            jnp.where(x > 0, x, 0.5),
            lax.select_n((x > 0).astype(jnp.int32) + (y > 0).astype(jnp.int32), x, y, x * y),
            lax.select_n(np.True_, x, y),  # decided at trace time: no Where
        ),
        floats((5,), (5,)),
    ),
    # unary math
    "neg": _unary(lambda x: -x, tolerance=EXACT),
    "abs": _unary(jnp.abs, tolerance=EXACT),
    "sign": _unary(lambda x: jnp.sign(x), small_ints((5,)), tolerance=EXACT),
    "floor": _unary(jnp.floor, tolerance=EXACT),
    "ceil": _unary(jnp.ceil, tolerance=EXACT),
    "round": Case(
        lambda x: (jnp.round(x), lax.round(x, lax.RoundingMethod.AWAY_FROM_ZERO)),
        lambda rng, n: [(rng.integers(-6, 7, size=(n, 6)) / 2).astype(np.float32)],  # ties
    ),
    "exp": _unary(jnp.exp),
    "exp2": _unary(jnp.exp2),
    "expm1": _unary(jnp.expm1, special((6,)), RELATIVE),
    "log": _unary(jnp.log, uniform(1e-3, 50.0, (5,))),
    "log1p": _unary(jnp.log1p, special((6,)), RELATIVE),
    "sqrt": _unary(jnp.sqrt, uniform(0.0, 50.0, (5,))),
    "rsqrt": _unary(lax.rsqrt, uniform(1e-3, 50.0, (5,))),
    "square": _unary(jnp.square, tolerance=EXACT),
    "integer_pow": Case(
        lambda x: (
            lax.integer_pow(x, 3),
            lax.integer_pow(x, 1),
            lax.integer_pow(x, 0),
            lax.integer_pow(x, -2),
            lax.integer_pow(x, 7),
        ),
        floats((5,)),
    ),
    "tanh": _unary(jnp.tanh),
    "logistic": _unary(jax.nn.sigmoid),
    "sin": _unary(jnp.sin),
    "cos": _unary(jnp.cos),
    "tan": _unary(jnp.tan, uniform(-1.4, 1.4, (5,))),
    "asin": _unary(jnp.arcsin, uniform(-0.99, 0.99, (5,))),
    "acos": _unary(jnp.arccos, uniform(-0.99, 0.99, (5,))),
    "atan": _unary(jnp.arctan),
    "sinh": _unary(jnp.sinh),
    "cosh": _unary(jnp.cosh),
    "asinh": _unary(jnp.arcsinh),
    "acosh": _unary(jnp.arccosh, uniform(1.0, 20.0, (5,))),
    "atanh": _unary(jnp.arctanh, uniform(-0.99, 0.99, (5,))),
    "erf": _unary(jax.scipy.special.erf),
    "atan2": Case(
        lambda y, x: (jnp.arctan2(y, x), jnp.arctan2(x, 1.0)),
        lambda rng, n: [  # every quadrant, both zeros, one infinite operand at a time
            rng.choice([-2.0, -0.0, 0.0, 0.7, 3.0, np.inf, -np.inf], (n, 8)).astype(np.float32),
            rng.choice([-1.5, -0.0, 0.0, 0.3, 4.0], (n, 8)).astype(np.float32),
        ],
        FLOAT,
    ),
    "is_finite": Case(jnp.isfinite, special((6,))),
    "convert_element_type": Case(
        lambda x: (x.astype(jnp.int32), (x > 0).astype(jnp.float32), x.astype(bool)),
        lambda rng, n: [rng.choice([-1.7, -1.0, 0.0, 0.4, 2.5], size=(n, 5)).astype(np.float32)],
    ),
    "dim_as_value": Case(lambda x: x * jnp.float32(x.shape[0]), floats((3,)), batched=True),
    "stop_gradient": Case(lambda x: lax.stop_gradient(x) * 2.0, floats((5,))),
    "copy": Case(lambda x: jnp.array(x, copy=True), floats((5,))),
    "optimization_barrier": Case(lambda x: lax.optimization_barrier(x) + 1.0, floats((5,))),
    # reductions
    "reduce_sum": Case(
        lambda x: (
            jnp.sum(x, axis=1),
            jnp.sum(x, axis=0),
            jnp.sum(x),
            jnp.mean(x),
            jnp.sum(x > 0, axis=1),  # int32
        ),
        floats((3, 4)),
        SUM,
    ),
    "reduce_max": Case(lambda x: (jnp.max(x, axis=1), jnp.max(x)), floats((3, 4))),
    "reduce_min": Case(lambda x: (jnp.min(x, axis=0), jnp.min(x)), floats((3, 4))),
    "reduce_prod": Case(lambda x: jnp.prod(x, axis=1), floats((3, 4)), SUM),
    "reduce_or": Case(lambda x: (jnp.any(x > 1.0, axis=1), jnp.any(x > 2.0)), floats((3, 4))),
    "reduce_and": Case(lambda x: (jnp.all(x > -1.0, axis=1), jnp.all(x > -2.0)), floats((3, 4))),
    "argmax": Case(lambda x: (jnp.argmax(x, axis=1), jnp.argmax(x, axis=0)), small_ints((3, 4))),
    "argmin": Case(lambda x: (jnp.argmin(x, axis=1), jnp.argmin(x, axis=0)), small_ints((3, 4))),
    "sort": Case(
        lambda x: (jnp.sort(x), jnp.argsort(x), jnp.sort(x.reshape(2, 3), axis=0)),
        small_ints((6,)),  # many ties: a stable sort keeps them in index order
    ),
    "top_k": Case(lambda x: tuple(lax.top_k(x, 3)), small_ints((6,))),
    "cumsum": Case(lambda x: (jnp.cumsum(x), lax.cumsum(x, reverse=True)), floats((6,)), SUM),
    # linear algebra
    "dot_general": Case(
        lambda x, y, frame: (
            x @ W,  # a layer: Gemm
            W.T @ x,  # a layer written weight-first: Gemm on the transpose
            x @ V,  # a vector product: Einsum
            x @ y,  # two inputs: Einsum
            jnp.einsum("ij,kj->ik", y.T, y.T),
            # A uint8 observation straight into float weights (equinox's Linear, `W @ x`)
            # traces one dot_general of mixed operand types; Gemm and Einsum need one.
            W.T @ frame,
            frame @ V,
        ),
        lambda rng, n: [
            *floats((4,), (4, 2))(rng, n),
            rng.integers(0, 256, size=(n, 4)).astype(np.uint8),
        ],
        SUM,
        dtypes=("float32", "float32", "uint8"),
    ),
    # shapes, layout and indexing
    "transpose": Case(lambda x: (x.T, x.reshape(2, 3, 2).transpose(2, 0, 1)), floats((3, 4))),
    "broadcast_in_dim": Case(
        lambda x: (
            jnp.broadcast_to(x[:, None], (5, 3)),
            jnp.broadcast_to(x, (2, 5)),
            jnp.exp(jnp.broadcast_to(x[0], (3,))),  # a unary op keeps the broadcast lazy
            jnp.concatenate([jnp.broadcast_to(x[0], (2,)), x]),  # Concat needs it expanded
        ),
        floats((5,)),
        FLOAT,  # exp: an ulp between libm and XLA
    ),
    "squeeze": Case(lambda x: (x[:, 0], jnp.squeeze(x)), floats((3, 1))),
    "reshape": Case(lambda x: (x.reshape(6), x.reshape(3, 2)), floats((2, 3))),
    "split": Case(lambda x: tuple(jnp.split(x, [2, 3])), floats((6,))),
    "concatenate": Case(
        lambda x, y: (jnp.concatenate([x, y]), jnp.concatenate([x, jnp.zeros(2)])),
        floats((3,), (4,)),
    ),
    "stack": Case(lambda x, y: (jnp.stack([x, y]), jnp.stack([x, y], axis=1)), floats((3,), (3,))),
    "slice": Case(lambda x: (x[1:4], x[::2], x[4:1:-1]), floats((6,))),
    "dynamic_slice": Case(
        lambda x: lax.dynamic_slice(x, (0, 4), (x.shape[0], 3)), floats((6,)), batched=True
    ),
    "rev": Case(lambda x: (jnp.flip(x), jnp.flip(x.reshape(2, 3), axis=1)), floats((6,))),
    "pad": Case(
        lambda x: (jnp.pad(x, (1, 2)), lax.pad(x, jnp.float32(7.0), [(-1, 2, 0)])), floats((5,))
    ),
    "tile": Case(lambda x: jnp.tile(x, 2), floats((3,))),
    # convolutions and pooling on small frames (per sample HWC, or CHW where stated)
    "conv_general_dilated": Case(
        lambda x: (
            _conv(x, K8, (2, 2), "VALID"),  # NHWC, strided
            _conv(x, K4, (1, 1), "SAME"),  # SAME with an even kernel: more padding after
            _conv(x, K2, (3, 3), "VALID"),  # stride > kernel
            _conv(x, K2, (1, 1), ((2, 1), (0, 3)), dilation=(2, 1)),  # explicit, dilated
            _conv(x, KG, (1, 1), "SAME", groups=2),  # feature groups
            lax.conv_general_dilated(  # NCHW (as equinox): no transpose needed
                jnp.transpose(x, (2, 0, 1))[None], jnp.transpose(K4, (3, 2, 0, 1)), (2, 1), "SAME"
            )[0],
            # after a max-pool, as equinox chains them (CHW, unit axes in and out)
            lax.conv_general_dilated(
                eqx.nn.MaxPool2d(2, 2)(jnp.transpose(x, (2, 0, 1)))[None],
                jnp.transpose(K4, (3, 2, 0, 1)),
                (1, 1),
                "SAME",
            )[0],
            # two layers, then a dense layer over the flattened features
            jnp.tanh(_conv(jnp.tanh(_conv(x, K8, (2, 2), "VALID")), K24, (1, 1), "SAME")).ravel()
            @ DENSE,
        ),
        floats((16, 16, 2)),
        SUM,
    ),
    "reduce_window_max": Case(
        lambda x: (
            flax_pooling.max_pool(x, (2, 2), (2, 2), "VALID"),
            flax_pooling.max_pool(x, (3, 3), (2, 2), "SAME"),
            eqx.nn.MaxPool2d(2, 2)(jnp.transpose(x, (2, 0, 1))),  # CHW, as equinox reads
            eqx.nn.MaxPool2d(3, 1, padding=1)(jnp.transpose(x, (2, 0, 1))),
            jnp.max(x, axis=(0, 1)),  # global max pooling (reduce_max)
        ),
        floats((16, 16, 2)),
    ),
    "reduce_window_sum": Case(
        lambda x: (
            flax_pooling.avg_pool(x, (2, 2), (2, 2), "VALID"),
            flax_pooling.avg_pool(x, (3, 3), (2, 2), "SAME", count_include_pad=False),
            eqx.nn.AvgPool2d(3, 2, padding=1)(jnp.transpose(x, (2, 0, 1))),
            jnp.mean(jnp.tanh(_conv(x, K4, (1, 1), "SAME")), axis=(0, 1)),  # global average
        ),
        floats((16, 16, 2)),
        SUM,
    ),
    "gather": Case(
        lambda x, y: (
            x[jnp.array([0, 2, 2, -1])],  # an index array: Gather
            x[jnp.argmax(y)],  # an index per row: GatherElements
            lax.dynamic_slice(x, (4,), (3,)),  # a window, clamped into range: Slice
            x.reshape(2, 3)[:, jnp.array([2, 0])],  # Gather on axis 1, kept layout
            jnp.asarray(W)[jnp.argmax(y[:4])],  # an embedding: a constant table, an index per row
            jnp.asarray(W).T[:, jnp.argmin(x[:3])],  # the same on axis 1: Gather, then XLA's layout
        ),
        floats((6,), (6,)),
    ),
}


def _specs(case: Case, shapes: list[tuple[int, ...]]) -> list[TensorSpec]:
    dtypes = case.dtypes or ("float32",) * len(shapes)
    return [TensorSpec(f"x{i}", s, d) for i, (s, d) in enumerate(zip(shapes, dtypes, strict=True))]


def _output_dtype(dtype: np.dtype) -> str:
    if dtype == np.bool_:
        return "bool"
    return "int64" if np.issubdtype(dtype, np.integer) else "float32"


def _lower_case(case: Case, opset: int = 21) -> tuple[onnx.ModelProto, Callable, list[TensorSpec]]:
    fn = case.fn if case.batched else jax.vmap(case.fn)

    def outputs_of(*arrays):
        out = fn(*arrays)
        return list(out) if isinstance(out, tuple) else [out]

    example = case.inputs(np.random.default_rng(0), 2)
    inputs = _specs(case, [a.shape[1:] for a in example])
    shapes = jax.eval_shape(outputs_of, *example)
    outputs = [
        TensorSpec(f"y{i}", tuple(s.shape[1:]), _output_dtype(np.dtype(s.dtype)))
        for i, s in enumerate(shapes)
    ]
    return lower_function(outputs_of, inputs, outputs, opset=opset), outputs_of, inputs


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("primitive", sorted(CASES))
def test_emitter_matches_jax_in_onnxruntime(primitive, monkeypatch):
    case = CASES[primitive]
    calls = []
    emitter = EMITTERS[primitive]
    monkeypatch.setitem(
        EMITTERS, primitive, lambda b, args, eqn: calls.append(eqn) or emitter(b, args, eqn)
    )
    model, outputs_of, inputs = _lower_case(case)
    assert calls, f"{primitive} was folded or never reached its emitter"
    onnx.checker.check_model(model, full_check=True)
    batch_dims = [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input]
    assert batch_dims == ["batch"] * len(inputs)  # the batch stays symbolic
    session = _session(model)
    rtol, atol = case.tolerance
    rng = np.random.default_rng(sum(map(ord, primitive)))
    for batch in BATCHES:
        arrays = case.inputs(rng, batch)
        expected = [np.asarray(e) for e in jax.jit(outputs_of)(*arrays)]
        got = session.run(None, {s.name: a for s, a in zip(inputs, arrays, strict=True)})
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert g.shape == e.shape, f"output {i} at batch {batch}"
            if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
                np.testing.assert_array_equal(g, e, err_msg=f"output {i} at batch {batch}")
            else:
                np.testing.assert_allclose(
                    g, e, rtol=rtol, atol=atol, err_msg=f"output {i} at batch {batch}"
                )


@pytest.mark.parametrize("opset", [MIN_OPSET, MAX_OPSET])
def test_every_case_runs_at_the_oldest_and_newest_opset(opset):
    # Operator signatures moved between opsets (axes as inputs, Split's outputs...): each
    # case must pass the checker at both ends of the supported range and compute exactly
    # what its opset-21 graph computes (which the test above holds to JAX).
    for primitive, case in CASES.items():
        model, _, inputs = _lower_case(case, opset)
        onnx.checker.check_model(model, full_check=True)
        reference, _, _ = _lower_case(case, 21)
        values = case.inputs(np.random.default_rng(0), 3)
        arrays = {s.name: a for s, a in zip(inputs, values, strict=True)}
        got, expected = _session(model).run(None, arrays), _session(reference).run(None, arrays)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e, err_msg=f"{primitive} at opset {opset}")


def test_every_emitter_has_a_case():
    missing = sorted(set(EMITTERS) - set(CASES))
    assert not missing, f"emitters without a unit test case in CASES: {missing}"
    unknown = sorted(set(CASES) - set(EMITTERS))
    assert not unknown, f"cases for primitives the lowering has no emitter for: {unknown}"


@jax.custom_vjp
def _clipped_identity(x):
    return jnp.clip(x, -1.0, 1.0)


_clipped_identity.defvjp(lambda x: (_clipped_identity(x), None), lambda _, g: (g,))

# Primitives that only wrap a body (jit, custom_jvp/vjp, checkpoint): lowered in place.
WRAPPERS = {
    "jit": jax.jit(lambda x: jnp.tanh(x) * 2.0),
    "custom_jvp_call": jax.nn.relu,
    "custom_vjp_call": _clipped_identity,
    "remat2": jax.checkpoint(lambda x: jnp.sin(x) + x),
    # a branch chosen by a constant (a config flag): only that branch is lowered
    "cond": lambda x: lax.cond(jnp.bool_(True), jnp.sin, jnp.cos, x),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrapped_bodies_are_lowered_in_place(name):
    fn = jax.vmap(WRAPPERS[name])
    spec = TensorSpec("x", (5,), "float32")
    model = lower_function(lambda x: [fn(x)], [spec], [TensorSpec("y", (5,), "float32")], 21)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32) * 2
    assert name in _jaxpr_primitives(jax.make_jaxpr(fn)(x).jaxpr)
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, jax.jit(fn)(x), *FLOAT)


# Activations and normalisations users put in policies: each must lower natively.
ACTIVATIONS: dict[str, Callable] = {
    "softplus": jax.nn.softplus,
    "gelu_tanh": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "celu": jax.nn.celu,
    "leaky_relu": jax.nn.leaky_relu,
    "mish": jax.nn.mish,
    "hard_tanh": jax.nn.hard_tanh,
    "hard_swish": jax.nn.hard_swish,
    "relu6": jax.nn.relu6,
    "soft_sign": jax.nn.soft_sign,
    "log_sigmoid": jax.nn.log_sigmoid,
    "squareplus": jax.nn.squareplus,
    "glu": lambda x: jax.nn.glu(jnp.concatenate([x, -x])),
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "logsumexp": lambda x: jax.nn.logsumexp(x, keepdims=True),
    "standardize": jax.nn.standardize,
    "rms_norm": eqx.nn.RMSNorm(6),
    "l2_normalize": lambda x: x / jnp.linalg.norm(x),
    "nan_to_num": jnp.nan_to_num,
    "dropout_inference": eqx.nn.Dropout(0.1, inference=True),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_common_activations_lower_natively(name):
    fn = jax.vmap(ACTIVATIONS[name])
    spec = TensorSpec("x", (6,), "float32")
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, 6), np.float32))
    model = lower_function(
        lambda x: [fn(x)], [spec], [TensorSpec("y", out.shape[1:], "float32")], opset=21
    )
    x = (np.random.default_rng(0).normal(size=(9, 6)) * 3).astype(np.float32)
    (got,) = _session(model).run(None, {"x": x})
    np.testing.assert_allclose(got, jax.jit(fn)(x), *SUM)  # a few ops: SUM's slack


# ---------------------------------------------------------------- whole policies


@pytest.mark.parametrize("name", sorted(HEAD_POLICIES))
def test_head_shaped_policies_lower_natively_and_export_with_parity(name, tmp_path):
    policy = make_head_policy(name)
    traced = policyport.trace(policy)
    lower_natively(traced, opset=21)  # raises NotLowerable if any primitive is missing
    path = tmp_path / f"{name}.onnx"
    [result] = policyport.export(policy, "onnx", path)
    assert result.report.passed
    model = onnx.load(path)
    assert lowering_of(model) == "policyport"
    assert model.doc_string == "lowered by policyport"
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["policyport.format"] == "onnx"  # the contract's metadata is there too
    assert [i.name for i in model.graph.input] == list(traced.input_names)
    assert [o.name for o in model.graph.output] == list(traced.output_names)
    # Plain graphs: layers are Gemms, nothing transposed, expanded or left to Einsum.
    ops = {node.op_type for node in model.graph.node}
    assert "Gemm" in ops and not ops & {"Transpose", "Expand", "Einsum"}, sorted(ops)


def test_the_lowering_survives_a_metadata_rewrite():
    model = lower_to_onnx(policyport.trace(make_head_policy("q")), opset=21)
    assert lowering_of(model) == "policyport"
    set_model_metadata(model, {"policyport.format": "onnx"})
    assert {p.key: p.value for p in model.metadata_props} == {
        "policyport.format": "onnx",
        LOWERING_KEY: "policyport",
    }


def test_a_fallback_says_it_used_jax2onnx_and_why(monkeypatch):
    # Stand-ins for both lowerings: this is about the record, not about jax2onnx (slow).
    traced = policyport.trace(make_head_policy("deterministic"))
    native = lower_natively(traced, opset=21)

    def refuse(traced, opset):
        raise NotLowerable("primitive 'erf'")

    monkeypatch.setattr(onnx_format, "lower_natively", refuse)
    monkeypatch.setattr(onnx_format, "_lower_with_jax2onnx", lambda traced, opset, why: native)
    model = lower_to_onnx(traced, opset=21)
    expected = "jax2onnx (policyport's lowering lacks primitive 'erf')"
    assert lowering_of(model) == expected
    assert model.doc_string == f"lowered by {expected}"
    set_model_metadata(model, {"policyport.format": "onnx"})
    assert lowering_of(model) == expected


def test_a_flatten_after_convolutions_runs_a_batch_of_no_rows():
    """A conv stack laid out NCHW, flattened (its order folded into the dense weights):
    the Reshape states the row's size, since onnxruntime cannot infer `-1` from 0 rows."""
    kernel, dense = _kernel(9, 3, 3, 2, 4), _kernel(10, 4 * 4 * 4, 3)

    def outputs_of(x):  # a batch of HWC frames
        features = lax.conv_general_dilated(
            x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return [jnp.tanh(features).reshape(x.shape[0], 4 * 4 * 4) @ dense]

    inputs = [TensorSpec("x0", (8, 8, 2), "float32")]
    model = lower_function(outputs_of, inputs, [TensorSpec("y0", (3,), "float32")], opset=21)
    session = _session(model)
    for rows in (0, 3):
        x = np.random.default_rng(rows).normal(size=(rows, 8, 8, 2)).astype(np.float32)
        [got] = session.run(None, {"x0": x})
        want = np.asarray(jax.jit(outputs_of)(x)[0])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_max_pooling_padded_by_its_window_is_left_to_the_fallback():
    """XLA pads a max pooling by its window or more; onnxruntime refuses such a MaxPool
    when it loads the graph, so the emitter hands it to jax2onnx (NotLowerable)."""

    def outputs_of(x):  # a batch of HWC frames, window 2, padded by 2
        pad = ((0, 0), (2, 2), (2, 2), (0, 0))
        return [lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 1, 1, 1), pad)]

    inputs = [TensorSpec("x0", (4, 4, 2), "float32")]
    with pytest.raises(NotLowerable, match="padded by its window"):
        lower_function(outputs_of, inputs, [TensorSpec("y0", (7, 7, 2), "float32")], opset=21)

"""policyport's own jaxpr -> ONNX lowering, for the primitives MLP policies use.

jax2onnx lowers every JAX primitive but imports ~600 plugin modules first (10 s and more
here), and emits a Transpose pair around every layer. This module lowers the batched
jaxpr of a policy directly, in well under a second: one emitter per primitive, in the
table `EMITTERS`. A primitive missing from the table raises `NotLowerable`, and the
exporter falls back to jax2onnx for that policy.

Two lazy forms keep the graph small: a value can be the 2-D transpose of an ONNX tensor
(what `W @ x.T` is, before the transpose that vmap adds), and a constant stays a numpy
array until an op needs it as a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
import onnx
from jax.extend import core as jex_core
from onnx import TensorProto, helper, numpy_helper

from ..tracing import TracedPolicy, numpy_dtype

_BATCH = "batch"
_ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
}


class NotLowerable(Exception):
    """The jaxpr uses something this lowering does not handle (the message says what)."""


@dataclass(frozen=True)
class _Value:
    """A jaxpr value: an ONNX tensor name, or a constant, possibly a lazy 2-D transpose."""

    name: str | None = None
    const: np.ndarray | None = None
    transposed: bool = False
    partial: bool = False  # smaller than its jaxpr shape: a broadcast left to the consumer


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs) -> list[str]:
        names = [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        return names

    def tensor(self, value: _Value) -> str:
        """The ONNX tensor holding `value` (materialising a constant or a transpose)."""
        if value.const is not None:
            return self.constant(value.const)
        if value.transposed:
            return self.node("Transpose", [value.name], perm=[1, 0])[0]
        return value.name


def _dtype(aval) -> np.dtype:
    return np.dtype(aval.dtype)


def _static_shape(shape) -> list[int]:
    """A shape for Reshape: the symbolic batch becomes 0 ("copy that dimension")."""
    dims = []
    for i, d in enumerate(shape):
        if isinstance(d, int):
            dims.append(d)
        elif i == 0:
            dims.append(0)
        else:
            raise NotLowerable("reshape with a symbolic dimension other than the first")
    return dims


Emitter = Callable[[_Builder, list[_Value], jex_core.JaxprEqn], list[_Value]]


def _elementwise(op: str) -> Emitter:
    def emit(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
        if all(a.partial for a in args):
            raise NotLowerable(f"{eqn.primitive.name} of broadcasts only")
        return [_Value(b.node(op, [b.tensor(a) for a in args])[0])]

    return emit


# Emitters that accept a `partial` (not yet broadcast) operand: ONNX broadcasts for them.
_BROADCASTING = {
    "add",
    "sub",
    "mul",
    "div",
    "max",
    "min",
    "gt",
    "lt",
    "ge",
    "le",
    "eq",
    "and",
    "or",
    "select_n",
}


def _dot_general(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    lhs, rhs = args
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs_aval, rhs_aval = (v.aval for v in eqn.invars)
    if lb or rb or len(lhs_aval.shape) != 2 or len(rhs_aval.shape) != 2:
        raise NotLowerable("dot_general other than a 2-D matrix product")
    lc, rc = tuple(int(i) for i in lc), tuple(int(i) for i in rc)
    if lhs.const is not None and rhs.const is None and (lc, rc) == ((1,), (1,)):
        # W @ x.T: computed as x @ W.T and marked transposed (vmap's transpose undoes it).
        return [
            _Value(
                b.node("Gemm", [b.tensor(rhs), b.constant(lhs.const)], transB=1)[0], transposed=True
            )
        ]
    if rhs.const is not None and lhs.const is None and lc == (1,) and rc in ((0,), (1,)):
        weight = b.constant(rhs.const)
        return [_Value(b.node("Gemm", [b.tensor(lhs), weight], transB=int(rc == (1,)))[0])]
    raise NotLowerable("dot_general of this layout")


def _transpose(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    (x,), perm = args, tuple(int(p) for p in eqn.params["permutation"])
    if x.const is not None:
        return [_Value(const=np.transpose(x.const, perm))]
    if perm == (1, 0) and x.transposed:
        return [_Value(x.name)]
    return [_Value(b.node("Transpose", [b.tensor(x)], perm=list(perm))[0])]


def _same_size(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # symbolic dimensions that cannot be compared
        return False


def _broadcast_in_dim(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    """Insert unit axes; a real broadcast is left to the consuming op (marked `partial`)."""
    (x,) = args
    shape = eqn.params["shape"]
    kept = [int(d) for d in eqn.params["broadcast_dimensions"]]
    inserted = [i for i in range(len(shape)) if i not in kept]
    operand = eqn.invars[0].aval.shape
    full = all(_same_size(shape[i], 1) for i in inserted) and all(
        _same_size(size, shape[k]) for size, k in zip(operand, kept, strict=True)
    )
    if x.const is not None:
        sizes = iter(x.const.shape)
        unit = [1 if i in inserted else next(sizes) for i in range(len(shape))]
        return [_Value(const=x.const.reshape(unit), partial=not full)]
    if not inserted:
        return [_Value(x.name, partial=not full or x.partial)]
    axes = b.constant(np.array(inserted, dtype=np.int64))
    return [_Value(b.node("Unsqueeze", [b.tensor(x), axes])[0], partial=not full)]


def _select_n(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    if len(args) != 3 or np.dtype(eqn.invars[0].aval.dtype) != np.bool_:
        raise NotLowerable("select_n other than a two-way select on a bool predicate")
    predicate, if_false, if_true = args
    if all(a.partial for a in args):
        raise NotLowerable("select_n of broadcasts only")
    operands = [b.tensor(predicate), b.tensor(if_true), b.tensor(if_false)]
    return [_Value(b.node("Where", operands)[0])]


def _argmax(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    (axis,) = eqn.params["axes"]
    (index,) = b.node("ArgMax", [b.tensor(args[0])], axis=int(axis), keepdims=0)
    target = np.dtype(eqn.params["index_dtype"])
    if target != np.int64:
        (index,) = b.node("Cast", [index], to=_ONNX_TYPES[target])
    return [_Value(index)]


def _convert_element_type(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    target = np.dtype(eqn.params["new_dtype"])
    if target not in _ONNX_TYPES:
        raise NotLowerable(f"conversion to {target}")
    (x,) = args
    if x.const is not None:
        return [_Value(const=x.const.astype(target))]
    return [_Value(b.node("Cast", [b.tensor(x)], to=_ONNX_TYPES[target])[0])]


def _squeeze(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    axes = b.constant(np.array([int(d) for d in eqn.params["dimensions"]], dtype=np.int64))
    return [_Value(b.node("Squeeze", [b.tensor(args[0]), axes])[0])]


def _reshape(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    if eqn.params.get("dimensions") is not None:
        raise NotLowerable("reshape with dimensions")
    shape = b.constant(np.array(_static_shape(eqn.params["new_sizes"]), dtype=np.int64))
    return [_Value(b.node("Reshape", [b.tensor(args[0]), shape])[0])]


def _split(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    sizes = b.constant(np.array([int(s) for s in eqn.params["sizes"]], dtype=np.int64))
    outputs = b.node(
        "Split", [b.tensor(args[0]), sizes], outputs=len(eqn.outvars), axis=int(eqn.params["axis"])
    )
    return [_Value(name) for name in outputs]


def _concatenate(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    axis = int(eqn.params["dimension"])
    return [_Value(b.node("Concat", [b.tensor(a) for a in args], axis=axis)[0])]


def _stack(b: _Builder, args: list[_Value], eqn) -> list[_Value]:
    axis = int(eqn.params["axis"])
    if axis == 0 and all(len(v.aval.shape) == 1 for v in eqn.invars):
        # vmap stacks per-row vectors as [k, batch], then transposes: build [batch, k].
        axes = b.constant(np.array([1], dtype=np.int64))
        parts = [b.node("Unsqueeze", [b.tensor(a), axes])[0] for a in args]
        return [_Value(b.node("Concat", parts, axis=1)[0], transposed=True)]
    axes = b.constant(np.array([axis], dtype=np.int64))
    parts = [b.node("Unsqueeze", [b.tensor(a), axes])[0] for a in args]
    return [_Value(b.node("Concat", parts, axis=axis)[0])]


EMITTERS: dict[str, Emitter] = {
    "add": _elementwise("Add"),
    "sub": _elementwise("Sub"),
    "mul": _elementwise("Mul"),
    "div": _elementwise("Div"),
    "max": _elementwise("Max"),
    "min": _elementwise("Min"),
    "gt": _elementwise("Greater"),
    "lt": _elementwise("Less"),
    "ge": _elementwise("GreaterOrEqual"),
    "le": _elementwise("LessOrEqual"),
    "eq": _elementwise("Equal"),
    "and": _elementwise("And"),
    "or": _elementwise("Or"),
    "not": _elementwise("Not"),
    "neg": _elementwise("Neg"),
    "exp": _elementwise("Exp"),
    "log": _elementwise("Log"),
    "tanh": _elementwise("Tanh"),
    "logistic": _elementwise("Sigmoid"),
    "abs": _elementwise("Abs"),
    "sqrt": _elementwise("Sqrt"),
    "dot_general": _dot_general,
    "transpose": _transpose,
    "broadcast_in_dim": _broadcast_in_dim,
    "select_n": _select_n,
    "argmax": _argmax,
    "convert_element_type": _convert_element_type,
    "squeeze": _squeeze,
    "reshape": _reshape,
    "split": _split,
    "concatenate": _concatenate,
    "stack": _stack,
}
# Primitives that only wrap another jaxpr: their body is lowered in place.
_CALLS = ("jit", "pjit", "closed_call", "custom_jvp_call", "custom_vjp_call")


def _inner_jaxpr(eqn) -> jex_core.ClosedJaxpr:
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if inner is None:
        raise NotLowerable(f"{eqn.primitive.name} without a body")
    return inner if isinstance(inner, jex_core.ClosedJaxpr) else jex_core.ClosedJaxpr(inner, ())


def _lower_jaxpr(b: _Builder, closed: jex_core.ClosedJaxpr, args: list[_Value]) -> list[_Value]:
    env: dict = {}

    def read(v) -> _Value:
        if isinstance(v, jex_core.Literal):
            return _Value(const=np.asarray(v.val, dtype=v.aval.dtype))
        return env[v]

    jaxpr = closed.jaxpr
    for var, const in zip(jaxpr.constvars, closed.consts, strict=True):
        env[var] = _Value(const=np.asarray(const))
    for var, arg in zip(jaxpr.invars, args, strict=True):
        env[var] = arg
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS:
            outputs = _lower_jaxpr(b, _inner_jaxpr(eqn), inputs)
        elif all(a.const is not None and not a.partial for a in inputs) and all(
            isinstance(d, int) for v in eqn.outvars for d in v.aval.shape
        ):
            # Fold: a computation on weights alone (e.g. exp(log_std)) runs once, in JAX.
            folded = eqn.primitive.bind(*(a.const for a in inputs), **eqn.params)
            folded = folded if eqn.primitive.multiple_results else [folded]
            outputs = [_Value(const=np.asarray(x)) for x in folded]
        elif name in EMITTERS:
            if name not in _BROADCASTING and any(a.partial for a in inputs):
                raise NotLowerable(f"a broadcast feeding {name!r}")
            outputs = EMITTERS[name](b, inputs, eqn)
        else:
            raise NotLowerable(f"primitive {name!r}")
        for var, value in zip(eqn.outvars, outputs, strict=True):
            env[var] = value
    return [read(v) for v in jaxpr.outvars]


def _value_info(name: str, dtype: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ONNX_TYPES[numpy_dtype(dtype)], [_BATCH, *shape])


def lower_natively(traced: TracedPolicy, opset: int) -> onnx.ModelProto:
    """The batched policy as ONNX, without jax2onnx; raises NotLowerable when it cannot."""
    (batch,) = jax.export.symbolic_shape(_BATCH)
    avals = [jax.ShapeDtypeStruct((batch, *s.shape), numpy_dtype(s.dtype)) for s in traced.inputs]
    closed = jax.make_jaxpr(traced.batched)(*avals)
    b = _Builder()
    outputs = _lower_jaxpr(b, closed, [_Value(s.name) for s in traced.inputs])
    for spec, value, var in zip(traced.outputs, outputs, closed.jaxpr.outvars, strict=True):
        if value.partial:
            raise NotLowerable(f"output {spec.name} is a broadcast")
        tensor = b.tensor(value)
        if _dtype(var.aval) != numpy_dtype(spec.dtype):
            b.nodes.append(
                helper.make_node(
                    "Cast", [tensor], [spec.name], to=_ONNX_TYPES[numpy_dtype(spec.dtype)]
                )
            )
        else:
            b.nodes.append(helper.make_node("Identity", [tensor], [spec.name]))
    graph = helper.make_graph(
        b.nodes,
        "policyport_policy",
        [_value_info(s.name, s.dtype, s.shape) for s in traced.inputs],
        [_value_info(s.name, s.dtype, s.shape) for s in traced.outputs],
        initializer=b.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

"""One ONNX emitter per JAX primitive: the table `EMITTERS` that policyport's lowering reads.

An emitter gets the builder, its operands as `Value`s and the jaxpr equation (for the
params and the avals), and returns one `Value` per equation output. It raises
`NotLowerable` for a form it does not handle, so the exporter can fall back to jax2onnx.

The operands of the emitters named in `BROADCASTING` may be `partial` (ONNX broadcasts
them); every other emitter gets its operands at their full jaxpr shape. Each formula
states where it departs from XLA's arithmetic (the unit tests hold it to stated
tolerances against JAX).
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np
from jax.extend import core as jex_core
from onnx import TensorProto

from ._onnx_builder import Builder, NotLowerable, Value, onnx_type, same_size

Emitter = Callable[[Builder, list[Value], jex_core.JaxprEqn], list[Value]]


def _dtype(var) -> np.dtype:
    return np.dtype(var.aval.dtype)


def _shape(var) -> tuple:
    return tuple(var.aval.shape)


def _scalar(value: float | int, var) -> np.ndarray:
    """A scalar constant of `var`'s dtype."""
    return np.array(value, dtype=_dtype(var))


# ---------------------------------------------------------------- elementwise


def _elementwise(op: str, **attrs) -> Emitter:
    """One ONNX op; a unary one keeps a broadcast lazy, an n-ary one lets ONNX broadcast."""

    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        laid_out = _in_common_layout(b, args, eqn)
        if laid_out is not None:
            names, view = laid_out
            return [Value(b.op(op, names, **attrs), layout=view.layout, units=view.units)]
        args = [b.plain(a) for a in args]
        if len(args) == 1:
            (x,) = args
            return [Value(b.op(op, [b.tensor(x)], **attrs), partial=x.partial)]
        if all(a.partial for a in args):  # the result is bigger than every operand
            first = b.full(args[0], _shape(eqn.invars[0]))
            return [Value(b.op(op, [first, *(b.tensor(a) for a in args[1:])], **attrs))]
        return [Value(b.op(op, [b.tensor(a) for a in args], **attrs))]

    return emit


def _composite(build: Callable[[Builder, list[str], jex_core.JaxprEqn], str]) -> Emitter:
    """An emitter made of several ONNX ops on full-shape operands."""

    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        return [Value(build(b, [b.tensor(a) for a in args], eqn))]

    return emit


def _in_common_layout(b: Builder, args: list[Value], eqn) -> tuple[list[str], Value] | None:
    """The operands as ONNX tensors in the view of the laid-out ones (constants reshaped
    to it), when they share one; else None (the caller materialises them)."""
    views = {(a.layout, a.units) for a in args if a.const is None}
    if len(views) != 1 or None in {v[0] for v in views}:
        return None
    view = next(a for a in args if a.const is None)
    assert view.layout is not None  # the one view is a layout: checked above
    names: list[str] = []
    for a in args:
        if a.const is None:
            if a.partial or a.order is not None:
                return None
            names.append(a.tensor)
        elif np.ndim(a.const) == 0:
            names.append(b.constant(a.const))
        elif np.ndim(a.const) == len(view.layout) - view.layout.count(-1) + len(view.units):
            names.append(b.constant(_const_in_view(a.const, view)))
        else:
            return None
    return names, view


def _const_in_view(const: np.ndarray, view: Value) -> np.ndarray:
    """A constant of the value's rank laid out as `view`'s ONNX tensor (it broadcasts)."""
    assert view.layout is not None
    squeezed = np.squeeze(const, axis=tuple(view.units)) if view.units else const
    remaining = [a for a in range(const.ndim) if a not in view.units]
    listed = [a for a in view.layout if a != -1]
    moved = np.transpose(squeezed, [remaining.index(a) for a in listed])
    for j, a in enumerate(view.layout):
        if a == -1:
            moved = np.expand_dims(moved, j)
    return moved


def _passthrough(b: Builder, args: list[Value], eqn) -> list[Value]:
    """Identity in a forward pass (stop_gradient, copy, optimization barriers)."""
    return list(args)


@_composite
def _ne(b: Builder, xs: list[str], eqn) -> str:
    return b.op("Not", [b.op("Equal", xs)])


@_composite
def _square(b: Builder, xs: list[str], eqn) -> str:
    return b.op("Mul", [xs[0], xs[0]])


@_composite
def _rsqrt(b: Builder, xs: list[str], eqn) -> str:
    # XLA computes 1/sqrt(x) to within an ulp or two; so does this.
    return b.op("Reciprocal", [b.op("Sqrt", xs)])


@_composite
def _exp2(b: Builder, xs: list[str], eqn) -> str:
    return b.op("Pow", [b.constant(_scalar(2.0, eqn.invars[0])), xs[0]])


@_composite
def _is_finite(b: Builder, xs: list[str], eqn) -> str:
    # x - x is 0 for every finite x and NaN for infinities and NaN.
    zero = b.constant(_scalar(0.0, eqn.invars[0]))
    return b.op("Equal", [b.op("Sub", [xs[0], xs[0]]), zero])


@_composite
def _log1p(b: Builder, xs: list[str], eqn) -> str:
    """log(1 + x) accurate for tiny x: `log(u) * x / (u - 1)` with u = 1 + x (Goldberg)."""
    (x,), var = xs, eqn.invars[0]
    one = b.constant(_scalar(1.0, var))
    u = b.op("Add", [x, one])
    d = b.op("Sub", [u, one])
    ratio = b.op("Where", [b.op("IsInf", [d]), one, b.op("Div", [x, d])])
    general = b.op("Mul", [b.op("Log", [u]), ratio])
    return b.op("Where", [b.op("Equal", [d, b.constant(_scalar(0.0, var))]), x, general])


@_composite
def _expm1(b: Builder, xs: list[str], eqn) -> str:
    """exp(x) - 1 accurate for tiny x: `(u - 1) * x / log(u)` with u = exp(x) (Kahan)."""
    (x,), var = xs, eqn.invars[0]
    one = b.constant(_scalar(1.0, var))
    u = b.op("Exp", [x])
    d = b.op("Sub", [u, one])
    general = b.op("Mul", [d, b.op("Div", [x, b.op("Log", [u])])])
    general = b.op("Where", [b.op("IsInf", [u]), u, general])
    minus_one = b.constant(_scalar(-1.0, var))
    general = b.op("Where", [b.op("Equal", [d, minus_one]), minus_one, general])
    return b.op("Where", [b.op("Equal", [u, one]), x, general])


@_composite
def _integer_pow(b: Builder, xs: list[str], eqn) -> str:
    """x ** y by squaring, the same multiplications in the same order as JAX's lowering."""
    (x,), y = xs, int(eqn.params["y"])
    if y == 0:
        return b.op("Expand", [b.constant(_scalar(1, eqn.invars[0])), b.op("Shape", [x])])
    power, acc = abs(y), None
    while power > 0:
        if power & 1:
            acc = x if acc is None else b.op("Mul", [acc, x])
        power >>= 1
        if power > 0:
            x = b.op("Mul", [x, x])
    assert acc is not None
    if y < 0:
        return b.op("Div", [b.constant(_scalar(1, eqn.invars[0])), acc])
    return acc


def _negative(b: Builder, x: str, var) -> str:
    """x < 0, counting -0 as negative (1 / -0 is -inf): atan2 tells the zeros apart."""
    zero, one = b.constant(_scalar(0.0, var)), b.constant(_scalar(1.0, var))
    return b.op("Or", [b.op("Less", [x, zero]), b.op("Less", [b.op("Div", [one, x]), zero])])


@_composite
def _atan2(b: Builder, xs: list[str], eqn) -> str:
    """atan2(y, x) from atan(y / x) and the quadrant, signed zeros as in C's atan2.

    Departs from XLA only where both operands are infinite (NaN here, +-pi/4 or +-3pi/4
    there); an observation feature has no such input.
    """
    (y, x), var = xs, eqn.invars[0]
    zero = b.constant(_scalar(0.0, var))
    pi, half_pi = (b.constant(_scalar(v, var)) for v in (np.pi, np.pi / 2))
    y_negative, x_negative = _negative(b, y, var), _negative(b, x, var)
    signed_pi = b.op("Where", [y_negative, b.op("Neg", [pi]), pi])
    quotient = b.op("Atan", [b.op("Div", [y, x])])
    result = b.op("Where", [x_negative, b.op("Add", [quotient, signed_pi]), quotient])
    on_axis = b.op("Where", [y_negative, b.op("Neg", [half_pi]), half_pi])  # x = 0, y != 0
    at_origin = b.op("Where", [x_negative, signed_pi, y])  # x = 0, y = 0
    x_zero, y_zero = b.op("Equal", [x, zero]), b.op("Equal", [y, zero])
    on_axis = b.op("Where", [y_zero, at_origin, on_axis])
    return b.op("Where", [x_zero, on_axis, result])


@_composite
def _round(b: Builder, xs: list[str], eqn) -> str:
    (x,) = xs
    if int(eqn.params["rounding_method"]) == 1:  # TO_NEAREST_EVEN: ONNX's Round
        return b.op("Round", [x])
    # AWAY_FROM_ZERO, exactly: truncate, then step away from zero when |frac| >= 0.5.
    sign = b.op("Sign", [x])
    truncated = b.op("Mul", [sign, b.op("Floor", [b.op("Abs", [x])])])
    fraction = b.op("Abs", [b.op("Sub", [x, truncated])])
    half = b.constant(_scalar(0.5, eqn.invars[0]))
    stepped = b.op("Add", [truncated, sign])
    return b.op("Where", [b.op("GreaterOrEqual", [fraction, half]), stepped, truncated])


def _clamp(b: Builder, args: list[Value], eqn) -> list[Value]:
    """lax.clamp(low, x, high) = min(max(x, low), high)."""
    low, x, high = args
    operand = b.full(x, _shape(eqn.invars[1])) if x.partial else b.tensor(x)
    raised = b.op("Max", [operand, b.tensor(low)])
    return [Value(b.op("Min", [raised, b.tensor(high)]))]


def _select_n(b: Builder, args: list[Value], eqn) -> list[Value]:
    """`cases[predicate]`: Where for a bool predicate, a chain of Wheres for an int one."""
    predicate, *cases = args
    if predicate.const is not None and np.unique(predicate.const).size == 1:
        # A choice made at trace time (e.g. a config flag reaching jnp.where): no Where.
        return [cases[int(np.asarray(predicate.const).reshape(-1)[0])]]
    if all(a.partial for a in args):
        predicate = Value(b.full(predicate, _shape(eqn.invars[0])))
    which = b.tensor(predicate)
    if _dtype(eqn.invars[0]) == np.bool_:
        if len(cases) != 2:
            raise NotLowerable("select_n with a bool predicate and more than two cases")
        if_false, if_true = cases
        return [Value(b.op("Where", [which, b.tensor(if_true), b.tensor(if_false)]))]
    result = b.tensor(cases[-1])
    for i in range(len(cases) - 2, -1, -1):
        chosen = b.op("Equal", [which, b.constant(_scalar(i, eqn.invars[0]))])
        result = b.op("Where", [chosen, b.tensor(cases[i]), result])
    return [Value(result)]


def _dim_as_value(b: Builder, args: list[Value], eqn) -> list[Value]:
    """A dimension as an int scalar: the batch size is read from the input's shape."""
    dim, target = eqn.params["dim"], _dtype(eqn.outvars[0])
    if isinstance(dim, int):
        return [Value(const=np.array(dim, dtype=target))]
    if not same_size(dim, b.batch):
        raise NotLowerable(f"the value of the symbolic dimension {dim}")
    scalar = b.op("Squeeze", [b.batch_size(), b.int64s([0])])
    return [Value(b.op("Cast", [scalar], to=onnx_type(target)))]


def _convert_element_type(b: Builder, args: list[Value], eqn) -> list[Value]:
    target = np.dtype(eqn.params["new_dtype"])
    to = onnx_type(target)
    (x,) = args
    if x.const is not None:
        return [Value(const=x.const.astype(target), partial=x.partial)]
    if x.laid_out and not x.partial:  # a cast works in any layout
        cast = b.op("Cast", [x.tensor], to=to)
        return [Value(cast, layout=x.layout, units=x.units, order=x.order)]
    return [Value(b.op("Cast", [b.tensor(x)], to=to), partial=x.partial)]


# ---------------------------------------------------------------- reductions


def _reduce(op: str, via_int: bool = False) -> Emitter:
    """Reduce over `axes` (an input from opset 18 on, ReduceSum's from 13; an attribute
    before); bool reductions go through int32."""

    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        axes = [int(a) for a in eqn.params["axes"]]
        view: dict = {}
        if args[0].layout is not None and args[0].order is None:
            # Reduce the ONNX axes that hold `axes` (a unit axis absent from the tensor
            # needs nothing); the rest keep their places, renumbered.
            current, units = args[0].layout, args[0].units

            def renumber(a: int) -> int:
                return -1 if a == -1 else a - sum(r < a for r in axes)

            kept = [a for a in current if a not in axes]
            view = {
                "layout": tuple(renumber(a) for a in kept),
                "units": tuple(renumber(u) for u in units if u not in axes),
            }
            axes = sorted(current.index(a) for a in axes if a in current)
            x = args[0].tensor
        else:
            x = b.tensor(args[0])
        if not axes:
            return [_normalised(Value(x, **view))]
        if via_int:
            x = b.op("Cast", [x], to=TensorProto.INT32)
        if b.opset < 18 and op != "ReduceSum":
            reduced = b.op(op, [x], axes=axes, keepdims=0)
        else:
            reduced = b.op(op, [x, b.int64s(axes)], keepdims=0)
        if via_int:
            reduced = b.op("Cast", [reduced], to=TensorProto.BOOL)
        return [_normalised(Value(reduced, **view))]

    return emit


def _arg_reduce(op: str) -> Emitter:
    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        (axis,) = eqn.params["axes"]
        index = b.op(op, [b.tensor(args[0])], axis=int(axis), keepdims=0)
        target = np.dtype(eqn.params["index_dtype"])
        if target != np.int64:
            index = b.op("Cast", [index], to=onnx_type(target))
        return [Value(index)]

    return emit


def _cumsum(b: Builder, args: list[Value], eqn) -> list[Value]:
    axis = b.constant(np.array(int(eqn.params["axis"]), dtype=np.int64))
    reverse = int(bool(eqn.params["reverse"]))
    return [Value(b.op("CumSum", [b.tensor(args[0]), axis], reverse=reverse))]


def _sort(b: Builder, args: list[Value], eqn) -> list[Value]:
    """A stable ascending sort on one key (jnp.sort, jnp.argsort): TopK of all elements,
    the other operands permuted alike. ONNX's TopK puts the lower index first among equal
    keys, as a stable sort does; NaN keys are outside what it specifies (XLA puts them
    last)."""
    if int(eqn.params["num_keys"]) != 1:
        raise NotLowerable("sort on more than one key")
    axis = int(eqn.params["dimension"])
    size = _shape(eqn.invars[0])[axis]
    if not isinstance(size, int):
        raise NotLowerable("sort along the batch dimension")
    keys, *others = (b.tensor(a) for a in args)
    values, order = b.node(
        "TopK", [keys, b.int64s([size])], outputs=2, axis=axis, largest=0, sorted=1
    )
    permuted = [b.op("GatherElements", [other, order], axis=axis) for other in others]
    return [Value(values), *(Value(p) for p in permuted)]


def _top_k(b: Builder, args: list[Value], eqn) -> list[Value]:
    """The k largest along an axis, largest first, the lower index first among ties."""
    axis = int(eqn.params.get("axis", len(_shape(eqn.invars[0])) - 1))
    k = int(eqn.params["k"])
    values, indices = b.node(
        "TopK", [b.tensor(args[0]), b.int64s([k])], outputs=2, axis=axis, largest=1, sorted=1
    )
    target = _dtype(eqn.outvars[1])
    if target != np.int64:
        indices = b.op("Cast", [indices], to=onnx_type(target))
    return [Value(values), Value(indices)]


# ---------------------------------------------------------------- linear algebra


def _einsum_equation(eqn) -> str:
    """dot_general as an einsum: batch dims, then lhs free dims, then rhs free dims."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs_rank, rhs_rank = (len(v.aval.shape) for v in eqn.invars)
    letters = iter(string.ascii_lowercase)
    lhs = [next(letters) for _ in range(lhs_rank)]
    rhs: list[str | None] = [None] * rhs_rank
    for i, j in zip(lc, rc, strict=True):
        rhs[int(j)] = lhs[int(i)]
    for i, j in zip(lb, rb, strict=True):
        rhs[int(j)] = lhs[int(i)]
    named = [r if r is not None else next(letters) for r in rhs]
    used_l = {int(i) for i in (*lc, *lb)}
    used_r = {int(j) for j in (*rc, *rb)}
    out = [lhs[int(i)] for i in lb]
    out += [c for i, c in enumerate(lhs) if i not in used_l]
    out += [c for j, c in enumerate(named) if j not in used_r]
    return f"{''.join(lhs)},{''.join(named)}->{''.join(out)}"


def _as_type(b: Builder, x: Value, dtype: np.dtype, target: np.dtype) -> Value:
    """`x` (of `dtype`, not laid out) converted to `target`."""
    if dtype == target:
        return x
    if x.const is not None:
        return Value(const=np.asarray(x.const).astype(target))
    return Value(b.op("Cast", [b.tensor(x)], to=onnx_type(target)))


def _dot_general(b: Builder, args: list[Value], eqn) -> list[Value]:
    """A layer's matrix product as one Gemm (weights constant); anything else as Einsum."""
    lhs, rhs = args
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs_aval, rhs_aval = (v.aval for v in eqn.invars)
    lc, rc = tuple(int(i) for i in lc), tuple(int(i) for i in rc)
    if lhs.order is not None and rhs.const is not None and lc == (1,) and len(rc) == 1:
        # A flatten in another layout: the weight's rows permuted alike, no data moved.
        rhs = Value(const=np.take(rhs.const, np.asarray(lhs.order), axis=rc[0]))
        lhs = Value(lhs.name)
    lhs, rhs = b.plain(lhs), b.plain(rhs)
    types = (_dtype(eqn.invars[0]), _dtype(eqn.invars[1]))
    if types[0] != types[1]:
        # Mixed operands (a uint8 observation times float32 weights, as `W @ x` traces):
        # XLA converts both to the result's type; ONNX's Gemm and Einsum need one type.
        target = _dtype(eqn.outvars[0])
        lhs, rhs = (_as_type(b, v, t, target) for v, t in zip((lhs, rhs), types, strict=True))
        types = (target, target)
    matrices = not lb and not rb and len(lhs_aval.shape) == 2 and len(rhs_aval.shape) == 2
    if matrices and types[0] == np.float32 == types[1]:
        if lhs.const is not None and rhs.const is None and (lc, rc) == ((1,), (1,)):
            # W @ x.T: computed as x @ W.T and marked transposed (vmap's transpose undoes it).
            product = b.op("Gemm", [b.tensor(rhs), b.constant(lhs.const)], transB=1)
            return [Value(product, transposed=True)]
        if rhs.const is not None and lhs.const is None and lc == (1,) and rc in ((0,), (1,)):
            weight = b.constant(rhs.const)
            return [Value(b.op("Gemm", [b.tensor(lhs), weight], transB=int(rc == (1,))))]
    product = b.op("Einsum", [b.tensor(lhs), b.tensor(rhs)], equation=_einsum_equation(eqn))
    target = _dtype(eqn.outvars[0])
    if target != types[0]:
        product = b.op("Cast", [product], to=onnx_type(target))
    return [Value(product)]


# ---------------------------------------------------------------- shapes and layout


def _transpose(b: Builder, args: list[Value], eqn) -> list[Value]:
    """Lazy beyond two axes: the ONNX tensor stays, its layout is noted (a convolution
    or a pooling reads it as it is; another op materialises it, one Transpose)."""
    (x,), perm = args, tuple(int(p) for p in eqn.params["permutation"])
    if x.const is not None:
        return [Value(const=np.transpose(x.const, perm))]
    if len(perm) > 2 and not x.partial and x.order is None and not x.transposed:
        inverse = np.argsort(perm)
        current = x.layout or tuple(range(len(perm)))
        layout = tuple(-1 if a == -1 else int(inverse[a]) for a in current)
        units = tuple(int(inverse[u]) for u in x.units)
        return [_normalised(Value(x.name, layout=layout, units=units))]
    x = b.plain(x)
    if perm == (1, 0) and x.transposed:
        return [Value(x.name)]
    return [Value(b.op("Transpose", [b.tensor(x)], perm=list(perm)))]


def _broadcast_in_dim(b: Builder, args: list[Value], eqn) -> list[Value]:
    """Insert unit axes; a real broadcast is left to the consuming op (marked `partial`)."""
    (x,) = args
    shape = eqn.params["shape"]
    kept = [int(d) for d in eqn.params["broadcast_dimensions"]]
    inserted = [i for i in range(len(shape)) if i not in kept]
    operand = _shape(eqn.invars[0])
    if x.layout is not None:
        relaid = _unit_relayout(b, x, operand, tuple(shape))
        if relaid is not None:
            return [relaid]
        x = b.plain(x)
    full = (
        not x.partial
        and all(same_size(shape[i], 1) for i in inserted)
        and all(same_size(size, shape[k]) for size, k in zip(operand, kept, strict=True))
    )
    if x.const is not None:
        sizes = iter(x.const.shape)
        unit = [1 if i in inserted else next(sizes) for i in range(len(shape))]
        return [Value(const=x.const.reshape(unit), partial=not full)]
    if not inserted:
        return [Value(x.name, transposed=x.transposed, partial=not full)]
    return [Value(b.op("Unsqueeze", [b.tensor(x), b.int64s(inserted)]), partial=not full)]


def _squeeze(b: Builder, args: list[Value], eqn) -> list[Value]:
    if args[0].layout is not None:
        relaid = _unit_relayout(b, args[0], _shape(eqn.invars[0]), _shape(eqn.outvars[0]))
        if relaid is not None:
            return [relaid]
    args = [b.plain(a) for a in args]
    axes = b.int64s(eqn.params["dimensions"])
    return [Value(b.op("Squeeze", [b.tensor(args[0]), axes]))]


def _reshape(b: Builder, args: list[Value], eqn) -> list[Value]:
    if eqn.params.get("dimensions") is not None:
        raise NotLowerable("reshape with dimensions")
    new, old = tuple(eqn.params["new_sizes"]), _shape(eqn.invars[0])
    if args[0].layout is not None:
        relaid = _unit_relayout(b, args[0], old, new) or _flatten(b, args[0], old, new)
        if relaid is not None:
            return [relaid]
    args = [b.plain(a) for a in args]
    batch_first = new and old and not isinstance(new[0], int) and same_size(new[0], old[0])
    if batch_first and all(isinstance(d, int) for d in new[1:]):
        # The batch stays first: Reshape copies it (0), no shape computed at run time.
        return [Value(b.reshape(b.tensor(args[0]), [0, *new[1:]]))]
    # allowzero: a static 0 in the new shape means an empty axis, not "copy this one".
    allow_zero = int(any(isinstance(d, int) and d == 0 for d in new))
    reshaped = b.op("Reshape", [b.tensor(args[0]), b.shape(new)], allowzero=allow_zero)
    return [Value(reshaped)]


def _is_unit(d) -> bool:
    return isinstance(d, int) and d == 1


def _normalised(value: Value) -> Value:
    """`value` without a view when its ONNX tensor is the jaxpr value as it is."""
    identity = value.layout == tuple(range(len(value.layout or ())))
    if value.layout is not None and not value.units and identity:
        return Value(value.name, order=value.order)
    return value


def _unit_relayout(b: Builder, x: Value, old: tuple, new: tuple) -> Value | None:
    """A laid-out value with unit axes inserted or removed: the same ONNX tensor, its view
    renumbered (no op), or None when `new` moves more than unit axes."""
    kept_old = [i for i, d in enumerate(old) if not _is_unit(d)]
    kept_new = [i for i, d in enumerate(new) if not _is_unit(d)]
    if len(kept_old) != len(kept_new) or not all(
        same_size(old[i], new[j]) for i, j in zip(kept_old, kept_new, strict=True)
    ):
        return None
    if x.layout is None or x.order is not None or x.partial:
        return None
    moved = dict(zip(kept_old, kept_new, strict=True))
    layout = tuple(moved.get(a, -1) for a in x.layout)  # a unit axis: an ONNX axis of size 1
    units = tuple(j for j in range(len(new)) if j not in moved.values())
    return _normalised(Value(x.name, layout=layout, units=units))


def _flatten(b: Builder, x: Value, old: tuple, new: tuple) -> Value | None:
    """`[batch, ...] -> [batch, n]` of a laid-out value: the ONNX tensor flattened as it
    lies, its feature order noted for the layer that reads it (`Value.order`)."""
    layout = x.layout
    if (
        layout is None
        or layout[0] != 0
        or len(new) != 2
        or not same_size(new[0], old[0])
        or not all(isinstance(d, int) for d in old[1:])
    ):
        return None
    index = np.arange(int(np.prod(old[1:]))).reshape(old[1:])
    if x.units:
        index = np.squeeze(index, axis=tuple(u - 1 for u in x.units))
    remaining = [a for a in range(1, len(old)) if a not in x.units]
    listed = [a for a in layout[1:] if a != -1]
    order = np.transpose(index, [remaining.index(a) for a in listed]).ravel()
    # The row's size written out: with `-1`, onnxruntime cannot reshape a batch of 0 rows.
    flat = b.reshape(x.tensor, [0, int(np.prod(old[1:]))])
    return Value(flat, order=tuple(int(i) for i in order))


def _onnx_order(b: Builder, x: Value, order: tuple[int, ...], shape: tuple) -> str:
    """The ONNX tensor of `x` with the jaxpr value's axes in `order`: as it lies, or one
    Reshape (unit axes), one Transpose, or (rarely) a view materialised then transposed."""
    if x.const is not None:
        return b.constant(np.transpose(x.const, order))
    x = b.plain(x) if x.order is not None or x.transposed else x
    if x.layout is None:
        perm = list(order)
        return x.tensor if perm == sorted(perm) else b.op("Transpose", [x.tensor], perm=perm)
    listed = [a for a in x.layout if a != -1]
    if listed == list(order) and -1 not in x.layout and not x.units:
        return x.tensor
    real = [a for a in listed if not _is_unit(shape[a])]
    if (
        real == [a for a in order if not _is_unit(shape[a])]
        and x.layout[0] == 0 == order[0]
        and all(isinstance(shape[a], int) for a in order[1:])
    ):
        return b.reshape(x.tensor, [0, *(shape[a] for a in order[1:])])
    if not x.units and -1 not in x.layout:
        return b.op("Transpose", [x.tensor], perm=[listed.index(a) for a in order])
    return b.op("Transpose", [b.tensor(x)], perm=list(order))


# ---------------------------------------------------------------- convolution and pooling


def _conv(b: Builder, args: list[Value], eqn) -> list[Value]:
    """`lax.conv_general_dilated` as ONNX Conv, which reads NCHW: the input in that order
    (one Transpose, none when it is laid out so already) and the output left in it, laid
    out (`Value.layout`) for the ops after. Any strides, padding >= 0, kernel dilation,
    feature groups; float32, constant weights. The sums' order may differ from XLA's
    (a few float32 ulps of the sum's magnitude)."""
    lhs, rhs = args
    params = eqn.params
    if rhs.const is None:
        raise NotLowerable("a convolution whose kernel is computed at run time")
    if _dtype(eqn.invars[0]) != np.float32 or _dtype(eqn.outvars[0]) != np.float32:
        raise NotLowerable("a convolution that is not float32")
    if int(params["batch_group_count"]) != 1:
        raise NotLowerable("a convolution with batch_group_count")
    if any(int(d) != 1 for d in params["lhs_dilation"]):
        raise NotLowerable("a transposed convolution (lhs_dilation)")
    padding = [(int(lo), int(hi)) for lo, hi in params["padding"]]
    if any(lo < 0 or hi < 0 for lo, hi in padding):
        raise NotLowerable("a convolution with negative padding")
    lhs_spec, rhs_spec, out_spec = (tuple(int(d) for d in s) for s in params["dimension_numbers"])
    if not same_size(_shape(eqn.invars[0])[lhs_spec[0]], b.batch) or lhs_spec[0] != 0:
        raise NotLowerable("a convolution whose batch is not the leading axis")
    x = _onnx_order(b, lhs, lhs_spec, _shape(eqn.invars[0]))
    kernel = np.ascontiguousarray(np.transpose(np.asarray(rhs.const, np.float32), rhs_spec))
    y = b.op(
        "Conv",
        [x, b.constant(kernel, "kernel")],
        kernel_shape=list(kernel.shape[2:]),
        strides=[int(s) for s in params["window_strides"]],
        pads=[lo for lo, _ in padding] + [hi for _, hi in padding],
        dilations=[int(d) for d in params["rhs_dilation"]],
        group=int(params["feature_group_count"]),
    )
    return [Value(y, layout=None if out_spec == tuple(range(len(out_spec))) else out_spec)]


def _pooling(kind: str) -> Emitter:
    """`reduce_window_max` as ONNX MaxPool (padding as -inf, as XLA's init value) and
    `reduce_window_sum` as a depthwise Conv with a kernel of ones (padding as 0; the sum's
    order may differ from XLA's by float32 ulps). The window's axes go last, the others
    (batch, channels, unit axes) first, folded into ONNX's [N, C] by a Reshape when
    there are more or fewer than two of them."""

    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        (x,), params = args, eqn.params
        shape, dtype = _shape(eqn.invars[0]), _dtype(eqn.invars[0])
        allowed = (np.float32, np.uint8, np.int8) if kind == "max" else (np.float32,)
        if dtype not in [np.dtype(d) for d in allowed]:
            raise NotLowerable(f"reduce_window_{kind} on {dtype}")
        if any(int(d) != 1 for d in params["base_dilation"]):
            raise NotLowerable(f"reduce_window_{kind} with base dilation")
        window = [int(d) for d in params["window_dimensions"]]
        strides = [int(d) for d in params["window_strides"]]
        dilation = [int(d) for d in params["window_dilation"]]
        padding = [(int(lo), int(hi)) for lo, hi in params["padding"]]
        pooled = [
            a
            for a in range(len(shape))
            if (window[a], strides[a], dilation[a], padding[a]) != (1, 1, 1, (0, 0))
        ]
        if not pooled or 0 in pooled or any(lo < 0 or hi < 0 for lo, hi in padding):
            raise NotLowerable(f"reduce_window_{kind} over the batch or with negative padding")
        current = tuple(a for a in x.layout if a != -1) if x.layout else ()
        current += tuple(a for a in range(len(shape)) if a not in current)  # absent units
        order = tuple(a for a in current if a not in pooled) + tuple(
            a for a in current if a in pooled
        )
        rest = order[: len(order) - len(pooled)]
        if rest[0] != 0 or any(not isinstance(shape[a], int) for a in order[1:]):
            raise NotLowerable(f"reduce_window_{kind} with a symbolic window axis")
        t = _onnx_order(b, x, order, shape)
        channels = int(np.prod([shape[a] for a in rest[1:]]))
        folded = len(rest) != 2
        if folded:
            t = b.reshape(t, [0, channels, *(shape[a] for a in pooled_in(order, pooled))])
        attrs = {
            "kernel_shape": [window[a] for a in pooled_in(order, pooled)],
            "strides": [strides[a] for a in pooled_in(order, pooled)],
            "pads": [padding[a][0] for a in pooled_in(order, pooled)]
            + [padding[a][1] for a in pooled_in(order, pooled)],
            "dilations": [dilation[a] for a in pooled_in(order, pooled)],
        }
        if kind == "max":
            kernels = 2 * attrs["kernel_shape"]  # pads are all the begins, then all the ends
            if any(pad >= k for pad, k in zip(attrs["pads"], kernels, strict=True)):
                # XLA takes it; onnxruntime refuses the session ("Pad should be smaller
                # than kernel"): jax2onnx's graph instead.
                raise NotLowerable("a max pooling padded by its window or more")
            y = b.op("MaxPool", [t], **attrs)
        else:
            ones = np.ones((channels, 1, *attrs["kernel_shape"]), np.float32)
            y = b.op("Conv", [t, b.constant(ones, "ones")], group=channels, **attrs)
        out = _shape(eqn.outvars[0])
        if folded:
            y = b.reshape(y, [0, *(out[a] for a in order[1:])])
        return [Value(y, layout=None if order == tuple(range(len(order))) else order)]

    return emit


def pooled_in(order: tuple[int, ...], pooled: list[int]) -> list[int]:
    """The pooled axes in the order the ONNX tensor holds them."""
    return [a for a in order if a in pooled]


def _split(b: Builder, args: list[Value], eqn) -> list[Value]:
    sizes = b.int64s(eqn.params["sizes"])
    outputs = b.node(
        "Split", [b.tensor(args[0]), sizes], outputs=len(eqn.outvars), axis=int(eqn.params["axis"])
    )
    return [Value(name) for name in outputs]


def _concatenate(b: Builder, args: list[Value], eqn) -> list[Value]:
    axis = int(eqn.params["dimension"])
    return [Value(b.op("Concat", [b.tensor(a) for a in args], axis=axis))]


def _stack(b: Builder, args: list[Value], eqn) -> list[Value]:
    axis = int(eqn.params["axis"])
    if axis == 0 and all(len(v.aval.shape) == 1 for v in eqn.invars):
        # vmap stacks per-row vectors as [k, batch], then transposes: build [batch, k].
        axes = b.int64s([1])
        parts = [b.op("Unsqueeze", [b.tensor(a), axes]) for a in args]
        return [Value(b.op("Concat", parts, axis=1), transposed=True)]
    axes = b.int64s([axis])
    parts = [b.op("Unsqueeze", [b.tensor(a), axes]) for a in args]
    return [Value(b.op("Concat", parts, axis=axis))]


def _slice_axes(
    b: Builder, x: str, shape: tuple, starts: list, ends: list, steps: list | None = None
) -> str:
    """Slice `x` on the axes whose window is not the whole axis (the batch never is)."""
    steps = steps or [1] * len(shape)
    axes = [
        i
        for i, (d, s, e, t) in enumerate(zip(shape, starts, ends, steps, strict=True))
        if not (isinstance(d, int) and s == 0 and e == d and t == 1)
        and not (not isinstance(d, int) and s == 0 and t == 1 and same_size(e, d))
    ]
    if any(not isinstance(shape[i], int) for i in axes):
        raise NotLowerable("a slice of the batch dimension")
    if not axes:
        return x

    def pick(values: list) -> list[int]:
        return [int(values[i]) for i in axes]

    return b.op(
        "Slice",
        [x, b.int64s(pick(starts)), b.int64s(pick(ends)), b.int64s(axes), b.int64s(pick(steps))],
    )


def _slice(b: Builder, args: list[Value], eqn) -> list[Value]:
    shape = _shape(eqn.invars[0])
    strides = eqn.params["strides"]
    steps = [1] * len(shape) if strides is None else [int(s) for s in strides]
    starts = [int(s) for s in eqn.params["start_indices"]]
    ends = list(eqn.params["limit_indices"])
    return [Value(_slice_axes(b, b.tensor(args[0]), shape, starts, ends, steps))]


def _constant_index(value: Value, what: str) -> int:
    if value.const is None:
        raise NotLowerable(f"{what} with indices computed at run time")
    return int(np.asarray(value.const).reshape(()))


def _dynamic_slice(b: Builder, args: list[Value], eqn) -> list[Value]:
    """A window at constant start indices, clamped into range as XLA clamps them."""
    x, *indices = args
    shape, sizes = _shape(eqn.invars[0]), list(eqn.params["slice_sizes"])
    starts, ends = [], []
    for d, size, index in zip(shape, sizes, indices, strict=True):
        start = _constant_index(index, "dynamic_slice")
        if isinstance(d, int):
            start = min(max(start, 0), d - int(size))
        starts.append(start)
        ends.append(start + size if isinstance(size, int) else size)
    return [Value(_slice_axes(b, b.tensor(x), shape, starts, ends))]


def _rev(b: Builder, args: list[Value], eqn) -> list[Value]:
    axes = [int(d) for d in eqn.params["dimensions"]]
    if not axes:
        return [args[0]]
    if any(not isinstance(_shape(eqn.invars[0])[a], int) for a in axes):
        raise NotLowerable("rev of the batch dimension")
    lowest = np.iinfo(np.int64).min
    reversed_ = b.op(
        "Slice",
        [
            b.tensor(args[0]),
            b.int64s([-1] * len(axes)),
            b.int64s([lowest] * len(axes)),
            b.int64s(axes),
            b.int64s([-1] * len(axes)),
        ],
    )
    return [Value(reversed_)]


def _pad(b: Builder, args: list[Value], eqn) -> list[Value]:
    x, fill = args
    config = [tuple(int(p) for p in c) for c in eqn.params["padding_config"]]
    if any(interior for _, _, interior in config):
        raise NotLowerable("pad with interior padding")
    pads = b.int64s([low for low, _, _ in config] + [high for _, high, _ in config])
    return [Value(b.op("Pad", [b.tensor(x), pads, b.tensor(fill)], mode="constant"))]


def _tile(b: Builder, args: list[Value], eqn) -> list[Value]:
    return [Value(b.op("Tile", [b.tensor(args[0]), b.int64s(eqn.params["reps"])]))]


# ---------------------------------------------------------------- gather


def _gather(b: Builder, args: list[Value], eqn) -> list[Value]:
    """The gathers that vmapped indexing makes: `x[..., i, ...]` with an index array or a
    computed index (ONNX Gather), an index per batch row (GatherElements) and a window
    at constant starts (Slice). XLA clamps starts into range (modes CLIP and
    PROMISE_IN_BOUNDS); so do these. FILL_OR_DROP is lowered for constant in-range
    indices only."""
    x, indices = args
    dn = eqn.params["dimension_numbers"]
    shape, index_shape = _shape(eqn.invars[0]), _shape(eqn.invars[1])
    sizes = list(eqn.params["slice_sizes"])
    index_map = [int(d) for d in dn.start_index_map]
    operand_batching = [int(d) for d in dn.operand_batching_dims]
    if not index_shape or index_shape[-1] != len(index_map):
        raise NotLowerable("gather whose index vector is not the last axis of its indices")
    if any(not isinstance(shape[a], int) for a in index_map):
        raise NotLowerable("gather along the batch dimension")
    if operand_batching:
        return _gather_per_row(b, x, indices, eqn)
    if len(index_shape) == 1 and indices.const is not None:
        return _gather_window(b, x, indices, eqn)
    narrowed = [
        a for a in range(len(shape)) if not same_size(sizes[a], shape[a])
    ]  # the axes a window does not cover whole
    if len(narrowed) != 1 or narrowed[0] not in index_map or int(sizes[narrowed[0]]) != 1:
        raise NotLowerable("gather of windows other than one element along one axis")
    return _gather_take(b, x, indices, eqn, narrowed[0])


def _fill_or_drop(eqn) -> bool:
    return str(eqn.params["mode"]).endswith("FILL_OR_DROP")


def _gather_window(b: Builder, x: Value, indices: Value, eqn) -> list[Value]:
    """One window at constant starts (`lax.dynamic_slice` under vmap): a Slice."""
    dn = eqn.params["dimension_numbers"]
    if dn.collapsed_slice_dims:
        raise NotLowerable("gather of a constant window with collapsed axes")
    shape, sizes = _shape(eqn.invars[0]), list(eqn.params["slice_sizes"])
    starts = [0] * len(shape)
    for column, axis in enumerate(int(d) for d in dn.start_index_map):
        start = int(np.asarray(indices.const)[column])
        clamped = min(max(start, 0), int(shape[axis]) - int(sizes[axis]))
        if clamped != start and _fill_or_drop(eqn):
            raise NotLowerable("gather that fills an out-of-range window (mode FILL_OR_DROP)")
        starts[axis] = clamped
    ends = [s + z if isinstance(z, int) else z for s, z in zip(starts, sizes, strict=True)]
    return [Value(_slice_axes(b, b.tensor(x), shape, starts, ends))]


def _index_column(b: Builder, indices: Value, column: int, size: int, eqn) -> str:
    """Column `column` of the index vectors, as int64 clipped into [0, size - 1]."""
    if indices.const is not None:
        values = np.asarray(indices.const).astype(np.int64)[..., column]
        if _fill_or_drop(eqn) and (np.any(values < 0) or np.any(values >= size)):
            raise NotLowerable("gather that fills out-of-range rows (mode FILL_OR_DROP)")
        return b.constant(np.clip(values, 0, size - 1))
    if _fill_or_drop(eqn):
        raise NotLowerable("gather that fills out-of-range rows (mode FILL_OR_DROP)")
    wide = b.op("Cast", [b.tensor(indices)], to=TensorProto.INT64)
    last = len(_shape(eqn.invars[1])) - 1
    picked = b.op("Gather", [wide, b.constant(np.array(column, np.int64))], axis=last)
    low, high = b.constant(np.array(0, np.int64)), b.constant(np.array(size - 1, np.int64))
    return b.op("Clip", [picked, low, high])


def _gather_take(b: Builder, x: Value, indices: Value, eqn, axis: int) -> list[Value]:
    """`x[..., i, ...]` along `axis`: ONNX Gather, then the axes into XLA's output order.

    The index columns of the other axes are ignored: their windows are whole, so XLA
    clamps those starts to 0.
    """
    dn = eqn.params["dimension_numbers"]
    shape = _shape(eqn.invars[0])
    column = [int(d) for d in dn.start_index_map].index(axis)
    index = _index_column(b, indices, column, int(shape[axis]), eqn)
    gathered = b.op("Gather", [b.tensor(x), index], axis=axis)
    index_rank = len(_shape(eqn.invars[1])) - 1
    # ONNX: operand dims before `axis`, the index dims, operand dims after `axis`.
    onnx_dims = [("x", i) for i in range(axis)] + [("i", k) for k in range(index_rank)]
    if axis not in [int(d) for d in dn.collapsed_slice_dims]:  # XLA keeps a unit axis
        gathered = b.op("Unsqueeze", [gathered, b.int64s([axis + index_rank])])
        onnx_dims.append(("x", axis))
    onnx_dims += [("x", i) for i in range(axis + 1, len(shape))]
    # XLA: the window's kept dims at `offset_dims`, the index dims everywhere else.
    offset_dims = [int(d) for d in dn.offset_dims]
    kept = iter([d for d in sorted(onnx_dims) if d[0] == "x"])
    batch = iter([("i", k) for k in range(index_rank)])
    xla_dims = [next(kept) if p in offset_dims else next(batch) for p in range(len(onnx_dims))]
    perm = [onnx_dims.index(d) for d in xla_dims]
    if perm != list(range(len(perm))):
        gathered = b.op("Transpose", [gathered], perm=perm)
    return [Value(gathered)]


def _gather_per_row(b: Builder, x: Value, indices: Value, eqn) -> list[Value]:
    """`x[row, i[row]]` (an index per batch row): GatherElements on a 2-D operand."""
    dn = eqn.params["dimension_numbers"]
    shape, index_shape = _shape(eqn.invars[0]), _shape(eqn.invars[1])
    layout = (
        [int(d) for d in dn.operand_batching_dims],
        [int(d) for d in dn.start_indices_batching_dims],
        [int(d) for d in dn.start_index_map],
        len(shape),
        len(index_shape),
    )
    if layout != ([0], [0], [1], 2, 2) or [int(z) for z in eqn.params["slice_sizes"]] != [1, 1]:
        raise NotLowerable("a per-row gather other than one index per row of a matrix")
    index = _index_column(b, indices, 0, int(shape[1]), eqn)
    index = b.op("Unsqueeze", [index, b.int64s([1])])
    gathered = b.op("GatherElements", [b.tensor(x), index], axis=1)
    if [int(d) for d in dn.collapsed_slice_dims] == [1]:
        gathered = b.op("Squeeze", [gathered, b.int64s([1])])
    return [Value(gathered)]


# Primitives that are one ONNX op applied elementwise.
_ELEMENTWISE: dict[str, tuple[str, dict]] = {
    "add": ("Add", {}),
    "sub": ("Sub", {}),
    "mul": ("Mul", {}),
    "div": ("Div", {}),
    "rem": ("Mod", {"fmod": 1}),  # C's fmod: the sign of the dividend, as lax.rem
    "pow": ("Pow", {}),
    "max": ("Max", {}),
    "min": ("Min", {}),
    "gt": ("Greater", {}),
    "lt": ("Less", {}),
    "ge": ("GreaterOrEqual", {}),
    "le": ("LessOrEqual", {}),
    "eq": ("Equal", {}),
    "and": ("And", {}),
    "or": ("Or", {}),
    "xor": ("Xor", {}),
    "not": ("Not", {}),
    "neg": ("Neg", {}),
    "abs": ("Abs", {}),
    "sign": ("Sign", {}),
    "floor": ("Floor", {}),
    "ceil": ("Ceil", {}),
    "exp": ("Exp", {}),
    "log": ("Log", {}),
    "sqrt": ("Sqrt", {}),
    "tanh": ("Tanh", {}),
    "logistic": ("Sigmoid", {}),
    "sin": ("Sin", {}),
    "cos": ("Cos", {}),
    "tan": ("Tan", {}),
    "asin": ("Asin", {}),
    "acos": ("Acos", {}),
    "atan": ("Atan", {}),
    "sinh": ("Sinh", {}),
    "cosh": ("Cosh", {}),
    "asinh": ("Asinh", {}),
    "acosh": ("Acosh", {}),
    "atanh": ("Atanh", {}),
    "erf": ("Erf", {}),
}
# Identities in a forward pass.
_PASSTHROUGH = ("stop_gradient", "copy", "optimization_barrier")

EMITTERS: dict[str, Emitter] = {
    **{name: _elementwise(op, **attrs) for name, (op, attrs) in _ELEMENTWISE.items()},
    **dict.fromkeys(_PASSTHROUGH, _passthrough),
    "ne": _ne,
    "atan2": _atan2,
    "clamp": _clamp,
    "select_n": _select_n,
    "round": _round,
    "exp2": _exp2,
    "expm1": _expm1,
    "log1p": _log1p,
    "rsqrt": _rsqrt,
    "square": _square,
    "integer_pow": _integer_pow,
    "is_finite": _is_finite,
    "convert_element_type": _convert_element_type,
    "dim_as_value": _dim_as_value,
    # reductions
    "reduce_sum": _reduce("ReduceSum"),
    "reduce_max": _reduce("ReduceMax"),
    "reduce_min": _reduce("ReduceMin"),
    "reduce_prod": _reduce("ReduceProd"),
    "reduce_or": _reduce("ReduceMax", via_int=True),
    "reduce_and": _reduce("ReduceMin", via_int=True),
    "argmax": _arg_reduce("ArgMax"),
    "argmin": _arg_reduce("ArgMin"),
    "cumsum": _cumsum,
    "sort": _sort,
    "top_k": _top_k,
    # linear algebra
    "dot_general": _dot_general,
    # shapes, layout and indexing
    "transpose": _transpose,
    "broadcast_in_dim": _broadcast_in_dim,
    "squeeze": _squeeze,
    "reshape": _reshape,
    "split": _split,
    "concatenate": _concatenate,
    "stack": _stack,
    "slice": _slice,
    "dynamic_slice": _dynamic_slice,
    "rev": _rev,
    "pad": _pad,
    "tile": _tile,
    "gather": _gather,
    # convolution and pooling
    "conv_general_dilated": _conv,
    "reduce_window_max": _pooling("max"),
    "reduce_window_sum": _pooling("sum"),
}

# Emitters that read a laid-out operand (`Value.layout` / `.order`) as it is; every other
# emitter gets its operands in the jaxpr's own layout (`Builder.plain`).
LAYOUT_AWARE = frozenset(
    {
        *_ELEMENTWISE,
        *_PASSTHROUGH,
        "convert_element_type",
        "reduce_sum",
        "reduce_max",
        "reduce_min",
        "dot_general",
        "transpose",
        "broadcast_in_dim",
        "squeeze",
        "reshape",
        "conv_general_dilated",
        "reduce_window_max",
        "reduce_window_sum",
    }
)

# Emitters that accept a `partial` (not yet broadcast) operand: ONNX broadcasts for them,
# or (unary ones) the result is the same broadcast of a smaller result.
BROADCASTING = frozenset(
    {
        *_ELEMENTWISE,
        *_PASSTHROUGH,
        "select_n",
        "clamp",
        "convert_element_type",
        "broadcast_in_dim",
    }
)

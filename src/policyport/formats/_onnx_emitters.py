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
    return [Value(b.op("Cast", [b.tensor(x)], to=to), partial=x.partial)]


# ---------------------------------------------------------------- reductions


def _reduce(op: str, via_int: bool = False) -> Emitter:
    """Reduce over `axes` (an input from opset 18 on, ReduceSum's from 13; an attribute
    before); bool reductions go through int32."""

    def emit(b: Builder, args: list[Value], eqn) -> list[Value]:
        axes = [int(a) for a in eqn.params["axes"]]
        x = b.tensor(args[0])
        if not axes:
            return [Value(x)]
        if via_int:
            x = b.op("Cast", [x], to=TensorProto.INT32)
        if b.opset < 18 and op != "ReduceSum":
            reduced = b.op(op, [x], axes=axes, keepdims=0)
        else:
            reduced = b.op(op, [x, b.int64s(axes)], keepdims=0)
        if via_int:
            reduced = b.op("Cast", [reduced], to=TensorProto.BOOL)
        return [Value(reduced)]

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


def _dot_general(b: Builder, args: list[Value], eqn) -> list[Value]:
    """A layer's matrix product as one Gemm (weights constant); anything else as Einsum."""
    lhs, rhs = args
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs_aval, rhs_aval = (v.aval for v in eqn.invars)
    lc, rc = tuple(int(i) for i in lc), tuple(int(i) for i in rc)
    matrices = not lb and not rb and len(lhs_aval.shape) == 2 and len(rhs_aval.shape) == 2
    if matrices and _dtype(eqn.invars[0]) == np.float32 == _dtype(eqn.invars[1]):
        if lhs.const is not None and rhs.const is None and (lc, rc) == ((1,), (1,)):
            # W @ x.T: computed as x @ W.T and marked transposed (vmap's transpose undoes it).
            product = b.op("Gemm", [b.tensor(rhs), b.constant(lhs.const)], transB=1)
            return [Value(product, transposed=True)]
        if rhs.const is not None and lhs.const is None and lc == (1,) and rc in ((0,), (1,)):
            weight = b.constant(rhs.const)
            return [Value(b.op("Gemm", [b.tensor(lhs), weight], transB=int(rc == (1,))))]
    product = b.op("Einsum", [b.tensor(lhs), b.tensor(rhs)], equation=_einsum_equation(eqn))
    target = _dtype(eqn.outvars[0])
    if target != _dtype(eqn.invars[0]):
        product = b.op("Cast", [product], to=onnx_type(target))
    return [Value(product)]


# ---------------------------------------------------------------- shapes and layout


def _transpose(b: Builder, args: list[Value], eqn) -> list[Value]:
    (x,), perm = args, tuple(int(p) for p in eqn.params["permutation"])
    if x.const is not None:
        return [Value(const=np.transpose(x.const, perm))]
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
    axes = b.int64s(eqn.params["dimensions"])
    return [Value(b.op("Squeeze", [b.tensor(args[0]), axes]))]


def _reshape(b: Builder, args: list[Value], eqn) -> list[Value]:
    if eqn.params.get("dimensions") is not None:
        raise NotLowerable("reshape with dimensions")
    new, old = tuple(eqn.params["new_sizes"]), _shape(eqn.invars[0])
    batch_first = new and old and not isinstance(new[0], int) and same_size(new[0], old[0])
    if batch_first and all(isinstance(d, int) for d in new[1:]):
        # The batch stays first: Reshape copies it (0), no shape computed at run time.
        shape = b.int64s([0, *new[1:]])
        return [Value(b.op("Reshape", [b.tensor(args[0]), shape]))]
    # allowzero: a static 0 in the new shape means an empty axis, not "copy this one".
    allow_zero = int(any(isinstance(d, int) and d == 0 for d in new))
    reshaped = b.op("Reshape", [b.tensor(args[0]), b.shape(new)], allowzero=allow_zero)
    return [Value(reshaped)]


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
}

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

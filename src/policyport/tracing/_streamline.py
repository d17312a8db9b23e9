"""The sample entry's jaxpr without the work its distributions repeat.

lerax's categorical (distreqx's maths, and policyport's mirror of it) normalises the
logits with a log-softmax, masks them, and takes a second log-softmax; sampling checks
that the softmax of that is a valid probability vector; the log-probability of the drawn
action multiplies the log-probabilities by a one-hot and sums. Traced, that is three
log-softmaxes, a validity check as long as the network, and a one-hot product, per
categorical block (73 ONNX nodes for a Discrete policy whose plain graph has 20). Each
rule below computes the same outputs with less work, the same NaN/inf behaviour
included (all-masked rows: sampled action 0 and log-probability NaN; rows with NaN or
inf logits: as in JAX). Only float rounding differs, and only where a rule says so.

These rewrite the jaxpr formats lower (`TracedPolicy.lowered`), never the one the parity
check runs: every artifact is still compared with the policy's own computation.

Shapes: `axes` are a reduction's axes; the per-row values (`max`, `log(sum(exp))`) have
the reduced shape and are broadcast back with size-1 axes, as `jax.nn.log_softmax` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, JaxprEqn, Var

from ._rewrite import Atom, Index, Rewrite, Rule, rewrite


def _through(index: Index, atom: Any, *primitives: str) -> tuple[Any, frozenset[Var]]:
    """`atom` with any chain of the given one-input primitives in front of it stripped."""
    matched: set[Var] = set()
    while (eqn := index.eqn(atom, *primitives)) is not None:
        matched.add(atom)
        atom = eqn.invars[0]
    return atom, frozenset(matched)


def _broadcast_back(index: Index, atom: Any, axes: tuple[int, ...]) -> tuple[Any, frozenset[Var]]:
    """`m` when `atom` is `m` (reduced over `axes`) broadcast back with size-1 `axes`,
    possibly through `stop_gradient`; else `(None, {})`."""
    inner, matched = _through(index, atom, "stop_gradient")
    eqn = index.eqn(inner, "broadcast_in_dim")
    if eqn is None:
        return None, frozenset()
    rank = len(eqn.params["shape"])
    kept = tuple(d for d in range(rank) if d not in axes)
    if tuple(eqn.params["broadcast_dimensions"]) != kept or any(
        eqn.params["shape"][a] != 1 for a in axes
    ):
        return None, frozenset()
    source, more = _through(index, eqn.invars[0], "stop_gradient")
    return source, matched | more | {inner}


@dataclass(frozen=True)
class _MaxShift:
    """A per-row `max(z)` over `axes`, possibly `max(-inf, .)` and plus a poison `q - q`
    (0, or NaN where `q` is not finite). Finite exactly when `z - it` has no NaN and
    reaches 0: `z` has no NaN or +inf and is not all -inf, and the poison is 0."""

    logits: Atom
    axes: tuple[int, ...]
    matched: frozenset[Var]


def _max_shift(index: Index, atom: Any) -> _MaxShift | None:
    matched: set[Var] = set()
    poison = index.eqn(atom, "add")
    if poison is not None:
        for base, extra in (poison.invars, poison.invars[::-1]):
            zero = index.eqn(extra, "sub")
            if zero is not None and zero.invars[0] is zero.invars[1]:
                matched |= {atom, extra}
                atom = base
                break
    floor = index.eqn(atom, "max")
    if floor is not None:
        for base, low in (floor.invars, floor.invars[::-1]):
            if index.uniform(low) == -math.inf:
                matched.add(atom)
                atom = base
                break
    reduce = index.eqn(atom, "reduce_max")
    if reduce is None:
        return None
    return _MaxShift(reduce.invars[0], tuple(reduce.params["axes"]), frozenset(matched | {atom}))


@dataclass(frozen=True)
class _LogSoftmax:
    """`y = s - log(sum(exp(s)))` with `s = z - m`, `m` broadcast back along `axes`.

    `shift` is `m` (reduced shape); `max_shift` when it is a `_MaxShift` of `z` over the
    same axes, so that `is_finite(m)` says whether `y` is free of NaN (then `y` is all
    NaN or none of it, per row)."""

    logits: Atom
    axes: tuple[int, ...]
    shift: Atom
    max_shift: _MaxShift | None
    matched: frozenset[Var]


def _log_softmax(index: Index, atom: Any) -> _LogSoftmax | None:
    outer = index.eqn(atom, "sub")
    inner = outer and index.eqn(outer.invars[0], "sub")
    log = outer and index.eqn(outer.invars[1], "log")
    if outer is None or inner is None or log is None:
        return None
    shifted = outer.invars[0]
    logits, shift_b = inner.invars
    broadcast = index.eqn(log.invars[0], "broadcast_in_dim")
    total = broadcast and index.eqn(broadcast.invars[0], "reduce_sum")
    if total is None:
        return None
    axes = tuple(total.params["axes"])
    summed, matched = _broadcast_back(index, log.invars[0], axes)
    exp = index.eqn(total.invars[0], "exp")
    if summed is not total.outvars[0] or exp is None or exp.invars[0] is not shifted:
        return None
    shift, more = _broadcast_back(index, shift_b, axes)
    if shift is None:
        return None
    found = _max_shift(index, shift)
    if found is not None and (found.logits is not logits or found.axes != axes):
        found = None
    used = {atom, shifted, outer.invars[1], summed, total.invars[0]}
    return _LogSoftmax(logits, axes, shift, found, frozenset(matched | more | used))


def _keep_dims(value: Any, axes: tuple[int, ...], rank: int) -> Any:
    """A reduced `value` broadcast back with size-1 `axes` (as `keepdims=True` traces)."""
    kept = tuple(d for d in range(rank) if d not in axes)
    shape = [1] * rank
    for d, size in zip(kept, value.shape, strict=True):
        shape[d] = size
    return lax.broadcast_in_dim(value, tuple(shape), kept)


def _log_softmax_of(z: Any, axes: tuple[int, ...], poison: Any) -> Any:
    """`jax.nn.log_softmax(z, axes)` with `poison` (0 or NaN, reduced shape) added to the
    row maximum: the same values where it is 0, NaN rows where it is NaN."""
    rank = z.ndim
    shift = lax.reduce_max(z, axes) + poison
    shifted = z - lax.stop_gradient(_keep_dims(shift, axes, rank))
    return shifted - jnp.log(_keep_dims(lax.reduce_sum(jnp.exp(shifted), axes), axes, rank))


def _masked_log_softmax_once(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`log_softmax(where(mask, log_softmax(x), -inf))` -> `log_softmax(where(mask, x, -inf))`.

    The inner log-softmax shifts each row by a constant, which the outer one removes; its
    only other effect is NaN rows where `x` has a NaN or +inf, or is all -inf, i.e. where
    its row maximum `m1` is not finite. The rewrite keeps that by adding `m1 - m1` (0 or
    NaN) to the outer row maximum. Values differ by float rounding only (a few ulps of
    the logits' spread). The mask is applied as `x + log(legal)` (see `compute`).
    """
    outer = _log_softmax(index, eqn.outvars[0]) if eqn.primitive.name == "sub" else None
    if outer is None or outer.max_shift is None:
        return None
    select = index.eqn(outer.logits, "select_n")
    if select is None or len(select.invars) != 3:
        return None
    mask, on_false, on_true = select.invars
    for inner_atom, fill, inner_first in ((on_true, on_false, False), (on_false, on_true, True)):
        inner = _log_softmax(index, inner_atom)
        if inner is None or inner.max_shift is None or inner.axes != outer.axes:
            continue
        if index.uniform(fill) != -math.inf:
            continue

        def compute(x: Any, mask: Any, m1: Any, *, first: bool = inner_first) -> list:
            # `x + log(legal)` is `where(legal, x, -inf)` except where `x` is NaN or +inf,
            # and there the poison makes the whole row NaN anyway. onnxruntime's Where with
            # a scalar fill was an eighth of the sample entry's time at batch 4096 (its
            # profile); without it, 1.75x -> 1.5x a plain call (bench/sampling.py).
            legal = jnp.logical_not(mask) if first else mask
            z = x + jnp.log(legal.astype(x.dtype))
            return [_log_softmax_of(z, outer.axes, m1 - m1)]

        matched = outer.matched | inner.matched | {outer.logits}
        return Rewrite(eqn, (inner.logits, mask, inner.shift), compute, matched)
    return None


def _softmax_of_log_softmax(index: Index, atom: Any) -> tuple[_LogSoftmax, frozenset] | None:
    """`softmax(y)` with `y` a log-softmax over the same axes (as `jax.nn.softmax` traces:
    `exp(y - max) / broadcast(sum)`)."""
    div = index.eqn(atom, "div")
    if div is None:
        return None
    numerator, denominator = div.invars
    exp = index.eqn(numerator, "exp")
    shifted = exp and index.eqn(exp.invars[0], "sub")
    if exp is None or shifted is None:
        return None
    y, shift_b = shifted.invars
    inner = _log_softmax(index, y)
    if inner is None or inner.max_shift is None:
        return None
    axes = inner.axes
    total, matched = _broadcast_back(index, denominator, axes)
    total_eqn = index.eqn(total, "reduce_sum")
    if total_eqn is None or total_eqn.invars[0] is not numerator:
        return None
    if tuple(total_eqn.params["axes"]) != axes:
        return None
    shift, more = _broadcast_back(index, shift_b, axes)
    row_max = shift is not None and _max_shift(index, shift)
    if not row_max or row_max.logits is not y or row_max.axes != axes:
        return None
    used = {atom, numerator, exp.invars[0], total}
    return inner, frozenset(matched | more | row_max.matched | used)


def _valid_probabilities(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`all(isfinite(p)) & all(p >= 0)` for `p = softmax(log_softmax(z))` -> `isfinite(m)`,
    `m` the log-softmax's row maximum.

    distreqx checks the probabilities before sampling (invalid: lerax returns -1,
    policyport's mirror 0). When `m` is finite, `z - m` has no NaN and reaches 0, so `y`
    has no NaN and at most 0, and `p` is finite and non-negative; when it is not, `y` and
    `p` are all NaN. Exact, and one comparison per row instead of a softmax and two
    reductions over it.
    """
    if eqn.primitive.name != "and":
        return None
    found_reductions = [index.eqn(v, "reduce_and") for v in eqn.invars]
    reductions = [r for r in found_reductions if r is not None]
    if len(reductions) != len(found_reductions):
        return None
    tests = [(r, index.eqn(r.invars[0], "is_finite")) for r in reductions]
    finite, is_finite = next(((r, t) for r, t in tests if t is not None), (None, None))
    other = next((r for r in reductions if r is not finite), None)
    if finite is None or is_finite is None or other is None:
        return None
    probabilities = is_finite.invars[0]
    nonnegative = index.eqn(other.invars[0], "ge")
    if nonnegative is None or nonnegative.invars[0] is not probabilities:
        return None
    if index.uniform(nonnegative.invars[1]) != 0:
        return None
    found = _softmax_of_log_softmax(index, probabilities)
    if found is None:
        return None
    inner, matched = found
    axes = inner.axes
    if tuple(finite.params["axes"]) != axes or tuple(other.params["axes"]) != axes:
        return None
    used = {*eqn.invars, finite.invars[0], other.invars[0]}
    return Rewrite(eqn, (inner.shift,), lambda m: [jnp.isfinite(m)], frozenset(matched | used))


def _indicator(index: Index, atom: Any, depth: int = 0) -> tuple[Atom, bool] | None:
    """`(b, negated)` when `atom` is a boolean `b` (or `not b` when negated) converted to
    numbers: `convert(b)`, `1 - indicator`, or a conversion of an indicator."""
    if depth > 4:
        return None
    convert = index.eqn(atom, "convert_element_type")
    if convert is not None:
        source = convert.invars[0]
        if source.aval.dtype == jnp.bool_:
            return source, False
        return _indicator(index, source, depth + 1)
    minus = index.eqn(atom, "sub")
    if minus is not None and index.uniform(minus.invars[0]) == 1:
        inner = _indicator(index, minus.invars[1], depth + 1)
        return None if inner is None else (inner[0], not inner[1])
    return None


def _select_by_indicator(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`where(i == 0, 0, v * i)`, `i` a 0/1 indicator of a boolean `b` -> `where(b, v, 0)`.

    How `multiply_no_nan` by a one-hot (a categorical's log-probability) or by a
    Bernoulli's bit traces. Exact: `v * 1` is `v` (inf and NaN included).
    """
    if eqn.primitive.name != "select_n" or len(eqn.invars) != 3:
        return None
    test, product, zero = eqn.invars
    is_zero = index.eqn(test, "eq")
    multiply = index.eqn(product, "mul")
    if is_zero is None or multiply is None or index.uniform(zero) != 0:
        return None
    if index.uniform(is_zero.invars[1]) != 0:
        return None
    tested = _indicator(index, is_zero.invars[0])
    for value, factor in (multiply.invars, multiply.invars[::-1]):
        scaled = _indicator(index, factor)
        shape = eqn.outvars[0].aval.shape
        if tested is None or scaled != tested or value.aval.shape != shape:
            continue
        bit, negated = tested
        if bit.aval.shape != shape:
            continue

        def compute(b: Any, v: Any, *, negated: bool = negated) -> list:
            zeros = jnp.zeros_like(v)
            return [lax.select_n(b, v, zeros) if negated else lax.select_n(b, zeros, v)]

        matched = frozenset({test, product})
        return Rewrite(eqn, (bit, value), compute, matched)
    return None


def _int_range(index: Index, atom: Any, depth: int = 0) -> tuple[int, int] | None:
    """Bounds every entry of an integer `atom` lies within, when its producers say."""
    value = index.value(atom)
    if value is not None:
        if value.size == 0 or not jnp.issubdtype(value.dtype, jnp.integer):
            return None
        return int(value.min()), int(value.max())
    if depth > 8 or not isinstance(atom, Var):
        return None
    eqn = index.producer.get(atom)
    if eqn is None or not jnp.issubdtype(atom.aval.dtype, jnp.integer):
        return None
    name = eqn.primitive.name
    if name in ("argmax", "argmin"):
        (axis,) = eqn.params["axes"]
        return 0, eqn.invars[0].aval.shape[axis] - 1
    if name in ("convert_element_type", "broadcast_in_dim", "reshape", "squeeze"):
        source = eqn.invars[0]
        if not jnp.issubdtype(source.aval.dtype, jnp.integer):
            return None
        bounds = _int_range(index, source, depth + 1)
        info = jnp.iinfo(atom.aval.dtype)
        return bounds if bounds and info.min <= bounds[0] and bounds[1] <= info.max else None
    if name == "select_n":
        found = [_int_range(index, v, depth + 1) for v in eqn.invars[1:]]
        parts = [p for p in found if p is not None]
        if len(parts) != len(found):
            return None
        return min(p[0] for p in parts), max(p[1] for p in parts)
    return None


_COMPARISONS = {
    "lt": lambda lo, hi, c: True if hi < c else False if lo >= c else None,
    "le": lambda lo, hi, c: True if hi <= c else False if lo > c else None,
    "gt": lambda lo, hi, c: True if lo > c else False if hi <= c else None,
    "ge": lambda lo, hi, c: True if lo >= c else False if hi < c else None,
}


def _decided_comparison(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`v < c` (or <=, >, >=) with `v`'s range on one side of `c` -> a constant.

    The categorical log-probability's `action outside [0, n)` test, on an action that
    is an argmax over `n` entries (or 0). Exact.
    """
    decide = _COMPARISONS.get(eqn.primitive.name)
    if decide is None:
        return None
    left, right = eqn.invars
    bounds, limit = _int_range(index, left), index.uniform(right)
    if bounds is None or limit is None or isinstance(limit, bool):
        return None
    answer = decide(*bounds, limit)
    if answer is None:
        return None
    shape = eqn.outvars[0].aval.shape
    return Rewrite(eqn, (), lambda: [jnp.full(shape, answer)], frozenset())


def _known_select(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`select_n(c, a, b)` with a constant `c` (all entries equal) -> the chosen case."""
    if eqn.primitive.name != "select_n":
        return None
    choice = index.uniform(eqn.invars[0])
    if choice is None:
        return None
    case = eqn.invars[1 + int(choice)]
    if case.aval.shape != eqn.outvars[0].aval.shape:
        return None
    return Rewrite(eqn, (case,), lambda v: [v], frozenset())


def _max_with_minus_infinity(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`max(-inf, x)` -> `x` (how `jnp.max(..., initial=-inf)` traces). Exact: XLA's max
    returns `x` for any `x`, NaN included."""
    if eqn.primitive.name != "max":
        return None
    out = eqn.outvars[0].aval
    for x, low in (eqn.invars, eqn.invars[::-1]):
        if index.uniform(low) == -math.inf and x.aval.shape == out.shape:
            return Rewrite(eqn, (x,), lambda v: [v], frozenset())
    return None


def _unstacked(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`squeeze(slice(stack(a_0, ..., a_k), [i:i+1]))` -> `a_i`: one sub-action read back
    from the stacked action (a MultiCategorical's log-probability of block `i`). Exact."""
    if eqn.primitive.name != "squeeze":
        return None
    cut = index.eqn(eqn.invars[0], "slice")
    stack = cut and index.eqn(cut.invars[0], "stack")
    if cut is None or stack is None:
        return None
    axis = stack.params["axis"]
    strides = cut.params["strides"]
    if tuple(eqn.params["dimensions"]) != (axis,) or (strides and any(s != 1 for s in strides)):
        return None
    start, limit = cut.params["start_indices"], cut.params["limit_indices"]
    shape = stack.outvars[0].aval.shape
    others = [d for d in range(len(shape)) if d != axis]
    if limit[axis] != start[axis] + 1 or any(start[d] != 0 or limit[d] != shape[d] for d in others):
        return None
    part = stack.invars[start[axis]]
    return Rewrite(eqn, (part,), lambda v: [v], frozenset({eqn.invars[0]}))


def _sum_of_stack(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`sum(stack(a_0, ..., a_k), axis)` -> `a_0 + ... + a_k` (the blocks' log-probabilities
    added up). Float rounding may differ: XLA's reduction order is its own."""
    if eqn.primitive.name != "reduce_sum":
        return None
    stack = index.eqn(eqn.invars[0], "stack")
    if stack is None or tuple(eqn.params["axes"]) != (stack.params["axis"],):
        return None

    def compute(*parts: Any) -> list:
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return [total]

    return Rewrite(eqn, tuple(stack.invars), compute, frozenset({eqn.invars[0]}))


def _no_reduction(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """A reduction over no axes -> its input. Exact."""
    if not eqn.primitive.name.startswith("reduce_") or eqn.params.get("axes", None) != ():
        return None
    if eqn.invars[0].aval.shape != eqn.outvars[0].aval.shape:
        return None
    return Rewrite(eqn, (eqn.invars[0],), lambda v: [v], frozenset())


def _known_logic(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`b | False` and `b & True` -> `b`. Exact."""
    neutral = {"or": False, "and": True}.get(eqn.primitive.name)
    if neutral is None or eqn.outvars[0].aval.dtype != jnp.bool_:
        return None
    shape = eqn.outvars[0].aval.shape
    for b, other in (eqn.invars, eqn.invars[::-1]):
        if index.uniform(other) is neutral and b.aval.shape == shape:
            return Rewrite(eqn, (b,), lambda v: [v], frozenset())
    return None


def _either(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`where(b, a, 0) + where(b, 0, c)` -> `where(b, a, c)`: a Bernoulli's log-probability
    per bit, one of its two terms. Exact up to the sign of a zero result."""
    if eqn.primitive.name != "add":
        return None
    first, second = (index.eqn(v, "select_n") for v in eqn.invars)
    if first is None or second is None or len(first.invars) != 3 or len(second.invars) != 3:
        return None
    if first.invars[0] is not second.invars[0]:
        return None
    shape = eqn.outvars[0].aval.shape
    for a, b in ((first, second), (second, first)):
        if index.uniform(a.invars[2]) == 0 and index.uniform(b.invars[1]) == 0:
            kept = (a.invars[0], a.invars[1], b.invars[2])
            if all(v.aval.shape == shape for v in kept):
                return Rewrite(
                    eqn, kept, lambda c, x, y: [lax.select_n(c, x, y)], frozenset(eqn.invars)
                )
    return None


_ELEMENTWISE = frozenset(
    {
        *("neg", "abs", "sign", "exp", "exp2", "expm1", "log", "log1p", "logistic", "tanh"),
        *("sqrt", "rsqrt", "square", "integer_pow", "pow", "floor", "ceil"),
        *("add", "sub", "mul", "div", "max", "min", "select_n", "is_finite"),
        *("eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or"),
        *("convert_element_type", "stop_gradient"),
    }
)


class _Twins:
    """Two elementwise computations of the same shape and structure, differing only in
    some inputs (`leaves`): pairs of variables, in the order they are computed."""

    def __init__(self, index: Index, shape: tuple[int, ...]):
        self.index, self.shape = index, shape
        self.pairs: dict[tuple[Var, Var], JaxprEqn | None] = {}  # None: a leaf pair
        self.readers: set[int] = set()  # ids of both sides' paired equations
        # A variable of the first computation stands for one value in the sunk one: it is
        # shared by both sides or paired with one variable of the second, never both.
        self.partner: dict[Var, Any] = {}
        self.shared: set[Var] = set()
        self.order: list[tuple[Var, Var]] = []

    def match(self, u: Any, v: Any, depth: int = 0) -> bool:
        if u is v:
            if isinstance(u, Var) and u in self.partner:
                return False
            if isinstance(u, Var):
                self.shared.add(u)
            return True
        if isinstance(u, Var) != isinstance(v, Var):
            return False
        if not isinstance(u, Var):  # two literals
            return repr(u.val) == repr(v.val) and u.aval == v.aval
        if (u, v) in self.pairs:
            return True
        if u in self.shared or u in self.partner:
            return False
        eu, ev = self.index.producer.get(u), self.index.producer.get(v)
        same = (
            depth < 32
            and eu is not None
            and ev is not None
            and eu.primitive is ev.primitive
            and eu.primitive.name in _ELEMENTWISE
            and eu.params == ev.params
            and len(eu.invars) == len(ev.invars)
            and u.aval == v.aval
        )
        pairs = (
            zip(eu.invars, ev.invars, strict=True)
            if same and eu is not None and ev is not None
            else ()
        )
        if same and all(self.match(a, b, depth + 1) for a, b in pairs):
            self.pairs[(u, v)] = eu
            self.readers |= {id(eu), id(ev)}
        elif u.aval.shape == v.aval.shape == self.shape and u.aval.dtype == v.aval.dtype:
            self.pairs[(u, v)] = None
        else:
            return False
        if u in self.shared:  # became shared further down this pair's inputs
            return False
        self.partner[u] = v
        self.order.append((u, v))
        return True

    def private(self, top: JaxprEqn) -> bool:
        """Whether every paired variable is read only inside the pair (or by `top`)."""
        inside = self.readers | {id(top)}
        for (u, v), eqn in self.pairs.items():
            if eqn is None:
                continue
            for var in (u, v):
                if any(user is None or id(user) not in inside for user in self.index.users[var]):
                    return False
        return True


def _select_sunk(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`where(b, f(u), f(v))` -> `f(where(b, u, v))`, `f` the same elementwise ops on both
    sides: a Bernoulli's `log_sigmoid(x)` and `log_sigmoid(-x)` become one. Exact."""
    if eqn.primitive.name != "select_n" or len(eqn.invars) != 3:
        return None
    condition, u, v = eqn.invars
    shape = eqn.outvars[0].aval.shape
    twins = _Twins(index, shape)
    if condition.aval.shape != shape or not twins.match(u, v):
        return None
    if (u, v) not in twins.pairs or twins.pairs[(u, v)] is None or not twins.private(eqn):
        return None
    leaves = [pair for pair in twins.order if twins.pairs[pair] is None]
    steps = [(pair, step) for pair in twins.order if (step := twins.pairs[pair]) is not None]
    shared = sorted(
        {
            a
            for _, e in steps
            for a in e.invars
            if isinstance(a, Var) and not any(a is p[0] for p in twins.pairs)
        },
        key=id,
    )

    def compute(c: Any, *values: Any) -> list:
        env: dict[Var, Any] = {}
        for i, (lu, _) in enumerate(leaves):
            env[lu] = lax.select_n(c, values[i], values[len(leaves) + i])
        env.update(zip(shared, values[2 * len(leaves) :], strict=True))
        for (out, _), step in steps:
            inputs = [a.val if not isinstance(a, Var) else env[a] for a in step.invars]
            params = step.primitive.get_bind_params(step.params)
            env[out] = step.primitive.bind(*inputs, **params)
        return [env[u]]

    inputs = (condition, *(p[0] for p in leaves), *(p[1] for p in leaves), *shared)
    matched = frozenset(x for pair, step in steps for x in pair)
    return Rewrite(eqn, inputs, compute, matched)


def _minus_zero(index: Index, eqn: JaxprEqn) -> Rewrite | None:
    """`x - 0` -> `x` (`jnp.logaddexp(x, 0)` traces it). Exact: `-0.0 - 0.0` is `-0.0`."""
    if eqn.primitive.name != "sub":
        return None
    x, zero = eqn.invars
    if index.uniform(zero) != 0 or x.aval.shape != eqn.outvars[0].aval.shape:
        return None
    if x.aval.dtype != eqn.outvars[0].aval.dtype:
        return None
    return Rewrite(eqn, (x,), lambda v: [v], frozenset())


RULES: tuple[Rule, ...] = (
    _masked_log_softmax_once,
    _valid_probabilities,
    _select_by_indicator,
    _decided_comparison,
    _known_select,
    _max_with_minus_infinity,
    _unstacked,
    _sum_of_stack,
    _no_reduction,
    _known_logic,
    _either,
    _select_sunk,
    _minus_zero,
)


def streamline(closed: ClosedJaxpr) -> ClosedJaxpr:
    """`closed` (a simplified sample-entry jaxpr) with the rules above applied."""
    return rewrite(closed, RULES)[0]

"""A policy's trace with `argmax` rewritten into single-operand reductions.

`jnp.argmax` lowers to a variadic StableHLO `reduce` (values and indices reduced
together), which TensorFlow Lite's converter cannot legalize (DESIGN.md). The same choice,
made from reductions of one operand each: the maximum, then the smallest index holding
it. That keeps argmax's tie rule (the first index wins), and its NaN rule too: XLA's
argmax treats NaN as the largest value, so the smallest index holding a NaN wins, and
here the maximum is NaN exactly when a NaN is present. Booleans are compared as int32
(TFLite has no boolean max). Everything else is bound unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var
from jaxtyping import Array

# Calls whose body is evaluated in line, so an argmax inside them is rewritten too.
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr"}


def first_argmax(x: Array, axis: int, index_dtype: Any) -> Array:
    """`argmax(x, axis)` from two single-operand reductions (max, then min index)."""
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.int32)
    top = jnp.max(x, axis=axis, keepdims=True)
    hit = x == top
    if jnp.issubdtype(x.dtype, jnp.floating):
        hit = hit | jnp.isnan(x)  # max is NaN iff one is: then the first NaN wins
    index = lax.broadcasted_iota(jnp.int32, x.shape, axis)
    size = jnp.int32(x.shape[axis])
    return jnp.min(jnp.where(hit, index, size), axis=axis).astype(index_dtype)


def _evaluate(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    env: dict[Var, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "argmax":
            (axis,) = eqn.params["axes"]
            outputs = [first_argmax(inputs[0], axis, eqn.params["index_dtype"])]
        elif name in _CALLS and isinstance(eqn.params.get(_CALLS[name]), ClosedJaxpr | Jaxpr):
            body = eqn.params[_CALLS[name]]
            if isinstance(body, ClosedJaxpr):
                outputs = _evaluate(body.jaxpr, body.consts, inputs)
            else:
                outputs = _evaluate(body, [], inputs)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            result = eqn.primitive.bind(*inputs, **params)
            outputs = list(result) if eqn.primitive.multiple_results else [result]
        env.update(zip(eqn.outvars, outputs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def without_argmax(
    forward: Callable[..., Sequence[Array]], avals: Sequence[jax.ShapeDtypeStruct]
) -> Callable[..., list[Array]]:
    """`forward` (traced at `avals`) with every argmax made of single-operand reductions.

    The result is a function of arrays of those shapes, to be vmapped or lowered as usual.
    """
    closed = jax.make_jaxpr(forward)(*avals)

    def rewritten(*args: Array) -> list[Array]:
        return _evaluate(closed.jaxpr, closed.consts, args)

    return rewritten

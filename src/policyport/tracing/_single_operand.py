"""A policy's trace with `argmax` rewritten into single-operand reductions.

`jnp.argmax` lowers to a variadic StableHLO `reduce` (values and indices reduced
together), which TensorFlow Lite's converter cannot legalize (docs/design.md). The same
choice, made from reductions of one operand each: the maximum, then the smallest index
holding it. That keeps argmax's tie rule (the first index wins), and its NaN rule too: XLA's
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
from jax.extend.core import JaxprEqn
from jaxtyping import Array

from ._interpret import bind, interpret

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


def _rule(eqn: JaxprEqn, inputs: list[Any]) -> list[Any]:
    if eqn.primitive.name == "argmax":
        (axis,) = eqn.params["axes"]
        return [first_argmax(inputs[0], axis, eqn.params["index_dtype"])]
    return bind(eqn, inputs)


def without_argmax(
    forward: Callable[..., Sequence[Array]], avals: Sequence[jax.ShapeDtypeStruct]
) -> Callable[..., list[Array]]:
    """`forward` (traced at `avals`) with every argmax made of single-operand reductions.

    The result is a function of arrays of those shapes, to be vmapped or lowered as usual.
    """
    closed = jax.make_jaxpr(forward)(*avals)

    def rewritten(*args: Array) -> list[Array]:
        return interpret(closed.jaxpr, closed.consts, args, _rule, _CALLS)

    return rewritten

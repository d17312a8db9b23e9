"""The one jaxpr walk the trace rewrites share (tracing/_interpret.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from policyport.tracing._interpret import bind, interpret

CALLS = {"pjit": "jaxpr", "jit": "jaxpr"}


def _inner(x: jax.Array) -> jax.Array:
    return jnp.sin(x) * 2.0


def _outer(x: jax.Array) -> jax.Array:
    return jax.jit(_inner)(x) + jnp.cos(x)


def test_calls_are_walked_in_line_and_every_other_equation_goes_to_the_rule():
    closed = jax.make_jaxpr(_outer)(jnp.zeros(3, jnp.float32))
    seen: list[str] = []

    def rule(eqn, inputs):
        seen.append(eqn.primitive.name)
        return bind(eqn, inputs)

    x = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    [out] = interpret(closed.jaxpr, closed.consts, [x], rule, CALLS)
    assert np.array_equal(out, _outer(x))  # same primitives, same float32 arithmetic
    assert sorted(seen) == ["add", "cos", "mul", "sin"]  # inside the jit, never the jit

    seen.clear()
    interpret(closed.jaxpr, closed.consts, [x], rule, {})
    assert "jit" in seen or "pjit" in seen  # not a call to walk: the rule binds it whole


def test_a_rule_replaces_what_an_equation_computes():
    closed = jax.make_jaxpr(_outer)(jnp.zeros(2, jnp.float32))

    def sin_is_zero(eqn, inputs):
        if eqn.primitive.name == "sin":
            return [jnp.zeros_like(inputs[0])]
        return bind(eqn, inputs)

    x = jnp.asarray([0.5, 2.0], jnp.float32)
    [out] = interpret(closed.jaxpr, closed.consts, [x], sin_is_zero, CALLS)
    assert np.array_equal(out, jnp.cos(x))

"""Simplify a policy's trace into the plain computation an inference artifact needs.

Libraries put more into a trace than inference computes: checks on constants
(`equinox.error_if` on a space's bounds, which becomes a host callback no artifact format
can hold), custom-derivative wrappers, nested `jit` calls, and values computed and never
used (log-probabilities next to a mode). Re-tracing the jaxpr through an evaluator that
runs every equation whose inputs are all known at trace time (once, in JAX, on the CPU:
the same float32 arithmetic the runtime would do), inlines calls (and scans of one
step), drops identity copies and then removes dead equations leaves the function and
nothing else. A failing check on constants raises here, as it would have in JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Var

from ._interpret import bind, interpret

# Calls whose body is inlined; custom-derivative rules do not matter for inference.
_INLINED = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr"}
_INLINED_CUSTOM = {"custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr"}


def _is_known(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


# Called with each equation evaluated (calls are inlined: their body's equations are seen)
# and its input values: how the decision margins read a trace without a loop of their own.
Visit = Callable[[JaxprEqn, list[Any]], None]


def evaluate(
    jaxpr: Jaxpr, consts: list[Any], args: list[Any], visit: Visit | None = None
) -> list[Any]:
    """Evaluate `jaxpr` on `args` (tracers or values): known values folded, calls inlined."""

    def rule(eqn: JaxprEqn, inputs: list[Any]) -> list[Any]:
        name = eqn.primitive.name
        if name == "copy" or name == "copy_p":
            outputs = inputs
        elif name == "scan" and eqn.params["length"] == 1:
            return _one_step(eqn, inputs, visit)
        elif all(_is_known(x) for x in inputs):
            with jax.ensure_compile_time_eval():
                outputs = bind(eqn, inputs)
        else:
            outputs = bind(eqn, inputs)
        if visit is not None:
            visit(eqn, inputs)
        return outputs

    return interpret(jaxpr, consts, args, rule, _INLINED | _INLINED_CUSTOM)


def _one_step(eqn: JaxprEqn, inputs: list[Any], visit: Visit | None) -> list[Any]:
    """A scan of length 1 (a recurrent network written for sequences, run one step per
    call: PureJaxRL's `ScannedRNN`), inlined: its body once on the only slice of each `xs`,
    so no artifact needs a loop (tract and onnx2tf have none)."""
    body, consts, carry = eqn.params["jaxpr"], eqn.params["num_consts"], eqn.params["num_carry"]
    xs = [jax.lax.squeeze(x, (0,)) for x in inputs[consts + carry :]]
    outputs = evaluate(body.jaxpr, list(body.consts), [*inputs[: consts + carry], *xs], visit)
    return [*outputs[:carry], *(jax.lax.expand_dims(y, (0,)) for y in outputs[carry:])]


def _without_dead_code(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Drop equations no output depends on, and the constants only they read."""
    jaxpr = closed.jaxpr
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if isinstance(v, Var))
    used = [(v, c) for v, c in zip(jaxpr.constvars, closed.consts, strict=True) if v in live]
    effects = frozenset().union(*(eqn.effects for eqn in kept))
    slim = jaxpr.replace(
        constvars=[v for v, _ in used],
        eqns=kept[::-1],
        effects=effects,
        debug_info=jaxpr.debug_info,
    )
    return ClosedJaxpr(slim, [c for _, c in used])


def simplify(closed: ClosedJaxpr) -> ClosedJaxpr:
    """The same function, with known values folded, calls inlined and dead code gone."""
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]

    def run(*args: Any) -> list[Any]:
        return evaluate(closed.jaxpr, list(closed.consts), list(args))

    return _without_dead_code(jax.make_jaxpr(run)(*avals))

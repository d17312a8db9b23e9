"""Walk a jaxpr's equations, applying a rule to each: the loop the trace rewrites share.

`_simplify.evaluate` (fold known values, drop copies), `_single_operand.without_argmax`
(rewrite argmax) and `_rewrite`'s re-trace (pattern rewrites, equal equations merged)
differ only in what they do with one equation; the walk itself (an environment of values,
calls evaluated in line) is this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Var

# What to do with one equation: its values out, from the equation and its values in.
Rule = Callable[[JaxprEqn, list[Any]], list[Any]]


def bind(eqn: JaxprEqn, inputs: Sequence[Any]) -> list[Any]:
    """The equation's own primitive on `inputs`, bound as jax's own `eval_jaxpr` does."""
    params = eqn.primitive.get_bind_params(eqn.params)
    result = eqn.primitive.bind(*inputs, **params)
    return list(result) if eqn.primitive.multiple_results else [result]


def _body(eqn: JaxprEqn, calls: Mapping[str, str]) -> tuple[Jaxpr, list[Any]] | None:
    """The jaxpr (and its constants) a call named in `calls` wraps, or None."""
    key = calls.get(eqn.primitive.name)
    inner = eqn.params.get(key) if key else None
    if isinstance(inner, ClosedJaxpr):
        return inner.jaxpr, list(inner.consts)
    if isinstance(inner, Jaxpr):
        return inner, []
    return None


def interpret(
    jaxpr: Jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    rule: Rule,
    calls: Mapping[str, str],
) -> list[Any]:
    """`jaxpr`'s outputs for `args`: each equation by `rule`, except calls.

    **Arguments:**

    - `calls`: primitive name -> the parameter holding the jaxpr it wraps (`{"pjit":
      "jaxpr"}`); such an equation's body is walked in line, so `rule` sees the
      equations inside it, never the call itself.
    """
    env: dict[Var, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        body = _body(eqn, calls)
        if body is not None:
            outputs = interpret(body[0], body[1], inputs, rule, calls)
        else:
            outputs = rule(eqn, inputs)
        env.update(zip(eqn.outvars, outputs, strict=True))
    return [read(v) for v in jaxpr.outvars]

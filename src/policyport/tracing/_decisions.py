"""How close each discrete decision of a policy is to flipping, read from its trace.

A discrete action is an `argmax` over logits (Discrete, MultiDiscrete) or a comparison
against a threshold (MultiBinary: `sigmoid(logit) > 0.5`). Two runtimes that sum in
different orders can only disagree where the two best legal logits (or the logit and
the threshold) are within a few ulps. Re-evaluating the action's jaxpr and recording the
operands of those decisions gives that gap for any policy, without knowing its fields.

The gap is relative to the logits' scale, `gap / max(1, |best logit|)`: float32 rounding
grows with the magnitude of what is summed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Literal
from jaxtyping import Array

_CALLS = ("jit", "pjit", "closed_call", "core_call")
_COMPARISONS = ("gt", "ge", "lt", "le")


def _argmax_margin(x: Array, axis: int) -> Array:
    """Relative gap between the two best finite entries along `axis` (inf if < 2)."""
    x = jnp.moveaxis(x, axis, -1).astype(jnp.float32)
    if x.shape[-1] < 2:
        return jnp.full(x.shape[:-1], jnp.inf)
    legal = jnp.where(jnp.isfinite(x), x, -jnp.inf)
    top2 = jax.lax.top_k(legal, 2)[0]
    gap = (top2[..., 0] - top2[..., 1]) / jnp.maximum(1.0, jnp.abs(top2[..., 0]))
    return jnp.where(jnp.isfinite(top2[..., 1]), gap, jnp.inf)


def _compare_margin(a: Array, b: Array) -> Array:
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    gap = jnp.abs(a - b) / jnp.maximum(1.0, jnp.maximum(jnp.abs(a), jnp.abs(b)))
    return jnp.where(jnp.isfinite(a) & jnp.isfinite(b), gap, jnp.inf)


def _logit_behind(eqn: Any, inputs: list[Any]) -> Any | None:
    """The input of a sigmoid (`logistic`, or a jitted function that is just one)."""
    if eqn is None:
        return None
    if eqn.primitive.name == "logistic":
        return inputs[0]
    if eqn.primitive.name in _CALLS:
        inner = eqn.params.get("jaxpr")
        body = getattr(inner, "jaxpr", inner)
        if len(body.eqns) == 1 and body.eqns[0].primitive.name == "logistic":
            return inputs[0]
    return None


def _evaluate(
    jaxpr: Any,
    consts: list[Any],
    args: list[Any],
    found: list[Array],
    kind: str,
    nan: list[Array] | None = None,
) -> list[Any]:
    """Evaluate `jaxpr`, appending the margin of every decision it takes to `found` (and,
    when `nan` is a list, whether that decision's operands hold a NaN to `nan`)."""
    env: dict[Any, Any] = {}
    made_by: dict[Any, tuple[Any, list[Any]]] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS and isinstance(eqn.params.get("jaxpr"), ClosedJaxpr):
            inner = eqn.params["jaxpr"]
            outputs = _evaluate(inner.jaxpr, inner.consts, inputs, found, kind, nan)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)  # as jax's own eval_jaxpr
            result = eqn.primitive.bind(*inputs, **params)
            outputs = list(result) if eqn.primitive.multiple_results else [result]
        if name == "argmax" and kind == "argmax":
            found.append(_argmax_margin(inputs[0], int(eqn.params["axes"][0])).reshape(-1))
            if nan is not None:
                nan.append(jnp.any(jnp.isnan(inputs[0])))
        elif kind == "compare" and name in _COMPARISONS and not isinstance(eqn.invars[0], Literal):
            a, b = inputs
            logit = _logit_behind(*made_by.get(eqn.invars[0], (None, [])))
            if logit is not None and np.ndim(b) == 0 and isinstance(eqn.invars[1], Literal):
                a, b = logit, jnp.log(b) - jnp.log1p(-b)  # sigmoid(x) > p  <=>  x > logit(p)
            found.append(
                jnp.broadcast_to(_compare_margin(a, b), eqn.outvars[0].aval.shape).reshape(-1)
            )
            if nan is not None:
                nan.append(jnp.any(jnp.isnan(a)) | jnp.any(jnp.isnan(b)))
        for var, out in zip(eqn.outvars, outputs, strict=True):
            env[var] = out
            made_by[var] = (eqn, inputs)
    return [read(v) for v in jaxpr.outvars]


def decision_margins(
    closed: ClosedJaxpr, action_shape: tuple[int, ...], kind: str
) -> Callable[..., Array]:
    """A per-sample function of the policy's inputs: one margin per action component.

    `kind` is `"argmax"` (categorical actions) or `"compare"` (bits): only decisions of
    that kind count. When those found do not line up with the action's components one to
    one, every component gets the smallest margin of its row; a trace without any has no
    near-ties (every margin infinite).
    """
    size = int(np.prod(action_shape))

    def margins(*args: Array) -> Array:
        found: list[Array] = []
        _evaluate(closed.jaxpr, closed.consts, list(args), found, kind)
        if not found:
            return jnp.full((size,), jnp.inf)
        flat = jnp.concatenate(found)
        if flat.shape[0] == size:
            return flat
        return jnp.full((size,), jnp.min(flat))

    return margins


def nan_decisions(closed: ClosedJaxpr, kind: str) -> Callable[..., Array]:
    """A per-sample function of the policy's inputs: whether any discrete decision it takes
    reads a NaN (NaN logits: outside the artifact contract, runtimes differ there)."""

    def has_nan(*args: Array) -> Array:
        found: list[Array] = []
        nan: list[Array] = []
        _evaluate(closed.jaxpr, closed.consts, list(args), found, kind, nan)
        return jnp.any(jnp.stack(nan)) if nan else jnp.array(False)

    return has_nan

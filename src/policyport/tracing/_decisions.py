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
from jax.extend.core import ClosedJaxpr, JaxprEqn, Literal
from jaxtyping import Array

from ._simplify import evaluate

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


def _logit_behind(eqn: JaxprEqn | None, inputs: list[Any]) -> Any | None:
    """The input of a sigmoid (the trace has calls inlined: `logistic` itself)."""
    if eqn is not None and eqn.primitive.name == "logistic":
        return inputs[0]
    return None


def _decisions(closed: ClosedJaxpr, args: list[Any], kind: str) -> tuple[list[Array], list[Array]]:
    """Evaluate `closed`; per decision of `kind`, its margins and whether it reads a NaN."""
    margins: list[Array] = []
    nans: list[Array] = []
    made_by: dict[Any, tuple[JaxprEqn, list[Any]]] = {}

    def visit(eqn: JaxprEqn, inputs: list[Any]) -> None:
        name = eqn.primitive.name
        if name == "argmax" and kind == "argmax":
            margins.append(_argmax_margin(inputs[0], int(eqn.params["axes"][0])).reshape(-1))
            nans.append(jnp.any(jnp.isnan(inputs[0])))
        elif kind == "compare" and name in _COMPARISONS and not isinstance(eqn.invars[0], Literal):
            a, b = inputs
            logit = _logit_behind(*made_by.get(eqn.invars[0], (None, [])))
            if logit is not None and np.ndim(b) == 0 and isinstance(eqn.invars[1], Literal):
                a, b = logit, jnp.log(b) - jnp.log1p(-b)  # sigmoid(x) > p  <=>  x > logit(p)
            shape = eqn.outvars[0].aval.shape
            margins.append(jnp.broadcast_to(_compare_margin(a, b), shape).reshape(-1))
            nans.append(jnp.any(jnp.isnan(a)) | jnp.any(jnp.isnan(b)))
        for var in eqn.outvars:
            made_by[var] = (eqn, inputs)

    evaluate(closed.jaxpr, list(closed.consts), args, visit)
    return margins, nans


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
        found, _ = _decisions(closed, list(args), kind)
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
        _, nan = _decisions(closed, list(args), kind)
        return jnp.any(jnp.stack(nan)) if nan else jnp.array(False)

    return has_nan

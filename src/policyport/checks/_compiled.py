"""The JAX reference, compiled once per architecture rather than once per checkpoint.

A policy's trace closes over its weights as constants, so jitting it compiles the
weights in: every checkpoint of a sweep would pay one XLA compilation (about a second)
per check function. Here the constants are arguments instead, and the compiled
function is shared by every trace with the same structure: the same jaxpr text (its
equations, shapes, parameters and literals) and the same constant shapes and dtypes.
Only the weights differ between such traces, and they are passed in on every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from .._backend import reference_backend, to_reference_device
from ..policy import MultiBinary
from ..tracing import TracedPolicy
from ..tracing._decisions import decision_margins, nan_decisions
from ..tracing._structure import structure_key

# Architectures kept compiled at once: a sweep rarely mixes more.
_CACHED_ARCHITECTURES = 16


def _kind(traced: TracedPolicy) -> str:
    return "compare" if isinstance(traced.action_space, MultiBinary) else "argmax"


@dataclass(frozen=True, eq=False)
class _Architecture:
    """What a compiled reference is built from: the structure, never the weights.

    Equal (and hashed) by `structure_key`; holds the jaxpr without its constants, so the
    cache keeps no checkpoint's weights alive.
    """

    key: tuple[Any, ...]
    jaxpr: Any
    action_shape: tuple[int, ...]
    kind: str | None  # "argmax" or "compare" for discrete actions, None for Box
    input_count: int

    @classmethod
    def of(cls, traced: TracedPolicy) -> _Architecture:
        kind = None if traced.margins is None else _kind(traced)
        shape = traced.outputs[0].shape
        return cls(structure_key(traced), traced.jaxpr.jaxpr, shape, kind, len(traced.inputs))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Architecture) and other.key == self.key


@functools.lru_cache(maxsize=_CACHED_ARCHITECTURES)
def _compiled(architecture: _Architecture, what: str) -> Callable[..., Any]:
    """One jitted function per architecture and purpose, the weights its first argument."""
    jaxpr, shape, kind = architecture.jaxpr, architecture.action_shape, architecture.kind

    def outputs_and_margins(consts: list[Any], *inputs: Any) -> tuple[Any, Any]:
        closed = ClosedJaxpr(jaxpr, consts)
        outputs = jaxpr_as_fun(closed)(*inputs)
        margins = jnp.zeros(0) if kind is None else decision_margins(closed, shape, kind)(*inputs)
        return outputs, margins

    def has_nan(consts: list[Any], *inputs: Any) -> Any:
        return nan_decisions(ClosedJaxpr(jaxpr, consts), kind or "argmax")(*inputs)

    row = {"outputs_and_margins": outputs_and_margins, "has_nan": has_nan}[what]
    return jax.jit(jax.vmap(row, in_axes=(None, *([0] * architecture.input_count))))


def run_compiled(traced: TracedPolicy, what: str, inputs: list[Any]) -> Any:
    """`what` (`outputs_and_margins` or `has_nan`) of `traced` on batched `inputs`."""
    function = _compiled(_Architecture.of(traced), what)
    consts, inputs = to_reference_device((list(traced.jaxpr.consts), list(inputs)))
    with reference_backend():
        return function(consts, *inputs)

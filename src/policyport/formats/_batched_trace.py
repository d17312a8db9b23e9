"""The batched trace of a policy, made once per architecture and filled with weights.

Lowering starts from the policy's per-sample jaxpr vmapped over a symbolic batch; tracing
that vmap costs about as much as lowering it. It depends only on the per-sample jaxpr's
structure, so it is traced once per structure with the weights as inputs, and each
policy's weights are then bound as its constants. The result is the jaxpr that tracing
`traced.batched` directly gives (the tests compare the ONNX both lower to, byte for byte).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from ..tracing import TracedPolicy, numpy_dtype
from ..tracing._structure import structure_key

_BATCH = "batch"
_CACHED_ARCHITECTURES = 16


class _Structure:
    """Hashed and compared by `structure_key`; holds the first trace's jaxpr (no weights)."""

    def __init__(self, traced: TracedPolicy):
        lowered = traced.artifact_jaxpr
        # The lowered jaxpr's rewrites read small constants' values (a -inf fill, an index
        # range): its own text and constants' shapes are part of the key.
        shapes = tuple((np.shape(c), str(np.asarray(c).dtype)) for c in lowered.consts)
        self.key = (structure_key(traced), str(lowered.jaxpr), shapes)
        self.jaxpr = lowered.jaxpr
        self.const_avals = [
            jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in self.jaxpr.constvars
        ]
        self.input_shapes = [(s.shape, numpy_dtype(s.dtype)) for s in traced.inputs]

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Structure) and other.key == self.key


@functools.lru_cache(maxsize=_CACHED_ARCHITECTURES)
def _weights_as_inputs(structure: _Structure) -> tuple[ClosedJaxpr, Any]:
    """The batched jaxpr taking the weights first, and its symbolic batch dimension."""
    (batch,) = jax.export.symbolic_shape(_BATCH)
    inputs = [
        jax.ShapeDtypeStruct((batch, *shape), dtype) for shape, dtype in structure.input_shapes
    ]

    def batched(consts: list[Any], *arrays: Any) -> list[Any]:
        return jax.vmap(jaxpr_as_fun(ClosedJaxpr(structure.jaxpr, consts)))(*arrays)

    return jax.make_jaxpr(batched)(structure.const_avals, *inputs), batch


def batched_trace(traced: TracedPolicy) -> tuple[ClosedJaxpr, Any]:
    """`traced.batched` as a closed jaxpr over a symbolic batch, and that batch dimension."""
    general, batch = _weights_as_inputs(_Structure(traced))
    weights = len(traced.artifact_jaxpr.consts)
    jaxpr = general.jaxpr
    closed = jaxpr.replace(
        constvars=[*jaxpr.constvars, *jaxpr.invars[:weights]],
        invars=jaxpr.invars[weights:],
    )
    return ClosedJaxpr(closed, [*general.consts, *traced.artifact_jaxpr.consts]), batch

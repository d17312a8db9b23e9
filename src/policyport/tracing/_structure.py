"""What a trace's compiled or lowered forms depend on besides the weights' values.

Checkpoints of one architecture trace to jaxprs that differ only in their constants (the
weights). Work that reads only the structure (compiling the JAX reference, tracing the
batched function) is done once per `structure_key` and reused with each checkpoint's
weights. Scalars folded into the jaxpr as literals are part of its text, so checkpoints
that differ there get keys of their own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._trace import TracedPolicy


def structure_key(traced: TracedPolicy) -> tuple[Any, ...]:
    """The jaxpr's text (equations, shapes, parameters, literals), its constants' shapes
    and dtypes, the output specs and the kind of action space."""
    closed = traced.jaxpr
    consts = tuple((np.shape(c), str(np.asarray(c).dtype)) for c in closed.consts)
    return (
        str(closed.jaxpr),
        consts,
        traced.inputs,
        traced.outputs,
        type(traced.action_space).__name__,
    )

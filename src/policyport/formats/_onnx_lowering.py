"""policyport's own jaxpr -> ONNX lowering, for the primitives policies use.

jax2onnx lowers every JAX primitive but imports ~600 plugin modules first (10 s and more
here), and emits a Transpose pair around every layer. This module lowers the batched
jaxpr of a policy directly, in well under a second: one emitter per primitive, in the
table `EMITTERS` (`_onnx_emitters.py`). A primitive missing from the table raises
`NotLowerable`, and the exporter falls back to jax2onnx for that policy.

`lower_function` lowers any function of batched arrays (what the unit tests of each
emitter use); `lower_natively` is that function applied to a traced policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import onnx
from jax.extend import core as jex_core
from onnx import helper

from ..tracing import TensorSpec, TracedPolicy, numpy_dtype
from ._batched_trace import batched_trace
from ._onnx_builder import Builder, NotLowerable, Value, onnx_type
from ._onnx_emitters import BROADCASTING, EMITTERS

__all__ = ["EMITTERS", "NotLowerable", "lower_closed", "lower_function", "lower_natively"]

_BATCH = "batch"
# Primitives that only wrap another jaxpr: their body is lowered in place.
_CALLS = (
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "checkpoint",
    "remat2",  # jax.checkpoint
)


def _inner_jaxpr(eqn) -> jex_core.ClosedJaxpr:
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if inner is None:
        raise NotLowerable(f"{eqn.primitive.name} without a body")
    return inner if isinstance(inner, jex_core.ClosedJaxpr) else jex_core.ClosedJaxpr(inner, ())


def _taken_branch(eqn, index: Value) -> jex_core.ClosedJaxpr:
    """The branch of a `cond` whose index is known when lowering (vmap turns a per-row
    predicate into a select_n, so a cond left in a batched trace has a constant one)."""
    if index.const is None or index.partial:
        raise NotLowerable("cond on a predicate computed at run time")
    branches = eqn.params["branches"]
    return branches[int(np.clip(np.asarray(index.const).reshape(()), 0, len(branches) - 1))]


def _symbolic(param: Any) -> bool:
    if isinstance(param, list | tuple):
        return any(_symbolic(p) for p in param)
    return jax.export.is_symbolic_dim(param)


def _foldable(inputs: list[Value], eqn) -> bool:
    """Whether the equation reads constants only and has static shapes: JAX computes it."""
    return (
        all(a.const is not None and not a.partial for a in inputs)
        and all(isinstance(d, int) for v in eqn.outvars for d in v.aval.shape)
        and not any(_symbolic(p) for p in eqn.params.values())
    )


def _lower_jaxpr(b: Builder, closed: jex_core.ClosedJaxpr, args: list[Value]) -> list[Value]:
    env: dict = {}

    def read(v) -> Value:
        if isinstance(v, jex_core.Literal):
            return Value(const=np.asarray(v.val, dtype=v.aval.dtype))
        return env[v]

    jaxpr = closed.jaxpr
    for var, const in zip(jaxpr.constvars, closed.consts, strict=True):
        env[var] = Value(const=np.asarray(const))
    for var, arg in zip(jaxpr.invars, args, strict=True):
        env[var] = arg
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS:
            outputs = _lower_jaxpr(b, _inner_jaxpr(eqn), inputs)
        elif name == "cond" and not _foldable(inputs, eqn):
            outputs = _lower_jaxpr(b, _taken_branch(eqn, inputs[0]), inputs[1:])
        elif _foldable(inputs, eqn):
            # Fold: a computation on weights alone (e.g. exp(log_std)) runs once, in JAX.
            folded = eqn.primitive.bind(*(a.const for a in inputs), **eqn.params)
            folded = folded if eqn.primitive.multiple_results else [folded]
            outputs = [Value(const=np.asarray(x)) for x in folded]
        elif name in EMITTERS:
            if name not in BROADCASTING:
                inputs = [
                    Value(b.full(a, v.aval.shape)) if a.partial else a
                    for a, v in zip(inputs, eqn.invars, strict=True)
                ]
            outputs = EMITTERS[name](b, inputs, eqn)
        else:
            raise NotLowerable(f"primitive {name!r}")
        for var, value in zip(eqn.outvars, outputs, strict=True):
            env[var] = value
    return [read(v) for v in jaxpr.outvars]


def _value_info(spec: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        spec.name, onnx_type(numpy_dtype(spec.dtype)), [_BATCH, *spec.shape]
    )


def lower_function(
    fn: Callable[..., Sequence[jax.Array]],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int,
    *,
    graph_name: str = "policyport_policy",
) -> onnx.ModelProto:
    """`fn` of batched arrays as ONNX, without jax2onnx; raises NotLowerable when it cannot.

    **Arguments:**
    - `fn`: takes one array per input spec, each `(batch, *spec.shape)`, and returns one
      array per output spec; it is traced with a symbolic `batch`, which stays dynamic.
    - `inputs`, `outputs`: the graph's named inputs and outputs (shapes without the batch);
      an output whose dtype differs from what `fn` computes is cast (e.g. int32 -> int64).
    - `opset`: the ONNX opset (13..26).
    """
    if not inputs:
        raise NotLowerable("a function without inputs (no batch to read)")
    (batch,) = jax.export.symbolic_shape(_BATCH)
    avals = [jax.ShapeDtypeStruct((batch, *s.shape), numpy_dtype(s.dtype)) for s in inputs]
    closed = jax.make_jaxpr(fn)(*avals)
    return lower_closed(closed, batch, inputs, outputs, opset, graph_name=graph_name)


def lower_closed(
    closed: jex_core.ClosedJaxpr,
    batch: Any,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int,
    *,
    graph_name: str = "policyport_policy",
) -> onnx.ModelProto:
    """A batched jaxpr (its inputs' leading dimension the symbolic `batch`) as ONNX."""
    if len(closed.jaxpr.outvars) != len(outputs):
        raise ValueError(
            f"the function returns {len(closed.jaxpr.outvars)} arrays, but {len(outputs)} "
            "output specs were given"
        )
    b = Builder(batch, inputs[0].name, opset)
    values = _lower_jaxpr(b, closed, [Value(s.name) for s in inputs])
    for spec, value, var in zip(outputs, values, closed.jaxpr.outvars, strict=True):
        tensor = b.full(value, var.aval.shape)
        target = numpy_dtype(spec.dtype)
        if np.dtype(var.aval.dtype) != target:
            b.nodes.append(helper.make_node("Cast", [tensor], [spec.name], to=onnx_type(target)))
        else:
            b.nodes.append(helper.make_node("Identity", [tensor], [spec.name]))
    graph = helper.make_graph(
        b.nodes,
        graph_name,
        [_value_info(s) for s in inputs],
        [_value_info(s) for s in outputs],
        initializer=b.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def lower_natively(traced: TracedPolicy, opset: int) -> onnx.ModelProto:
    """The batched policy as ONNX, without jax2onnx; raises NotLowerable when it cannot.

    The batched trace is made once per architecture (`_batched_trace.py`) and filled with
    this policy's weights; the lowering itself runs per policy (it folds and rewrites
    by the weights' values)."""
    closed, batch = batched_trace(traced)
    return lower_closed(closed, batch, traced.inputs, traced.outputs, opset)

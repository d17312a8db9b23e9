"""Deployment targets (`--target`): each a named, documented set of ONNX choices.

A target fixes what its destination runtime documents (or what we measured it loads): the
opset written, whether the batch dimension is fixed, which operators the graph may use,
and which runtimes installable here the export is also checked in. Masks stay `bool` and
integer outputs `int64` everywhere: that is the artifact contract (docs/artifact.md), and
each destination documents how it reads them (docs/embedding.md). The target's name is
recorded in the artifact as the metadata key `policyport.target`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .._errors import InputError
from ..tracing import NOISE
from ._base import DEFAULT_OPSET, Runner

TARGET_KEY = "policyport.target"
DEFAULT_TARGET = "onnxruntime"

# Operators of Unity Sentis' "Supported ONNX operators" table (Sentis 1.x-2.1 manual) that
# policyport's lowering of MLP policies emits. A graph using anything else is refused
# for `--target sentis` rather than failing later inside the Unity editor.
SENTIS_OPS = frozenset(
    {
        "Abs", "Add", "ArgMax", "ArgMin", "Cast", "CastLike", "Clip", "Concat", "Div", "Equal",
        "Exp", "Expand", "Gemm", "Greater", "Less", "Log", "MatMul", "Max", "Min", "Mul", "Neg",
        "Not", "ReduceMax", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
        "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Unsqueeze", "Where",
    }
)  # fmt: skip


# Operators policyport's lowering writes that emx-onnx-cgen 1.4.0 (the `c` format's
# generator) lowers to C: all of them, read from its lowering registry (2026-12-04). A graph
# with anything else (the jax2onnx fallback's) is refused for `--target mcu` up front.
MCU_OPS = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan",
        "Atanh", "Cast", "CastLike", "Ceil", "Clip", "Concat", "Cos", "Cosh", "CumSum", "Div",
        "Einsum", "Equal", "Erf", "Exp", "Expand", "Floor", "Gather", "GatherElements", "Gemm",
        "Greater", "GreaterOrEqual", "Identity", "IsInf", "LayerNormalization", "Less",
        "LessOrEqual", "Log", "Max", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pad", "Pow",
        "Reciprocal", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape",
        "Round", "Shape", "Sigmoid", "Sign", "Sin", "Sinh", "Slice", "Split", "Sqrt", "Squeeze",
        "Sub", "Tan", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze", "Where", "Xor",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """The choices one destination needs. `max_opset` bounds `--opset`; `fixed_batch` is
    the batch size baked into the graph's inputs and outputs (None keeps it dynamic)."""

    name: str
    summary: str
    opset: int
    max_opset: int
    fixed_batch: int | None = None
    ops: frozenset[str] | None = None  # None: any operator our lowering writes
    check_in: tuple[str, ...] = ()  # runtimes the export is also checked in, if installed
    formats: tuple[str, ...] = ("onnx", "ort")  # the formats the target applies to


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "onnxruntime",
            "onnxruntime 1.20+ (Python, C/C++, Node, web): opset 21, dynamic batch",
            DEFAULT_OPSET,
            26,
        ),
        Target(
            "mobile",
            "onnxruntime mobile with NNAPI/CoreML: opset 21, batch fixed at 1 (the execution "
            "providers take no node of a dynamic-shape graph)",
            DEFAULT_OPSET,
            26,
            fixed_batch=1,
        ),
        Target(
            "sentis",
            "Unity Sentis: opset 15 (Sentis reads 7-15), operators from its supported table",
            15,
            15,
            ops=SENTIS_OPS,
            check_in=("onnx-reference", "onnxruntime-1.20"),
        ),
        Target(
            "tract", "tract 0.23: opset 21, dynamic batch", DEFAULT_OPSET, 26, check_in=("tract",)
        ),
        Target(
            "mcu",
            "microcontrollers through the c format (emx-onnx-cgen 1.4.0): batch fixed at 1, "
            "operators the generator lowers; onnx/ort for generating C yourself",
            DEFAULT_OPSET,
            26,
            fixed_batch=1,
            ops=MCU_OPS,
            formats=("c", "onnx", "ort"),
        ),
        Target(
            "openvino",
            "OpenVINO 2026.4 CPU, f32 precision: opset 21, dynamic batch",
            DEFAULT_OPSET,
            26,
            check_in=("openvino",),
        ),
    )
}


def resolve_target(name: str | None) -> Target:
    if name is None:
        return TARGETS[DEFAULT_TARGET]
    if name not in TARGETS:
        raise InputError(f"Unknown target {name!r}. Choose one of: {', '.join(TARGETS)}.")
    return TARGETS[name]


def fix_batch(model: onnx.ModelProto, size: int) -> None:
    """Replace the symbolic batch of every graph input and output with `size`."""
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = size


def check_ops(model: onnx.ModelProto, target: Target) -> None:
    """Refuse a graph using operators the target does not document."""
    if target.ops is None:
        return
    extra = sorted({n.op_type for n in model.graph.node} - target.ops)
    if not extra:
        return
    if any(i.name == NOISE for i in model.graph.input):
        # Only the sample entry has a `noise` input; the default entry passed this check.
        raise InputError(
            f"--target {target.name}: the sample entry (--sample) uses {', '.join(extra)}, "
            f"which {target.name} does not list among its supported operators. Export "
            f"for {target.name} without --sample, or use another target for sampling."
        )
    raise InputError(
        f"--target {target.name}: the graph uses {', '.join(extra)}, which "
        f"{target.name} does not list among its supported operators. Export without "
        "--target (or another target), or simplify the policy."
    )


def apply_target(model: onnx.ModelProto, target: Target) -> None:
    """Make the lowered graph what `target` needs (operators checked, batch fixed)."""
    check_ops(model, target)
    if target.fixed_batch is not None:
        fix_batch(model, target.fixed_batch)


def in_rows(run: Runner, rows: int) -> Runner:
    """A runner for a fixed-batch artifact that takes any batch: it feeds `rows` at a time
    (the check's batches are multiples of it) and joins the outputs."""

    def call(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if n % rows:
            raise ValueError(f"a batch of {n} rows cannot be fed {rows} at a time")
        parts = [run({k: v[i : i + rows] for k, v in inputs.items()}) for i in range(0, n, rows)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return call


def fixed_batch_of(metadata: dict[str, str]) -> int | None:
    """The fixed batch of an artifact, from the target recorded in its metadata."""
    name = metadata.get(TARGET_KEY)
    return TARGETS[name].fixed_batch if name in TARGETS else None

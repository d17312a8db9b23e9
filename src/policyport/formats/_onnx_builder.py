"""The graph under construction while a jaxpr is lowered to ONNX, and the values in it.

Two lazy forms keep the graph small: a value can be the 2-D transpose of an ONNX tensor
(what `W @ x.T` is, before the transpose that vmap adds), and a constant stays a numpy
array until an op needs it as a tensor. A third, `partial`, is a value still smaller than
its jaxpr shape (a broadcast left to the consumer, since most ONNX ops broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
    # lerax's policies return int8 actions (argmax cast to int8); the cast must be kept.
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int16): TensorProto.INT16,
}


class NotLowerable(Exception):
    """The jaxpr uses something this lowering does not handle (the message says what)."""


@dataclass(frozen=True)
class Value:
    """A jaxpr value: an ONNX tensor name, or a constant, possibly a lazy 2-D transpose."""

    name: str | None = None
    const: np.ndarray | None = None
    transposed: bool = False
    partial: bool = False  # smaller than its jaxpr shape: a broadcast left to the consumer


def same_size(a: Any, b: Any) -> bool:
    """Whether two dimensions are known equal (symbolic ones may not be comparable)."""
    try:
        return bool(a == b)
    except Exception:  # symbolic dimensions that cannot be compared
        return False


def onnx_type(dtype: Any) -> int:
    dtype = np.dtype(dtype)
    if dtype not in ONNX_TYPES:
        raise NotLowerable(f"dtype {dtype}")
    return ONNX_TYPES[dtype]


class Builder:
    """Nodes and initializers in topological order, with fresh names.

    `batch_source` is a graph input whose first dimension is the symbolic batch `batch`:
    the one place a shape that contains the batch can be read from at run time.
    """

    def __init__(self, batch: Any = None, batch_source: str | None = None, opset: int = 21) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.opset = opset  # operator signatures differ across opsets (reductions' axes)
        self.initializers: list[onnx.TensorProto] = []
        self.batch = batch
        self.batch_source = batch_source
        self._batch_size: str | None = None
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def int64s(self, values: Any) -> str:
        """A constant 1-D int64 tensor (axes, shapes, pads, starts...)."""
        return self.constant(np.array([int(v) for v in values], dtype=np.int64))

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs) -> list[str]:
        names = [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        return names

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        """One single-output node; its output's name."""
        return self.node(op, inputs, **attrs)[0]

    def tensor(self, value: Value) -> str:
        """The ONNX tensor holding `value` (materialising a constant or a transpose)."""
        if value.const is not None:
            return self.constant(value.const)
        assert value.name is not None  # a Value is a constant or a named tensor
        if value.transposed:
            return self.op("Transpose", [value.name], perm=[1, 0])
        return value.name

    def batch_size(self) -> str:
        """A 1-D int64 tensor `[batch]`, read from the batch source's shape (made once)."""
        if self.batch_source is None:
            raise NotLowerable("a shape with the batch dimension, and no input to read it from")
        if self._batch_size is None:
            if self.opset >= 15:
                self._batch_size = self.op("Shape", [self.batch_source], start=0, end=1)
            else:  # Shape's start/end arrived in opset 15
                shape = self.op("Shape", [self.batch_source])
                self._batch_size = self.op("Slice", [shape, self.int64s([0]), self.int64s([1])])
        return self._batch_size

    def shape(self, dims: Any) -> str:
        """A 1-D int64 tensor holding the shape `dims`, which may contain the batch."""
        dims = tuple(dims)
        if all(isinstance(d, int) for d in dims):
            return self.int64s(dims)
        parts = []
        for d in dims:
            if isinstance(d, int):
                parts.append(self.int64s([d]))
            elif same_size(d, self.batch):
                parts.append(self.batch_size())
            else:
                raise NotLowerable(f"a shape with the symbolic dimension {d}")
        return self.op("Concat", parts, axis=0)

    def full(self, value: Value, dims: Any) -> str:
        """The tensor of `value` at its full jaxpr shape `dims` (a `partial` one expanded)."""
        if not value.partial:
            return self.tensor(value)
        dims = tuple(dims)
        if value.const is not None and all(isinstance(d, int) for d in dims):
            return self.constant(np.broadcast_to(value.const, dims).copy())
        return self.op("Expand", [self.tensor(value), self.shape(dims)])

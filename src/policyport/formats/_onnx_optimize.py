"""Graph rules that leave an ONNX policy in the form onnxruntime (and tract) run fastest.

They work on what the lowering wrote: policyport's own graph (Gemm then a bias `Add`,
relu as `Max(y, 0)`, a masked argmax through `Where(mask, x, -inf)`, indices cast to int32
and back), jax2onnx's fallback graph (each layer wrapped in a Transpose pair, fills
expanded from constants), and what the libraries we read trace to (lerax's log-softmax
before its argmax, Flax's 16-op layer norm, Brax's unread scale columns). The graph is
onnx-ir's (use-def chains kept current as rules edit it); equal initializers and nodes
are merged, Identity nodes and dead nodes dropped by onnx-ir's own passes.

Each rule is a plain function `(graph, node) -> bool`: it rewrites the graph where `node`
matches and says whether it did. Most are exact (the same arithmetic on the same values).
These are not, and say how they depart in their docstrings: `_fold_linear_pairs`
(multiplies two weight matrices into one, in float64, rounded once to float32),
`_layer_normalization` (onnxruntime's fused kernel on the centred input: the exact
variance where Flax's can cancel, a few ulps elsewhere), `_argmax_without_log_softmax`
(drops per-row shifts before an argmax: float rounding of the shifted values can differ
at near-ties) and `_arithmetic_mask` (clips logits to +-1e22 before masking: legal logits
beyond that bound tie). The parity check runs on the rewritten graph, and
`tests/test_onnx_rules.py` fails when a rule fires on none of the kinds we ship.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as passes

_log = logging.getLogger(__name__)

Rule = Callable[[ir.Graph, ir.Node], bool]

# LayerNormalization is in the default domain from opset 17 (Unity Sentis reads up to 15).
_LAYER_NORMALIZATION_OPSET = 17
# CastLike is in the default domain from opset 15.
_CAST_LIKE_OPSET = 15


def _opset(graph: ir.Graph) -> int:
    """The graph's default-domain opset."""
    return graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 0))


def _attrs(node: ir.Node) -> dict[str, Any]:
    """A node's attributes as Python values (lists for repeated ones)."""
    repeated = (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS)
    return {
        name: list(a.value) if a.type in repeated else a.value
        for name, a in node.attributes.items()
    }


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """The array a value holds (an initializer, or a Constant node's output), else None."""
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _producer(value: ir.Value | None, op: str) -> ir.Node | None:
    """The node producing `value`, when it is an `op` of the default domain."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op and node.domain == "" else None


def _only_reader(value: ir.Value) -> ir.Node | None:
    """The one node reading `value` (once), when nothing else reads it."""
    uses = tuple(value.uses())
    return uses[0].node if len(uses) == 1 and not value.is_graph_output() else None


def _read(value: ir.Value) -> bool:
    return bool(value.uses()) or value.is_graph_output()


def _initializer(graph: ir.Graph, array: np.ndarray, hint: str) -> ir.Value:
    """A new initializer holding `array`, named `hint` (or `hint_2`, ... if that is taken)."""
    name, n = hint, 1
    while name in graph.initializers:
        n += 1
        name = f"{hint}_{n}"
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, const_value=tensor)
    graph.register_initializer(value)
    return value


def _drop_unread(graph: ir.Graph, values: Sequence[ir.Value | None]) -> None:
    """Remove the producers of `values` that nothing reads any more, and theirs in turn."""
    stack = [v.producer() for v in values if v is not None]
    while stack:
        node = stack.pop()
        if node is None or node.graph is not graph or any(map(_read, node.outputs)):
            continue
        inputs = list(node.inputs)
        graph.remove(node, safe=True)
        stack += [v.producer() for v in inputs if v is not None]


def _replace(
    graph: ir.Graph,
    old: Sequence[ir.Node],
    new: Sequence[ir.Node],
    old_values: Sequence[ir.Value],
    new_values: Sequence[ir.Value],
) -> None:
    """Put `new` after the last of `old` (in graph order), its `new_values` read where
    `old_values` were, then drop `old` and whatever only they read."""
    inputs = [v for node in old for v in node.inputs]
    ir.convenience.replace_nodes_and_values(graph, old[-1], old, new, old_values, new_values)
    _drop_unread(graph, inputs)


def _rewire(graph: ir.Graph, node: ir.Node, index: int, value: ir.Value) -> None:
    """`node` reads `value` as its input `index`; what only the old input fed is dropped."""
    old = node.inputs[index]
    node.replace_input_with(index, value)
    _drop_unread(graph, [old])


def _bypass(graph: ir.Graph, node: ir.Node) -> None:
    """Drop a node whose output equals its first input: readers (and the graph output, by
    name and type) take the input instead."""
    source, output = node.inputs[0], node.outputs[0]
    assert source is not None
    if output.is_graph_output():
        source.name, source.type, source.shape = output.name, output.type, output.shape
    output.replace_all_uses_with(source, replace_graph_outputs=True)
    graph.remove(node, safe=True)


def _is_transpose_2d(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Transpose" and _attrs(node).get("perm") == [1, 0]


def _plain_gemm(node: ir.Node) -> bool:
    """A Gemm computing exactly `A @ B` (no scaling, no transposes, no or zero bias)."""
    a = _attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("transA", 0) or a.get("transB", 0):
        return False
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    bias = _constant(node.inputs[2])
    return a.get("beta", 1.0) == 0.0 or (bias is not None and not np.any(bias))


def _gemm_without_transposes(graph: ir.Graph, node: ir.Node) -> bool:
    """`Transpose(Gemm(W, Transpose(x)))` -> `Gemm(x, W, transB=1)`: how jax2onnx lowers a
    vmapped `W @ x`."""
    if node.op_type != "Gemm" or _constant(node.inputs[0]) is None:
        return False
    source = node.inputs[1].producer() if node.inputs[1] is not None else None
    after = _only_reader(node.outputs[0])
    if not (_is_transpose_2d(source) and _is_transpose_2d(after) and _plain_gemm(node)):
        return False
    assert source is not None and after is not None
    gemm = ir.node("Gemm", [source.inputs[0], node.inputs[0]], {"transB": 1}, name=node.name)
    _replace(graph, [node, after], [gemm], after.outputs, gemm.outputs)
    return True


def _split_without_transposes(graph: ir.Graph, node: ir.Node) -> bool:
    """`Transpose(Split(Transpose(x), axis=a))` per output -> `Split(x, axis=1-a)`, for 2D.

    A vmapped `W @ h` split into gates (equinox's GRU and LSTM cells: `jnp.split` of the
    gate pre-activations) comes out of JAX's batching as `[gates, batch]`, transposed
    around the split; the same split on the other axis moves the same numbers, exactly."""
    if node.op_type != "Split" or node.domain != "" or node.inputs[0] is None:
        return False
    source = node.inputs[0].producer()
    readers = [_only_reader(v) for v in node.outputs]
    after = [t for t in readers if t is not None and _is_transpose_2d(t)]
    if not (_is_transpose_2d(source) and len(after) == len(readers)):
        return False
    assert source is not None
    attrs = _attrs(node)
    attrs["axis"] = 1 - attrs.get("axis", 0) % 2
    split = ir.node(
        "Split", [source.inputs[0], *node.inputs[1:]], attrs, num_outputs=len(node.outputs)
    )
    olds = [node, *after]
    inputs = [v for n in olds for v in n.inputs]
    # Placed where the Split was: the transposes' readers may come before the last of them.
    ir.convenience.replace_nodes_and_values(
        graph, node, olds, [split], [t.outputs[0] for t in after], split.outputs
    )
    _drop_unread(graph, inputs)
    return True


def _elementwise_without_transposes(graph: ir.Graph, node: ir.Node) -> bool:
    """`Transpose(Add(Transpose(a), Transpose(b)))` -> `Add(a, b)` (and Sub, Mul), for 2D.

    Equinox's LSTM cell adds its two gate matmuls before the split: batched by JAX, each
    is `[gates, batch]`; the same elementwise op on the untransposed operands is exact."""
    if node.op_type not in ("Add", "Sub", "Mul") or node.domain != "" or len(node.inputs) != 2:
        return False
    sources = [v.producer() if v is not None else None for v in node.inputs]
    after = _only_reader(node.outputs[0])
    if not (all(_is_transpose_2d(s) for s in sources) and _is_transpose_2d(after)):
        return False
    assert after is not None
    op = ir.node(node.op_type, [s.inputs[0] for s in sources if s is not None])
    _replace(graph, [node, after], [op], after.outputs, op.outputs)
    return True


def _bias_into_gemm(graph: ir.Graph, node: ir.Node) -> bool:
    """`Add(Gemm(x, W), b)` -> `Gemm(x, W, b)`, for a bias of shape `[out]` or `[1, out]`."""
    if node.op_type != "Add":
        return False
    for y, b in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        gemm, bias = _producer(y, "Gemm"), _constant(b)
        if gemm is None or bias is None or y is None or b is None or _only_reader(y) is not node:
            continue
        if (len(gemm.inputs) > 2 and gemm.inputs[2] is not None) or bias.ndim > 2:
            continue
        if bias.ndim == 2 and bias.shape[0] != 1:
            continue
        attrs = [a for name, a in gemm.attributes.items() if name != "beta"]
        flat = _initializer(graph, bias.reshape(-1), f"{b.name}_gemm_bias")
        fused = ir.Node("", "Gemm", [*gemm.inputs[:2], flat], attrs, name=gemm.name)
        _replace(graph, [gemm, node], [fused], node.outputs, fused.outputs)
        return True
    return False


def _split_sizes(node: ir.Node, width: int) -> list[int] | None:
    """The sizes of a Split's pieces along its axis, whether given as an input or not."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        sizes = _constant(node.inputs[1])
        return None if sizes is None else [int(s) for s in sizes.reshape(-1)]
    attrs = _attrs(node)
    if "split" in attrs:
        return [int(s) for s in attrs["split"]]
    count = attrs.get("num_outputs", len(node.outputs))
    return [width // count] * count if width % count == 0 else None


def _unused_gemm_columns(graph: ir.Graph, node: ir.Node) -> bool:
    """`Split(Gemm(x, W, b))` with pieces nobody reads -> a Gemm of the read columns only.

    Brax's tanh-normal policy computes the Gaussian's location and scale in one layer and
    its deterministic action reads the location alone: half the last layer's work is
    dead. Each kept column is the same dot product as before, so the values are the same.
    """
    if node.op_type != "Split" or _attrs(node).get("axis", 0) not in (1, -1):
        return False
    gemm = _producer(node.inputs[0], "Gemm")
    if gemm is None or _only_reader(gemm.outputs[0]) is not node:
        return False
    a = _attrs(gemm)
    has_bias = len(gemm.inputs) > 2 and gemm.inputs[2] is not None
    weight = _constant(gemm.inputs[1])
    bias = _constant(gemm.inputs[2]) if has_bias else None
    if weight is None or a.get("transA", 0) or (has_bias and bias is None):
        return False
    columns = weight.shape[0] if a.get("transB", 0) else weight.shape[1]
    if bias is not None and bias.shape not in ((columns,), (1, columns)):
        return False
    sizes = _split_sizes(node, columns)
    read = [_read(piece) for piece in node.outputs]
    if sizes is None or sum(sizes) != columns or all(read) or not any(read):
        return False
    starts = np.cumsum([0, *sizes[:-1]])
    kept = np.concatenate(
        [np.arange(s, s + n) for s, n, r in zip(starts, sizes, read, strict=True) if r]
    )
    narrow = weight[kept] if a.get("transB", 0) else weight[:, kept]
    hint = gemm.inputs[1].name if gemm.inputs[1] is not None else "gemm"
    inputs = [gemm.inputs[0], _initializer(graph, narrow, f"{hint}_read")]
    if bias is not None:
        inputs.append(_initializer(graph, bias.reshape(-1)[kept], f"{hint}_read_bias"))
    outputs = [piece for piece, r in zip(node.outputs, read, strict=True) if r]
    narrowed = ir.Node("", "Gemm", inputs, list(gemm.attributes.values()), name=gemm.name)
    if len(outputs) == 1:
        _replace(graph, [gemm, node], [narrowed], outputs, narrowed.outputs)
        return True
    pieces = np.array([n for n, r in zip(sizes, read, strict=True) if r], np.int64)
    sizes_value = _initializer(graph, pieces, f"{hint}_read_sizes")
    split = ir.node(
        "Split", [narrowed.outputs[0], sizes_value], {"axis": 1}, num_outputs=len(outputs)
    )
    _replace(graph, [gemm, node], [narrowed, split], outputs, split.outputs)
    return True


def _relu_from_max(graph: ir.Graph, node: ir.Node) -> bool:
    """`Max(y, 0)` -> `Relu(y)` (how jax.nn.relu arrives)."""
    if node.op_type != "Max" or len(node.inputs) != 2:
        return False
    for y, zero in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        value = _constant(zero)
        if value is not None and value.size == 1 and float(value.reshape(())) == 0.0:
            relu = ir.node("Relu", [y], name=node.name)
            _replace(graph, [node], [relu], node.outputs, relu.outputs)
            return True
    return False


def _scalar_constant(value: ir.Value | None) -> float | None:
    array = _constant(value)
    return float(array.reshape(())) if array is not None and array.size == 1 else None


def _per_row(value: ir.Value | None) -> ir.Value | None:
    """`v` of a `[batch, 1]` tensor made from a per-row `[batch]` one (Unsqueeze on axis 1
    or a Reshape to `[0, 1]`), else None."""
    node = value.producer() if value is not None else None
    if node is None or len(node.inputs) < 2:
        return None
    shape = _constant(node.inputs[1])
    if shape is None:
        return None
    wanted = {"Unsqueeze": ([1], [-1]), "Reshape": ([0, 1],)}.get(node.op_type, ())
    return node.inputs[0] if shape.reshape(-1).tolist() in [list(w) for w in wanted] else None


def _row_mean(value: ir.Value | None, width: int) -> ir.Value | None:
    """`x` when `value` is `ReduceSum(x, axes=[1], keepdims=0) / width`, else None."""
    div = _producer(value, "Div")
    if div is None or _scalar_constant(div.inputs[1]) != float(width):
        return None
    total = _producer(div.inputs[0], "ReduceSum")
    if total is None or _attrs(total).get("keepdims", 1) != 0 or len(total.inputs) < 2:
        return None
    axes = _constant(total.inputs[1])
    if axes is None or axes.reshape(-1).tolist() not in ([1], [-1]):
        return None
    return total.inputs[0]


def _fast_variance(value: ir.Value, x: ir.Value, mean: ir.Value, width: int) -> bool:
    """Whether `value` is `max(mean(x * x) - mean * mean, 0)` (Flax's layer norm variance)."""
    relu = _producer(value, "Relu")
    difference = relu and _producer(relu.inputs[0], "Sub")
    if not difference:
        return False
    squares = _row_mean(difference.inputs[0], width)
    square_node = _producer(squares, "Mul")
    mean_square = _producer(difference.inputs[1], "Mul")
    return bool(
        square_node
        and list(square_node.inputs) == [x, x]
        and mean_square
        and list(mean_square.inputs) == [mean, mean]
    )


def _row_vector(value: np.ndarray, width: int) -> bool:
    """A constant of one value per feature, `[width]` or `[1, width]`."""
    return value.shape in ((width,), (1, width))


def _width(value: ir.Value) -> int | None:
    """The static second dimension of a rank-2 value, from shape inference."""
    shape = value.shape
    if shape is None or len(shape) != 2 or not isinstance(shape[1], int) or not shape[1]:
        return None
    return shape[1]


def _layer_normalization(graph: ir.Graph, node: ir.Node) -> bool:
    """Flax's layer norm (16 ops) -> one ONNX `LayerNormalization` of the centred input.

    Flax (linen and nnx, `use_fast_variance=True`, the default) computes
    `(x - mean) * (rsqrt(max(mean(x^2) - mean^2, 0) + eps) * scale) + bias`: each op a
    pass over the whole `[batch, width]` tensor in onnxruntime (3x slower than XLA's fused
    loop at batch 4096, measured). onnxruntime's `LayerNormalization` kernel is one pass,
    but it takes `mean(x^2) - mean^2` without Flax's clamp at 0, so on rows of large
    values with a tiny spread it would take the root of a negative number (NaN where Flax
    is finite). Given the centred input `x - mean` instead (whose mean is ~0), its
    variance cannot cancel: it is the exact variance, at least as accurate as Flax's, and
    never NaN for finite inputs. Not exact: like `_fold_linear_pairs`, this rule changes
    rounding (a few float32 ulps on ordinary rows); the parity check runs on the result.
    Below opset 17, which has no LayerNormalization, the 16 ops stay.
    """
    if node.op_type != "Mul" or _opset(graph) < _LAYER_NORMALIZATION_OPSET:
        return False
    for centred, weight in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        sub = _producer(centred, "Sub")
        mean = sub and _per_row(sub.inputs[1])
        if not sub or not mean or centred is None or sub.inputs[0] is None:
            continue
        x = sub.inputs[0]
        width = _width(x)
        if width is None or _row_mean(mean, width) is not x:
            continue
        scale = None
        root = _producer(weight, "Reciprocal")
        scaling = _producer(weight, "Mul")
        if root is None and scaling is not None:
            for r, c in (
                (scaling.inputs[0], scaling.inputs[1]),
                (scaling.inputs[1], scaling.inputs[0]),
            ):
                candidate, value = _producer(r, "Reciprocal"), _constant(c)
                if candidate is not None and value is not None and _row_vector(value, width):
                    root, scale = candidate, value.reshape(-1)
        sqrt = root and _producer(root.inputs[0], "Sqrt")
        shifted = sqrt and _producer(sqrt.inputs[0], "Add")
        if not shifted:
            continue
        for v, e in (
            (shifted.inputs[0], shifted.inputs[1]),
            (shifted.inputs[1], shifted.inputs[0]),
        ):
            epsilon, variance = _scalar_constant(e), _per_row(v)
            if epsilon is not None and epsilon > 0 and variance:
                break
        else:
            continue
        if not _fast_variance(variance, x, mean, width):
            continue
        old, bias = [node], None
        after = _only_reader(node.outputs[0])
        if after is not None and after.op_type == "Add":
            other = after.inputs[1] if after.inputs[0] is node.outputs[0] else after.inputs[0]
            value = _constant(other)
            if value is not None and _row_vector(value, width):
                old, bias = [node, after], value.reshape(-1)
        hint = old[-1].outputs[0].name or "layer_norm"
        ones = np.ones(width, np.float32) if scale is None else scale
        inputs = [centred, _initializer(graph, ones.astype(np.float32), f"{hint}_ln_scale")]
        if bias is not None:
            inputs.append(_initializer(graph, bias.astype(np.float32), f"{hint}_ln_bias"))
        fused = ir.node(
            "LayerNormalization", inputs, {"axis": -1, "epsilon": epsilon}, name=node.name
        )
        _replace(graph, old, [fused], old[-1].outputs, fused.outputs)
        return True
    return False


def _uniform_constant(value: ir.Value | None) -> np.ndarray | None:
    """The value of a constant, possibly reshaped or expanded, when all its entries agree."""
    node = value.producer() if value is not None else None
    if node is not None and node.op_type in ("Expand", "Reshape"):
        return _uniform_constant(node.inputs[0])
    array = _constant(value)
    if array is None or array.size == 0 or not np.all(array == array.reshape(-1)[0]):
        return None
    return array.reshape(-1)[:1].reshape(())


def _scalar_where_fill(graph: ir.Graph, node: ir.Node) -> bool:
    """`Where(mask, x, Expand(full(-inf)))` -> `Where(mask, x, -inf)`: Where broadcasts."""
    if node.op_type != "Where":
        return False
    for i in (1, 2):
        operand = node.inputs[i]
        if operand is None or operand.producer() is None:
            continue
        value = _uniform_constant(operand)
        if value is not None:
            _rewire(graph, node, i, _initializer(graph, value, f"{operand.name}_scalar"))
            return True
    return False


# Masked logits sit this far below any legal one. Logits are first clipped to +-1e22: in
# float32, `x - 1e30` rounds to exactly -1e30 for every |x| < 3.7e22, so all masked
# entries tie below every legal logit (even an infinite or huge one), and a row with none
# legal is all ties, where ArgMax picks index 0: what `argmax(where(mask, x, -inf))` gives.
# The clip only merges legal logits beyond +-1e22, which no trained policy produces.
_MASK_PENALTY = 1e30
_LOGIT_BOUND = 1e22


def _arithmetic_mask(graph: ir.Graph, node: ir.Node) -> bool:
    """`ArgMax(Where(mask, x, -inf))` -> `ArgMax(clip(x) + (float(mask) * 1e30 - 1e30))`.

    Likewise before a Sigmoid (masked bits): sigmoid(-1e30) is exactly 0, as sigmoid(-inf),
    and sigmoid of a legal logit is unchanged by the clip (it saturates long before 1e22).
    Not exact: legal logits beyond +-1e22 are clipped to the bound, so two such logits
    tie where the Where kept them apart.

    onnxruntime's Where broadcasts its scalar fill on a slow generic path (a seventh of
    the whole policy's time at batch 4096, measured); Cast/Mul/Add take their fast paths.

    When the Where has other readers too (the sample entry's log-softmax reads the masked
    logits), the ArgMax or Sigmoid gets the arithmetic mask of its own and the others keep
    the Where: the sample entry's `action` is then the default entry's, clip included.
    """
    if node.op_type != "Where":
        return False
    fill = _constant(node.inputs[2])
    if fill is None or fill.size == 0 or not np.all(np.isneginf(fill)):
        return False
    masked = node.outputs[0]
    uses = masked.uses()
    targets = [use for use in uses if use.node.op_type in ("ArgMax", "Sigmoid")]
    if not targets:
        return False
    hint = masked.name or "masked"

    def scalar(value: float, suffix: str) -> ir.Value:
        return _initializer(graph, np.array(value, np.float32), f"{hint}_{suffix}")

    legal = ir.node("Cast", [node.inputs[0]], {"to": ir.DataType.FLOAT})
    scaled = ir.node("Mul", [legal.outputs[0], scalar(_MASK_PENALTY, "mask_scale")])
    penalty = ir.node("Add", [scaled.outputs[0], scalar(-_MASK_PENALTY, "mask_shift")])
    clipped = ir.node(
        "Clip",
        [node.inputs[1], scalar(-_LOGIT_BOUND, "clip_low"), scalar(_LOGIT_BOUND, "clip_high")],
    )
    result = ir.node("Add", [clipped.outputs[0], penalty.outputs[0]])
    chain = [legal, scaled, penalty, clipped, result]
    if len(uses) > len(targets) or masked.is_graph_output():
        graph.insert_after(node, chain)
        for use in targets:
            use.node.replace_input_with(use.idx, result.outputs[0])
    else:
        _replace(graph, [node], chain, [masked], result.outputs)
    return True


_ROW_CONSTANT_UNARY = ("Log", "Exp", "Neg", "Abs", "Sqrt", "Reciprocal", "Identity", "Cast")
_ROW_CONSTANT_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def _row_constant(value: ir.Value | None, axis: int, depth: int = 0) -> bool:
    """Whether `value` has size 1 along `axis` (so it is constant along it once broadcast).

    True for an `Unsqueeze` along `axis` (how a per-row reduction arrives), a scalar
    constant, and elementwise functions of those: a log-softmax's `max` and `log(sum(exp))`.
    """
    array = _constant(value)
    if array is not None:
        return array.size == 1
    node = value.producer() if value is not None else None
    if node is None or depth > 8:
        return False
    if node.op_type == "Unsqueeze":
        axes = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
        return axes is not None and axes.reshape(-1).tolist() == [axis]
    if node.op_type in _ROW_CONSTANT_UNARY:
        return _row_constant(node.inputs[0], axis, depth + 1)
    if node.op_type in _ROW_CONSTANT_BINARY:
        return all(_row_constant(x, axis, depth + 1) for x in node.inputs)
    return False


def _without_row_shift(value: ir.Value, axis: int) -> ir.Value:
    """`x - c - c' ...` with every `c` constant along `axis` -> `x` (same argmax)."""
    node = _producer(value, "Sub")
    while node is not None and node.inputs[0] is not None and _row_constant(node.inputs[1], axis):
        value = node.inputs[0]
        node = _producer(value, "Sub")
    return value


def _argmax_without_log_softmax(graph: ir.Graph, node: ir.Node) -> bool:
    """`ArgMax(log_softmax(x))` -> `ArgMax(x)`, also through a `Where(mask, ., -inf)`.

    lerax's categorical mode is the argmax of a log-softmax (twice, around the mask).
    Subtracting a per-row constant keeps the order of a row's entries, and masked entries
    stay at -inf below every legal one. Not exact: float rounding of the shifted values
    can tell the two apart at near-ties, which the parity check counts as such (its
    margins are read from the JAX trace, i.e. from the shifted values).
    """
    if node.op_type != "ArgMax" or node.inputs[0] is None:
        return False
    axis = _attrs(node).get("axis", 0)
    source = _without_row_shift(node.inputs[0], axis)
    changed = source is not node.inputs[0]
    if changed:
        _rewire(graph, node, 0, source)
    where = _producer(source, "Where")
    if where is not None and _only_reader(source) is node and where.inputs[1] is not None:
        fill = _constant(where.inputs[2])
        inner = _without_row_shift(where.inputs[1], axis)
        if (
            fill is not None
            and fill.size
            and np.all(np.isneginf(fill))
            and inner is not where.inputs[1]
        ):
            _rewire(graph, where, 1, inner)
            changed = True
    return changed


def _is_cast(node: ir.Node | None, to: ir.DataType) -> bool:
    return node is not None and node.op_type == "Cast" and _attrs(node).get("to") == to


# Ops that move integers around without looking at their values or dtype.
_LAYOUT_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Concat", "Identity")
_BOOL_OPS = ("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not")


def _narrowed_indices(value: ir.Value) -> list[ir.Node] | None:
    """The `Cast<int32>(ArgMax|ArgMin)` nodes that `value` is laid out from, through layout
    ops read by nothing else; None when anything else feeds it."""
    node = value.producer()
    if node is None:
        return None
    if _is_cast(node, ir.DataType.INT32):
        source = node.inputs[0].producer() if node.inputs[0] is not None else None
        return [node] if source is not None and source.op_type in ("ArgMax", "ArgMin") else None
    if node.op_type not in _LAYOUT_OPS:
        return None
    leaves: list[ir.Node] = []
    for inner in node.inputs if node.op_type == "Concat" else node.inputs[:1]:
        found = inner and _narrowed_indices(inner)
        if not found or inner is None or _only_reader(inner) is not node:
            return None
        leaves += found
    return leaves


def _boolean(value: ir.Value | None) -> bool:
    node = value.producer() if value is not None else None
    return value is not None and (
        value.dtype == ir.DataType.BOOL or (node is not None and node.op_type in _BOOL_OPS)
    )


def _int64_without_cast(graph: ir.Graph, node: ir.Node) -> bool:
    """`Cast(to=INT64)` -> nothing, or `CastLike(x, int64)`, or `Where(b, 1, 0)`: the same
    values, without the op tract cannot hand back.

    tract types `Cast(to=INT64)` as a symbolic dimension (TDim) and cannot return it
    ("Unsupported DatumType in the public API TDim"), and the discrete actions all end in
    one. In order of preference:

    - ArgMax's indices narrowed to int32, laid out (Unsqueeze, Concat...) and widened
      back: the round trip is the identity (ArgMax is int64 already), so both casts go.
    - A boolean (MultiBinary's bits) through int32 to int64: the middle cast goes too.
    - Whatever is left: `CastLike(x, int64)` (opset 15+), which onnxruntime runs as one
      Cast (a `Where` with scalar fills takes a slower path: +4 us a call at batch 1,
      bench/runtimes.py); below opset 15, a boolean becomes `Where(b, 1, 0)` in int64,
      anything else keeps its Cast.
    """
    if not _is_cast(node, ir.DataType.INT64) or node.inputs[0] is None:
        return False
    x = node.inputs[0]
    leaves = _narrowed_indices(x) if _only_reader(x) is node else None
    if leaves and not any(
        leaf.inputs[0] is None or leaf.inputs[0].is_graph_output() for leaf in leaves
    ):
        for leaf in leaves:
            _bypass(graph, leaf)
        _bypass(graph, node)
        return True
    narrow = x.producer()
    if _is_cast(narrow, ir.DataType.INT32) and _only_reader(x) is node:
        assert narrow is not None and narrow.inputs[0] is not None
        if _boolean(narrow.inputs[0]):
            x = narrow.inputs[0]
    hint = node.outputs[0].name or "int64"
    if _opset(graph) >= _CAST_LIKE_OPSET:
        like = _initializer(graph, np.array(0, np.int64), f"{hint}_int64")
        replacement = ir.node("CastLike", [x, like])
    elif _boolean(x):
        one = _initializer(graph, np.array(1, np.int64), f"{hint}_one")
        zero = _initializer(graph, np.array(0, np.int64), f"{hint}_zero")
        replacement = ir.node("Where", [x, one, zero])
    else:
        return False
    _replace(graph, [node], [replacement], node.outputs, replacement.outputs)
    return True


def _linear(node: ir.Node | None) -> tuple[ir.Value, np.ndarray, np.ndarray] | None:
    """`(x, W, b)` of a Gemm computing `x @ W.T + b` with constant `W` and `b`."""
    if node is None or node.op_type != "Gemm" or len(node.inputs) < 3 or node.inputs[0] is None:
        return None
    a = _attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        return None
    weight, bias = _constant(node.inputs[1]), _constant(node.inputs[2])
    if a.get("transB", 0) != 1 or weight is None or bias is None or bias.ndim != 1:
        return None
    return node.inputs[0], weight, bias


def _fold_linear_pairs(graph: ir.Graph, node: ir.Node) -> bool:
    """Two affine layers with nothing between them -> one, when that is less work.

    The action head's last hidden layer and its distribution layer are such a pair: with
    the default sizes, 64 -> 16 -> n becomes 64 -> n. Not exact: the product is formed in
    float64 and rounded once, so the folded layer is at least as accurate as the pair but
    rounds differently.
    """
    outer = _linear(node)
    if outer is None:
        return False
    inner_node = outer[0].producer()
    inner = _linear(inner_node)
    if inner is None or inner_node is None or _only_reader(outer[0]) is not node:
        return False
    (x, w1, b1), (_, w2, b2) = inner, outer
    (m, n), k = w1.shape, w2.shape[0]
    if k * n >= m * n + k * m:
        return False
    weight = (w2.astype(np.float64) @ w1.astype(np.float64)).astype(np.float32)
    bias = (w2.astype(np.float64) @ b1.astype(np.float64) + b2).astype(np.float32)
    hint = node.outputs[0].name or "folded"
    folded = ir.node(
        "Gemm",
        [
            x,
            _initializer(graph, weight, f"{hint}_folded_weight"),
            _initializer(graph, bias, f"{hint}_folded_bias"),
        ],
        {"transB": 1},
        name=node.name,
    )
    _replace(graph, [inner_node, node], [folded], node.outputs, folded.outputs)
    return True


RULES: tuple[Rule, ...] = (
    _gemm_without_transposes,
    _split_without_transposes,
    _elementwise_without_transposes,
    _bias_into_gemm,
    _unused_gemm_columns,
    _relu_from_max,
    _layer_normalization,
    _scalar_where_fill,
    _argmax_without_log_softmax,
    _arithmetic_mask,
    _int64_without_cast,
    _fold_linear_pairs,
)


def _restore_outputs(graph: ir.Graph, names: list[str]) -> None:
    """Give each graph output back its contract name, and a value of its own.

    onnx-ir's passes may merge two outputs computing the same tensor into one value (and
    rename it); the contract names each output, so a repeat reads its value through an
    Identity under its own name.
    """
    seen: set[ir.Value] = set()
    for i, (value, name) in enumerate(zip(graph.outputs, names, strict=True)):
        if value in seen or value.is_graph_input():
            copy = ir.node("Identity", [value])
            copy.outputs[0].name, copy.outputs[0].type = name, value.type
            copy.outputs[0].shape = value.shape
            graph.append(copy)
            graph.outputs[i] = copy.outputs[0]
        else:
            value.name = name
            seen.add(value)


def _tidy(model: ir.Model) -> None:
    """onnx-ir's passes: equal initializers and nodes merged, Identity nodes and dead
    nodes dropped; the outputs keep their names."""
    names = [value.name or "" for value in model.graph.outputs]
    passes.DeduplicateHashedInitializersPass()(model)
    passes.CommonSubexpressionEliminationPass()(model)
    passes.IdentityEliminationPass()(model)
    passes.RemoveUnusedNodesPass()(model)
    _restore_outputs(model.graph, names)


def rewrite(model: ir.Model) -> Counter[str]:
    """Tidy, apply the rules until none fires, tidy again; how often each rule fired.

    A policy's action and its heads are traced from separate public methods, so a shared
    encoder arrives twice (same weights, same ops): merging it first lets the rules see
    one reader where there is one.
    """
    passes.ShapeInferencePass()(model)  # `_layer_normalization` reads a width
    _tidy(model)
    graph, fired = model.graph, Counter[str]()
    changed = True
    while changed:
        changed = False
        for rule in RULES:
            for node in list(graph):
                if node.graph is graph and rule(graph, node):
                    fired[rule.__name__] += 1
                    changed = True
    _tidy(model)
    for node in graph:  # shapes and types inferred before the rewrites may be stale now
        for value in node.outputs:
            if not value.is_graph_output():
                value.shape, value.type = None, None
    return fired


def optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` rewritten in place by `rewrite` (and returned); logs which rules fired."""
    ir_model = ir.serde.deserialize_model(model)
    fired = rewrite(ir_model)
    _log.debug("ONNX rules fired: %s", dict(fired), extra={"rules_fired": dict(fired)})
    model.CopyFrom(ir.serde.serialize_model(ir_model))
    return model

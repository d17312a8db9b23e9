"""Rewrite rules that turn jax2onnx's graph of a policy into plain Gemm/Relu chains.

jax2onnx lowers the vmapped `weight @ x` of each layer to `Transpose -> Gemm(W, x^T) ->
Transpose`, then adds the bias and applies relu as `Max(y, 0)`. onnxruntime's own
optimisers leave most of those Transposes in place (docs/design.md), and they cost more than
the matmuls at batch 1. Each rule below replaces one such pattern with the form
onnxruntime runs fastest; every rule preserves the computation exactly (no reordered
arithmetic) except `_fold_linear_pairs`, which multiplies two weight matrices into one
(in float64, then rounded once to float32), and `_layer_normalization`, which computes
Flax's layer norm with onnxruntime's fused kernel (the exact variance where Flax's can
cancel). The parity check runs on the rewritten graph.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class _Graph:
    """Indexes over a graph's nodes, rebuilt after each rewrite."""

    model: onnx.ModelProto
    nodes: list[onnx.NodeProto]
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)

    @classmethod
    def index(cls, model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> _Graph:
        graph = cls(model, nodes)
        for node in nodes:
            for name in node.output:
                graph.producer[name] = node
            for name in node.input:
                graph.consumers[name].append(node)
        for init in model.graph.initializer:
            graph.constants[init.name] = numpy_helper.to_array(init)
        graph.outputs = {o.name for o in model.graph.output}
        return graph

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def add_constant(self, name: str, value: np.ndarray) -> str:
        """Add an initializer under `name`, or `name_2`, `name_3`... if that is taken."""
        taken = (
            self.constants.keys() | set(self.producer) | {i.name for i in self.model.graph.input}
        )
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name


def _opset(graph: _Graph) -> int:
    """The model's default-domain opset."""
    return next(o.version for o in graph.model.opset_import if o.domain in ("", "ai.onnx"))


# LayerNormalization is in the default domain from opset 17 (Unity Sentis reads up to 15).
_LAYER_NORMALIZATION_OPSET = 17


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_transpose_2d(node: onnx.NodeProto | None) -> bool:
    return node is not None and node.op_type == "Transpose" and _attrs(node).get("perm") == [1, 0]


def _plain_gemm(graph: _Graph, node: onnx.NodeProto) -> bool:
    """A Gemm computing exactly `A @ B` (no scaling, no transposes, no or zero bias)."""
    a = _attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("transA", 0) or a.get("transB", 0):
        return False
    if len(node.input) < 3 or not node.input[2]:
        return True
    bias = graph.constants.get(node.input[2])
    return a.get("beta", 1.0) == 0.0 or (bias is not None and not np.any(bias))


def _gemm_without_transposes(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Transpose(Gemm(W, Transpose(x)))` -> `Gemm(x, W, transB=1)`."""
    if node.op_type != "Gemm" or node.input[0] not in graph.constants:
        return False
    source = graph.producer.get(node.input[1])
    after = graph.only_consumer(node.output[0])
    if not (_is_transpose_2d(source) and _is_transpose_2d(after) and _plain_gemm(graph, node)):
        return False
    replacement = helper.make_node(
        "Gemm", [source.input[0], node.input[0]], [after.output[0]], transB=1, name=node.name
    )
    _replace(graph, [node, after], replacement)
    return True


def _split_without_transposes(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Transpose(Split(Transpose(x), axis=a))` per output -> `Split(x, axis=1-a)`, for 2D.

    A vmapped `W @ h` split into gates (equinox's GRU and LSTM cells: `jnp.split` of the
    gate pre-activations) comes out of JAX's batching as `[gates, batch]`, transposed
    around the split; the same split on the other axis moves the same numbers, exactly."""
    if node.op_type != "Split":
        return False
    source = graph.producer.get(node.input[0])
    after = [graph.only_consumer(name) for name in node.output]
    if not (_is_transpose_2d(source) and all(_is_transpose_2d(t) for t in after)):
        return False
    attrs = _attrs(node)
    attrs["axis"] = 1 - attrs.get("axis", 0) % 2
    inputs = [source.input[0], *node.input[1:]]
    split = helper.make_node("Split", inputs, [t.output[0] for t in after], **attrs)
    _replace(graph, [node, *after], split)
    return True


def _elementwise_without_transposes(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Transpose(Add(Transpose(a), Transpose(b)))` -> `Add(a, b)` (and Sub, Mul), for 2D.

    Equinox's LSTM cell adds its two gate matmuls before the split: batched by JAX, each
    is `[gates, batch]`; the same elementwise op on the untransposed operands is exact."""
    if node.op_type not in ("Add", "Sub", "Mul") or len(node.input) != 2:
        return False
    sources = [graph.producer.get(name) for name in node.input]
    after = graph.only_consumer(node.output[0])
    if not (all(_is_transpose_2d(s) for s in sources) and _is_transpose_2d(after)):
        return False
    inputs = [s.input[0] for s in sources]
    _replace(graph, [node, after], helper.make_node(node.op_type, inputs, [after.output[0]]))
    return True


def _bias_into_gemm(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Add(Gemm(x, W), b)` -> `Gemm(x, W, b)`, for a bias of shape `[out]` or `[1, out]`."""
    if node.op_type != "Add":
        return False
    for y, b in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        gemm = graph.producer.get(y)
        bias = graph.constants.get(b)
        if gemm is None or gemm.op_type != "Gemm" or bias is None:
            continue
        if graph.only_consumer(y) is not node or (len(gemm.input) > 2 and gemm.input[2]):
            continue
        if bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            continue
        name = graph.add_constant(f"{b}_gemm_bias", bias.reshape(-1))
        attrs = {k: v for k, v in _attrs(gemm).items() if k != "beta"}
        fused = helper.make_node(
            "Gemm", [*gemm.input[:2], name], [node.output[0]], name=gemm.name, **attrs
        )
        _replace(graph, [gemm, node], fused)
        return True
    return False


def _split_sizes(graph: _Graph, node: onnx.NodeProto, width: int) -> list[int] | None:
    """The sizes of a Split's pieces along its axis, whether given as an input or not."""
    if len(node.input) > 1 and node.input[1]:
        sizes = graph.constants.get(node.input[1])
        return None if sizes is None else [int(s) for s in sizes.reshape(-1)]
    attrs = _attrs(node)
    if "split" in attrs:
        return [int(s) for s in attrs["split"]]
    count = attrs.get("num_outputs", len(node.output))
    return [width // count] * count if width % count == 0 else None


def _unused_gemm_columns(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Split(Gemm(x, W, b))` with pieces nobody reads -> a Gemm of the read columns only.

    Brax's tanh-normal policy computes the Gaussian's location and scale in one layer and
    its deterministic action reads the location alone: half the last layer's work is
    dead. Each kept column is the same dot product as before, so the values are the same.
    """
    if node.op_type != "Split" or _attrs(node).get("axis", 0) not in (1, -1):
        return False
    gemm = graph.producer.get(node.input[0])
    if gemm is None or gemm.op_type != "Gemm" or graph.only_consumer(node.input[0]) is not node:
        return False
    a = _attrs(gemm)
    weight = graph.constants.get(gemm.input[1])
    bias = graph.constants.get(gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else None
    if weight is None or a.get("transA", 0) or (len(gemm.input) > 2 and bias is None):
        return False
    columns = weight.shape[0] if a.get("transB", 0) else weight.shape[1]
    if bias is not None and bias.shape not in ((columns,), (1, columns)):
        return False
    sizes = _split_sizes(graph, node, columns)
    if sizes is None or sum(sizes) != columns:
        return False
    read = [name in graph.outputs or bool(graph.consumers.get(name)) for name in node.output]
    if all(read) or not any(read):
        return False
    starts = np.cumsum([0, *sizes[:-1]])
    kept = np.concatenate(
        [np.arange(s, s + n) for s, n, r in zip(starts, sizes, read, strict=True) if r]
    )
    narrow = weight[kept] if a.get("transB", 0) else weight[:, kept]
    inputs = [gemm.input[0], graph.add_constant(f"{gemm.input[1]}_read", narrow)]
    if bias is not None:
        inputs.append(graph.add_constant(f"{gemm.input[2]}_read", bias.reshape(-1)[kept]))
    outputs = [name for name, r in zip(node.output, read, strict=True) if r]
    if len(outputs) == 1:
        _replace(graph, [gemm, node], helper.make_node("Gemm", inputs, outputs, **a))
        return True
    pieces = [n for n, r in zip(sizes, read, strict=True) if r]
    product = f"{gemm.output[0]}_read"
    sizes_name = graph.add_constant(f"{node.input[0]}_read_sizes", np.array(pieces, np.int64))
    _replace(graph, [gemm, node], helper.make_node("Gemm", inputs, [product], **a))
    position = next(i for i, n in enumerate(graph.nodes) if n.output[0] == product)
    graph.nodes.insert(
        position + 1, helper.make_node("Split", [product, sizes_name], outputs, axis=1)
    )
    return True


def _producer_of(graph: _Graph, name: str, op: str) -> onnx.NodeProto | None:
    node = graph.producer.get(name)
    return node if node is not None and node.op_type == op else None


def _scalar_constant(graph: _Graph, name: str) -> float | None:
    value = graph.constants.get(name)
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def _per_row(graph: _Graph, name: str) -> str | None:
    """`v` of a `[batch, 1]` tensor made from a per-row `[batch]` one (Unsqueeze on axis 1
    or a Reshape to `[0, 1]`), else None."""
    node = graph.producer.get(name)
    if node is None or len(node.input) < 2:
        return None
    shape = graph.constants.get(node.input[1])
    if shape is None:
        return None
    wanted = {"Unsqueeze": ([1], [-1]), "Reshape": ([0, 1],)}.get(node.op_type, ())
    return node.input[0] if shape.reshape(-1).tolist() in [list(w) for w in wanted] else None


def _row_mean(graph: _Graph, name: str, width: int) -> str | None:
    """`x` when `name` is `ReduceSum(x, axes=[1], keepdims=0) / width`, else None."""
    div = _producer_of(graph, name, "Div")
    if div is None or _scalar_constant(graph, div.input[1]) != float(width):
        return None
    total = _producer_of(graph, div.input[0], "ReduceSum")
    if total is None or _attrs(total).get("keepdims", 1) != 0 or len(total.input) < 2:
        return None
    axes = graph.constants.get(total.input[1])
    if axes is None or axes.reshape(-1).tolist() not in ([1], [-1]):
        return None
    return total.input[0]


def _shapes(graph: _Graph) -> dict[str, list]:
    """Each tensor's shape (dims as ints or names), by onnx's shape inference."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    del model.graph.node[:]
    model.graph.node.extend(graph.nodes)
    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model).graph
    return {
        info.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        for info in [*inferred.input, *inferred.value_info]
        if info.type.tensor_type.HasField("shape")
        for dims in [info.type.tensor_type.shape.dim]
    }


def _fast_variance(graph: _Graph, name: str, x: str, mean: str, width: int) -> bool:
    """Whether `name` is `max(mean(x * x) - mean * mean, 0)` (Flax's layer norm variance)."""
    relu = _producer_of(graph, name, "Relu")
    difference = relu and _producer_of(graph, relu.input[0], "Sub")
    if not difference:
        return False
    squares = _row_mean(graph, difference.input[0], width)
    square_node = squares and _producer_of(graph, squares, "Mul")
    mean_square = _producer_of(graph, difference.input[1], "Mul")
    return bool(
        square_node
        and list(square_node.input) == [x, x]
        and mean_square
        and list(mean_square.input) == [mean, mean]
    )


def _row_vector(value: np.ndarray, width: int) -> bool:
    """A constant of one value per feature, `[width]` or `[1, width]`."""
    return value.shape in ((width,), (1, width))


def _layer_normalization(graph: _Graph, node: onnx.NodeProto) -> bool:
    """Flax's layer norm (16 ops) -> one ONNX `LayerNormalization` of the centred input.

    Flax (linen and nnx, `use_fast_variance=True`, the default) computes
    `(x - mean) * (rsqrt(max(mean(x^2) - mean^2, 0) + eps) * scale) + bias`: each op a
    pass over the whole `[batch, width]` tensor in onnxruntime (3x slower than XLA's fused
    loop at batch 4096, measured). onnxruntime's `LayerNormalization` kernel is one pass,
    but it takes `mean(x^2) - mean^2` without Flax's clamp at 0, so on rows of large
    values with a tiny spread it would take the root of a negative number (NaN where Flax
    is finite). Given the centred input `x - mean` instead (whose mean is ~0), its
    variance cannot cancel: it is the exact variance, at least as accurate as Flax's, and
    never NaN for finite inputs. Like `_fold_linear_pairs`, this rule changes rounding
    (a few float32 ulps on ordinary rows); the parity check runs on the result. Below
    opset 17, which has no LayerNormalization, the 16 ops stay.
    """
    if node.op_type != "Mul" or _opset(graph) < _LAYER_NORMALIZATION_OPSET:
        return False
    for centred, weight in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        sub = _producer_of(graph, centred, "Sub")
        mean = sub and _per_row(graph, sub.input[1])
        if not mean:
            continue
        x = sub.input[0]
        shape = _shapes(graph).get(x)
        if shape is None or len(shape) != 2 or not isinstance(shape[1], int) or not shape[1]:
            continue
        width = shape[1]
        if _row_mean(graph, mean, width) != x:
            continue
        scale = None
        root = _producer_of(graph, weight, "Reciprocal")
        scaling = _producer_of(graph, weight, "Mul")
        if root is None and scaling is not None:
            for r, c in (
                (scaling.input[0], scaling.input[1]),
                (scaling.input[1], scaling.input[0]),
            ):
                candidate, value = _producer_of(graph, r, "Reciprocal"), graph.constants.get(c)
                if candidate is not None and value is not None and _row_vector(value, width):
                    root, scale = candidate, value.reshape(-1)
        sqrt = root and _producer_of(graph, root.input[0], "Sqrt")
        shifted = sqrt and _producer_of(graph, sqrt.input[0], "Add")
        if not shifted:
            continue
        for v, e in ((shifted.input[0], shifted.input[1]), (shifted.input[1], shifted.input[0])):
            epsilon, variance = _scalar_constant(graph, e), _per_row(graph, v)
            if epsilon is not None and epsilon > 0 and variance:
                break
        else:
            continue
        if not _fast_variance(graph, variance, x, mean, width):
            continue
        output, bias = node.output[0], None
        after = graph.only_consumer(output)
        if after is not None and after.op_type == "Add":
            other = after.input[1] if after.input[0] == output else after.input[0]
            value = graph.constants.get(other)
            if value is not None and _row_vector(value, width):
                output, bias = after.output[0], value.reshape(-1)
        ones = np.ones(width, np.float32) if scale is None else scale
        inputs = [centred, graph.add_constant(f"{output}_ln_scale", ones.astype(np.float32))]
        if bias is not None:
            inputs.append(graph.add_constant(f"{output}_ln_bias", bias.astype(np.float32)))
        fused = helper.make_node(
            "LayerNormalization", inputs, [output], axis=-1, epsilon=epsilon, name=node.name
        )
        _replace(graph, [node] if bias is None else [node, after], fused)
        return True
    return False


def _relu_from_max(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Max(y, 0)` -> `Relu(y)` (how jax.nn.relu arrives)."""
    if node.op_type != "Max" or len(node.input) != 2:
        return False
    for y, zero in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        value = graph.constants.get(zero)
        if value is not None and value.size == 1 and float(value.reshape(())) == 0.0:
            _replace(graph, [node], helper.make_node("Relu", [y], [node.output[0]], name=node.name))
            return True
    return False


def _uniform_constant(graph: _Graph, name: str) -> np.ndarray | None:
    """The value of a constant, possibly reshaped or expanded, when all its entries agree."""
    node = graph.producer.get(name)
    if node is not None and node.op_type in ("Expand", "Reshape"):
        return _uniform_constant(graph, node.input[0])
    value = graph.constants.get(name)
    if value is None or value.size == 0 or not np.all(value == value.reshape(-1)[0]):
        return None
    return value.reshape(-1)[:1].reshape(())


def _scalar_where_fill(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Where(mask, x, Expand(full(-inf)))` -> `Where(mask, x, -inf)`: Where broadcasts."""
    if node.op_type != "Where":
        return False
    for i in (1, 2):
        if graph.producer.get(node.input[i]) is None:
            continue
        value = _uniform_constant(graph, node.input[i])
        if value is not None:
            node.input[i] = graph.add_constant(f"{node.input[i]}_scalar", value)
            return True
    return False


# Masked logits sit this far below any legal one. Logits are first clipped to +-1e22: in
# float32, `x - 1e30` rounds to exactly -1e30 for every |x| < 3.7e22, so all masked
# entries tie below every legal logit (even an infinite or huge one), and a row with none
# legal is all ties, where ArgMax picks index 0: what `argmax(where(mask, x, -inf))` gives.
# The clip only merges legal logits beyond +-1e22, which no trained policy produces.
_MASK_PENALTY = 1e30
_LOGIT_BOUND = 1e22


def _arithmetic_mask(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`ArgMax(Where(mask, x, -inf))` -> `ArgMax(clip(x) + (float(mask) * 1e30 - 1e30))`.

    Likewise before a Sigmoid (masked bits): sigmoid(-1e30) is exactly 0, as sigmoid(-inf),
    and sigmoid of a legal logit is unchanged by the clip (it saturates long before 1e22).

    onnxruntime's Where broadcasts its scalar fill on a slow generic path (a seventh of
    the whole policy's time at batch 4096, measured); Cast/Mul/Add take their fast paths.

    When the Where has other readers too (the sample entry's log-softmax reads the masked
    logits), the ArgMax or Sigmoid gets the arithmetic mask of its own and the others keep
    the Where: the sample entry's `action` is then the default entry's, clip included.
    """
    if node.op_type != "Where":
        return False
    fill = graph.constants.get(node.input[2])
    if fill is None or fill.size == 0 or not np.all(np.isneginf(fill)):
        return False
    users = graph.consumers.get(node.output[0], [])
    targets = [u for u in users if u.op_type in ("ArgMax", "Sigmoid")]
    if not targets:
        return False
    shared = len(users) > 1 or node.output[0] in graph.outputs
    result = f"{node.output[0]}_arithmetic" if shared else node.output[0]
    penalty_value = np.array(_MASK_PENALTY, np.float32)
    big = graph.add_constant(f"{node.output[0]}_mask_scale", penalty_value)
    offset = graph.add_constant(f"{node.output[0]}_mask_shift", -penalty_value)
    low = graph.add_constant(f"{node.output[0]}_clip_low", np.array(-_LOGIT_BOUND, np.float32))
    high = graph.add_constant(f"{node.output[0]}_clip_high", np.array(_LOGIT_BOUND, np.float32))
    legal, scaled, penalty, clipped = (
        f"{node.output[0]}_{s}" for s in ("legal", "scaled", "penalty", "clipped")
    )
    cast = helper.make_node("Cast", [node.input[0]], [legal], to=TensorProto.FLOAT)
    if shared:
        position = next(i for i, n in enumerate(graph.nodes) if n is node)
        graph.nodes.insert(position + 1, cast)
        for target in targets:
            target.input[0] = result
    else:
        _replace(graph, [node], cast)
    position = next(i for i, n in enumerate(graph.nodes) if n is cast)
    graph.nodes[position + 1 : position + 1] = [
        helper.make_node("Mul", [legal, big], [scaled]),
        helper.make_node("Add", [scaled, offset], [penalty]),
        helper.make_node("Clip", [node.input[1], low, high], [clipped]),
        helper.make_node("Add", [clipped, penalty], [result]),
    ]
    return True


_ROW_CONSTANT_UNARY = ("Log", "Exp", "Neg", "Abs", "Sqrt", "Reciprocal", "Identity", "Cast")
_ROW_CONSTANT_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def _row_constant(graph: _Graph, name: str, axis: int, depth: int = 0) -> bool:
    """Whether `name` has size 1 along `axis` (so it is constant along it once broadcast).

    True for an `Unsqueeze` along `axis` (how a per-row reduction arrives), a scalar
    constant, and elementwise functions of those: a log-softmax's `max` and `log(sum(exp))`.
    """
    value = graph.constants.get(name)
    if value is not None:
        return value.size == 1
    node = graph.producer.get(name)
    if node is None or depth > 8:
        return False
    if node.op_type == "Unsqueeze":
        axes = graph.constants.get(node.input[1]) if len(node.input) > 1 else None
        return axes is not None and axes.reshape(-1).tolist() == [axis]
    if node.op_type in _ROW_CONSTANT_UNARY:
        return _row_constant(graph, node.input[0], axis, depth + 1)
    if node.op_type in _ROW_CONSTANT_BINARY:
        return all(_row_constant(graph, x, axis, depth + 1) for x in node.input)
    return False


def _without_row_shift(graph: _Graph, name: str, axis: int) -> str:
    """`x - c - c' ...` with every `c` constant along `axis` -> `x` (same argmax)."""
    node = graph.producer.get(name)
    while node is not None and node.op_type == "Sub" and _row_constant(graph, node.input[1], axis):
        name = node.input[0]
        node = graph.producer.get(name)
    return name


def _argmax_without_log_softmax(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`ArgMax(log_softmax(x))` -> `ArgMax(x)`, also through a `Where(mask, ., -inf)`.

    lerax's categorical mode is the argmax of a log-softmax (twice, around the mask).
    Subtracting a per-row constant keeps the order of a row's entries, and masked entries
    stay at -inf below every legal one. Only float rounding of the shifted values can tell
    the two apart, at near-ties, which the parity check counts as such (its margins are
    read from the JAX trace, i.e. from the shifted values).
    """
    if node.op_type != "ArgMax":
        return False
    axis = _attrs(node).get("axis", 0)
    source = _without_row_shift(graph, node.input[0], axis)
    changed = source != node.input[0]
    node.input[0] = source
    where = graph.producer.get(source)
    # Other readers of the Where may be the shift just dropped (dead now): count live ones.
    readers = [n for n in _live(graph.nodes, graph.outputs) if source in n.input]
    if where is not None and where.op_type == "Where" and readers == [node]:
        fill = graph.constants.get(where.input[2])
        inner = _without_row_shift(graph, where.input[1], axis)
        if fill is not None and fill.size and np.all(np.isneginf(fill)) and inner != where.input[1]:
            where.input[1] = inner
            changed = True
    return changed


def _argmax_without_casts(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Cast<int64>(Cast<int32>(ArgMax(x)))` -> `ArgMax(x)`: ArgMax is int64 already."""
    if node.op_type != "Cast" or _attrs(node).get("to") != TensorProto.INT64:
        return False
    narrow = graph.producer.get(node.input[0])
    if narrow is None or narrow.op_type != "Cast" or _attrs(narrow).get("to") != TensorProto.INT32:
        return False
    argmax = graph.producer.get(narrow.input[0])
    if argmax is None or argmax.op_type != "ArgMax" or graph.only_consumer(narrow.input[0]) is None:
        return False
    if graph.only_consumer(node.input[0]) is not node:
        return False
    argmax.output[0] = node.output[0]
    _replace(graph, [narrow, node], None)
    return True


# Ops that move integers around without looking at their values or dtype.
_LAYOUT_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Concat", "Identity")


def _index_leaves(graph: _Graph, name: str) -> list[onnx.NodeProto] | None:
    """The `Cast<int32>(ArgMax|ArgMin)` nodes that `name` is laid out from, through layout
    ops read by nothing else; None when anything else feeds it."""
    node = graph.producer.get(name)
    if node is None:
        return None
    if node.op_type == "Cast" and _attrs(node).get("to") == TensorProto.INT32:
        source = graph.producer.get(node.input[0])
        if source is not None and source.op_type in ("ArgMax", "ArgMin"):
            return [node] if graph.only_consumer(node.input[0]) is node else None
        return None
    if node.op_type not in _LAYOUT_OPS:
        return None
    data = node.input if node.op_type == "Concat" else node.input[:1]
    leaves: list[onnx.NodeProto] = []
    for inner in data:
        found = _index_leaves(graph, inner)
        if found is None or graph.only_consumer(inner) is not node:
            return None
        leaves += found
    return leaves


def _indices_without_narrowing(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Cast<int64>(layout(Cast<int32>(ArgMax(x)), ...))` -> `layout(ArgMax(x), ...)`.

    ArgMax is int64 already, and its indices fit int32, so the round trip is the identity.
    Dropping it also keeps `Cast(to=INT64)` off MultiDiscrete's `action`: tract types that
    cast as a symbolic dimension (TDim) and cannot hand the output back ("Unsupported
    DatumType in the public API TDim").
    """
    if node.op_type != "Cast" or _attrs(node).get("to") != TensorProto.INT64:
        return False
    layout = graph.producer.get(node.input[0])
    if layout is None or layout.op_type not in _LAYOUT_OPS:
        return False
    leaves = _index_leaves(graph, node.input[0])
    if not leaves or graph.only_consumer(node.input[0]) is not node:
        return False
    for narrow in leaves:
        reader = graph.only_consumer(narrow.output[0])
        if reader is None:
            return False
        reader.input[:] = [narrow.input[0] if i == narrow.output[0] else i for i in reader.input]
    layout.output[0] = node.output[0]
    _replace(graph, [*leaves, node], None)
    return True


_BOOL_OPS = ("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not")


def _bits_as_int64(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Cast<int64>(Cast<int32>(b))`, `b` boolean -> `CastLike(b, int64)` (opset 15+), else
    `Where(b, 1, 0)` in int64.

    The same values; tract reads `Cast(to=INT64)` as a symbolic dimension (TDim) and cannot
    return MultiBinary's `action`, while `CastLike` and `Where` give it plain int64s.
    `CastLike` first: onnxruntime runs it as one Cast, where `Where` with scalar fills takes
    a slower path (+4 us a call at batch 1, measured: bench/runtimes.py).
    """
    if node.op_type != "Cast" or _attrs(node).get("to") != TensorProto.INT64:
        return False
    narrow = graph.producer.get(node.input[0])
    if narrow is None or narrow.op_type != "Cast" or _attrs(narrow).get("to") != TensorProto.INT32:
        return False
    test = graph.producer.get(narrow.input[0])
    if test is None or test.op_type not in _BOOL_OPS or graph.only_consumer(node.input[0]) is None:
        return False
    if _opset(graph) >= 15:
        like = graph.add_constant(f"{node.output[0]}_int64", np.array(0, np.int64))
        replacement = helper.make_node("CastLike", [narrow.input[0], like], [node.output[0]])
    else:
        one = graph.add_constant(f"{node.output[0]}_one", np.array(1, np.int64))
        zero = graph.add_constant(f"{node.output[0]}_zero", np.array(0, np.int64))
        replacement = helper.make_node("Where", [narrow.input[0], one, zero], [node.output[0]])
    _replace(graph, [narrow, node], replacement)
    return True


def _int64_through_cast_like(graph: _Graph, node: onnx.NodeProto) -> bool:
    """Any `Cast(to=INT64)` left -> `CastLike(x, int64)` (opset 15+): the same values.

    tract types `Cast(to=INT64)` as a symbolic dimension (TDim) and cannot return it; the
    sample entry's `sampled_action` is the int32 sample (a `Where` for all-masked rows, so
    the rules above do not reach it) cast to int64. Last in `RULES`, after the rules that
    drop such casts altogether.
    """
    if node.op_type != "Cast" or _attrs(node).get("to") != TensorProto.INT64:
        return False
    if _opset(graph) < 15:
        return False
    like = graph.add_constant(f"{node.output[0]}_int64", np.array(0, np.int64))
    _replace(graph, [node], helper.make_node("CastLike", [node.input[0], like], [node.output[0]]))
    return True


def _linear(graph: _Graph, node: onnx.NodeProto | None) -> tuple | None:
    """`(x, W, b)` of a Gemm computing `x @ W.T + b` with constant `W` and `b`."""
    if node is None or node.op_type != "Gemm" or len(node.input) < 3:
        return None
    a = _attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        return None
    weight, bias = graph.constants.get(node.input[1]), graph.constants.get(node.input[2])
    if a.get("transB", 0) != 1 or weight is None or bias is None or bias.ndim != 1:
        return None
    return node.input[0], weight, bias


def _fold_linear_pairs(graph: _Graph, node: onnx.NodeProto) -> bool:
    """Two affine layers with nothing between them -> one, when that is less work.

    The action head's last hidden layer and its distribution layer are such a pair: with
    the default sizes, 64 -> 16 -> n becomes 64 -> n. The product is formed in float64 and
    rounded once, so the folded layer is at least as accurate as the pair.
    """
    outer = _linear(graph, node)
    if outer is None:
        return False
    inner_node = graph.producer.get(outer[0])
    inner = _linear(graph, inner_node)
    if inner is None or graph.only_consumer(outer[0]) is not node:
        return False
    (x, w1, b1), (_, w2, b2) = inner, outer
    (m, n), k = w1.shape, w2.shape[0]
    if k * n >= m * n + k * m:
        return False
    weight = (w2.astype(np.float64) @ w1.astype(np.float64)).astype(np.float32)
    bias = (w2.astype(np.float64) @ b1.astype(np.float64) + b2).astype(np.float32)
    folded = helper.make_node(
        "Gemm",
        [
            x,
            graph.add_constant(f"{node.input[1]}_folded", weight),
            graph.add_constant(f"{node.input[2]}_folded", bias),
        ],
        [node.output[0]],
        transB=1,
        name=node.name,
    )
    _replace(graph, [inner_node, node], folded)
    return True


def _no_identity(graph: _Graph, node: onnx.NodeProto) -> bool:
    """`Identity(y)` -> the node producing `y` writes the Identity's output itself.

    When `y` has other readers too (a Q-policy's Q-values feed both its argmax and the
    `q_values` output), they read the Identity's output name instead: same tensor.
    """
    if node.op_type != "Identity":
        return False
    source = graph.producer.get(node.input[0])
    if source is None or node.input[0] in graph.outputs:
        return False
    renamed, kept = node.input[0], node.output[0]
    for reader in graph.consumers.get(renamed, []):
        if reader is not node:
            reader.input[:] = [kept if name == renamed else name for name in reader.input]
    source.output[list(source.output).index(renamed)] = kept
    _replace(graph, [node], None)
    return True


RULES = (
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
    _argmax_without_casts,
    _indices_without_narrowing,
    _bits_as_int64,
    _fold_linear_pairs,
    _no_identity,
    _int64_through_cast_like,
)


def _replace(graph: _Graph, old: list[onnx.NodeProto], new: onnx.NodeProto | None) -> None:
    """Put `new` where the first of `old` was, and drop `old`."""
    nodes = graph.nodes
    position = min(i for i, n in enumerate(nodes) if any(n is o for o in old))
    nodes[:] = [n for n in nodes if not any(n is o for o in old)]
    if new is not None:
        nodes.insert(position, new)


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes the graph outputs depend on, in their order."""
    needed, live = set(outputs), []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]


def _rename_inputs(nodes: list[onnx.NodeProto], renamed: dict[str, str]) -> None:
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]


def common_subexpressions(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Compute each value once: equal initializers merged, then equal nodes.

    A policy's action and its heads are traced from separate public methods, so a shared
    encoder arrives twice (same weights, same ops). Two nodes are equal when they have the
    same op, attributes and (already merged) inputs; nodes are in topological order, so
    one pass merges whole chains. Graph outputs are never renamed away.
    """
    outputs = {o.name for o in model.graph.output}
    renamed: dict[str, str] = {}
    seen_constants: dict[tuple, str] = {}
    for init in model.graph.initializer:
        key = (init.data_type, tuple(init.dims), numpy_helper.to_array(init).tobytes())
        if key in seen_constants:
            renamed[init.name] = seen_constants[key]
        else:
            seen_constants[key] = init.name
    seen_nodes: dict[tuple, onnx.NodeProto] = {}
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        key = (
            node.domain,
            node.op_type,
            tuple(node.input),
            tuple(a.SerializeToString() for a in node.attribute),
        )
        twin = seen_nodes.get(key)
        if twin is None or any(name in outputs for name in node.output):
            seen_nodes.setdefault(key, node)
            continue
        renamed.update(zip(node.output, twin.output, strict=True))
    _rename_inputs(nodes, renamed)
    for out in model.graph.output:
        if out.name in renamed:  # cannot happen (outputs are kept above); guard the invariant
            raise AssertionError(f"graph output {out.name} was merged away")


def optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Merge common subexpressions, apply the rules until none fires, then drop dead nodes
    and unused initializers."""
    outputs = {o.name for o in model.graph.output}
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node]
    common_subexpressions(model, nodes)
    changed = True
    while changed:
        changed = False
        for rule in RULES:
            nodes[:] = _live(nodes, outputs)  # a dead consumer would block a rewrite
            graph = _Graph.index(model, nodes)
            for node in list(nodes):
                if any(node is n for n in nodes) and rule(graph, node):
                    changed = True
                    nodes[:] = _live(nodes, outputs)
                    graph = _Graph.index(model, nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    del model.graph.value_info[:]  # stale after the rewrites; shape inference redoes it
    return model

"""Hostile artifacts: a real export with its metadata (and, for a few, its graph) edited.

An artifact is a file a robot loads, so every consumer (C++, Node.js, the web page) must
refuse a malformed one with a short message and never crash, hang or write out of bounds;
and all three must agree on which files they accept (docs/artifact.md, "Limits").

Each mutant is a function that edits an `onnx.ModelProto` in place; `MUTANTS` maps its name
to it and to the verdict every consumer must reach ("accept" or "refuse"). The base is a
MultiDiscrete((3, 4, 2)) policy's sample entry (three Gumbel noise blocks, an action mask),
exported once by `write_corpus`. Nothing here is committed as bytes: the corpus is rebuilt
from the export on every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper

# The limits of docs/artifact.md ("Limits"); the consumers hold the same numbers.
MAX_METADATA_KEYS = 1024
MAX_VALUE_BYTES = 1 << 20
MAX_NOISE_BLOCKS = 4096
MAX_ROW_ELEMENTS = 1 << 24
MAX_JSON_DEPTH = 32
# What a consumer's message may quote of a value (a few hundred characters), plus the
# message's own words and the file's path: a refusal's stderr stays below this.
MAX_MESSAGE_BYTES = 2000

BASE_NAME = "base.sample.onnx"
DEFAULT_ENTRY = "base.onnx"


@dataclass(frozen=True)
class Mutant:
    edit: Callable[[onnx.ModelProto], None]
    verdict: str  # "accept" or "refuse"


MUTANTS: dict[str, Mutant] = {}


def mutant(verdict: str) -> Callable:
    def register(edit: Callable[[onnx.ModelProto], None]) -> Callable:
        MUTANTS[edit.__name__] = Mutant(edit, verdict)
        return edit

    return register


# ---- helpers --------------------------------------------------------------------------------


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_value(model: onnx.ModelProto, key: str, value: str | bytes | None) -> None:
    """Sets (or, with None, removes) one metadata entry; bytes are stored as they are."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    if value is not None:
        entry = model.metadata_props.add(key=key)
        if isinstance(value, bytes):
            # protobuf's Python API takes str only: set the raw bytes through the wire form.
            raw = onnx.StringStringEntryProto()
            raw.ParseFromString(_entry_bytes(key.encode(), value))
            entry.CopyFrom(raw)
        else:
            entry.value = value


def _entry_bytes(key: bytes, value: bytes) -> bytes:
    def field(number: int, data: bytes) -> bytes:
        return bytes([number << 3 | 2]) + _varint(len(data)) + data

    return field(1, key) + field(2, value)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def edit_json(model: onnx.ModelProto, key: str, change: Callable[[object], object]) -> None:
    set_value(model, key, json.dumps(change(json.loads(metadata(model)[key]))))


def noise_blocks(model: onnx.ModelProto, blocks: list[tuple[int, list[int]]]) -> None:
    set_value(
        model,
        "policyport.noise",
        json.dumps([{"offset": o, "shape": s, "distribution": "gumbel"} for o, s in blocks]),
    )


def set_graph_input_shape(model: onnx.ModelProto, name: str, dims: list[int]) -> None:
    """The graph input `name` declared [batch, *dims], and policyport.inputs to match. The
    graph reshapes it back to the row size it had, so that ONNX Runtime's shape inference
    loads the file and the consumer's own checks are what refuses it."""
    [value] = [v for v in model.graph.input if v.name == name]
    row = [d.dim_value for d in value.type.tensor_type.shape.dim[1:]]
    reshaped = f"{name}.reshaped"
    for node in model.graph.node:
        node.input[:] = [reshaped if x == name else x for x in node.input]
    shape = onnx.numpy_helper.from_array(np.array([-1, *row], np.int64), f"{name}.row_shape")
    model.graph.initializer.append(shape)
    model.graph.node.insert(0, onnx.helper.make_node("Reshape", [name, shape.name], [reshaped]))
    shape = value.type.tensor_type.shape
    del shape.dim[1:]
    for d in dims:
        shape.dim.add(dim_value=d)
    edit_json(
        model,
        "policyport.inputs",
        lambda inputs: [
            {**i, "shape": ["batch", *dims]} if i["name"] == name else i for i in inputs
        ],
    )


# ---- controls: files every consumer runs ----------------------------------------------------


@mutant("accept")
def unchanged(model: onnx.ModelProto) -> None:
    """The export as written."""


@mutant("accept")
def keys_at_the_limit(model: onnx.ModelProto) -> None:
    """Foreign metadata keys up to the limit on the number of keys."""
    for i in range(MAX_METADATA_KEYS - len(model.metadata_props)):
        model.metadata_props.add(key=f"user.key{i}", value="x" * 100)


@mutant("accept")
def entries_with_a_space_in_a_name(model: onnx.ModelProto) -> None:
    """A file name with a space is still a plain file name in the same folder."""
    set_value(
        model,
        "policyport.entries",
        json.dumps({"default": "my policy.onnx", "sample": "my policy.sample.onnx"}),
    )


@mutant("accept")
def unicode_escapes_in_json(model: onnx.ModelProto) -> None:
    r"""JSON escapes (\u0041 is "A", \/ is "/") are JSON: every consumer reads them."""
    text = metadata(model)["policyport.action_space"]
    set_value(model, "policyport.action_space", text.replace('"type"', '"\\u0074ype"'))


# ---- sizes that overflow or run away --------------------------------------------------------


@mutant("refuse")
def noise_block_sizes_wrap_around_64_bits(model: onnx.ModelProto) -> None:
    """(2^32 + 1)(2^32 - 1) = 2^64 - 1: in 64-bit arithmetic the middle block's end wraps to
    the start, so the offsets chain up and the last block ends where the input does."""
    noise_blocks(model, [(0, [1]), (1, [2**32 + 1, 2**32 - 1]), (0, [3]), (3, [4]), (7, [2])])


@mutant("refuse")
def noise_block_of_two_to_the_64(model: onnx.ModelProto) -> None:
    noise_blocks(model, [(0, [3]), (3, [2**32, 2**32]), (3, [4]), (7, [2])])


@mutant("refuse")
def noise_offsets_beyond_exact_doubles(model: onnx.ModelProto) -> None:
    noise_blocks(model, [(0, [2**53 + 1]), (2**53 + 1, [1])])


@mutant("refuse")
def zero_size_noise_blocks(model: onnx.ModelProto) -> None:
    """400,000 empty blocks in front of the real ones."""
    blocks = [(0, [0])] * 400_000 + [(0, [3]), (3, [4]), (7, [2])]
    noise_blocks(model, blocks)


@mutant("refuse")
def zero_size_noise_block(model: onnx.ModelProto) -> None:
    noise_blocks(model, [(0, [0]), (0, [3]), (3, [4]), (7, [2])])


@mutant("refuse")
def too_many_noise_blocks(model: onnx.ModelProto) -> None:
    noise_blocks(model, [(i, [1]) for i in range(MAX_NOISE_BLOCKS + 1)])


@mutant("refuse")
def noise_block_with_fractional_size(model: onnx.ModelProto) -> None:
    noise_blocks(model, [(0, [1.5]), (1.5, [7.5])])


@mutant("refuse")
def observation_dimensions_multiply_to_zero_mod_2_64(model: onnx.ModelProto) -> None:
    set_graph_input_shape(model, "observation", [2**32, 2**32])


@mutant("refuse")
def observation_beyond_the_element_limit(model: onnx.ModelProto) -> None:
    set_graph_input_shape(model, "observation", [4096, 4097])


@mutant("refuse")
def rank_beyond_the_limit(model: onnx.ModelProto) -> None:
    set_graph_input_shape(model, "observation", [1] * 8 + [6])


@mutant("refuse")
def observation_dimension_of_zero(model: onnx.ModelProto) -> None:
    set_graph_input_shape(model, "observation", [0])


# ---- metadata that disagrees with the graph -------------------------------------------------


@mutant("refuse")
def listed_observation_shape_differs(model: onnx.ModelProto) -> None:
    edit_json(
        model,
        "policyport.inputs",
        lambda inputs: [
            {**i, "shape": ["batch", 7]} if i["name"] == "observation" else i for i in inputs
        ],
    )


@mutant("refuse")
def listed_mask_size_differs(model: onnx.ModelProto) -> None:
    edit_json(
        model,
        "policyport.inputs",
        lambda inputs: [
            {**i, "shape": ["batch", 8]} if i["name"] == "action_mask" else i for i in inputs
        ],
    )


@mutant("refuse")
def listed_action_dtype_differs(model: onnx.ModelProto) -> None:
    def as_float(outputs):
        names = ("action", "sampled_action")
        return [{**o, "dtype": "float32"} if o["name"] in names else o for o in outputs]

    edit_json(model, "policyport.outputs", as_float)


@mutant("refuse")
def inputs_not_json(model: onnx.ModelProto) -> None:
    """The right `"name": ...` substrings, in order, in something that is not JSON."""
    set_value(
        model,
        "policyport.inputs",
        'not JSON: "name": "observation" "name": "action_mask" "name": "noise"',
    )


@mutant("refuse")
def outputs_not_a_list(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.outputs", '{"name": "action"}')


@mutant("refuse")
def shape_without_batch(model: onnx.ModelProto) -> None:
    edit_json(
        model, "policyport.inputs", lambda inputs: [{**i, "shape": i["shape"][1:]} for i in inputs]
    )


@mutant("refuse")
def missing_action_space(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.action_space", None)


@mutant("refuse")
def observation_space_not_json(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.observation_space", "{Box}")


@mutant("refuse")
def json_nested_past_the_depth_limit(model: onnx.ModelProto) -> None:
    depth = 100_000
    set_value(model, "policyport.observation_space", "[" * depth + "]" * depth)


@mutant("refuse")
def duplicate_member_in_json(model: onnx.ModelProto) -> None:
    """JSON.parse keeps the last of two equal members, a hand-written parser may keep the
    first: the contract has no use for either, so both are refused."""
    text = metadata(model)["policyport.noise"]
    set_value(
        model, "policyport.noise", text.replace('"offset": 0,', '"offset": 5, "offset": 0,', 1)
    )


# ---- the contract version -------------------------------------------------------------------


@mutant("refuse")
def version_with_a_nul_inside(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.contract_version", b"3\x00999")


@mutant("refuse")
def version_with_a_leading_zero(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.contract_version", "03")


@mutant("refuse")
def version_of_many_digits(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.contract_version", "3" + "0" * 5000)


# ---- huge and strange values ----------------------------------------------------------------


@mutant("refuse")
def huge_noise_value(model: onnx.ModelProto) -> None:
    """22 MB of metadata: refused for its length, and quoted in a few hundred characters."""
    set_value(model, "policyport.noise", "[" + "9," * 11_000_000 + "9]")


@mutant("refuse")
def long_malformed_inputs(model: onnx.ModelProto) -> None:
    """Under the length limit but not the contract's: the message quotes a short prefix."""
    set_value(model, "policyport.inputs", "x" * (MAX_VALUE_BYTES - 1))


@mutant("refuse")
def too_many_keys(model: onnx.ModelProto) -> None:
    """20,000 keys: the wrapper once looked each one up, copying the whole map each time."""
    for i in range(20_000):
        model.metadata_props.add(key=f"user.key{i}", value="x" * 100)


@mutant("refuse")
def invalid_utf8_value(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.policy_class", b"MLP\xffPolicy")


@mutant("refuse")
def duplicate_metadata_key(model: onnx.ModelProto) -> None:
    model.metadata_props.add(key="policyport.contract_version", value="2")


@mutant("refuse")
def long_tensor_name(model: onnx.ModelProto) -> None:
    edit_json(
        model,
        "policyport.inputs",
        lambda inputs: [
            {**i, "name": "observation." + "x" * 300} if i["name"] == "observation" else i
            for i in inputs
        ],
    )


# ---- entries that point outside the artifact's folder ---------------------------------------


def _entries_mutant(name: str, sample_file: str) -> None:
    def edit(model: onnx.ModelProto) -> None:
        set_value(
            model,
            "policyport.entries",
            json.dumps({"default": DEFAULT_ENTRY, "sample": sample_file}),
        )

    edit.__name__ = name
    mutant("refuse")(edit)


for _name, _file in {
    "entry_on_another_origin": "https://attacker.example/policy.onnx",
    "entry_protocol_relative": "//attacker.example/policy.onnx",
    "entry_in_the_parent_folder": "../policy.sample.onnx",
    "entry_absolute_path": "/etc/policy.sample.onnx",
    "entry_in_a_subfolder": "sub/policy.sample.onnx",
    "entry_with_a_backslash": "..\\policy.sample.onnx",
    "entry_percent_encoded_parent": "%2e%2e/policy.sample.onnx",
    "entry_with_a_query": "policy.sample.onnx?x=1",
    "entry_with_a_scheme": "data:application/octet-stream,xyz",
    "entry_of_two_dots": "..",
    "entry_empty": "",
}.items():
    _entries_mutant(_name, _file)


@mutant("refuse")
def entries_not_strings(model: onnx.ModelProto) -> None:
    set_value(model, "policyport.entries", json.dumps({"default": DEFAULT_ENTRY, "sample": 7}))


# ---- writing the corpus ---------------------------------------------------------------------


def write_corpus(base: Path, folder: Path) -> dict[str, Path]:
    """Every mutant of `base` (a sample entry) written to `folder/<name>.onnx`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, entry in MUTANTS.items():
        model = onnx.load(base)
        entry.edit(model)
        path = folder / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        paths[name] = path
    return paths

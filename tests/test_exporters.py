"""Every registered format x every action space: export, contract, parity.

The matrix comes from the registry, so a new format is tested (or fails to be) as soon as
it is registered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import policyport
from conftest import ACTION_SPACES, MASKABLE, make_policy
from policyport.checks import reference_outputs, sample_inputs
from policyport.formats import FORMATS, RUNTIMES
from policyport.tracing import CONTRACT_VERSION

# The contract's dtypes, by the names each runtime reports them under.
_ONNX_TYPES = {1: "float32", 7: "int64", 9: "bool"}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


def read_metadata(format: str, path: Path) -> dict[str, str]:
    if format == "onnx":
        return {p.key: p.value for p in onnx.load(path).metadata_props}
    if format == "ort":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    if format == "savedmodel":
        return json.loads((path / "assets.extra" / "policyport.json").read_text())
    if format == "stablehlo":
        return json.loads((path / "policyport.json").read_text())
    if format == "tflite":
        from policyport.formats._tflite import read_tflite_metadata

        return read_tflite_metadata(path.read_bytes())
    if format == "c":
        from policyport.formats._c_header import read_header_metadata

        return read_header_metadata(path.with_suffix(".h").read_text())
    raise AssertionError(f"no metadata reader for format {format!r}: add one")


def read_signature(format: str, path: Path) -> tuple[dict, dict]:
    """({input name: (shape, dtype)}, {output name: (shape, dtype)}); None marks the batch."""
    if format in ("onnx", "ort"):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def dims(shape):
            return tuple(d if isinstance(d, int) else None for d in shape)

        return (
            {i.name: (dims(i.shape), _ORT_TYPES[i.type]) for i in session.get_inputs()},
            {o.name: (dims(o.shape), _ORT_TYPES[o.type]) for o in session.get_outputs()},
        )
    if format == "savedmodel":
        import tensorflow as tf

        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        inputs = signature.structured_input_signature[1]
        return (
            {k: (tuple(v.shape.as_list()), v.dtype.name) for k, v in inputs.items()},
            {
                k: (tuple(v.shape.as_list()), v.dtype.name)
                for k, v in signature.structured_outputs.items()
            },
        )
    if format == "stablehlo":
        exported = jax.export.deserialize(bytearray((path / "exported.bin").read_bytes()))
        names = [s["name"] for s in json.loads(read_metadata(format, path)["policyport.inputs"])]

        def dims(aval):
            return tuple(d if isinstance(d, int) else None for d in aval.shape)

        return (
            {n: (dims(a), str(a.dtype)) for n, a in zip(names, exported.in_avals, strict=True)},
            {
                n: (dims(a), str(a.dtype))
                for n, a in zip(("action", "value"), exported.out_avals, strict=True)
            },
        )
    if format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner()

        def details(tensors):
            return {
                name: (
                    tuple(None if d == -1 else int(d) for d in t["shape_signature"]),
                    np.dtype(t["dtype"]).name,
                )
                for name, t in tensors.items()
            }

        return details(runner.get_input_details()), details(runner.get_output_details())
    if format == "c":
        return read_c_signature(path)
    raise AssertionError(f"no signature reader for format {format!r}: add one")


_C_TYPES = {"float": "float32", "int64_t": "int64", "bool": "bool"}


def read_c_signature(path: Path) -> tuple[dict, dict]:
    """The header's `int <prefix>_run(...)` for names, types and order (`const` marks the
    inputs), the generated function in the `.c` for each row's shape; the batch is the
    call (one row), reported as None like the other formats' dynamic batch."""
    header = path.with_suffix(".h").read_text()
    prefix, params = re.search(r"^int (\w+)_run\((.*)\);$", header, re.M).groups()
    generated = re.search(rf"^static void {prefix}_model\((.*)\) {{$", path.read_text(), re.M)
    inputs, outputs = {}, {}
    for ours, theirs in zip(params.split(", "), generated.group(1).split(", "), strict=True):
        const, ctype, name = re.fullmatch(r"(const )?(\w+) (\w+)\[\w+\]", ours).groups()
        dims = re.fullmatch(rf"(?:const )?{ctype} {name}\[restrict 1\]((?:\[\d+\])*)", theirs)
        shape = tuple(int(d) for d in re.findall(r"\d+", dims.group(1)))
        (inputs if const else outputs)[name] = ((None, *shape), _C_TYPES[ctype])
    return inputs, outputs


CASES = [(f, a) for f in FORMATS for a in ACTION_SPACES]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[tuple[str, str], tuple[object, object]]:
    """Each (format, action space) exported once, with its ExportResult."""
    cache: dict = {}

    def get(format: str, action: str):
        if (format, action) not in cache:
            policy = make_policy(action, seed=7)
            folder = tmp_path_factory.mktemp(f"{format}-{action}")
            [result] = policyport.export(policy, format, source=folder / "policy.eqx")
            cache[format, action] = (policy, result)
        return cache[format, action]

    return get


@pytest.mark.parametrize(("format", "action"), CASES)
def test_export_passes_parity_at_batch_1_and_4096(exported, format, action):
    _, result = exported(format, action)
    report = result.report
    assert report.passed, report.to_table()
    assert report.batch_sizes == [1, 4096]
    action_check = next(o for o in report.outputs if o.name == "action")
    assert action_check.rows == 4097
    if action in MASKABLE:
        assert action_check.illegal_actions == 0
        assert action_check.mismatched_rows == action_check.near_tie_mismatches == 0


@pytest.mark.parametrize(("format", "action"), CASES)
def test_artifact_follows_the_contract(exported, format, action):
    policy, result = exported(format, action)
    path = result.paths[0]
    assert path.exists() and path.name == f"policy{FORMATS[format].suffix}"
    inputs, outputs = read_signature(format, path)
    obs_shape = policy.observation_space.shape
    expected_inputs = {"observation": ((None, *obs_shape), "float32")}
    if action in MASKABLE:
        expected_inputs["action_mask"] = ((None, policy.action_space.mask_size), "bool")
    assert inputs == expected_inputs
    action_spec = {
        "Box": ((None, *policy.action_space.shape), "float32"),
        "Discrete": ((None,), "int64"),
        "MultiDiscrete": ((None, 3), "int64"),
        "MultiBinary": ((None, 4), "int64"),
    }[action]
    assert outputs == {"action": action_spec, "value": ((None,), "float32")}

    metadata = read_metadata(format, path)
    assert metadata["policyport.contract_version"] == str(CONTRACT_VERSION)
    assert metadata["policyport.policyport_version"] == policyport.__version__
    assert metadata["policyport.format"] == format
    assert json.loads(metadata["policyport.action_space"]) == policy.action_space.to_json()
    assert json.loads(metadata["policyport.observation_space"]) == (
        policy.observation_space.to_json()
    )
    assert len(metadata["policyport.weights_sha256"]) == 64
    parity = json.loads(metadata["policyport.parity"])
    assert parity["passed"] is True and parity["batch_sizes"] == [1, 4096]


@pytest.mark.parametrize(("format", "action"), [c for c in CASES if c[1] in MASKABLE])
def test_all_true_mask_matches_the_unmasked_policy(exported, format, action):
    policy, result = exported(format, action)
    inputs = sample_inputs(policy, seed=3, batch=64)
    inputs["action_mask"][:] = True
    got = RUNTIMES[FORMATS[format].runtime].load(result.paths[0])(inputs)
    unmasked = jax.vmap(lambda o: policy(None, o)[1])(jnp.asarray(inputs["observation"]))
    want = np.asarray(unmasked).reshape(64, -1).astype(np.int64)
    assert np.array_equal(got["action"].reshape(64, -1), want)


@pytest.mark.parametrize("format", list(FORMATS))
def test_all_false_rows_give_action_zero(exported, format):
    policy, result = exported(format, "Discrete")
    inputs = sample_inputs(policy, seed=4, batch=16, all_false_rows=16)
    got = RUNTIMES[FORMATS[format].runtime].load(result.paths[0])(inputs)
    assert np.array_equal(got["action"], np.zeros(16, dtype=np.int64))
    assert np.all(np.isfinite(got["value"]))
    assert np.array_equal(got["action"], reference_outputs(policy, inputs)["action"])


def test_savedmodel_value_signature(exported):
    import tensorflow as tf

    policy, result = exported("savedmodel", "Discrete")
    inputs = sample_inputs(policy, seed=5, batch=32)
    value = tf.saved_model.load(str(result.paths[0])).signatures["value"]
    got = value(observation=tf.constant(inputs["observation"]))["value"].numpy()
    np.testing.assert_allclose(
        got, reference_outputs(policy, inputs)["value"], rtol=1e-5, atol=1e-5
    )


def test_ort_writes_the_reduced_build_config_beside_the_model(exported):
    _, result = exported("ort", "Discrete")
    model, config = result.paths
    assert model.suffix == ".ort" and config.name == "policy.required_operators.config"
    text = config.read_text()
    assert "ai.onnx;" in text and "ArgMax" in text


def test_stablehlo_ships_its_mlir_text(exported):
    _, result = exported("stablehlo", "Box")
    text = (result.paths[0] / "module.mlir").read_text()
    assert "stablehlo." in text and "func.func public @main" in text


def test_onnx_passes_the_checker_with_full_shape_inference(exported):
    _, result = exported("onnx", "MultiDiscrete")
    model = onnx.load(result.paths[0])
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 21 and model.ir_version <= 13
    used = {name for node in model.graph.node for name in node.input}
    assert all(init.name in used for init in model.graph.initializer)


def test_every_format_has_readers_here():
    # The matrix above covers FORMATS by construction; the readers must keep up too.
    for format in FORMATS:
        assert format in ("onnx", "ort", "savedmodel", "stablehlo", "tflite", "c"), (
            f"format {format!r} is registered but this file cannot read its metadata"
        )


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_keys_tensorflow_would_merge_are_refused(fmt, tmp_path):
    """`view/0` and `view_0` are one argument name to TensorFlow (no '.' or '/'): refused,
    nothing written, instead of a signature that feeds one tensor to both inputs."""
    from policyport.policy import Box, Dict, Discrete

    half = Box(np.zeros(2, np.float32), np.ones(2, np.float32))
    space = Dict({"view/0": half, "view_0": half})
    policy = policyport.from_function(
        lambda o: jnp.argmax(o["view/0"] - o["view_0"]),
        observation_space=space,
        action_space=Discrete(2),
    )
    with pytest.raises(policyport.UnsupportedError, match=r"all\s+become \['observation_view_0'\]"):
        policyport.export(policy, fmt, tmp_path / f"p.{fmt}")
    assert list(tmp_path.iterdir()) == []

"""The tflite format: argmax without variadic reduces, LiteRT's signature, batch, failures.

Parity over every action space and kind comes from the registry-driven matrices
(`test_exporters.py`, `test_protocol.py`); this file checks what only tflite has.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policyport
from conftest import make_policy
from kinds import KINDS
from policyport import ParityError, UnsupportedError
from policyport._cli import run as cli
from policyport.checks import reference_outputs, sample_inputs
from policyport.formats import RUNTIMES, Runtime
from policyport.formats._tflite import SIGNATURE, read_tflite_metadata, tflite_function
from policyport.tracing._single_operand import first_argmax

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tflite" / "run.py"
# The parity check's continuous tolerance (README "Parity"), reused for direct runs.
RTOL = ATOL = 1e-5


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.int32, jnp.bool_])
@pytest.mark.parametrize("axis", [0, 1])
def test_first_argmax_is_argmax_with_ties(dtype, axis):
    # Few distinct values: ties everywhere, so the first-index rule is what is tested.
    x = jax.random.randint(jax.random.key(axis), (64, 5), 0, 3).astype(dtype)
    got = first_argmax(x, axis, jnp.int32)
    assert np.array_equal(got, jnp.argmax(x, axis=axis))


def test_first_argmax_keeps_argmax_nan_and_infinity_rules():
    nan, inf = np.nan, np.inf
    x = jnp.array(
        [
            [1.0, nan, 3.0, nan],  # the first NaN wins
            [-inf, -inf, -inf, -inf],  # all -inf: index 0
            [nan, nan, nan, nan],
            [-inf, 2.0, inf, inf],  # the first +inf
            [0.0, -0.0, 0.0, -1.0],  # -0.0 == 0.0: a tie, the first wins
        ],
        jnp.float32,
    )
    assert np.array_equal(first_argmax(x, 1, jnp.int32), jnp.argmax(x, axis=1))
    assert np.array_equal(first_argmax(x, 1, jnp.int32), [1, 0, 0, 2, 0])


def test_converted_function_has_no_argmax_left():
    traced = policyport.trace(KINDS["actor_critic_multidiscrete"](0))
    batched = [jax.ShapeDtypeStruct((3, *s.shape), jnp.dtype(s.dtype)) for s in traced.inputs]
    assert "argmax" in str(jax.make_jaxpr(traced.legal_batched)(*batched))
    assert "argmax" not in str(jax.make_jaxpr(tflite_function(traced))(*batched))


# Four action spaces masked (where maskable), and a Dict observation with a q_values head.
KIND_CASES = [
    "actor_critic_discrete",
    "actor_critic_box",
    "actor_critic_multidiscrete",
    "actor_critic_multibinary",
    "q_dict",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache: dict = {}

    def get(kind: str):
        if kind not in cache:
            policy = KINDS[kind](3)
            path = tmp_path_factory.mktemp(kind) / "model.tflite"
            [result] = policyport.export(policy, "tflite", path)
            cache[kind] = (policy, result)
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", KIND_CASES)
def test_one_signature_with_the_contract_names_in_order(exported, kind):
    policy, result = exported(kind)
    assert result.report.passed, result.report.to_table()
    traced = policyport.trace(policy)
    interpreter = Interpreter(model_path=str(result.paths[0]))
    assert list(interpreter.get_signature_list()) == [SIGNATURE]
    runner = interpreter.get_signature_runner()  # no key: there is exactly one
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert set(inputs) == set(traced.input_names)
    assert set(outputs) == set(traced.output_names)
    for spec in traced.inputs:
        assert list(inputs[spec.name]["shape_signature"]) == [-1, *spec.shape]  # dynamic batch
        assert np.dtype(inputs[spec.name]["dtype"]) == np.dtype(spec.dtype)
    for spec in traced.outputs:
        assert list(outputs[spec.name]["shape_signature"]) == [-1, *spec.shape]
        assert np.dtype(outputs[spec.name]["dtype"]) == np.dtype(spec.dtype)
    # The flatbuffer itself lists them in the contract's order.
    from ai_edge_litert.schema_py_generated import Model

    model = Model.GetRootAs(result.paths[0].read_bytes(), 0)
    signature = model.SignatureDefs(0)
    names = [signature.Inputs(i).Name().decode() for i in range(signature.InputsLength())]
    assert names == list(traced.input_names)
    names = [signature.Outputs(i).Name().decode() for i in range(signature.OutputsLength())]
    assert names == list(traced.output_names)


@pytest.mark.parametrize("kind", KIND_CASES)
def test_one_interpreter_runs_any_batch_size(exported, kind):
    """LiteRT resizes the dynamic batch on each call: the parity check runs one interpreter
    at sizes up, down and up again, with the export's tolerances."""
    policy, result = exported(kind)
    report = policyport.check(policy, result.paths[0], batch_sizes=(1, 4096, 3, 257))
    assert report.passed, report.to_table()
    assert report.runtime.startswith("litert ") and report.batch_sizes == [1, 4096, 3, 257]
    assert report.outputs[0].rows == 1 + 4096 + 3 + 257


def test_metadata_lives_in_the_flatbuffer(exported):
    _, result = exported("q_dict")
    metadata = read_tflite_metadata(result.paths[0].read_bytes())
    assert metadata["policyport.format"] == "tflite"
    assert json.loads(metadata["policyport.contract_version"]) == 2
    assert json.loads(metadata["policyport.heads"]) == ["q_values"]
    assert json.loads(metadata["policyport.parity"])["passed"] is True
    # The converter's own entries are kept beside ours.
    from ai_edge_litert.schema_py_generated import Model

    model = Model.GetRootAs(result.paths[0].read_bytes(), 0)
    names = {model.Metadata(i).Name().decode() for i in range(model.MetadataLength())}
    assert {"policyport", "min_runtime_version"} <= names


class SortingPolicy(eqx.Module):
    """A policy using an op TFLite has no builtin kernel for (`sort`)."""

    observation_space: object
    action_space: object
    weights: jax.Array

    def __call__(self, state, observation, *, key=None, action_mask=None):
        return state, jnp.argmax(jnp.sort(observation)[:3] * self.weights)


def test_an_op_the_converter_cannot_express_is_refused_and_nothing_written(tmp_path):
    base = make_policy("Discrete")
    policy = SortingPolicy(base.observation_space, base.action_space, jnp.ones(3))
    with pytest.raises(UnsupportedError, match=r"converter cannot express this policy \(.*sort"):
        policyport.export(policy, "tflite", tmp_path / "p.tflite")
    assert list(tmp_path.iterdir()) == []


def test_a_parity_failure_in_litert_writes_nothing(tmp_path, monkeypatch):
    real = RUNTIMES["litert"]

    def load_flipped(path):
        run = real.load(path)
        return lambda inputs: {**run(inputs), "action": 1 - run(inputs)["action"]}

    monkeypatch.setitem(
        RUNTIMES, "litert", Runtime("litert", ("tflite",), load_flipped, real.version)
    )
    with pytest.raises(ParityError, match=r"tflite artifact does not compute.*nothing was"):
        policyport.export(make_policy("MultiBinary"), "tflite", tmp_path / "p.tflite")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_model_tflite(tmp_path, capsys):
    model = tmp_path / "model.eqx"
    make_policy("MultiDiscrete", seed=1).serialize(model)
    assert cli([str(model), "--format", "tflite"]) == 0
    assert (tmp_path / "model.tflite").is_file()
    assert "Parity PASS: tflite" in capsys.readouterr().out


# Runs a script with jax, TensorFlow and policyport made impossible to import, then checks
# that none of them was imported.
NO_JAX_NO_TF = """
import runpy, sys
BLOCKED = ("jax", "jaxlib", "tensorflow", "policyport", "tf_keras", "keras")
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the LiteRT example must not need it")
sys.meta_path.insert(0, _Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
"""


def test_example_runs_without_jax_or_tensorflow(exported, tmp_path):
    policy, result = exported("actor_critic_multidiscrete")
    traced = policyport.trace(policy)
    inputs = sample_inputs(traced, seed=11, batch=64)
    np.savez(tmp_path / "inputs.npz", **inputs)
    args = [str(EXAMPLE), str(result.paths[0]), "--inputs", str(tmp_path / "inputs.npz")]
    done = subprocess.run(
        [sys.executable, "-c", NO_JAX_NO_TF, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["inputs"] == {s.name: [-1, *s.shape] for s in traced.inputs}
    want = reference_outputs(traced, inputs)
    assert np.array_equal(np.array(out["outputs"]["action"]), want["action"])
    np.testing.assert_allclose(out["outputs"]["value"], want["value"], rtol=RTOL, atol=ATOL)

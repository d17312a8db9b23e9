"""Recurrent policies (contract 4): state leaves and `reset` in, `next_state` out, the
initial state inside the graph; sequence parity that tells a per-step error from drift.
The every-format matrix is in test_recurrent_formats.py (slow)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import policyport
from policyport.checks import compare_runner
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import Box, Discrete
from policyport.policy._lerax_files import structure_fingerprint
from recurrent_policies import (
    GRUPolicy,
    KeyedGRUPolicy,
    LSTMPolicy,
    box_env,
    discrete_env,
    flax_cell_policy,
    frames_env,
)
from refusals import assert_refused, run_cases

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def gru() -> GRUPolicy:
    return GRUPolicy(discrete_env(), key=jax.random.key(1))


@pytest.fixture(scope="module")
def gru_onnx(gru, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gru") / "policy.onnx"
    (result,) = policyport.export(gru, "onnx", path)
    assert result.report.passed, result.report.to_table()
    return path


def test_the_contract_names_the_state_reset_and_next_state(gru):
    traced = policyport.trace(gru)
    assert traced.input_names == ("observation", "action_mask", "state", "reset")
    assert traced.output_names == ("action", "value", "next_state")
    lstm = policyport.trace(LSTMPolicy(box_env(), key=jax.random.key(0)))
    assert lstm.input_names == ("observation", "state.0", "state.1", "reset")
    assert lstm.output_names == ("action", "next_state.0", "next_state.1")


def test_metadata_round_trip(gru, gru_onnx):
    meta = FORMATS["onnx"].read_metadata(gru_onnx)
    assert meta["policyport.contract_version"] == "4"
    state = json.loads(meta["policyport.state"])
    assert state == {
        "reset": "reset",
        "reset_seed": None,
        "leaves": [
            {
                "input": "state",
                "output": "next_state",
                "shape": [12],
                "dtype": "float32",
                "initial": [0.0] * 12,
            }
        ],
    }
    inputs = json.loads(meta["policyport.inputs"])
    assert inputs[-2:] == [
        {"name": "state", "shape": ["batch", 12], "dtype": "float32"},
        {"name": "reset", "shape": ["batch"], "dtype": "bool"},
    ]
    outputs = [o["name"] for o in json.loads(meta["policyport.outputs"])]
    assert outputs == ["action", "value", "next_state"]
    sequence = json.loads(meta["policyport.parity"])["sequence"]
    assert sequence["passed"] and sequence["steps"] == 32


def test_the_artifact_carries_state_as_jax_does(gru, gru_onnx):
    """Driven from onnxruntime alone, as a consumer would: state fed back, a reset row in
    the middle, compared with the policy stepped in JAX (not the checks' machinery)."""
    session = ort.InferenceSession(str(gru_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows, steps = 3, 6
    state = np.full((rows, 12), 7.0, np.float32)  # garbage: the first step resets
    jax_state = [gru.reset(key=jax.random.key(0))] * rows
    for t in range(steps):
        obs = rng.uniform(-1, 1, (rows, 5)).astype(np.float32)
        reset = np.array([t == 0, t in (0, 3), t == 0])
        mask = np.ones((rows, 4), bool)
        action, value, state = session.run(
            None, {"observation": obs, "action_mask": mask, "state": state, "reset": reset}
        )
        for r in range(rows):
            start = gru.reset(key=jax.random.key(0)) if reset[r] else jax_state[r]
            jax_state[r], want = gru(start, obs[r], action_mask=mask[r])
            assert action[r] == int(want)
            assert value[r] == pytest.approx(float(gru.value(start, obs[r])[1]), abs=1e-5)
            np.testing.assert_allclose(state[r], jax_state[r], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [nn.GRUCell, nn.LSTMCell], ids=lambda c: c.__name__)
def test_flax_cells_through_from_function(cls, tmp_path):
    (result,) = policyport.export(flax_cell_policy(cls), "onnx", tmp_path / "policy.onnx")
    assert result.report.passed, result.report.to_table()
    assert result.report.sequence["passed"]
    names = [
        s["name"]
        for s in json.loads(FORMATS["onnx"].read_metadata(result.paths[0])["policyport.inputs"])
    ]
    state = ["state"] if cls is nn.GRUCell else ["state.0", "state.1"]
    assert names == ["observation", *state, "reset"]


def test_from_function_refuses_a_carry_that_changes_form():
    space = Box(-np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(policyport.InputError, match=r"returns a state unlike `initial_state`"):
        policyport.from_function(
            lambda h, o: (jnp.concatenate([h, h]), jnp.argmax(o)),
            observation_space=space,
            action_space=Discrete(4),
            initial_state=jnp.zeros(3),
        )


class _Broken:
    """A runner that perturbs an artifact's outputs: `next_state` by `drift` (a per-step
    error the state carries on), or that ignores `reset` (always False)."""

    def __init__(self, run, *, drift: float = 0.0, ignore_reset: bool = False):
        self.run, self.drift, self.ignore_reset = run, drift, ignore_reset

    def __call__(self, inputs):
        if self.ignore_reset:
            inputs = {**inputs, "reset": np.zeros_like(inputs["reset"])}
        out = dict(self.run(inputs))
        out["next_state"] = out["next_state"] + np.float32(self.drift)
        return out


@pytest.fixture(scope="module")
def onnx_runner(gru_onnx):
    return RUNTIMES["onnxruntime"].load(gru_onnx)


@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        ({"drift": 2e-4}, "next_state"),  # above the one-step tolerance at every step
        ({"ignore_reset": True}, "next_state"),
    ],
    ids=["state-perturbed", "reset-ignored"],
)
def test_a_broken_artifact_fails_sequence_parity_loudly(gru, onnx_runner, broken, failing):
    run = onnx_runner
    report = compare_runner(
        policyport.trace(gru), _Broken(run, **broken), format="onnx", artifact="x", runtime="ort"
    )
    assert not report.passed
    sequence = report.sequence
    assert not sequence["passed"]
    forced = {o["name"]: o for o in sequence["teacher_forced"]}
    assert not forced[failing]["passed"]
    assert any(line.startswith("✗ sequence teacher-forced next_state") for line in report.notes)
    assert "sequence FAIL" in report.to_table()


def test_key_dependent_reset_is_refused_without_a_seed_and_recorded_with_one(tmp_path):
    policy = KeyedGRUPolicy(discrete_env(), key=jax.random.key(0))
    model = tmp_path / "keyed.eqx"
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, policy)  # as lerax 0.0.6 writes a file
    model.write_bytes(structure_fingerprint(policy) + leaves.getvalue())
    out = tmp_path / "out.onnx"
    argv = [
        str(model),
        "--format",
        "onnx",
        "-o",
        str(out),
        "--env",
        "recurrent_policies:discrete_env",
        "--policy-class",
        "recurrent_policies:KeyedGRUPolicy",
    ]
    outcomes = run_cases({"no-seed": argv, "bad-seed": [*argv, "--reset-seed", "-1"]}, cwd=HERE)
    assert_refused(
        {"no-seed": outcomes["no-seed"]},
        {"no-seed": r"draws the initial state from the key"},
        r"--reset-seed N",
        out,
    )
    assert_refused(
        {"bad-seed": outcomes["bad-seed"]},
        {"bad-seed": r"--reset-seed must be a non-negative integer"},
        r"non-negative",
        out,
    )
    (result,) = policyport.export(policy, "onnx", out, reset_seed=3)
    assert result.report.passed, result.report.to_table()
    state = json.loads(FORMATS["onnx"].read_metadata(out)["policyport.state"])
    assert state["reset_seed"] == 3
    initial = np.asarray(policy.reset(key=jax.random.key(3)))
    np.testing.assert_array_equal(np.asarray(state["leaves"][0]["initial"], np.float32), initial)
    # check() reads the seed back and traces the same initial state.
    assert policyport.check(policy, out).passed


def test_sample_entry_takes_the_state_and_reset_before_the_noise(gru, tmp_path):
    results = policyport.export(gru, "onnx", tmp_path / "policy.onnx", sample=True)
    assert [r.entry for r in results] == ["default", "sample"]
    for result in results:
        assert result.report.passed and result.report.sequence["passed"], result.entry
        meta = FORMATS["onnx"].read_metadata(result.paths[0])
        assert meta["policyport.contract_version"] == "4"
    sample_meta = FORMATS["onnx"].read_metadata(results[1].paths[0])
    inputs = [s["name"] for s in json.loads(sample_meta["policyport.inputs"])]
    outputs = [s["name"] for s in json.loads(sample_meta["policyport.outputs"])]
    assert inputs == ["observation", "action_mask", "state", "reset", "noise"]
    assert outputs == ["action", "value", "next_state", "sampled_action", "log_prob"]


def test_the_gru_graph_is_plain_gates_without_transposes(gru_onnx):
    """The gate matmuls, split and activations as ONNX ops, no Transpose around the split
    (`_onnx_optimize._split_without_transposes`), no Loop: one step per call."""
    model = onnx.load(gru_onnx)
    ops = [n.op_type for n in model.graph.node]
    assert {"Sigmoid", "Tanh", "Split", "Where"} <= set(ops)
    assert not {"Transpose", "Loop", "Scan"} & set(ops), ops
    assert ops.count("Gemm") == 4  # input and hidden gates, actor, critic


class _BigState(eqx.Module):
    observation_space: object = Box(-np.ones(2, np.float32), np.ones(2, np.float32))
    action_space: object = Discrete(2)

    def reset(self, *, key):
        return {"memory": jnp.ones((130, 128)), "step": jnp.zeros(1)}  # 16,641 elements

    def __call__(self, state, observation, *, key=None, action_mask=None):
        memory = state["memory"] * 0.5 + observation[0]
        return {"memory": memory, "step": state["step"] + 1}, jnp.argmax(observation)


def test_a_recurrent_policy_over_uint8_frames_declares_5_and_keeps_its_state(tmp_path):
    """Contracts 4 and 5 add up: state inputs, a uint8 observation, version 5."""
    policy = GRUPolicy(frames_env(), key=jax.random.key(5))
    (result,) = policyport.export(policy, "onnx", tmp_path / "frames.onnx")
    assert result.report.passed and result.report.sequence["passed"], result.report.to_table()
    meta = FORMATS["onnx"].read_metadata(result.paths[0])
    assert meta["policyport.contract_version"] == "5"
    inputs = {s["name"]: s["dtype"] for s in json.loads(meta["policyport.inputs"])}
    assert inputs == {
        "observation": "uint8",
        "action_mask": "bool",
        "state": "float32",
        "reset": "bool",
    }
    assert policyport.check(policy, result.paths[0]).passed


def test_a_big_initial_state_stays_in_the_graph_only():
    traced = policyport.trace(_BigState())
    assert traced.input_names == ("observation", "state.memory", "state.step", "reset")
    leaves = traced.description.state["leaves"]
    assert [leaf["initial"] for leaf in leaves] == [None, None]
    assert [leaf["shape"] for leaf in leaves] == [[130, 128], [1]]

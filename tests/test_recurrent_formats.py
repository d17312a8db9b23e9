"""Recurrent policies in every format and every runtime, with sequence parity (slow: a
matrix; tests/test_recurrent.py covers ONNX in the fast tier)."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import onnx
import pytest

import policyport
from policyport.formats import FORMATS, RUNTIMES
from recurrent_policies import (
    GRUPolicy,
    LSTMPolicy,
    box_env,
    discrete_env,
    flax_cell_policy,
    ppo_rnn_policy,
)

POLICIES = {
    "eqx-gru": lambda: GRUPolicy(discrete_env(), key=jax.random.key(0)),
    "eqx-lstm-box": lambda: LSTMPolicy(box_env(), key=jax.random.key(0)),
    "flax-gru": lambda: flax_cell_policy(nn.GRUCell),
    "flax-lstm": lambda: flax_cell_policy(nn.LSTMCell),
    "flax-optimized-lstm": lambda: flax_cell_policy(nn.OptimizedLSTMCell),
    "ppo-rnn": ppo_rnn_policy,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every policy to every format at once (`--format all`), the results by name."""
    out = {}
    for name, make in POLICIES.items():
        folder = tmp_path_factory.mktemp(name)
        formats = [f for f in FORMATS if not (name == "ppo-rnn" and f == "c")]
        out[name] = (
            make(),
            {
                f: policyport.export(make(), f, folder / f"policy{FORMATS[f].suffix}")[0]
                for f in formats
            },
        )
    return out


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_format_passes_sequence_parity(exported, name):
    _, results = exported[name]
    for format, result in results.items():
        report = result.report
        assert report.passed, (format, report.to_table())
        sequence = report.sequence
        assert sequence["passed"] and sequence["steps"] >= 32, format
        assert sequence["resets"] > 0
        meta = FORMATS[format].read_metadata(result.paths[0])
        assert meta["policyport.contract_version"] == "4", format
        assert json.loads(meta["policyport.parity"])["sequence"]["passed"], format


@pytest.mark.parametrize("name", list(POLICIES))
def test_onnx_is_lowered_natively_one_step_per_call(exported, name):
    _, results = exported[name]
    path = results["onnx"].paths[0]
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["policyport.lowering"] == "policyport"
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Loop", "Scan", "If"}, ops
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param, "the batch dimension must be dynamic"


def test_every_onnx_runtime_checks_the_sequence(exported):
    policy, results = exported["eqx-gru"]
    path = results["onnx"].paths[0]
    for runtime, row in RUNTIMES.items():
        if "onnx" not in row.formats or row.missing() is not None:
            continue
        report = policyport.check(policy, path, runtime=runtime)
        assert report.passed and report.sequence["passed"], (runtime, report.to_table())


def test_the_pure_jax_rl_network_in_c_is_refused_for_its_rank_3_matmul(tmp_path):
    """Its dense layers act on [time, batch, features]: the C generator refuses the
    Einsum such a matmul lowers to (not the state: the cells above export to C)."""
    with pytest.raises(policyport.UnsupportedError, match="Einsum"):
        policyport.export(ppo_rnn_policy(), "c", tmp_path / "policy.c")


def test_rollouts_carry_the_state_and_reset_on_episode_ends(tmp_path):
    from lerax.env import CartPole

    env = CartPole()
    policy = GRUPolicy(env, key=jax.random.key(0))
    (result,) = policyport.export(
        policy, "onnx", tmp_path / "policy.onnx", env=env, rollouts=3, rollout_steps=100
    )
    assert result.rollouts.passed, result.rollouts.to_table()
    assert all(e.steps_jax > 1 for e in result.rollouts.episodes)


def test_sampled_entries_in_every_format(tmp_path):
    policy = GRUPolicy(discrete_env(), key=jax.random.key(0))
    for format in FORMATS:
        path = tmp_path / f"policy{FORMATS[format].suffix}"
        results = policyport.export(policy, format, path, sample=True, force=True)
        for result in results:
            report = result.report
            assert report.passed and report.sequence["passed"], (format, result.entry)


def test_every_deployment_target_carries_the_state(tmp_path):
    from policyport.formats._targets import TARGETS

    policy = LSTMPolicy(box_env(), key=jax.random.key(0))  # two state leaves
    for target in TARGETS:
        (result,) = policyport.export(policy, "onnx", tmp_path / f"{target}.onnx", target=target)
        assert result.report.passed and result.report.sequence["passed"], target

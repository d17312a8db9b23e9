"""`sample=True` writes two entry points: the default one (deterministic) and the sample one.

A runtime computes every output of a graph (onnxruntime ran a sampling graph's `action`
alone at 3.1x the plain graph's cost, bench/sampling.py), so the deterministic outputs get
their own artifact, the plain export's graph, and the sampling path goes beside it.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import onnx
import pytest

import policyport
import policyport._export as export_module
from conftest import make_policy
from policyport._cli import run
from policyport.checks import compare_rollouts
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import MLPActorCriticPolicy
from policyport.tracing import trace

SMALL = {"feature_width": 16, "value_width": 16, "action_width": 16}


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


@pytest.fixture(scope="module")
def every_format(tmp_path_factory):
    """A masked Discrete policy exported with sampling to every format, parity checked."""
    policy = make_policy("Discrete", **SMALL)
    folder = tmp_path_factory.mktemp("entries")
    return policy, folder, policyport.export(policy, "all", folder / "p.onnx", sample=True)


def test_every_format_writes_and_checks_both_entries(every_format):
    _, folder, results = every_format
    assert [(r.format, r.entry) for r in results] == [
        (name, entry) for name in FORMATS for entry in ("default", "sample")
    ]
    for result in results:
        assert result.report is not None and result.report.passed, result.report.to_table()
        assert all(path.exists() for path in result.paths)
        sampled = "sampled_action" in result.report.to_table()
        assert sampled == (result.entry == "sample")
    names = {p.name for p in folder.iterdir()}
    for fmt in FORMATS.values():
        assert {f"p{fmt.suffix}", f"p.sample{fmt.suffix}"} <= names


def test_default_entry_is_the_plain_export(every_format, tmp_path):
    policy, folder, _ = every_format
    [plain] = policyport.export(policy, "onnx", tmp_path / "plain.onnx")
    default, sample = onnx.load(folder / "p.onnx"), onnx.load(folder / "p.sample.onnx")
    # Same computation, byte for byte: only the metadata tells them apart.
    assert default.graph.SerializeToString() == onnx.load(plain.paths[0]).graph.SerializeToString()
    assert "noise" not in [i.name for i in default.graph.input]
    assert [i.name for i in sample.graph.input][-1] == "noise"
    entries = {"default": "p.onnx", "sample": "p.sample.onnx"}
    for path, entry, version in (
        (folder / "p.onnx", "default", "2"),
        (folder / "p.sample.onnx", "sample", "3"),
    ):
        meta = _meta(path)
        assert meta["policyport.entry"] == entry
        assert json.loads(meta["policyport.entries"]) == entries
        assert meta["policyport.contract_version"] == version
        assert json.loads(meta["policyport.parity"])["passed"]
    plain_meta = _meta(plain.paths[0])
    assert "policyport.entry" not in plain_meta and "policyport.entries" not in plain_meta
    assert (
        _meta(folder / "p.onnx")["policyport.weights_sha256"]
        == plain_meta["policyport.weights_sha256"]
    )


def test_rows_without_a_legal_action_agree_in_every_format(every_format):
    """An all-False mask is outside the contract, but every format answers as JAX does:
    action and sampled action 0, log_prob NaN (tflite's fused log-softmax of all -inf
    logits is uniform, so it sampled any index before the rewrite wrote JAX's answer out)."""
    policy, folder, _ = every_format
    traced = trace(policy, sample=True)
    rng = np.random.default_rng(3)
    rows = 16
    inputs = {
        "observation": traced.observation_space.sample_numpy(rng, rows),
        "action_mask": np.zeros((rows, traced.action_space.mask_size), bool),
        "noise": rng.gumbel(size=(rows, traced.sampling.size)).astype(np.float32),
    }
    for name, fmt in FORMATS.items():
        out = RUNTIMES[fmt.runtime].load(folder / f"p.sample{fmt.suffix}")(inputs)
        np.testing.assert_array_equal(out["action"], 0, err_msg=name)
        np.testing.assert_array_equal(out["sampled_action"], 0, err_msg=name)
        assert np.isnan(out["log_prob"]).all(), (name, out["log_prob"])


def test_a_failing_sample_entry_writes_neither_entry(tmp_path, monkeypatch):
    parity = export_module._parity

    def failing_sample_entry(traced, *args, **kwargs):
        report = parity(traced, *args, **kwargs)
        return report if traced.sampling is None else dataclasses.replace(report, passed=False)

    monkeypatch.setattr(export_module, "_parity", failing_sample_entry)
    with pytest.raises(policyport.ParityError, match=r"p\.sample\.onnx"):
        policyport.export(make_policy("Box", **SMALL), "onnx", tmp_path / "p.onnx", sample=True)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_sample_entry_needs_force(tmp_path):
    (tmp_path / "p.sample.onnx").write_bytes(b"somebody's file")
    policy = make_policy("Box", **SMALL)
    with pytest.raises(policyport.InputError, match=r"p\.sample\.onnx already exists"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sample.onnx"]
    policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True, force=True)
    assert _meta(tmp_path / "p.sample.onnx")["policyport.entry"] == "sample"


@pytest.fixture(scope="module")
def cartpole():
    from lerax.env import CartPole

    env = CartPole()
    return env, MLPActorCriticPolicy(env, key=jax.random.key(4), **SMALL)


def test_sampled_closed_loop(cartpole, tmp_path):
    env, policy = cartpole
    default, sample = policyport.export(
        policy, "onnx", tmp_path / "c.onnx", sample=True, env=env, rollouts=3, rollout_steps=60
    )
    assert default.rollouts.passed and not default.rollouts.sampled
    assert sample.rollouts.passed and sample.rollouts.sampled, sample.rollouts.to_table()
    assert "sampled actions" in sample.rollouts.to_table()
    # The sampled episodes are other episodes than the deterministic ones: the noise acts.
    steps = lambda report: [(e.steps_jax, e.return_jax) for e in report.episodes]  # noqa: E731
    assert steps(default.rollouts) != steps(sample.rollouts)
    meta = _meta(sample.paths[0])
    assert json.loads(meta["policyport.parity"])["closed_loop"]["passed"]


def test_sampled_closed_loop_catches_an_artifact_that_does_not_sample(cartpole, tmp_path):
    env, policy = cartpole
    _, sample = policyport.export(policy, "onnx", tmp_path / "c.onnx", sample=True, check=False)
    real = RUNTIMES["onnxruntime"].load(sample.paths[0])

    def mode_only(inputs):  # an artifact whose "sample" is its mode
        out = real(inputs)
        return {**out, "sampled_action": out["action"]}

    report = compare_rollouts(
        trace(policy, sample=True),
        mode_only,
        env,
        format="onnx",
        artifact="x",
        episodes=3,
        max_steps=60,
    )
    assert not report.passed, report.to_table()


def test_cli_prints_and_reports_both_entries(tmp_path, capsys):
    policy = make_policy("MultiBinary", **SMALL)
    model = tmp_path / "m.eqx"
    policy.serialize(model)
    report = tmp_path / "report.json"
    code = run([str(model), "--format", "onnx", "--sample", "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'm.onnx'}" in out and f"wrote {tmp_path / 'm.sample.onnx'}" in out
    assert [r["entry"] for r in json.loads(report.read_text())] == ["default", "sample"]


def test_a_sampling_trace_exports_both_entries(tmp_path):
    """A trace made with `sample=True` carries the sampling path: exporting it writes both
    entries, so the default path never holds a graph with a `noise` input."""
    traced = trace(make_policy("Discrete", **SMALL), sample=True)
    results = policyport.export(traced, "onnx", tmp_path / "p.onnx", check=False)
    assert [r.entry for r in results] == ["default", "sample"]
    assert "noise" not in [i.name for i in onnx.load(tmp_path / "p.onnx").graph.input]
    assert _meta(tmp_path / "p.sample.onnx")["policyport.entry"] == "sample"


def test_lerax_own_policy_samples_with_the_contracts_answer_where_nothing_is_legal(tmp_path):
    """lerax's MLPActorCriticPolicy samples -1 with log_prob -inf from an all-False mask; the
    contract's answer there is 0 and NaN (docs/artifact.md), which the reference and the
    artifact both give, so lerax's own class exports with --sample and passes parity."""
    import lerax.env
    import lerax.policy

    policy = lerax.policy.MLPActorCriticPolicy(lerax.env.CartPole(), key=jax.random.key(0))
    nothing = np.zeros(2, bool)
    _, raw = policy(None, np.zeros(4, np.float32), key=jax.random.key(1), action_mask=nothing)
    assert int(raw) == -1  # lerax's own answer, outside the contract
    results = policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True)
    assert all(r.report.passed for r in results), results[-1].report.to_table()
    import onnxruntime

    session = onnxruntime.InferenceSession(tmp_path / "p.sample.onnx")
    noise = policyport.sampling_noise(policy, jax.random.key(1))[None]
    feeds = {"observation": np.zeros((1, 4), np.float32), "action_mask": nothing[None]}
    out = dict(
        zip(
            ["action", "value", "sampled_action", "log_prob"],
            session.run(None, {**feeds, "noise": noise}),
            strict=True,
        )
    )
    assert out["sampled_action"].tolist() == [0] and np.isnan(out["log_prob"][0])

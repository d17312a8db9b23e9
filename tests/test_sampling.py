"""`sample=True`: the artifact's sampled action and log-prob are the JAX policy's, per key.

Every registered format x the four action spaces, masked: for each row a key, its noise
from `policyport.sampling_noise`, the artifact run on it, and the policy itself called
with that key. Then a distribution check with noise the runtime side draws (numpy).
"""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from scipy import stats

import policyport
from conftest import ACTION_SPACES, make_policy
from policyport.checks import ATOL, NEAR_TIE, RTOL
from policyport.formats import FORMATS, RUNTIMES
from policyport.tracing import trace

ROWS = 256
# The parity check's own tolerances (checks/_report.py) apply: NEAR_TIE, ATOL, RTOL.
SMALL = {"feature_width": 16, "value_width": 16, "action_width": 16}


def _mask_argument(name: str, mask: np.ndarray | None, policy) -> np.ndarray | None:
    if mask is None or name != "MultiBinary":
        return mask
    return mask.reshape(policy.action_space.shape)


def jax_samples(name, policy, observations, masks, keys):
    """What the policy itself does with each key: its sampled action and log-prob."""

    def one(observation, mask, key):
        mask = _mask_argument(name, mask, policy)
        _, action = policy(None, observation, key=key, action_mask=mask)
        _, _, log_prob, _ = policy.evaluate_action(None, observation, action, action_mask=mask)
        return action, log_prob

    if masks is None:
        fn = jax.vmap(lambda o, k: one(o, None, k))
        action, log_prob = fn(observations, keys)
    else:
        action, log_prob = jax.vmap(one)(observations, masks, keys)
    return np.asarray(action).reshape(len(keys), -1), np.asarray(log_prob)


@pytest.fixture(scope="module", params=list(ACTION_SPACES))
def exported(request, tmp_path_factory):
    """One small policy per action space, exported to every format with sampling."""
    name = request.param
    policy = make_policy(name, **SMALL)
    folder = tmp_path_factory.mktemp(f"sample-{name}")
    results = policyport.export(policy, "all", folder / "policy.onnx", check=False, sample=True)
    return name, policy, {r.format: r.paths[0] for r in results if r.entry == "sample"}


@pytest.fixture(scope="module")
def rows(exported):
    """Observations, masks and keys, with the JAX policy's samples for them."""
    name, policy, _ = exported
    traced = trace(policy, sample=True)
    rng = np.random.default_rng(7)
    observations = traced.observation_space.sample_numpy(rng, ROWS)
    masks = traced.action_space.random_masks(rng, ROWS) if traced.description.mask_input else None
    keys = jax.random.split(jax.random.key(11), ROWS)
    noise = np.stack([policyport.sampling_noise(traced, k) for k in keys])
    action, log_prob = jax_samples(name, policy, observations, masks, keys)
    inputs = {"observation": observations, "noise": noise}
    if masks is not None:
        inputs["action_mask"] = masks
    margins = None
    if traced.sampling.margins is not None:
        args = [inputs[n] for n in traced.input_names]
        margins = np.asarray(jax.vmap(traced.sampling.margins)(*args))
    return inputs, action, log_prob, margins


@pytest.mark.parametrize("format", list(FORMATS))
def test_artifact_sample_is_the_policy_sample(exported, rows, format):
    name, policy, paths = exported
    inputs, want_action, want_log_prob, margins = rows
    run = RUNTIMES[FORMATS[format].runtime].load(Path(paths[format]))
    out = run(inputs)
    got = np.asarray(out["sampled_action"]).reshape(ROWS, -1)
    if name == "Box":
        np.testing.assert_allclose(got, want_action, rtol=RTOL, atol=ATOL)
    else:
        differs = got != want_action
        tie = margins.reshape(differs.shape) <= NEAR_TIE
        assert not np.any(differs & ~tie), f"{int((differs & ~tie).sum())} sampled mismatches"
        assert int(tie.any(axis=1).sum()) <= ROWS // 50  # near-ties are rare, and counted
        masks = inputs.get("action_mask")
        if masks is not None:
            assert not policy.action_space.illegal_rows(got, masks).any()
    np.testing.assert_allclose(out["log_prob"], want_log_prob, rtol=RTOL, atol=ATOL)
    # The deterministic action is still the mode, whatever the noise.
    zero = run({**inputs, "noise": np.zeros_like(inputs["noise"])})
    np.testing.assert_array_equal(zero["action"], out["action"])


def test_noise_blocks_are_the_documented_distributions(exported):
    name, policy, _ = exported
    blocks = trace(policy, sample=True).sampling.blocks
    expected = {
        "Box": ["standard_normal"],
        "Discrete": ["gumbel"],
        "MultiDiscrete": ["gumbel"] * 3,
        "MultiBinary": ["uniform"],
    }[name]
    assert [b.distribution for b in blocks] == expected
    sizes = {"Box": [2], "Discrete": [5], "MultiDiscrete": [3, 4, 2], "MultiBinary": [4]}
    assert [b.size for b in blocks] == sizes[name]


def test_metadata_and_check(exported):
    _, policy, paths = exported
    meta = {p.key: p.value for p in onnx.load(paths["onnx"]).metadata_props}
    assert meta["policyport.contract_version"] == "3"
    blocks = trace(policy, sample=True).sampling.blocks
    assert json.loads(meta["policyport.noise"]) == [b.to_json() for b in blocks]
    names = [s["name"] for s in json.loads(meta["policyport.inputs"])]
    assert names[-1] == "noise"
    outputs = [s["name"] for s in json.loads(meta["policyport.outputs"])]
    assert outputs[-2:] == ["sampled_action", "log_prob"]
    # `check` re-traces with the sampling path because the artifact has one.
    report = policyport.check(policy, paths["onnx"], batch_sizes=(1, 64))
    assert report.passed, report.to_table()


def test_sampling_needs_a_log_prob(tmp_path):
    class NoLogProb(eqx.Module):
        inner: object
        observation_space = property(lambda self: self.inner.observation_space)
        action_space = property(lambda self: self.inner.action_space)

        def __call__(self, state, observation, *, key=None, action_mask=None):
            return self.inner(state, observation, key=key, action_mask=action_mask)

    policy = NoLogProb(make_policy("Discrete", **SMALL))
    with pytest.raises(policyport.UnsupportedError, match="has neither `evaluate_action"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True)
    assert not list(tmp_path.iterdir())


def numpy_noise(blocks, rng: np.random.Generator, count: int) -> np.ndarray:
    """The documented noise, drawn by numpy (what a consumer without JAX does)."""
    draw = {
        "standard_normal": rng.standard_normal,
        "gumbel": lambda shape: rng.gumbel(size=shape),
        "uniform": rng.random,
    }
    parts = [draw[b.distribution]((count, b.size)) for b in blocks]
    return np.concatenate(parts, axis=1).astype(np.float32)


DRAWS = 20_000
# Two-sample tests of numpy-noise artifact samples against jax.random policy samples, on
# one observation. The seeds are fixed, so the outcome is too; p > 1e-3 per component
# means the two samples are indistinguishable at DRAWS each (a wrong noise distribution,
# e.g. uniform fed where Gumbel is expected, gives p far below 1e-10).
P_MIN = 1e-3


def test_distribution_with_numpy_noise(exported):
    name, policy, paths = exported
    traced = trace(policy, sample=True)
    rng = np.random.default_rng(2026)
    observation = traced.observation_space.sample_numpy(rng, 1)
    inputs = {
        "observation": np.repeat(observation, DRAWS, axis=0),
        "noise": numpy_noise(traced.sampling.blocks, rng, DRAWS),
    }
    mask = None
    if traced.description.mask_input:
        mask = np.ones(traced.action_space.mask_size, bool)
        mask[1] = False  # one masked entry (in the first block)
        inputs["action_mask"] = np.repeat(mask[None], DRAWS, axis=0)
    run = RUNTIMES["onnxruntime"].load(Path(paths["onnx"]))
    got = np.asarray(run(inputs)["sampled_action"]).reshape(DRAWS, -1)
    keys = jax.random.split(jax.random.key(99), DRAWS)
    masks = None if mask is None else jnp.asarray(inputs["action_mask"])
    want, _ = jax_samples(name, policy, jnp.asarray(inputs["observation"]), masks, keys)
    if mask is not None:
        assert not policy.action_space.illegal_rows(got, inputs["action_mask"]).any()
    for i in range(got.shape[1]):
        if name == "Box":
            p = stats.ks_2samp(got[:, i], want[:, i]).pvalue
        else:
            values = np.union1d(got[:, i], want[:, i])
            table = [[np.sum(s[:, i] == v) for v in values] for s in (got, want)]
            p = 1.0 if len(values) == 1 else stats.chi2_contingency(table).pvalue
        assert p > P_MIN, f"component {i}: p = {p:.2e}"

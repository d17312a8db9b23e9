"""`clip_actions=True` (`--clip-actions`): Box actions clipped to the finite bounds inside."""

from __future__ import annotations

import json

import jax
import numpy as np
import onnx
import pytest

import policyport
from conftest import make_policy
from policyport.checks import ATOL, RTOL
from policyport.formats import RUNTIMES
from policyport.policy import Box, MLPActorCriticPolicy, SpacesEnv
from policyport.tracing import trace
from test_sampling import ROWS, SMALL, jax_samples


@pytest.fixture(scope="module")
def clipped(tmp_path_factory):
    # log-std 1.0: samples (std e) leave the [-1, 1] bounds in most rows, so clipping shows.
    policy = make_policy("Box", log_std_init=1.0, **SMALL)
    path = tmp_path_factory.mktemp("clip") / "policy.onnx"
    [_, result] = policyport.export(policy, "onnx", path, sample=True, clip_actions=True)
    assert result.entry == "sample"
    assert result.report.passed
    return policy, result.paths[0]


def test_actions_are_clipped_and_log_prob_is_the_unclipped_sample(clipped):
    policy, path = clipped
    traced = trace(policy, sample=True)
    rng = np.random.default_rng(3)
    observations = traced.observation_space.sample_numpy(rng, ROWS)
    keys = jax.random.split(jax.random.key(5), ROWS)
    noise = np.stack([policyport.sampling_noise(traced, k) for k in keys])
    out = RUNTIMES["onnxruntime"].load(path)({"observation": observations, "noise": noise})
    want, want_log_prob = jax_samples("Box", policy, observations, None, keys)
    assert np.mean(np.abs(want) > 1) > 0.3  # the unclipped samples do leave the bounds
    np.testing.assert_allclose(out["sampled_action"], np.clip(want, -1, 1), rtol=RTOL, atol=ATOL)
    assert np.all(np.abs(out["action"]) <= 1) and np.all(np.abs(out["sampled_action"]) <= 1)
    np.testing.assert_allclose(out["log_prob"], want_log_prob, rtol=RTOL, atol=ATOL)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["policyport.action_clip"]) == {"low": [-1, -1], "high": [1, 1]}


def test_infinite_bounds_are_not_clipped():
    space = Box(np.array([-1.0, -np.inf], np.float32), np.array([1.0, np.inf], np.float32))
    env = SpacesEnv(Box(-np.ones(3, np.float32), np.ones(3, np.float32)), space)
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
    meta = trace(policy, clip_actions=True).description.action_clip
    assert meta == {"low": [-1.0, None], "high": [1.0, None]}


@pytest.mark.parametrize("action", ["Discrete", "MultiBinary"])
def test_clip_actions_needs_a_box(action, tmp_path):
    with pytest.raises(policyport.InputError, match="clips Box actions"):
        policyport.export(make_policy(action), "onnx", tmp_path / "p.onnx", clip_actions=True)
    assert not list(tmp_path.iterdir())


def test_unbounded_box_has_nothing_to_clip(tmp_path):
    space = Box(np.full(2, -np.inf, np.float32), np.full(2, np.inf, np.float32))
    env = SpacesEnv(Box(-np.ones(3, np.float32), np.ones(3, np.float32)), space)
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
    with pytest.raises(policyport.InputError, match="nothing to clip"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", clip_actions=True)
    assert not list(tmp_path.iterdir())

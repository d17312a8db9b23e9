"""`bake_wrappers=True` (`--bake-wrappers`): lerax 0.0.5's pure wrapper transforms inside.

lerax 0.0.5 has these wrappers: observation `RescaleObservation`, `ClipObservation`,
`FlattenObservation`, `TransformObservation` (pure: baked); action `ClipAction`,
`RescaleAction`, `TransformAction` (pure: baked); `TimeLimit` (counts steps),
`TransformReward` / `ClipReward` (reward only) and `Identity` (left out, named).
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

pytest.importorskip("lerax")  # the [test] extra installs it; never skipped in CI

from lerax.env import Pendulum
from lerax.wrapper import (
    ClipAction,
    ClipObservation,
    RescaleAction,
    RescaleObservation,
    TimeLimit,
    TransformObservation,
)
from lerax.wrapper.misc import TimeLimitState

import policyport
from policyport.checks import ATOL, RTOL
from policyport.formats import RUNTIMES
from policyport.policy import MLPActorCriticPolicy
from policyport.tracing import unwrap

SMALL = {"feature_width": 16, "value_width": 16, "action_width": 16}


class StepLimit(TimeLimit):
    """lerax 0.0.5's `TimeLimit` plus the `action_mask` it leaves abstract."""

    def action_mask(self, state: TimeLimitState, *, key: Any) -> Any:
        return self.env.action_mask(state.env_state, key=key)


def chain():
    """Observations rescaled to [-1, 1] then clipped; actions rescaled from [-1, 1] to
    Pendulum's [-2, 2], then clipped; a time limit outside everything."""
    env = StepLimit(Pendulum(), 200)
    env = ClipObservation(RescaleObservation(env, jnp.array(-1.0), jnp.array(1.0)))
    return ClipAction(RescaleAction(env, jnp.array(-1.0), jnp.array(1.0)))


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    env = chain()
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0), log_std_init=0.5, **SMALL)
    path = tmp_path_factory.mktemp("baked") / "policy.onnx"
    [default, result] = policyport.export(
        policy, "onnx", path, env=env, bake_wrappers=True, sample=True, clip_actions=True
    )
    assert (default.entry, result.entry) == ("default", "sample")
    assert default.report.passed and result.report.passed, result.report.to_table()
    return env, policy, result.paths[0]


def test_unwrap_reads_the_chain():
    baked = unwrap(chain())
    assert [(w["wrapper"], w["side"]) for w in baked.inside] == [
        ("RescaleObservation", "observation"),
        ("ClipObservation", "observation"),
        ("ClipAction", "action"),
        ("RescaleAction", "action"),
        ("StepLimit", "outside"),
    ]
    assert baked.left_out == ("StepLimit",)
    assert isinstance(baked.base_env, Pendulum)


def test_artifact_takes_and_returns_the_base_envs(baked):
    _, policy, path = baked
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["policyport.observation_space"])["shape"] == [3]
    assert json.loads(meta["policyport.action_space"])["low"] == [-2.0]
    assert [w["wrapper"] for w in json.loads(meta["policyport.wrappers"])][:4] == [
        "RescaleObservation",
        "ClipObservation",
        "ClipAction",
        "RescaleAction",
    ]
    rng = np.random.default_rng(0)
    # Pendulum's own observations: cos, sin in [-1, 1], angular velocity in [-8, 8].
    observations = (rng.uniform(-1, 1, (256, 3)) * np.array([1, 1, 8])).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), 256)
    noise = np.stack([policyport.sampling_noise(policy, k) for k in keys])
    out = RUNTIMES["onnxruntime"].load(path)({"observation": observations, "noise": noise})

    def by_hand(observation, key):
        seen = jnp.clip(observation / jnp.array([1.0, 1.0, 8.0]), -1, 1)  # rescale, clip
        _, mode = policy(None, seen)
        _, sample = policy(None, seen, key=key)
        _, _, log_prob, _ = policy.evaluate_action(None, seen, sample)
        to_env = lambda a: jnp.clip(jnp.clip(a, -1, 1) * 2.0, -2, 2)  # noqa: E731
        return to_env(mode), to_env(sample), log_prob

    mode, sample, log_prob = jax.vmap(by_hand)(observations, keys)
    np.testing.assert_allclose(out["action"].reshape(-1), mode.reshape(-1), rtol=RTOL, atol=ATOL)
    got = out["sampled_action"].reshape(-1)
    np.testing.assert_allclose(got, np.asarray(sample).reshape(-1), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["log_prob"], log_prob, rtol=RTOL, atol=ATOL)
    assert np.all(np.abs(got) <= 2) and np.mean(np.abs(got) == 2) > 0.05  # clipping shows


def test_closed_loop_on_the_base_env(baked, tmp_path):
    env, policy, _ = baked
    report = policyport.export(
        policy,
        "onnx",
        tmp_path / "loop.onnx",
        env=env,
        bake_wrappers=True,
        rollouts=2,
        rollout_steps=50,
        check=False,
    )[0].rollouts
    assert report.passed, report.to_table()


def test_a_bare_env_has_nothing_to_bake(tmp_path):
    policy = MLPActorCriticPolicy(Pendulum(), key=jax.random.key(0), **SMALL)
    with pytest.raises(policyport.InputError, match="wraps nothing"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", env=Pendulum(), bake_wrappers=True)
    assert not list(tmp_path.iterdir())


def test_an_untraceable_transform_is_a_clear_error(tmp_path):
    base = Pendulum()
    env = TransformObservation(base, lambda o: np.asarray(o) * 2, base.observation_space)
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0), **SMALL)
    with pytest.raises(policyport.InputError, match="Tracing MLPActorCriticPolicy"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", env=env, bake_wrappers=True)
    assert not list(tmp_path.iterdir())

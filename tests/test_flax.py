"""Flax (linen and nnx) and plain-JAX policies through `from_function`, and the Flax example.

Each policy exports to every format with parity against the function itself, and its ONNX
graph comes from policyport's own lowering (no jax2onnx fallback). The example's trained
actor-critic drives gymnax's CartPole from its ONNX artifact in onnxruntime with the same
actions and returns as the JAX policy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from flax import nnx

import policyport
from policyport.formats import FORMATS
from policyport.formats._onnx import lowering_of
from policyport.policy import Box, Discrete, MultiDiscrete

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flax"
OBSERVATION = Box(-3 * np.ones(6, np.float32), 3 * np.ones(6, np.float32))
ACTION_BOX = Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))


class LinenActorCritic(nn.Module):
    """Swish MLP with a layer norm (Flax's own modules), logits and a value."""

    actions: int

    @nn.compact
    def __call__(self, x):
        x = nn.swish(nn.LayerNorm()(nn.Dense(32)(x)))
        x = nn.swish(nn.Dense(32)(x))
        return nn.Dense(self.actions)(x), nn.Dense(1)(x)[0]


class NnxActor(nnx.Module):
    """A tanh-squashed deterministic actor scaled to the bounds, written with nnx."""

    def __init__(self, observations: int, actions: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(observations, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.out = nnx.Linear(32, actions, rngs=rngs)

    def __call__(self, x):
        return jnp.tanh(self.out(nnx.relu(self.norm(self.hidden(x)))))


def linen_masked() -> policyport.policy.FunctionPolicy:
    model = LinenActorCritic(actions=5)
    params = model.init(jax.random.key(0), jnp.zeros(6))

    def act(observation, action_mask):
        logits, _ = model.apply(params, observation)
        return jnp.argmax(jnp.where(action_mask, logits, -jnp.inf))

    return policyport.from_function(
        act,
        observation_space=OBSERVATION,
        action_space=Discrete(5),
        value=lambda observation: model.apply(params, observation)[1],
    )


def linen_unmasked() -> policyport.policy.FunctionPolicy:
    model = LinenActorCritic(actions=5)
    params = model.init(jax.random.key(1), jnp.zeros(6))
    return policyport.from_function(
        lambda observation: jnp.argmax(model.apply(params, observation)[0]),
        observation_space=OBSERVATION,
        action_space=Discrete(5),
    )


def nnx_box() -> policyport.policy.FunctionPolicy:
    actor = NnxActor(6, 2, rngs=nnx.Rngs(2))
    low, high = ACTION_BOX.low, ACTION_BOX.high
    return policyport.from_function(
        lambda observation: low + (high - low) * (actor(observation) + 1) / 2,
        observation_space=OBSERVATION,
        action_space=ACTION_BOX,
    )


def plain_masked_multidiscrete() -> policyport.policy.FunctionPolicy:
    keys = jax.random.split(jax.random.key(3), 2)
    w1 = jax.random.normal(keys[0], (6, 16)) / 3
    w2 = jax.random.normal(keys[1], (16, 7)) / 4

    def q_values(observation):
        return jnp.tanh(observation @ w1) @ w2

    def act(observation, action_mask):
        q = jnp.where(action_mask, q_values(observation), -jnp.inf)
        return jnp.stack([jnp.argmax(q[:3]), jnp.argmax(q[3:])])

    return policyport.from_function(
        act,
        observation_space=OBSERVATION,
        action_space=MultiDiscrete((3, 4)),
        q_values=q_values,
    )


# name -> (policy maker, whether the artifact takes a mask, its outputs, formats). Every
# format for one policy of each library; the unmasked linen one (the masked one's network)
# in ONNX only, which is where a mask input could wrongly appear.
POLICIES = {
    "linen_masked": (linen_masked, True, ("action", "value"), "all"),
    "linen_unmasked": (linen_unmasked, False, ("action",), "onnx"),
    "nnx_box": (nnx_box, False, ("action",), "all"),
    "plain_masked_multidiscrete": (
        plain_masked_multidiscrete,
        True,
        ("action", "q_values"),
        "all",
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_exports_with_parity_and_native_onnx(name, tmp_path):
    make, masked, outputs, formats = POLICIES[name]
    policy = make()
    results = policyport.export(policy, formats, tmp_path / "policy.onnx")
    assert sorted(r.format for r in results) == (sorted(FORMATS) if formats == "all" else ["onnx"])
    for result in results:
        assert result.report.passed, result.report.to_table()
        assert [o.name for o in result.report.outputs] == list(outputs)
    model = onnx.load(tmp_path / "policy.onnx")
    assert lowering_of(model) == "policyport"
    assert ("action_mask" in [i.name for i in model.graph.input]) is masked


def test_a_mask_changes_the_masked_policys_action(tmp_path):
    """The mask really reaches the artifact: forbidding JAX's choice moves the action."""
    import onnxruntime as ort

    policy = linen_masked()
    policyport.export(policy, "onnx", tmp_path / "p.onnx")
    session = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    observation = np.random.default_rng(0).uniform(-3, 3, (64, 6)).astype(np.float32)
    everything = np.ones((64, 5), bool)
    (free,) = session.run(["action"], {"observation": observation, "action_mask": everything})
    forbidden = everything.copy()
    forbidden[np.arange(64), free] = False
    (moved,) = session.run(["action"], {"observation": observation, "action_mask": forbidden})
    assert not np.any(moved == free)
    assert np.all(forbidden[np.arange(64), moved])


# ---------------------------------------------------------------- the example


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import cartpole_loop
        import export
    finally:
        sys.path.remove(str(EXAMPLE))
    return cartpole_loop, export


def test_example_artifact_drives_cartpole_like_the_jax_policy(example, tmp_path):
    loop, export = example
    [result] = export.export("onnx", tmp_path / "policy.onnx")
    assert result.report.passed, result.report.to_table()
    assert lowering_of(onnx.load(tmp_path / "policy.onnx")) == "policyport"
    model, params = loop.load_trained()
    by_jax, by_onnx = loop.jax_act(model, params), loop.onnxruntime_act(tmp_path / "policy.onnx")
    for seed in range(3):
        reference, artifact = loop.episode(by_jax, seed), loop.episode(by_onnx, seed)
        assert artifact.actions == reference.actions, f"seed {seed}"
        assert artifact.total_return == reference.total_return
        # The committed weights balance the pole for the whole episode (training.json).
        assert reference.total_return == 500.0

"""Issue 13, items 1 and 8: check inputs as a deployed policy sees them (huge bounds are
unbounded), and a stress check on extreme observations for what must hold there: no
masked action in any format, no NaN the JAX policy does not give."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policyport
from conftest import make_policy
from policyport.checks import reference_outputs, sample_inputs
from policyport.checks._stress import stress_runner
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import HUGE_BOUND, Box, Discrete, MLPActorCriticPolicy, SpacesEnv
from policyport.tracing import trace

F32_MAX = float(np.finfo(np.float32).max)


def _cartpole_space(unbounded: float) -> Box:
    """CartPole's observation space as gymnasium writes it (velocities at float32's max)."""
    high = np.array([4.8, unbounded, 0.418, unbounded], dtype=np.float32)
    return Box(-high, high)


# ---------------------------------------------------------------------------------------
# Item 1: huge bounds are sampled like infinite ones


@pytest.mark.parametrize("huge", [F32_MAX, 1e30, 2 * HUGE_BOUND])
def test_huge_bounds_are_sampled_like_infinite_ones(huge):
    rng_huge, rng_inf = np.random.default_rng(3), np.random.default_rng(3)
    drawn = _cartpole_space(huge).sample_numpy(rng_huge, 4096)
    assert np.array_equal(drawn, _cartpole_space(np.inf).sample_numpy(rng_inf, 4096))
    # Velocities: standard normal tails, not uniform up to the bound.
    assert np.abs(drawn[:, [1, 3]]).max() < 10
    assert np.abs(drawn[:, 0]).max() <= 4.8 and np.abs(drawn[:, 0]).max() > 4.0


def test_one_huge_bound_gets_the_exponential_tail_of_the_other():
    space = Box(np.array([-F32_MAX, 2.0], np.float32), np.array([5.0, F32_MAX], np.float32))
    drawn = space.sample_numpy(np.random.default_rng(0), 4096)
    assert (drawn[:, 0] <= 5.0).all() and (drawn[:, 0] > 5.0 - 20).all()
    assert (drawn[:, 1] >= 2.0).all() and (drawn[:, 1] < 2.0 + 20).all()


def test_bounds_up_to_the_limit_stay_uniform():
    space = Box(np.full(2, -HUGE_BOUND, np.float32), np.full(2, HUGE_BOUND, np.float32))
    drawn = space.sample_numpy(np.random.default_rng(0), 4096)
    assert np.abs(drawn).max() > 0.9 * HUGE_BOUND  # uniform over the whole box


def test_a_gymnasium_cartpole_policy_passes_and_the_report_states_the_rule(tmp_path):
    env = SpacesEnv(_cartpole_space(F32_MAX), Discrete(2))
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
    inputs = sample_inputs(policy, seed=0, batch=4096)
    assert np.abs(inputs["observation"]).max() < 10
    [result] = policyport.export(policy, "onnx", tmp_path / "cartpole.onnx")
    assert result.report.passed
    table = result.report.to_table()
    assert "a bound that is infinite or beyond 1e+06 in magnitude" in table
    assert "stress PASS" in table


# ---------------------------------------------------------------------------------------
# Item 8: all legal logits at -inf


def _overflowing_policy() -> MLPActorCriticPolicy:
    """A Discrete policy whose every logit is -inf on large positive observations.

    Every weight before the last layer is positive (large observations overflow to +inf
    through every layer), the last layer's are negative (every logit becomes -inf): the
    JAX policy then picks index 0, legal or not.
    """
    policy = make_policy("Discrete", seed=5)
    positive = jax.tree.map(
        lambda x: jnp.abs(x) if eqx.is_inexact_array(x) else x,
        (policy.encoder, policy.action_head.mlp),
    )
    policy = eqx.tree_at(lambda p: (p.encoder, p.action_head.mlp), policy, positive)
    mapping = policy.action_head.action_dist.mapping
    return eqx.tree_at(
        lambda p: (
            p.action_head.action_dist.mapping.weight,
            p.action_head.action_dist.mapping.bias,
        ),
        policy,
        (-jnp.abs(mapping.weight), jnp.zeros_like(mapping.bias)),
    )


def _index_0_masked(policy, rows: int = 64) -> dict[str, np.ndarray]:
    inputs = sample_inputs(policy, seed=1, batch=rows)
    inputs["observation"] = np.full_like(inputs["observation"], F32_MAX)
    inputs["observation"][rows // 2 :] *= 1e-30  # ordinary rows, for comparison
    inputs["action_mask"][:, 0] = False
    inputs["action_mask"][:, 3] = True  # one legal action in every row
    return inputs


def test_the_jax_policy_itself_picks_the_masked_index_there():
    policy = _overflowing_policy()
    inputs = _index_0_masked(policy)
    actions = reference_outputs(policy, inputs)["action"]
    assert (actions[:32] == 0).all()  # masked: the scenario is real


@pytest.mark.parametrize("format", list(FORMATS))
def test_no_format_chooses_a_masked_action_when_every_legal_logit_is_minus_inf(tmp_path, format):
    policy = _overflowing_policy()
    out = tmp_path / f"p{FORMATS[format].suffix}"
    [result] = policyport.export(policy, format, out)
    assert result.report.passed, result.report.to_table()
    run = RUNTIMES[FORMATS[format].runtime].load(out)
    inputs = _index_0_masked(policy)
    actions = np.asarray(run(inputs)["action"])
    space = trace(policy).action_space
    assert not space.illegal_rows(actions, inputs["action_mask"]).any(), actions[:32]
    # The fix touches only rows whose legal logits are all -inf: ordinary rows agree with JAX.
    expected = reference_outputs(policy, inputs)["action"]
    np.testing.assert_array_equal(actions[32:], expected[32:])


def test_the_legal_rewrite_changes_no_row_whose_logits_are_finite():
    for action in ("Discrete", "MultiDiscrete", "MultiBinary"):
        traced = trace(make_policy(action))
        inputs = sample_inputs(traced, seed=2, batch=4096, all_false_rows=8)
        arrays = [jnp.asarray(inputs[n]) for n in traced.input_names]
        plain, legal = traced.batched(*arrays), traced.legal_batched(*arrays)
        for a, b in zip(plain, legal, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_stress_check_fails_an_artifact_that_chooses_a_masked_action():
    policy = _overflowing_policy()
    traced = trace(policy)
    plain = jax.jit(traced.batched)  # what stablehlo lowered before the fix

    def run(inputs):
        outputs = plain(*(jnp.asarray(inputs[n]) for n in traced.input_names))
        return {s.name: np.asarray(o) for s, o in zip(traced.outputs, outputs, strict=True)}

    report = stress_runner(traced, run)
    assert not report.passed and report.masked_actions > 0
    assert "stress FAIL" in report.line()

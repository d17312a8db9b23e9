"""Any policy that follows lerax's protocol exports to every format, with parity.

The matrix is every kind in `kinds.KINDS` x every registered format; a test fails when a
registered format, runtime or space type is left out of it.
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import policyport
from kinds import BENCH, KINDS, OBSERVATION, DiscreteSACLikePolicy, QLikePolicy
from policyport import InputError, UnsupportedError
from policyport._export import compare_rollouts
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import Discrete, SpacesEnv
from policyport.policy._spaces import SPACE_TYPES

# What each kind's artifact must look like: its outputs, and whether it takes a mask.
EXPECTED = {
    "actor_critic_discrete": (("action", "value"), True),
    "actor_critic_box": (("action", "value"), False),
    "actor_critic_multidiscrete": (("action", "value"), True),
    "actor_critic_multibinary": (("action", "value"), True),
    "actor_critic_dict": (("action", "value"), True),
    "actor_critic_tuple": (("action", "value"), True),
    "q": (("action", "q_values"), True),
    "q_dict": (("action", "q_values"), True),
    "sac": (("action",), False),
    "deterministic": (("action",), False),
    "discrete_sac": (("action",), False),
    "layernorm": (("action", "value"), True),
    "flax_layernorm_swish": (("action", "value"), True),
    "brax_ppo": (("action", "value"), False),
}


def test_every_kind_has_expectations():
    assert set(EXPECTED) == set(KINDS)


def test_every_space_type_is_in_the_matrix():
    """Each registered space type appears in some kind's observation or action space."""
    seen: set[str] = set()

    def visit(space) -> None:
        seen.add(space.kind)
        for sub in getattr(space, "spaces", {}) and (
            space.spaces.values() if isinstance(space.spaces, dict) else space.spaces
        ):
            visit(sub)

    for make in KINDS.values():
        policy = make(0)
        visit(policyport.trace(policy).observation_space)
        visit(policyport.trace(policy).action_space)
    assert seen == set(SPACE_TYPES)


RUNTIME_FORMATS = [(r.name, f) for r in RUNTIMES.values() for f in r.formats]


def test_every_registered_runtime_and_format_is_paired():
    """Each format's own runtime reads it; every runtime reads some registered format."""
    assert {(fmt.runtime, name) for name, fmt in FORMATS.items()} <= set(RUNTIME_FORMATS)
    assert {f for _, f in RUNTIME_FORMATS} <= set(FORMATS)


@pytest.mark.parametrize(("runtime", "format"), RUNTIME_FORMATS)
def test_every_runtime_checks_every_format_it_reads(tmp_path, runtime, format):
    """Masked, with a Dict observation and a q_values head: the hardest contract we have."""
    policy = KINDS["q_dict"](4)
    path = tmp_path / f"policy{FORMATS[format].suffix}"
    policyport.export(policy, format, path, check=False)
    report = policyport.check(policy, path, runtime=runtime)
    assert report.passed, report.to_table()
    assert report.runtime.startswith(runtime)


def test_a_runtime_that_cannot_read_the_format_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"Runtime 'tensorflow' cannot run onnx artifacts"):
        policyport.check(KINDS["q"](0), tmp_path / "p.onnx", runtime="tensorflow")


@pytest.mark.parametrize("kind", list(KINDS))
def test_trace_describes_the_contract(kind):
    traced = policyport.trace(KINDS[kind](0))
    outputs, masked = EXPECTED[kind]
    assert traced.output_names == outputs
    assert traced.description.mask_input is masked
    assert ("action_mask" in traced.input_names) is masked
    leaves = [name for name, _ in traced.observation_space.leaves()]
    assert list(traced.input_names[: len(leaves)]) == leaves


@pytest.mark.parametrize("format", list(FORMATS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_exports_with_parity(tmp_path, kind, format):
    policy = KINDS[kind](1)
    path = tmp_path / f"policy{FORMATS[format].suffix}"
    [result] = policyport.export(policy, format, path)
    assert result.report.passed, result.report.to_table()
    assert [o.name for o in result.report.outputs] == list(EXPECTED[kind][0])
    assert result.report.outputs[0].rows == 4097
    if format == "onnx":
        model = onnx.load(path)
        meta = {p.key: p.value for p in model.metadata_props}
        assert [i.name for i in model.graph.input] == list(policyport.trace(policy).input_names)
        assert [o.name for o in model.graph.output] == list(EXPECTED[kind][0])
        assert json.loads(meta["policyport.mask_input"]) is EXPECTED[kind][1]
        assert json.loads(meta["policyport.contract_version"]) == 2


@pytest.mark.parametrize("kind", list(KINDS))
def test_bench_size_keeps_the_contract_and_grows_the_network(kind):
    """`size=BENCH` (the bench's cases) changes sizes only: same inputs, outputs, mask."""
    small, large = KINDS[kind](0), KINDS[kind](0, size=BENCH)
    traced_small, traced = policyport.trace(small), policyport.trace(large)
    assert traced.input_names == traced_small.input_names
    assert traced.output_names == traced_small.output_names
    assert traced.inputs[0].shape == (BENCH.observation,)
    weights = [int(np.size(x)) for x in jax.tree.leaves(eqx.filter(large, eqx.is_inexact_array))]
    small_weights = [
        int(np.size(x)) for x in jax.tree.leaves(eqx.filter(small, eqx.is_inexact_array))
    ]
    assert sum(weights) > sum(small_weights)


def test_dict_observation_inputs_are_named_per_leaf():
    traced = policyport.trace(KINDS["actor_critic_dict"](0))
    assert traced.input_names == (
        "observation.position",
        "observation.goal.0",
        "observation.goal.1",
        "observation.flags",
        "action_mask",
    )
    shapes = [s.shape for s in traced.inputs]
    assert shapes == [(3,), (), (2,), (2,), (3,)]


def test_check_accepts_a_policy_object_and_its_artifact(tmp_path):
    policy = KINDS["q"](2)
    policyport.export(policy, "onnx", tmp_path / "q.onnx")
    assert policyport.check(policy, tmp_path / "q.onnx").passed
    # Another policy's weights: the same contract, other numbers.
    assert not policyport.check(KINDS["q"](3), tmp_path / "q.onnx").passed


def test_an_ignored_mask_is_not_an_input():
    """lerax's discrete SAC takes `action_mask: None` and never reads it."""
    policy = DiscreteSACLikePolicy(SpacesEnv(OBSERVATION, Discrete(4)), key=jax.random.key(0))
    assert "action_mask" not in policyport.trace(policy).input_names


def test_the_mask_is_an_input_when_the_policy_reads_it():
    policy = QLikePolicy(SpacesEnv(OBSERVATION, Discrete(4)), key=jax.random.key(0))
    traced = policyport.trace(policy)
    assert traced.input_names == ("observation", "action_mask")


class _Recurrent(eqx.Module):
    observation_space: object
    action_space: object

    def reset(self, *, key):
        return jnp.zeros(3)

    def __call__(self, state, observation, *, key=None, action_mask=None):
        return state, jnp.argmax(observation[:3])


def test_a_stateful_policy_takes_its_state_and_reset_as_inputs():
    traced = policyport.trace(_Recurrent(OBSERVATION, Discrete(3)))
    assert traced.input_names == ("observation", "state", "reset")
    assert traced.output_names == ("action", "next_state")


def test_an_object_without_spaces_is_refused():
    with pytest.raises(InputError, match=r"has no observation_space.*lerax's policy protocol"):
        policyport.export(lambda x: x, "onnx", "/tmp/never.onnx")


def test_a_policy_whose_action_does_not_fit_its_space_is_refused():
    class Wrong(eqx.Module):
        observation_space: object = OBSERVATION
        action_space: object = Discrete(3)

        def __call__(self, state, observation, *, key=None, action_mask=None):
            return None, observation[:2]

    with pytest.raises(UnsupportedError, match=r"action has shape \(2,\).*Discrete\(3\)"):
        policyport.trace(Wrong())


def test_default_actor_critic_keeps_one_encoder(tmp_path):
    """`__call__` and `value` are traced separately; the graph computes the encoder once."""
    policyport.export(KINDS["actor_critic_discrete"](0), "onnx", tmp_path / "p.onnx")
    model = onnx.load(tmp_path / "p.onnx")
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    # encoder 3 + value 3 + action 2 (its last two layers folded): 8, not 11.
    assert len(gemms) == 8


def test_rollouts_of_a_dict_policy_agree(tmp_path):
    """Closed loop with a Dict observation env: the artifact takes the leaves by name."""

    class DictEnv(eqx.Module):
        observation_space: object = KINDS["actor_critic_dict"](0).observation_space
        action_space: object = Discrete(3)

        def initial(self, *, key):
            return jnp.zeros(3)

        def observation(self, state, *, key):
            return {
                "position": jnp.tanh(state),
                "goal": (jnp.array(1.0), state[:2]),
                "flags": jnp.array([1.0, 0.0]),
            }

        def action_mask(self, state, *, key):
            return jnp.array([True, state[0] < 0.5, True])

        def transition(self, state, action, *, key):
            return state + 0.1 * (action - 1) + 0.01 * jax.random.normal(key, (3,))

        def reward(self, state, action, next_state, *, key):
            return -jnp.abs(next_state).sum()

        def terminal(self, state, *, key):
            return jnp.abs(state).max() > 2

        def truncate(self, state):
            return jnp.array(False)

    policy = KINDS["actor_critic_dict"](0)
    policyport.export(policy, "onnx", tmp_path / "d.onnx")
    report = compare_rollouts(policy, tmp_path / "d.onnx", DictEnv(), episodes=2, max_steps=30)
    assert report.passed, report.to_table()
    assert all(e.steps_jax > 1 for e in report.episodes)
    np.testing.assert_equal([e.first_action_mismatch for e in report.episodes], [None, None])


class _CheckedBounds(eqx.Module):
    """A policy that checks its constants the way lerax's squashed Gaussian does."""

    observation_space: object = OBSERVATION
    action_space: object = Discrete(3)

    def __call__(self, state, observation, *, key=None, action_mask=None):
        low = eqx.error_if(jnp.zeros(3), ~jnp.all(jnp.isfinite(jnp.zeros(3))), "bad bounds")
        unused = jnp.log(jnp.abs(observation).sum())  # computed, never returned
        del unused
        return None, jnp.argmax(observation[:3] + low)


def test_checks_on_constants_and_dead_code_leave_the_trace(tmp_path):
    """`equinox.error_if` on constants becomes a host callback no format can hold: the
    trace folds it away (lerax head's MLPSACPolicy needs this), and dead code goes too."""
    traced = policyport.trace(_CheckedBounds())
    primitives = {eqn.primitive.name for eqn in traced.jaxpr.jaxpr.eqns}
    assert "pure_callback" not in primitives and "log" not in primitives
    [result] = policyport.export(_CheckedBounds(), "onnx", tmp_path / "c.onnx")
    assert result.report.passed


def test_a_failing_check_on_constants_still_fails():
    class Broken(_CheckedBounds):
        def __call__(self, state, observation, *, key=None, action_mask=None):
            low = eqx.error_if(jnp.zeros(3), jnp.array(True), "bounds must be finite")
            return None, jnp.argmax(observation[:3] + low)

    with pytest.raises(Exception, match="bounds must be finite"):
        policyport.trace(Broken())

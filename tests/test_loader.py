"""The model-file loader: lerax's calling patterns, bounded headers, honest round trips."""

from __future__ import annotations

import jax
import jax.random as jr
import numpy as np
import pytest

from conftest import OBSERVATION, make_policy
from policyport import ModelFileError
from policyport.policy import Discrete, MLPActorCriticPolicy, SpacesEnv


def _same_leaves(a: object, b: object) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all((x is y) if callable(x) else np.array_equal(x, y) for x, y in pairs)


@pytest.fixture
def saved(tmp_path):
    """A self-describing file of a Discrete(5) policy, and the policy."""
    policy = make_policy("Discrete", feature_width=24)
    policy.serialize(tmp_path / "policy.eqx")
    return policy, tmp_path / "policy.eqx"


# 1. lerax's save-then-load pattern: deserialize(path, env, key=...) or (path, env=env, key=...).


def test_self_describing_file_takes_lerax_arguments_by_keyword(saved):
    policy, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    loaded = MLPActorCriticPolicy.deserialize(str(path), env=env, key=jr.key(1))
    assert _same_leaves(policy, loaded)


def test_self_describing_file_takes_lerax_arguments_by_position(saved):
    policy, path = saved
    loaded = MLPActorCriticPolicy.deserialize(path, SpacesEnv(OBSERVATION, Discrete(5)), key=1)
    assert _same_leaves(policy, loaded)


def test_self_describing_file_takes_kwargs_that_agree(saved):
    policy, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    loaded = MLPActorCriticPolicy.deserialize(path, env, feature_width=24, log_std_init=-1.0)
    assert _same_leaves(policy, loaded)


def test_self_describing_file_refuses_another_env(saved):
    _, path = saved
    with pytest.raises(
        ModelFileError, match=r"saved with action_space Discrete\(5\).*Discrete\(4\)"
    ):
        MLPActorCriticPolicy.deserialize(path, env=SpacesEnv(OBSERVATION, Discrete(4)))


def test_self_describing_file_refuses_kwargs_that_disagree(saved):
    _, path = saved
    with pytest.raises(ModelFileError, match=r"feature_width=64 \(file: 24\)"):
        MLPActorCriticPolicy.deserialize(path, feature_width=64)


def test_self_describing_file_refuses_an_env_without_spaces(saved):
    _, path = saved
    with pytest.raises(ModelFileError, match="has no observation_space"):
        MLPActorCriticPolicy.deserialize(path, env=object())


def test_env_given_twice_is_refused(saved):
    _, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    with pytest.raises(ModelFileError, match=r"takes the env once.*1 positional.*and env="):
        MLPActorCriticPolicy.deserialize(path, env, env=env)

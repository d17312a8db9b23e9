"""Files written by lerax's own `serialize` load into our class, and bad ones are refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest

lerax_env = pytest.importorskip("lerax.env", reason="the test install includes lerax")
from lerax.policy import MLPActorCriticPolicy as LeraxPolicy  # noqa: E402

from policyport import ModelFileError  # noqa: E402
from policyport.policy import Discrete, MLPActorCriticPolicy  # noqa: E402


def _lerax_file(tmp_path, env, **kwargs):
    policy = LeraxPolicy(env, key=jax.random.key(4), **kwargs)
    policy.serialize(tmp_path / "lerax.eqx")
    jax.effects_barrier()  # lerax writes from a jax.debug.callback
    return policy, tmp_path / "lerax.eqx"


@pytest.mark.parametrize(
    ("env_name", "kwargs"),
    [
        ("CartPole", {}),
        ("CartPole", {"feature_width": 32, "value_depth": 1, "action_depth": 3}),
        ("Pendulum", {"feature_size": 8}),
        ("Acrobot", {"action_width": 16}),
    ],
)
def test_lerax_written_file_loads_with_env_and_kwargs(tmp_path, env_name, kwargs):
    env = getattr(lerax_env, env_name)()
    theirs, path = _lerax_file(tmp_path, env, **kwargs)
    ours = MLPActorCriticPolicy.deserialize(path, env, **kwargs)
    for a, b in zip(jax.tree.leaves(theirs), jax.tree.leaves(ours), strict=True):
        assert (a is b) if callable(a) else np.array_equal(a, b)
    observation = env.observation_space.sample(key=jax.random.key(0))
    assert np.array_equal(theirs(None, observation)[1], ours(None, observation)[1])


def test_lerax_file_takes_the_env_by_keyword_like_lerax(tmp_path):
    env = lerax_env.CartPole()
    theirs, path = _lerax_file(tmp_path, env, feature_size=8)
    ours = MLPActorCriticPolicy.deserialize(
        str(path), env=env, key=jax.random.key(1), feature_size=8
    )
    for a, b in zip(jax.tree.leaves(theirs), jax.tree.leaves(ours), strict=True):
        assert (a is b) if callable(a) else np.array_equal(a, b)


def test_lerax_file_without_env_says_what_to_pass(tmp_path):
    _, path = _lerax_file(tmp_path, lerax_env.CartPole())
    with pytest.raises(ModelFileError, match=r"written by lerax.*--env MODULE:ATTR"):
        MLPActorCriticPolicy.deserialize(path)


def test_lerax_file_with_wrong_kwargs_says_so(tmp_path):
    env = lerax_env.CartPole()
    _, path = _lerax_file(tmp_path, env, feature_width=32)
    with pytest.raises(ModelFileError, match="saved with other constructor kwargs"):
        MLPActorCriticPolicy.deserialize(path, env)


def test_lerax_file_with_wrong_env_says_so(tmp_path):
    _, path = _lerax_file(tmp_path, lerax_env.CartPole())
    wrong = lerax_env.Acrobot()  # 6-dim observations, 3 actions
    with pytest.raises(ModelFileError, match="weights"):
        MLPActorCriticPolicy.deserialize(path, wrong)


def test_unknown_kwargs_are_refused(tmp_path):
    _, path = _lerax_file(tmp_path, lerax_env.CartPole())
    with pytest.raises(ModelFileError, match=r"Unknown policy kwargs \['hidden'\]"):
        MLPActorCriticPolicy.deserialize(path, lerax_env.CartPole(), hidden=3)


def test_truncated_lerax_file_is_refused(tmp_path):
    _, path = _lerax_file(tmp_path, lerax_env.CartPole())
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ModelFileError, match="truncated"):
        MLPActorCriticPolicy.deserialize(path, lerax_env.CartPole())


def test_the_bundled_cartpole_file_is_a_lerax_file():
    policy = MLPActorCriticPolicy.deserialize("examples/cartpole/policy.eqx", lerax_env.CartPole())
    assert policy.action_space == Discrete(2)

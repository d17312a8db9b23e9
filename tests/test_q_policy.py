"""Our MLPQPolicy computes exactly what lerax 0.0.5's does, and its files describe it."""

from __future__ import annotations

import inspect
import json
import struct
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

lerax_space = pytest.importorskip("lerax.space", reason="the test install includes lerax")
import lerax.env  # noqa: E402
from lerax.policy import MLPQPolicy as LeraxQPolicy  # noqa: E402

from policyport import InputError, ModelFileError  # noqa: E402
from policyport.policy import (  # noqa: E402
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MLPQPolicy,
    SpacesEnv,
)
from policyport.policy._serialization import CLASSES, MAGIC, _constructor  # noqa: E402

N_OBSERVATIONS = 64
N_ACTIONS = 5
ARCHITECTURES = {
    "default": {},
    "small": {"width_size": 16, "depth": 1, "epsilon": 0.5},
    "linear": {"depth": 0, "epsilon": 1.0},
    "greedy": {"epsilon": 0.0},
}


def _env():
    return types.SimpleNamespace(
        observation_space=lerax_space.Box(-jnp.full(6, 3.0), jnp.full(6, 3.0)),
        action_space=lerax_space.Discrete(N_ACTIONS),
    )


def _equal(a, b) -> bool:
    """Same values and shape, bit for bit (lerax's and our integer dtypes may differ);
    non-array leaves (activations) must be the same object."""
    if callable(a) or callable(b):
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.astype(np.float64), b.astype(np.float64))


def _outputs(policy, observations, masks, keys):
    """q_values, the greedy action and the epsilon-greedy action of every observation."""

    def one(observation, mask, key):
        _, q_values = policy.q_values(None, observation)
        _, greedy = policy(None, observation, action_mask=mask)
        _, sampled = policy(None, observation, key=key, action_mask=mask)
        return q_values, greedy, sampled

    if masks is None:
        return jax.vmap(lambda o, k: one(o, None, k))(observations, keys)
    return jax.vmap(one)(observations, masks, keys)


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("kwargs", list(ARCHITECTURES.values()), ids=list(ARCHITECTURES))
def test_same_leaves_and_outputs_as_lerax(kwargs: dict, masked: bool):
    env = _env()
    key = jax.random.key(7)
    theirs = LeraxQPolicy(env, key=key, **kwargs)
    ours = MLPQPolicy(env, key=key, **kwargs)
    their_leaves, our_leaves = jax.tree.leaves(theirs), jax.tree.leaves(ours)
    assert len(their_leaves) == len(our_leaves)
    assert all(_equal(a, b) for a, b in zip(their_leaves, our_leaves, strict=True))
    assert ours.reset(key=key) is None and theirs.reset(key=key) is None

    rng = np.random.default_rng(0)
    observations = jnp.asarray(rng.uniform(-3, 3, (N_OBSERVATIONS, 6)).astype(np.float32))
    masks = None
    if masked:
        legal = rng.random((N_OBSERVATIONS, N_ACTIONS)) < 0.4
        legal[np.arange(N_OBSERVATIONS), rng.integers(0, N_ACTIONS, N_OBSERVATIONS)] = True
        masks = jnp.asarray(legal)
    keys = jax.random.split(jax.random.key(1), N_OBSERVATIONS)
    got = _outputs(ours, observations, masks, keys)
    want = _outputs(theirs, observations, masks, keys)
    for name, g, w in zip(("q_values", "greedy", "sampled"), got, want, strict=True):
        assert _equal(g, w), name
    for i in range(4):  # unbatched too: lax.cond takes one branch instead of a select
        mask = None if masks is None else masks[i]
        call = lambda p, i=i, m=mask: p(None, observations[i], key=keys[i], action_mask=m)[1]  # noqa: E731
        assert _equal(call(ours), call(theirs)), i
    if masks is not None:
        rows = np.arange(N_OBSERVATIONS)
        assert np.all(np.asarray(masks)[rows, np.asarray(got[1])])
        assert np.all(np.asarray(masks)[rows, np.asarray(got[2])])
    if kwargs.get("epsilon", 0.1) >= 0.5:  # exploration must really happen in these cases
        assert not _equal(got[1], got[2])


def test_built_from_a_lerax_env_and_from_our_spaces():
    cartpole = lerax.env.CartPole()
    theirs = LeraxQPolicy(cartpole, key=jax.random.key(0))
    ours = MLPQPolicy(cartpole, key=jax.random.key(0))
    observation = cartpole.observation_space.sample(key=jax.random.key(1))
    assert _equal(ours.q_values(None, observation)[1], theirs.q_values(None, observation)[1])
    assert ours.action_space == Discrete(2)

    ours = MLPQPolicy(SpacesEnv(Box(-np.ones(3), np.ones(3)), Discrete(4)), key=jax.random.key(0))
    assert ours.q_values(None, jnp.zeros(3))[1].shape == (4,)


def test_non_discrete_action_space_is_refused():
    env = SpacesEnv(Box(-np.ones(3), np.ones(3)), Box(-np.ones(2), np.ones(2)))
    with pytest.raises(InputError, match="MLPQPolicy needs a Discrete action space"):
        MLPQPolicy(env, key=jax.random.key(0))


# --- self-describing files -------------------------------------------------------------


def _policy(**kwargs) -> MLPQPolicy:
    env = SpacesEnv(Box(-np.ones(4), np.ones(4)), Discrete(3))
    return MLPQPolicy(env, key=jax.random.key(2), **kwargs)


def _header(path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    start = len(MAGIC) + 4
    (length,) = struct.unpack("<I", data[len(MAGIC) : start])
    return json.loads(data[start : start + length]), data[start + length :]


def _rewrite(path, header: dict, leaves: bytes) -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(encoded)) + encoded + leaves)


@pytest.mark.parametrize("kwargs", [{}, {"epsilon": 0.25, "width_size": 8, "depth": 3}])
def test_self_describing_round_trip(tmp_path, kwargs):
    policy = _policy(**kwargs)
    policy.serialize(tmp_path / "q")
    header, _ = _header(tmp_path / "q.eqx")
    assert header["class"] == "MLPQPolicy" and header["format_version"] == 2
    assert header["kwargs"] == {"epsilon": 0.1, "width_size": 64, "depth": 2, **kwargs}
    loaded = MLPQPolicy.deserialize(tmp_path / "q.eqx")
    assert loaded.epsilon == policy.epsilon and type(loaded.epsilon) is float
    for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(loaded), strict=True):
        assert _equal(a, b)


def test_version_1_q_policy_files_still_load(tmp_path):
    # Format version 1 (before structure_sha256) was the only one when MLPQPolicy came.
    policy = _policy(epsilon=0.25)
    policy.serialize(tmp_path / "q.eqx")
    header, leaves = _header(tmp_path / "q.eqx")
    del header["structure_sha256"]
    _rewrite(tmp_path / "q.eqx", {**header, "format_version": 1}, leaves)
    loaded = MLPQPolicy.deserialize(tmp_path / "q.eqx")
    for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(loaded), strict=True):
        assert _equal(a, b)


def test_file_of_one_class_is_refused_by_the_other(tmp_path):
    _policy().serialize(tmp_path / "q.eqx")
    with pytest.raises(ModelFileError, match=r"holds an MLPQPolicy, not an MLPActorCriticPolicy"):
        MLPActorCriticPolicy.deserialize(tmp_path / "q.eqx")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width_size": "wide"}, r"width_size must be an integer in 0\.\.16777216, found 'wide'"),
        ({"epsilon": "nan"}, r"epsilon must be a finite number, found 'nan'"),
        ({"epsilon": True}, r"epsilon must be a finite number, found True"),
        ({"feature_width": 64}, r"'kwargs' of a MLPQPolicy must hold exactly"),
    ],
)
def test_header_kwargs_are_checked_per_class(tmp_path, change, message):
    path = tmp_path / "q.eqx"
    _policy().serialize(path)
    header, leaves = _header(path)
    header["kwargs"] = {**header["kwargs"], **change}
    _rewrite(path, header, leaves)
    with pytest.raises(ModelFileError, match=message):
        MLPQPolicy.deserialize(path)


def test_actor_critic_kwargs_in_a_q_header_are_refused_as_data(tmp_path):
    # A header naming the other class with this class's kwargs: refused before building.
    path = tmp_path / "q.eqx"
    _policy().serialize(path)
    header, leaves = _header(path)
    header["class"] = "MLPActorCriticPolicy"
    _rewrite(path, header, leaves)
    with pytest.raises(ModelFileError, match=r"'kwargs' of a MLPActorCriticPolicy must hold"):
        MLPActorCriticPolicy.deserialize(path)


def test_class_table_and_constructors_agree():
    # The header's class names map to classes through two fixed tables: they must not drift.
    assert list(CLASSES) == ["MLPActorCriticPolicy", "MLPQPolicy"]
    for name, schema in CLASSES.items():
        cls = _constructor(name)
        assert cls.name == name
        assert set(schema.kwargs) <= set(inspect.signature(cls).parameters)

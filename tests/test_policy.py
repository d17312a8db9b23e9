"""The policy subpackage: spaces, masks, and the self-describing file format."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import MASKABLE, OBSERVATION, make_policy
from policyport import ModelFileError
from policyport.policy import (
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
)
from policyport.policy._serialization import MAGIC

N_ROWS = 256


def _legal(space, action: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: does `action` use only what `mask` allows?"""
    if isinstance(space, MultiBinary):
        return ~np.any((action.reshape(len(action), -1) != 0) & ~mask, axis=1)
    nvec = [space.n] if isinstance(space, Discrete) else list(space.nvec)
    action = action.reshape(len(action), -1)
    offsets = np.cumsum([0, *nvec[:-1]])
    return np.all(mask[np.arange(len(action))[:, None], offsets + action], axis=1)


@pytest.mark.parametrize("action", MASKABLE)
@pytest.mark.parametrize("deterministic", [True, False], ids=["mode", "sample"])
def test_masked_actions_are_never_chosen(action: str, deterministic: bool):
    policy = make_policy(action, seed=3)
    rng = np.random.default_rng(0)
    observations = jax.vmap(lambda k: policy.observation_space.sample(key=k))(
        jax.random.split(jax.random.key(0), N_ROWS)
    )
    masks = policy.action_space.random_masks(rng, N_ROWS)
    keys = jax.random.split(jax.random.key(1), N_ROWS)

    def act(o, m, k):
        return policy(None, o, key=None if deterministic else k, action_mask=m)[1]

    actions = np.asarray(jax.vmap(act)(observations, jnp.asarray(masks), keys))
    assert _legal(policy.action_space, actions, masks).all()
    # The same rows unmasked do choose forbidden actions: the masks really bite.
    free = np.asarray(jax.vmap(lambda o, k: act(o, None, k))(observations, keys))
    assert not _legal(policy.action_space, free, masks).all()


@pytest.mark.parametrize("action", MASKABLE)
def test_all_false_mask_gives_action_zero_without_nan(action: str):
    policy = make_policy(action)
    mask = jnp.zeros(policy.action_space.mask_size, dtype=bool)
    chosen = policy(None, jnp.zeros(OBSERVATION.shape), action_mask=mask)[1]
    assert np.all(np.asarray(chosen) == 0)


def test_spaces_shapes_and_masks():
    assert Discrete(4).shape == () and Discrete(4).mask_size == 4
    assert MultiDiscrete((3, 2)).shape == (2,) and MultiDiscrete((3, 2)).mask_size == 5
    assert MultiBinary(3).shape == (3,) and MultiBinary((2, 3)).mask_size == 6
    box = Box(-np.ones((2, 3)), np.ones((2, 3)))
    assert box.shape == (2, 3) and box.flat_size == 6 and box.mask_size is None
    key = jax.random.key(0)
    assert box.contains(box.sample(key=key))
    only_two = jnp.array([False, False, True, False])
    assert int(Discrete(4).sample(key=key, mask=only_two)) == 2
    block_mask = jnp.array([False, True, False, True, False])
    assert np.array_equal(MultiDiscrete((3, 2)).sample(key=key, mask=block_mask), [1, 0])
    assert not np.any(MultiBinary(3).sample(key=key, mask=jnp.zeros(3, bool)))


def test_box_sampler_is_finite_with_infinite_bounds():
    samples = jax.vmap(lambda k: OBSERVATION.sample(key=k))(
        jax.random.split(jax.random.key(0), 1000)
    )
    assert np.all(np.isfinite(samples))
    samples = np.asarray(samples)
    assert np.all(samples >= np.asarray(OBSERVATION.low)) and np.all(
        samples <= np.asarray(OBSERVATION.high)
    )


@pytest.mark.parametrize(
    "kwargs", [{}, {"feature_size": 8, "feature_width": 24, "feature_depth": 3, "action_depth": 1}]
)
def test_self_describing_round_trip(any_policy, tmp_path, kwargs):
    policy = MLPActorCriticPolicy(
        SpacesEnv(any_policy.observation_space, any_policy.action_space),
        key=jax.random.key(5),
        **kwargs,
    )
    policy.serialize(tmp_path / "policy.eqx")
    loaded = MLPActorCriticPolicy.deserialize(tmp_path / "policy.eqx")
    assert loaded.action_space == policy.action_space
    assert loaded.observation_space == policy.observation_space
    for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(loaded), strict=True):
        assert (a is b) if callable(a) else np.array_equal(a, b)


def test_serialize_replaces_suffix_like_lerax(tmp_path):
    policy = make_policy("Discrete")
    policy.serialize(tmp_path / "policy.bin")
    assert (tmp_path / "policy.eqx").exists() and not (tmp_path / "policy.bin").exists()
    policy.serialize(tmp_path / "policy.bin", no_suffix=True)
    assert MLPActorCriticPolicy.deserialize(tmp_path / "policy.bin").action_space == Discrete(5)


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "policy.eqx"
    make_policy("Discrete").serialize(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="do not match the hash"):
        MLPActorCriticPolicy.deserialize(path)


def test_unknown_format_version_is_refused(tmp_path):
    path = tmp_path / "policy.eqx"
    make_policy("Discrete").serialize(path)
    data = path.read_bytes().replace(b'"format_version": 2', b'"format_version": 9')
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=r"format version 9.*reads versions \[1, 2\]"):
        MLPActorCriticPolicy.deserialize(path)


def test_file_starts_with_magic(tmp_path):
    make_policy("Box").serialize(tmp_path / "p.eqx")
    assert (tmp_path / "p.eqx").read_bytes().startswith(MAGIC)

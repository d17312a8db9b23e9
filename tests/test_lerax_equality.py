"""Our MLPActorCriticPolicy computes exactly what lerax 0.0.5's does."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

lerax_space = pytest.importorskip("lerax.space", reason="the test install includes lerax")
from lerax.distribution import MultiCategorical as LeraxMultiCategorical  # noqa: E402
from lerax.policy import MLPActorCriticPolicy as LeraxPolicy  # noqa: E402

from policyport.policy import MLPActorCriticPolicy, MultiCategorical  # noqa: E402

ARCHITECTURES = [
    {},
    {
        "feature_size": 8,
        "feature_width": 32,
        "feature_depth": 1,
        "value_width": 16,
        "value_depth": 3,
        "action_width": 24,
        "action_depth": 1,
    },
    {"feature_depth": 0, "action_depth": 3, "value_depth": 0, "log_std_init": -0.5},
]
LERAX_ACTION_SPACES = {
    "Discrete": lambda: lerax_space.Discrete(5),
    "Box": lambda: lerax_space.Box(-jnp.ones(3), jnp.ones(3)),
    "Box-scalar": lambda: lerax_space.Box(-2.0, 2.0),
    "MultiBinary": lambda: lerax_space.MultiBinary(4),
}
N_OBSERVATIONS = 64


def _env(action: str):
    observation = lerax_space.Box(-jnp.full(6, 3.0), jnp.full(6, 3.0))
    return types.SimpleNamespace(
        observation_space=observation, action_space=LERAX_ACTION_SPACES[action]()
    )


def _masks(action: str, rng: np.random.Generator) -> np.ndarray | None:
    if action == "Discrete":
        masks = rng.random((N_OBSERVATIONS, 5)) < 0.5
        masks[np.arange(N_OBSERVATIONS), rng.integers(0, 5, N_OBSERVATIONS)] = True
        return masks
    if action == "MultiBinary":
        return rng.random((N_OBSERVATIONS, 4)) < 0.5
    return None


def _equal(a, b) -> bool:
    """Same values (lerax's int8 actions against our int32) and same shape, bit for bit.

    Non-array leaves (the MLPs' activation functions) must be the same object.
    """
    if callable(a) or callable(b):
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.astype(np.float64), b.astype(np.float64))


CASES = [
    (action, masked)
    for action in LERAX_ACTION_SPACES
    for masked in (False, True)
    if not (masked and action.startswith("Box"))  # Box actions take no mask
]


@pytest.mark.parametrize("kwargs", ARCHITECTURES, ids=["default", "small", "deep-action"])
@pytest.mark.parametrize(("action", "masked"), CASES, ids=[f"{a}-{m}" for a, m in CASES])
def test_same_leaves_and_outputs_as_lerax(action: str, masked: bool, kwargs: dict):
    env = _env(action)
    key = jax.random.key(11)
    theirs = LeraxPolicy(env, key=key, **kwargs)
    ours = MLPActorCriticPolicy(env, key=key, **kwargs)

    their_leaves, our_leaves = jax.tree.leaves(theirs), jax.tree.leaves(ours)
    assert len(their_leaves) == len(our_leaves)
    assert all(_equal(a, b) for a, b in zip(their_leaves, our_leaves, strict=True))

    rng = np.random.default_rng(0)
    observations = rng.uniform(-3, 3, (N_OBSERVATIONS, 6)).astype(np.float32)
    masks = _masks(action, rng) if masked else None
    for i, observation in enumerate(observations):
        mask = None if masks is None else jnp.asarray(masks[i])
        sample_key = jax.random.key(100 + i)
        for method, call in [
            ("mode", lambda p, o=observation, m=mask: p(None, o, action_mask=m)[1]),
            (
                "sample",
                lambda p, o=observation, m=mask, k=sample_key: p(None, o, key=k, action_mask=m)[1],
            ),
            (
                "action_and_value",
                lambda p, o=observation, m=mask, k=sample_key: p.action_and_value(
                    None, o, key=k, action_mask=m
                )[1:],
            ),
            ("value", lambda p, o=observation: p.value(None, o)[1]),
        ]:
            got, want = call(ours), call(theirs)
            got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
            assert all(_equal(g, w) for g, w in zip(got, want, strict=True)), (method, i, got, want)
        action_taken = ours(None, observation, key=sample_key, action_mask=mask)[1]
        got = ours.evaluate_action(None, observation, action_taken, action_mask=mask)[1:]
        want = theirs.evaluate_action(None, observation, action_taken, action_mask=mask)[1:]
        assert all(_equal(g, w) for g, w in zip(got, want, strict=True)), ("evaluate", i)


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_multidiscrete_matches_lerax_distribution_maths(masked: bool):
    # lerax 0.0.5 cannot build a MultiDiscrete policy ("Field 'mapping' was not
    # initialized"), so we compare the distribution it would use on the same logits.
    nvec = (3, 4, 2)
    rng = np.random.default_rng(1)
    for i in range(N_OBSERVATIONS):
        logits = jnp.asarray(rng.normal(size=sum(nvec)).astype(np.float32))
        theirs = LeraxMultiCategorical(logits=logits, action_dims=nvec)
        ours = MultiCategorical(logits, nvec)
        if masked:
            mask = rng.random(sum(nvec)) < 0.6
            for start, n in zip(np.cumsum((0, *nvec[:-1])), nvec, strict=True):
                mask[start + rng.integers(n)] = True
            theirs, ours = theirs.mask(jnp.asarray(mask)), ours.mask(jnp.asarray(mask))
        key = jax.random.key(i)
        assert _equal(ours.mode(), theirs.mode())
        assert _equal(ours.sample(key), theirs.sample(key))
        ours_sl, theirs_sl = ours.sample_and_log_prob(key), theirs.sample_and_log_prob(key)
        assert all(_equal(a, b) for a, b in zip(ours_sl, theirs_sl, strict=True))
        value = ours.sample(key)
        assert _equal(ours.log_prob(value), theirs.log_prob(value))
        assert _equal(ours.entropy(), theirs.entropy())


def test_our_policy_builds_multidiscrete_where_lerax_cannot():
    env = types.SimpleNamespace(
        observation_space=lerax_space.Box(-jnp.ones(3), jnp.ones(3)),
        action_space=lerax_space.MultiDiscrete((3, 2)),
    )
    with pytest.raises(TypeError, match="mapping"):
        LeraxPolicy(env, key=jax.random.key(0))
    policy = MLPActorCriticPolicy(env, key=jax.random.key(0))
    action = policy(None, jnp.zeros(3))[1]
    assert action.shape == (2,)

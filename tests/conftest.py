"""Shared fixtures: one small policy per action space, built from our own spaces."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import numpy as np
import pytest

from policyport.policy import (
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
)

jax.config.update("jax_numpy_rank_promotion", "raise")

# One observation space with infinite bounds (the checks must sample finite stand-ins).
OBSERVATION = Box(
    np.array([-4.8, -np.inf, -0.42, -np.inf, 0.0, -1.0], dtype=np.float32),
    np.array([4.8, np.inf, 0.42, np.inf, np.inf, 1.0], dtype=np.float32),
)
ACTION_SPACES: dict[str, Callable[[], object]] = {
    "Box": lambda: Box(-np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float32)),
    "Discrete": lambda: Discrete(5),
    "MultiDiscrete": lambda: MultiDiscrete((3, 4, 2)),
    "MultiBinary": lambda: MultiBinary(4),
}
MASKABLE = ("Discrete", "MultiDiscrete", "MultiBinary")


def make_policy(action: str, seed: int = 0, **kwargs) -> MLPActorCriticPolicy:
    env = SpacesEnv(OBSERVATION, ACTION_SPACES[action]())
    return MLPActorCriticPolicy(env, key=jax.random.key(seed), **kwargs)


@pytest.fixture
def getkey() -> Callable[[], jax.Array]:
    counter = itertools.count()
    return lambda: jax.random.key(next(counter))


@pytest.fixture(params=list(ACTION_SPACES))
def any_policy(request) -> MLPActorCriticPolicy:
    return make_policy(request.param)

"""Properties over random architectures, spaces and masks (hypothesis, derandomized).

- Every drawn policy exports to ONNX with parity.
- A mask with at least one legal action (per block for MultiDiscrete) never yields an
  illegal action: in onnxruntime for every example, in ort and stablehlo for a few, and in
  TensorFlow (SavedModel) for two, since saving one is slow.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policyport
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import (
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
)

PROFILE = {
    "derandomize": True,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
BOUND = st.sampled_from([1.0, 5.0, np.inf])

observation_spaces = st.builds(
    lambda shape, low, high: Box(
        np.full(shape, -low, dtype=np.float32), np.full(shape, high, dtype=np.float32)
    ),
    st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    BOUND,
    BOUND,
)
action_spaces = st.one_of(
    st.integers(1, 7).map(Discrete),
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(lambda n: MultiDiscrete(tuple(n))),
    st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 3), st.integers(1, 3))).map(MultiBinary),
    st.lists(st.integers(1, 3), max_size=2).map(
        lambda shape: Box(-np.ones(shape, np.float32), np.ones(shape, np.float32))
    ),
)
architectures = st.fixed_dictionaries(
    {
        "feature_size": st.integers(1, 8),
        "feature_width": st.integers(1, 8),
        "feature_depth": st.integers(0, 2),
        "value_width": st.integers(1, 8),
        "value_depth": st.integers(0, 2),
        "action_width": st.integers(1, 8),
        "action_depth": st.integers(0, 3),
    }
)


@st.composite
def policies(draw) -> MLPActorCriticPolicy:
    env = SpacesEnv(draw(observation_spaces), draw(action_spaces))
    key = jax.random.key(draw(st.integers(0, 2**16)))
    return MLPActorCriticPolicy(env, key=key, **draw(architectures))


def _blocks(space) -> list[tuple[int, int]]:
    if isinstance(space, Discrete):
        return [(0, space.n)]
    bounds = np.concatenate([[0], np.cumsum(space.nvec)]).tolist()
    return list(itertools.pairwise(bounds))


def _legal_masks(space, seed: int, rows: int = 256) -> np.ndarray:
    """Random masks, sparse ones included, with at least one legal action per block."""
    rng = np.random.default_rng(seed)
    density = rng.choice([0.05, 0.3, 0.7], size=(rows, 1))
    masks = rng.random((rows, space.mask_size)) < density
    if isinstance(space, MultiBinary):
        return masks  # any mask is legal for MultiBinary: masked bits must be 0
    for start, stop in _blocks(space):
        empty = ~masks[:, start:stop].any(axis=1)
        masks[np.flatnonzero(empty), rng.integers(start, stop, size=rows)[empty]] = True
    return masks


def _illegal_rows(space, action: np.ndarray, masks: np.ndarray) -> int:
    rows = np.arange(len(masks))
    if isinstance(space, Discrete):
        return int((~masks[rows, action.reshape(-1)]).sum())
    if isinstance(space, MultiDiscrete):
        starts = np.array([s for s, _ in _blocks(space)])
        chosen = masks[rows[:, None], starts[None, :] + action.reshape(len(masks), -1)]
        return int((~chosen.all(axis=1)).sum())
    bits = action.reshape(len(masks), -1).astype(bool)
    return int((bits & ~masks).any(axis=1).sum())


def _assert_masks_respected(policy, artifact, format: str, seed: int) -> None:
    space = policy.action_space
    if space.mask_size is None:
        return
    rows = 256
    masks = _legal_masks(space, seed, rows)
    observation = np.asarray(
        jax.vmap(lambda k: policy.observation_space.sample(key=k))(
            jax.random.split(jax.random.key(seed), rows)
        ),
        dtype=np.float32,
    )
    run = RUNTIMES[FORMATS[format].runtime].load(artifact)
    outputs = run({"observation": observation, "action_mask": masks})
    assert _illegal_rows(space, np.asarray(outputs["action"]), masks) == 0


@settings(max_examples=30, **PROFILE)
@given(policy=policies(), seed=st.integers(0, 1000))
def test_random_policies_export_to_onnx_with_parity_and_legal_actions(tmp_path, policy, seed):
    path = tmp_path / f"p{seed}.onnx"
    [result] = policyport.export(policy, "onnx", path, force=True, seed=seed)
    assert result.report.passed, result.report.to_table()
    _assert_masks_respected(policy, path, "onnx", seed)


@settings(max_examples=6, **PROFILE)
@given(policy=policies(), seed=st.integers(0, 1000))
def test_masks_are_respected_in_ort_and_stablehlo(tmp_path, policy, seed):
    for format in ("ort", "stablehlo"):
        path = tmp_path / f"p{seed}{FORMATS[format].suffix}"
        [result] = policyport.export(policy, format, path, force=True, seed=seed)
        assert result.report.passed, result.report.to_table()
        _assert_masks_respected(policy, path, format, seed)


@settings(max_examples=2, **PROFILE)
@given(
    policy=policies().filter(lambda p: p.action_space.mask_size is not None),
    seed=st.integers(0, 1000),
)
def test_masks_are_respected_in_savedmodel(tmp_path, policy, seed):
    pytest.importorskip("tensorflow")
    path = tmp_path / f"p{seed}.savedmodel"
    [result] = policyport.export(policy, "savedmodel", path, force=True, seed=seed)
    assert result.report.passed, result.report.to_table()
    _assert_masks_respected(policy, path, "savedmodel", seed)

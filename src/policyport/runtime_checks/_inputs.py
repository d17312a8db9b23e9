"""Inputs for parity checks: observations from the space, random masks, all-False rows."""

from __future__ import annotations

import numpy as np

from ..exporters._contract import input_specs
from ..policy import AbstractSpace, Box, Discrete, MLPActorCriticPolicy, MultiBinary, MultiDiscrete

# A check's batch sizes: one observation, and a batch large enough to expose rare rows.
DEFAULT_BATCH_SIZES = (1, 4096)
# Every large batch holds this many rows whose mask is all False.
ALL_FALSE_ROWS = 8


def random_masks(policy: MLPActorCriticPolicy, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Random masks with at least one legal action per row (per block for MultiDiscrete)."""
    space = policy.action_space
    size = space.mask_size
    masks = rng.random((batch, size)) < 0.5
    if isinstance(space, Discrete):
        blocks = [(0, space.n)]
    elif isinstance(space, MultiDiscrete):
        bounds = np.concatenate([[0], np.cumsum(space.nvec)])
        blocks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    elif isinstance(space, MultiBinary):
        return masks  # any mask is legal: masked bits are simply 0
    else:
        raise TypeError(f"{type(space).__name__} takes no mask")
    for start, stop in blocks:
        empty = ~masks[:, start:stop].any(axis=1)
        forced = rng.integers(start, stop, size=batch)
        masks[np.flatnonzero(empty), forced[empty]] = True
    return masks


def sample_observations(space: AbstractSpace, rng: np.random.Generator, batch: int) -> np.ndarray:
    """`batch` observations from `space`, as float32, finite everywhere.

    The same distributions as the space's own sampler (uniform between finite bounds,
    exponential tails from a single bound, normal where unbounded), drawn with numpy:
    the JAX sampler, vmapped over thousands of keys, takes seconds to compile.
    """
    shape = (batch, *space.shape)
    if isinstance(space, Box):
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        below, above = np.isfinite(low), np.isfinite(high)
        bounded = np.where(below & above, high - low, 0.0)
        uniform = np.where(below & above, low, 0.0) + rng.random(shape) * bounded
        values = np.where(
            below & above,
            uniform,
            np.where(
                below,
                low + rng.exponential(size=shape),
                np.where(above, high - rng.exponential(size=shape), rng.normal(size=shape)),
            ),
        )
    elif isinstance(space, Discrete):
        values = rng.integers(0, space.n, size=shape)
    elif isinstance(space, MultiDiscrete):
        values = rng.integers(0, np.asarray(space.nvec), size=shape)
    else:
        values = rng.integers(0, 2, size=shape)
    return values.astype(np.float32)


def sample_inputs(
    policy: MLPActorCriticPolicy, *, seed: int, batch: int, all_false_rows: int = 0
) -> dict[str, np.ndarray]:
    """A batch of inputs named as the contract says.

    Observations follow `sample_observations`. The first `all_false_rows` rows of the
    mask, if any, are all False.
    """
    rng = np.random.default_rng(seed)
    inputs = {"observation": sample_observations(policy.observation_space, rng, batch)}
    if len(input_specs(policy)) == 2:
        masks = random_masks(policy, rng, batch)
        masks[: min(all_false_rows, batch)] = False
        inputs["action_mask"] = masks
    return inputs


def check_batches(
    policy: MLPActorCriticPolicy, *, seed: int, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
) -> list[dict[str, np.ndarray]]:
    """One input batch per size; batches larger than 1 include all-False mask rows."""
    return [
        sample_inputs(policy, seed=seed + i, batch=b, all_false_rows=ALL_FALSE_ROWS if b > 1 else 0)
        for i, b in enumerate(batch_sizes)
    ]

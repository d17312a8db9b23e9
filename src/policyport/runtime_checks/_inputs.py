"""Inputs for parity checks: observations from the space, random masks, all-False rows."""

from __future__ import annotations

import jax
import numpy as np

from ..exporters._contract import input_specs
from ..policy import Discrete, MLPActorCriticPolicy, MultiBinary, MultiDiscrete

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


def sample_inputs(
    policy: MLPActorCriticPolicy, *, seed: int, batch: int, all_false_rows: int = 0
) -> dict[str, np.ndarray]:
    """A batch of inputs named as the contract says.

    Observations come from the observation space's sampler (finite everywhere: infinite
    bounds are sampled from normal or exponential tails). The first `all_false_rows` rows
    of the mask, if any, are all False.
    """
    key = jax.random.key(seed)
    keys = jax.random.split(key, batch)
    sample = jax.vmap(lambda k: policy.observation_space.sample(key=k))
    observation = np.asarray(sample(keys), dtype=np.float32)
    inputs = {"observation": observation.reshape(batch, *policy.observation_space.shape)}
    if len(input_specs(policy)) == 2:
        masks = random_masks(policy, np.random.default_rng(seed), batch)
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

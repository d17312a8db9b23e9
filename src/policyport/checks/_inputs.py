"""Inputs for parity checks: observations from the space, random masks, all-False rows."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from ..policy import HUGE_BOUND
from ..tracing import NOISE, RESET, TracedPolicy, numpy_dtype, trace

# A check's batch sizes: one observation, and a batch large enough to expose rare rows.
DEFAULT_BATCH_SIZES = (1, 4096)
# The large batch shrinks for big observations (camera frames): it holds at most this many
# bytes of observations (rounded down to a power of two rows), and never fewer than
# MIN_LARGE_BATCH rows. A vector observation keeps 4096 rows; an 84x84x4 uint8 frame
# (28,224 bytes) gets 256, which the JAX reference and the runtime both run in about a
# second on one core (docs/artifact.md, "What the check runs").
LARGE_BATCH_BYTES = 8 << 20
MIN_LARGE_BATCH = 64
# Every large batch holds this many rows whose mask is all False.
ALL_FALSE_ROWS = 8
# How check inputs are drawn, as the report prints it (docs/artifact.md says the same).
INPUT_RULE = (
    "observations uniform between Box bounds; a bound that is infinite or beyond "
    f"{HUGE_BOUND:g} in magnitude (e.g. float32's max, gymnasium's 'unbounded') counts as "
    "absent: exponential tail from the other bound, normal if neither; integer Boxes "
    "(uint8 frames) uniform over their integers, bounds included, and at their bounds in "
    "the stress rows; masks random with a legal entry per block, plus "
    f"{ALL_FALSE_ROWS} all-False rows per large batch; the large batch "
    f"{DEFAULT_BATCH_SIZES[-1]} rows, fewer for observations over "
    f"{LARGE_BATCH_BYTES // DEFAULT_BATCH_SIZES[-1]} bytes (at most {LARGE_BATCH_BYTES >> 20} "
    f"MiB of them, at least {MIN_LARGE_BATCH} rows); "
    "recurrent: states uniform in [-1, 1], a quarter of the rows reset"
)


def observation_bytes(traced: TracedPolicy) -> int:
    """The bytes of one observation, as the artifact takes it (all its leaves)."""
    return sum(
        math.prod(s.shape) * numpy_dtype(s.dtype).itemsize for s in traced.observation_inputs
    )


def rows_for(traced: TracedPolicy, most: int, budget: int, least: int) -> int:
    """`most` rows, or as many as `budget` bytes of observations hold (a power of two, at
    least `least`)."""
    fits = max(budget // max(observation_bytes(traced), 1), 1)
    if fits >= most:
        return most
    return max(least, 1 << (fits.bit_length() - 1))


def batch_sizes_for(traced: TracedPolicy) -> tuple[int, ...]:
    """One observation, and the large batch sized for the observation's bytes."""
    large = rows_for(traced, DEFAULT_BATCH_SIZES[-1], LARGE_BATCH_BYTES, MIN_LARGE_BATCH)
    return (*DEFAULT_BATCH_SIZES[:-1], large)


def sample_inputs(
    policy: Any, *, seed: int, batch: int, all_false_rows: int = 0
) -> dict[str, np.ndarray]:
    """A batch of inputs named as the contract says.

    Each observation leaf is drawn from its space with numpy (`AbstractSpace.sample_numpy`);
    masks have a legal entry in every block, except the first `all_false_rows` rows, which
    are all False.
    """
    traced = trace(policy)
    rng = np.random.default_rng(seed)
    inputs = {
        name: space.sample_numpy(rng, batch) for name, space in traced.observation_space.leaves()
    }
    if traced.description.mask_input:
        masks = traced.action_space.random_masks(rng, batch)
        masks[: min(all_false_rows, batch)] = False
        inputs["action_mask"] = masks
    if traced.state is not None:
        # States near where a carried one lives (a GRU's in [-1, 1]); a quarter of the
        # rows reset to the initial state.
        for spec in traced.state.inputs:
            inputs[spec.name] = rng.uniform(-1, 1, (batch, *spec.shape)).astype(np.float32)
        inputs[RESET] = rng.random(batch) < 0.25
    if traced.sampling is not None:
        # One key per row, its noise drawn by jax.random as the policy draws it.
        keys = jax.random.split(jax.random.key(seed), batch)
        inputs[NOISE] = traced.sampling.noise_batch(jax.random.key_data(keys))
    return inputs


def check_batches(
    traced: TracedPolicy, *, seed: int, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
) -> list[dict[str, np.ndarray]]:
    """One input batch per size; batches larger than 1 include all-False mask rows."""
    return [
        sample_inputs(traced, seed=seed + i, batch=b, all_false_rows=ALL_FALSE_ROWS if b > 1 else 0)
        for i, b in enumerate(batch_sizes)
    ]

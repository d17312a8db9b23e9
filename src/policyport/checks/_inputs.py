"""Inputs for parity checks: observations from the space, random masks, all-False rows."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..policy import HUGE_BOUND
from ..tracing import NOISE, RESET, TracedPolicy, trace

# A check's batch sizes: one observation, and a batch large enough to expose rare rows.
DEFAULT_BATCH_SIZES = (1, 4096)
# Every large batch holds this many rows whose mask is all False.
ALL_FALSE_ROWS = 8
# How check inputs are drawn, as the report prints it (docs/artifact.md says the same).
INPUT_RULE = (
    "observations uniform between Box bounds; a bound that is infinite or beyond "
    f"{HUGE_BOUND:g} in magnitude (e.g. float32's max, gymnasium's 'unbounded') counts as "
    "absent: exponential tail from the other bound, normal if neither; masks random with a "
    f"legal entry per block, plus {ALL_FALSE_ROWS} all-False rows per large batch; "
    "recurrent: states uniform in [-1, 1], a quarter of the rows reset"
)


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

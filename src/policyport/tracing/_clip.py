"""`clip_actions`: Box actions clipped to the action space's finite bounds inside the artifact.

lerax (like most RL libraries) returns unclipped Gaussian samples and leaves clipping to
the environment; an artifact exported with `clip_actions=True` returns what a `ClipAction`
wrapper would pass on. Infinite bounds (and bounds beyond `HUGE_BOUND`, gymnasium's
"unbounded" float32 max) clip nothing. The log-probability stays the unclipped sample's,
as in lerax's rollouts.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._errors import InputError
from ..policy import HUGE_BOUND, AbstractSpace, Box


def action_clipper(space: AbstractSpace) -> Callable[[Array], Array]:
    """A function clipping an action (the contract's layout) to `space`'s finite bounds."""
    if not isinstance(space, Box):
        raise InputError(
            f"--clip-actions (clip_actions=True) clips Box actions; this policy's action space "
            f"is {space!r}. Export without it."
        )
    low, high = clip_bounds(space)
    if not np.isfinite(low).any() and not np.isfinite(high).any():
        raise InputError(
            f"--clip-actions (clip_actions=True) has nothing to clip to: every bound of the "
            f"action space {space!r} is infinite. Export without it."
        )
    return lambda action: jnp.clip(action, low.reshape(action.shape), high.reshape(action.shape))


def clip_bounds(space: Box) -> tuple[np.ndarray, np.ndarray]:
    """The bounds clipped to, float32, with absent ones (infinite or huge) as infinities."""
    low = np.asarray(space.low, np.float32)
    high = np.asarray(space.high, np.float32)
    low = np.where(np.abs(low) > HUGE_BOUND, -np.inf, low).astype(np.float32)
    high = np.where(np.abs(high) > HUGE_BOUND, np.inf, high).astype(np.float32)
    return low, high

"""`sampling_noise`: the `noise` input an artifact exported with `sample=True` takes for a key."""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Array, ArrayLike

from .tracing import trace


def sampling_noise(policy: Any, key: Array, action_mask: ArrayLike | None = None) -> np.ndarray:
    """The noise `policy(None, observation, key=key, action_mask=action_mask)` draws.

    Fed to the artifact as `noise` (float32 `[noise_size]`, one row per observation), it
    gives that call's action for any observation, and its log-probability. The noise does
    not depend on the observation or the mask (they are never read; the mask is accepted
    so the call reads like the policy's). `policy` is a policy or `trace(policy,
    sample=True)`; tracing takes a second or so, so pass the trace when calling often.
    """
    del action_mask
    sampling = trace(policy, sample=True).sampling
    assert sampling is not None  # sample=True always traces the sampling path
    return sampling.noise(key)

"""What the JAX policy computes for a batch: the expected outputs and decision margins."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import on_reference_backend, reference_device
from ..tracing import TracedPolicy, numpy_dtype, trace
from ._compiled import run_compiled


@functools.lru_cache(maxsize=8)
def _batched_with_margins(traced: TracedPolicy):
    """Outputs and margins of a policy with a sampling path, compiled per trace (the
    per-architecture cache in `_compiled.py` covers the deterministic outputs only)."""

    def row(*inputs):
        outputs = traced.forward(*inputs)
        margins = traced.margins(*inputs) if traced.margins is not None else jnp.zeros(0)
        sampling = traced.sampling
        if sampling is not None and sampling.margins is not None:
            margins = jnp.concatenate([margins, sampling.margins(*inputs)])
        return outputs, margins

    return jax.jit(jax.vmap(row))


@on_reference_backend
def reference_and_margins(
    traced: TracedPolicy, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The JAX policy's outputs (contract dtypes) and, for discrete actions, margins
    `[batch, action components]` (with sampling: `[batch, 2 * action components]`, the
    sampled action's after the action's)."""
    arrays = [jax.device_put(inputs[name], reference_device()) for name in traced.input_names]
    if traced.sampling is None:
        outputs, margins = run_compiled(traced, "outputs_and_margins", arrays)
    else:
        outputs, margins = _batched_with_margins(traced)(*arrays)
    expected = {
        spec.name: np.asarray(out).astype(numpy_dtype(spec.dtype))
        for spec, out in zip(traced.outputs, outputs, strict=True)
    }
    return expected, np.asarray(margins) if traced.margins is not None else None


def reference_outputs(policy: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The JAX policy's outputs (a policy or its trace), in the contract's dtypes."""
    return reference_and_margins(trace(policy), inputs)[0]

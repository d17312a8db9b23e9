"""What the JAX policy computes for a batch: the expected outputs and decision margins."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from ..tracing import TracedPolicy, numpy_dtype, trace
from ._compiled import run_compiled


def reference_and_margins(
    traced: TracedPolicy, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The JAX policy's outputs (contract dtypes) and, for discrete actions, margins
    `[batch, action components]`."""
    arrays = [jnp.asarray(inputs[name]) for name in traced.input_names]
    outputs, margins = run_compiled(traced, "outputs_and_margins", arrays)
    expected = {
        spec.name: np.asarray(out).astype(numpy_dtype(spec.dtype))
        for spec, out in zip(traced.outputs, outputs, strict=True)
    }
    return expected, np.asarray(margins) if traced.margins is not None else None


def reference_outputs(policy: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The JAX policy's outputs (a policy or its trace), in the contract's dtypes."""
    return reference_and_margins(trace(policy), inputs)[0]

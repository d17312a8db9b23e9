"""Where the JAX reference runs: the CPU backend, float32 matmuls at full precision.

Users who train on a GPU export from the same process. There, JAX's float32 matmuls
default to reduced precision (TF32 on recent NVIDIA cards, ~1e-3 relative), and a
reference computed on it would fail a 1e-5 parity check for reasons that are not the
artifact's. Every runtime we check in computes float32 on the CPU; so does the reference,
whatever backend and matmul precision the user's JAX defaults to.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import jax

# jax.default_matmul_precision's name for full float32 (`highest`).
MATMUL_PRECISION = "float32"

P = ParamSpec("P")
R = TypeVar("R")


def reference_device() -> jax.Device:
    """The device every reference computation runs on: the first CPU device."""
    return jax.devices("cpu")[0]


def to_reference_device(tree: Any) -> Any:
    """`tree` with every JAX array leaf on the reference device (copied where it was not)."""
    device = reference_device()

    def elsewhere(leaf: Any) -> bool:
        return isinstance(leaf, jax.Array) and leaf.devices() != {device}

    if not any(elsewhere(leaf) for leaf in jax.tree.leaves(tree)):
        return tree  # the common case: the object itself, not a rebuilt copy
    return jax.tree.map(
        lambda leaf: jax.device_put(leaf, device) if elsewhere(leaf) else leaf, tree
    )


@contextmanager
def reference_backend() -> Iterator[jax.Device]:
    """Inside: new arrays and jitted computations on the CPU, matmuls at full precision."""
    device = reference_device()
    with jax.default_device(device), jax.default_matmul_precision(MATMUL_PRECISION):
        yield device


def on_reference_backend(function: Callable[P, R]) -> Callable[P, R]:
    """`function`, run inside `reference_backend()`."""

    @functools.wraps(function)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with reference_backend():
            return function(*args, **kwargs)

    return wrapped


def describe_reference() -> str:
    """The reference's backend and precision, as the parity report states them."""
    device = reference_device()
    return (
        f"JAX {jax.__version__} on the {device.platform} backend ({device}), float32 "
        "matmuls at full precision, whatever the default backend and precision"
    )

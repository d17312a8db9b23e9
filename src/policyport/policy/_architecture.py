"""Closed forms of the policy classes policyport knows: their limits and leaf byte counts.

A header (or a lerax file's env and kwargs) is data anyone can write, and building a policy
costs time in its depth even when its arrays are empty: a header asking for
`"feature_depth": 100000` took 107 s to refuse. So the numbers are bounded, and the bytes
equinox writes for them computed, from the numbers alone, before anything is built.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._spaces import AbstractSpace, Box, Discrete, MultiBinary, MultiDiscrete

MAX_DEPTH = 64  # hidden layers of each MLP (action_depth counts the head: at most 65)
MAX_WIDTH = 1 << 16  # hidden widths and feature_size
MAX_SPACE_SIZE = 1 << 24  # elements of a flat observation, or action outputs
MAX_PARAMETERS = 1 << 28  # float32 weights in all (1 GiB)

# `(shape, count)` pairs: `count` float32 arrays of `shape`.
Arrays = list[tuple[tuple[int, ...], int]]


def is_int(value: Any, low: int, high: int) -> bool:
    """An int (not a bool) in `low..high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def npy_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """How many bytes `np.save` writes for an array of `shape` and `dtype`."""
    dtype = np.dtype(dtype)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape},
    )
    return len(header.getvalue()) + math.prod(shape) * dtype.itemsize


def expected_bytes(template: Any, written_by_lerax: bool) -> int:
    """The size of the leaves equinox writes for `template` (a tree of shapes).

    lerax's `serialize` runs inside `jax.debug.callback`, so its files store the Python
    ints, floats and bools of a policy (e.g. a Discrete space's `n`) as JAX arrays.
    """
    total = 0
    for leaf in jax.tree.leaves(template):
        if isinstance(leaf, jax.ShapeDtypeStruct | jax.Array | np.ndarray):
            total += npy_bytes(tuple(leaf.shape), leaf.dtype)
        elif isinstance(leaf, bool | int | float):
            total += npy_bytes((), _scalar_dtype(type(leaf), written_by_lerax))
    return total


def _scalar_dtype(kind: type, written_by_lerax: bool) -> np.dtype:
    """The dtype a Python scalar of type `kind` is stored as."""
    return jnp.asarray(kind()).dtype if written_by_lerax else np.asarray(kind()).dtype


def mlp_arrays(in_size: int, out_size: int, width: int, depth: int) -> Arrays:
    """The weights and biases of `eqx.nn.MLP(in_size, out_size, width, depth)`."""
    if depth == 0:
        return [((out_size, in_size), 1), ((out_size,), 1)]
    return [
        ((width, in_size), 1),
        ((width,), 1),
        ((width, width), depth - 1),
        ((width,), depth - 1),
        ((out_size, width), 1),
        ((out_size,), 1),
    ]


def _action_outputs(space: AbstractSpace) -> int:
    """How many numbers the action head's last layer outputs for `space`."""
    if isinstance(space, Discrete):
        return space.n
    if isinstance(space, MultiDiscrete):
        return sum(space.nvec)
    if isinstance(space, Box | MultiBinary):
        return space.flat_size
    raise ValueError(f"no action head for a {type(space).__name__} action space")


@dataclass(frozen=True)
class Architecture:
    """One class's closed form.

    - `limits`: each size kwarg and its largest legal value (the smallest is 0).
    - `action_problem(action_space)`: why the class cannot act in that space, or None.
    - `action_outputs(action_space)`: the numbers its last layer outputs.
    - `arrays(observation_space, action_space, kwargs)`: every float32 array but the
      spaces' own.
    - `scalars(action_space, kwargs)`: the types of the Python scalar leaves.
    """

    limits: Mapping[str, int]
    action_problem: Callable[[AbstractSpace], str | None]
    action_outputs: Callable[[AbstractSpace], int]
    arrays: Callable[[AbstractSpace, AbstractSpace, Mapping[str, Any]], Arrays]
    scalars: Callable[[AbstractSpace, Mapping[str, Any]], list[type]]


def _actor_critic_action_problem(space: AbstractSpace) -> str | None:
    if isinstance(space, Box | Discrete | MultiBinary | MultiDiscrete):
        return None
    return f"no action head for a {type(space).__name__} action space"


def _actor_critic_arrays(
    observation_space: AbstractSpace, action_space: AbstractSpace, sizes: Mapping[str, Any]
) -> Arrays:
    """`MLPActorCriticPolicy`: encoder, value head, action head (+ log_std for a Box)."""
    feature = sizes["feature_size"]
    outputs = _action_outputs(action_space)
    scalar_box = isinstance(action_space, Box) and action_space.shape == ()
    return [
        *mlp_arrays(
            observation_space.flat_size, feature, sizes["feature_width"], sizes["feature_depth"]
        ),
        *mlp_arrays(feature, 1, sizes["value_width"], sizes["value_depth"]),
        *mlp_arrays(feature, feature, sizes["action_width"], max(0, sizes["action_depth"] - 1)),
        ((outputs, feature), 1),
        ((outputs,), 1),
        (() if scalar_box else (outputs,), 1 if isinstance(action_space, Box) else 0),
    ]


def _actor_critic_scalars(space: AbstractSpace, sizes: Mapping[str, Any]) -> list[type]:
    """The Python scalars the action head keeps as leaves (sizes, the scalar flag)."""
    if isinstance(space, Box):
        return [bool]
    if isinstance(space, MultiBinary):
        return [int] * len(space.shape)
    if isinstance(space, MultiDiscrete):
        return [int] * (len(space.nvec) + 1)
    return []


def _q_action_problem(space: AbstractSpace) -> str | None:
    if isinstance(space, Discrete):
        return None
    return f"MLPQPolicy needs a Discrete action space, found a {type(space).__name__}"


def _q_outputs(space: AbstractSpace) -> int:
    """`MLPQPolicy`'s Q-values: one per action of its Discrete space."""
    assert isinstance(space, Discrete)  # _q_action_problem refused any other
    return space.n


def _q_arrays(
    observation_space: AbstractSpace, action_space: AbstractSpace, kwargs: Mapping[str, Any]
) -> Arrays:
    """`MLPQPolicy`: one MLP from the flat observation to one Q-value per action."""
    return mlp_arrays(
        observation_space.flat_size, _q_outputs(action_space), kwargs["width_size"], kwargs["depth"]
    )


def _q_scalars(space: AbstractSpace, kwargs: Mapping[str, Any]) -> list[type]:
    """`epsilon` is a leaf, stored as the Python scalar it was given as."""
    return [type(kwargs["epsilon"])]


ARCHITECTURES: dict[str, Architecture] = {
    "MLPActorCriticPolicy": Architecture(
        limits={
            "feature_size": MAX_WIDTH,
            "feature_width": MAX_WIDTH,
            "feature_depth": MAX_DEPTH,
            "value_width": MAX_WIDTH,
            "value_depth": MAX_DEPTH,
            "action_width": MAX_WIDTH,
            "action_depth": MAX_DEPTH + 1,
        },
        action_problem=_actor_critic_action_problem,
        action_outputs=_action_outputs,
        arrays=_actor_critic_arrays,
        scalars=_actor_critic_scalars,
    ),
    "MLPQPolicy": Architecture(
        limits={"width_size": MAX_WIDTH, "depth": MAX_DEPTH},
        action_problem=_q_action_problem,
        action_outputs=_q_outputs,
        arrays=_q_arrays,
        scalars=_q_scalars,
    ),
}


def architecture_problem(
    class_name: str,
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    kwargs: Mapping[str, Any],
) -> str | None:
    """What makes this architecture illegal, from its numbers alone, or None."""
    architecture = ARCHITECTURES[class_name]
    problem = architecture.action_problem(action_space)
    if problem is not None:
        return problem
    for name, high in architecture.limits.items():
        value = kwargs.get(name)
        if not is_int(value, 0, high):
            return f"{name} must be an integer in 0..{high}, found {value!r:.40}"
    sizes = {
        "observation": observation_space.flat_size,
        "action": architecture.action_outputs(action_space),
    }
    for name, size in sizes.items():
        if size > MAX_SPACE_SIZE:
            return f"the {name} space has {size} elements; the limit is {MAX_SPACE_SIZE}"
    arrays = architecture.arrays(observation_space, action_space, kwargs)
    parameters = sum(math.prod(shape) * count for shape, count in arrays)
    if parameters > MAX_PARAMETERS:
        return f"{parameters} weights in all; the limit is {MAX_PARAMETERS}"
    return None


def expected_leaf_bytes(
    class_name: str,
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    kwargs: Mapping[str, Any],
    *,
    written_by_lerax: bool = False,
) -> int:
    """The bytes equinox writes for this architecture, in closed form (nothing is built).

    Call only when `architecture_problem` found none. Cross-checked against
    `expected_bytes` of the built policy in tests/test_loader.py.
    """
    architecture = ARCHITECTURES[class_name]
    spaces = expected_bytes((observation_space, action_space), written_by_lerax)
    arrays = architecture.arrays(observation_space, action_space, kwargs)
    weights = sum(npy_bytes(shape, np.float32) * count for shape, count in arrays)
    scalars = sum(
        npy_bytes((), _scalar_dtype(kind, written_by_lerax))
        for kind in architecture.scalars(action_space, kwargs)
    )
    return spaces + weights + scalars


def limits(class_name: str) -> str:
    """The class's limits, for error messages."""
    sizes = ", ".join(f"{k} <= {v}" for k, v in ARCHITECTURES[class_name].limits.items())
    return f"{sizes}, spaces of <= {MAX_SPACE_SIZE} elements, <= {MAX_PARAMETERS} weights"

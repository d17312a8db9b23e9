"""A recurrent policy's state: its initial value, its leaves as named inputs and outputs.

lerax's protocol gives every policy `reset(*, key) -> state`; a stateless policy returns
None. A recurrent one returns a pytree of arrays, carried from step to step. The artifact
takes the state's leaves as inputs (`state`, or `state.<path>` per leaf), a `reset` input
whose rows start from the initial state instead (selected inside the graph, so no
consumer has to know it), and returns `next_state` / `next_state.<path>` (contract 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var
from jaxtyping import Array

from .._errors import InputError, UnsupportedError
from ._contract import NEXT_STATE, RESET, STATE, TensorSpec

# Up to this many elements (all leaves together) the metadata holds the initial state's
# values; beyond, `initial` is null (the graph still holds them; reset rows get them).
INLINE_INITIAL_ELEMENTS = 16_384

_KEY_DEPENDENT = (
    "{cls}.reset(key=...) draws the initial state from the key, so the artifact's initial "
    "state would depend on a key nobody chose. Pass --reset-seed N (Python `reset_seed=N`) "
    "to bake in the state `reset(key=jax.random.key(N))` gives; the seed is recorded in the "
    "metadata (`policyport.state`)."
)


@dataclass(frozen=True)
class State:
    """The initial state (leaves as numpy arrays), its tree structure and the leaves' names."""

    initial: tuple[np.ndarray, ...]
    treedef: Any
    inputs: tuple[TensorSpec, ...]
    reset_seed: int | None

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(NEXT_STATE + s.name[len(STATE) :], s.shape, s.dtype) for s in self.inputs
        )

    @property
    def reset(self) -> TensorSpec:
        return TensorSpec(RESET, (), "bool")

    def unflatten(self, leaves: list[Any]) -> Any:
        return jax.tree.unflatten(self.treedef, leaves)

    def select(self, reset: Array, leaves: list[Array]) -> Any:
        """The state a step starts from: the initial one where `reset`, else the given."""
        chosen = [
            jnp.where(reset, jnp.asarray(init), leaf)
            for init, leaf in zip(self.initial, leaves, strict=True)
        ]
        return self.unflatten(chosen)

    def flatten_next(self, policy: Any, next_state: Any) -> list[Array]:
        """The step's returned state as the contract's leaves, checked against the input's."""
        leaves, treedef = jax.tree.flatten(next_state)
        if treedef != self.treedef:
            raise UnsupportedError(
                f"{type(policy).__name__}'s __call__ returns a state of structure {treedef}, "
                f"but reset gives {self.treedef}: the state must keep its structure from step "
                "to step."
            )
        out = []
        for spec, leaf in zip(self.inputs, leaves, strict=True):
            leaf = jnp.asarray(leaf)
            if tuple(leaf.shape) != spec.shape or leaf.dtype != jnp.float32:
                raise UnsupportedError(
                    f"{type(policy).__name__}'s __call__ returns {spec.name} as "
                    f"{leaf.dtype}{list(leaf.shape)}, but reset gives float32{list(spec.shape)}:"
                    " each state leaf must keep its shape and dtype from step to step."
                )
            out.append(leaf)
        return out

    def to_json(self) -> dict[str, Any]:
        size = sum(int(a.size) for a in self.initial)
        inline = size <= INLINE_INITIAL_ELEMENTS
        return {
            "reset": RESET,
            "reset_seed": self.reset_seed,
            "leaves": [
                {
                    "input": i.name,
                    "output": o.name,
                    "shape": list(i.shape),
                    "dtype": i.dtype,
                    "initial": a.tolist() if inline else None,
                }
                for i, o, a in zip(self.inputs, self.outputs, self.initial, strict=True)
            ],
        }


def _path_name(path: tuple[Any, ...]) -> str:
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def _depends_on_key(reset: Any) -> bool:
    closed = jax.make_jaxpr(lambda k: jax.tree.leaves(reset(key=k)))(jax.random.key(0))
    key = closed.jaxpr.invars[0]
    used = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
    return key in used or key in closed.jaxpr.outvars


def initial_state(policy: Any, reset_seed: int | None) -> State | None:
    """The policy's state, or None when it is stateless (no `reset`, or it returns None).

    A `reset` that draws from its key is refused unless `reset_seed` is given.
    """
    reset = getattr(policy, "reset", None)
    if not callable(reset):
        return None
    try:
        shape = jax.eval_shape(lambda: reset(key=jax.random.key(0)))
    except TypeError:
        return None  # a reset with another signature is not lerax's: nothing to learn from it
    if shape is None or not jax.tree.leaves(shape):
        return None
    cls = type(policy).__name__
    if reset_seed is None and _depends_on_key(reset):
        raise InputError(_KEY_DEPENDENT.format(cls=cls))
    key = jax.random.key(0 if reset_seed is None else reset_seed)
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(reset(key=key))
    inputs, initial = [], []
    for path, leaf in paths_leaves:
        value = np.asarray(leaf)
        name = STATE if not path and len(paths_leaves) == 1 else f"{STATE}.{_path_name(path)}"
        if value.dtype != np.float32:
            raise UnsupportedError(
                f"{cls}.reset gives the state leaf {name} as {value.dtype}; policyport exports "
                "float32 states (cast the state, e.g. `.astype(jnp.float32)`)."
            )
        inputs.append(TensorSpec(name, tuple(value.shape), "float32"))
        initial.append(value)
    if len(set(s.name for s in inputs)) != len(inputs):
        raise UnsupportedError(f"{cls}.reset's state leaves have clashing names: {inputs}.")
    return State(tuple(initial), treedef, tuple(inputs), reset_seed)


def check_reset_seed(reset_seed: int | None) -> None:
    if reset_seed is not None and (isinstance(reset_seed, bool) or reset_seed < 0):
        raise InputError(f"--reset-seed must be a non-negative integer, found {reset_seed}.")

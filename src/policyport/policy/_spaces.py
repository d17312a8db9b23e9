"""Observation and action spaces, laid out field for field like lerax 0.0.5's.

The field layout matters: a policy's spaces are part of its pytree, so a file written
by lerax's `serialize` only loads into our policy if our spaces flatten to the same
leaves in the same order.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key

from .._errors import InputError


class AbstractSpace(eqx.Module):
    """A set of values a policy observes or acts with."""

    kind: ClassVar[str]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        raise NotImplementedError

    @property
    def flat_size(self) -> int:
        """The length of a flattened sample."""
        return math.prod(self.shape)

    @property
    def mask_size(self) -> int | None:
        """The length of the bool action mask this space accepts, or None if unmaskable."""
        return None

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> Any:
        """Draw a random element (a legal one, when a mask is given): an array, or a
        pytree of arrays for Dict and Tuple."""
        raise NotImplementedError

    def flatten_sample(self, sample: ArrayLike) -> Float[Array, " n"]:
        """Flatten a sample to the float vector the policy's encoder reads."""
        return jnp.asarray(sample, dtype=float).ravel()

    def contains(self, x: Any) -> Bool[Array, ""]:
        """Whether `x` is an element of this space."""
        raise NotImplementedError

    def canonical(self) -> Any:
        """One element of the space (an array, or a pytree of arrays)."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description, read back by `space_from_json`."""
        raise NotImplementedError

    def __contains__(self, x: Any) -> bool:
        return bool(self.contains(x))

    # How an artifact sees the space: one named array per leaf (composite spaces have many).

    def leaves(self, prefix: str = "observation") -> list[tuple[str, AbstractSpace]]:
        """`(name, space)` of every array leaf, in the space's order (`prefix.key` inside)."""
        return [(prefix, self)]

    def unflatten(self, leaves: list[Any]) -> Any:
        """Rebuild one sample from its leaves, in `leaves()` order (consumes the list)."""
        return leaves.pop(0)

    def sample_leaves(self, sample: Any) -> list[Any]:
        """A sample's array leaves, in `leaves()` order."""
        return [sample]

    def sample_numpy(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """`batch` elements as the artifact takes them (`input_dtype`), drawn with numpy."""
        raise NotImplementedError

    def input_dtype(self) -> str:
        """The element type of this leaf's artifact input (float32 but for integer Boxes)."""
        return "float32"

    # Masks: a flat bool vector of `mask_size`, made of independent blocks.

    def mask_blocks(self) -> list[tuple[int, int]]:
        """`(start, stop)` of each block of the mask that must keep one legal entry."""
        return []

    def random_masks(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Random masks with at least one legal entry in every block of every row."""
        if self.mask_size is None:
            raise TypeError(f"{type(self).__name__} takes no mask")
        masks = rng.random((batch, self.mask_size)) < 0.5
        for start, stop in self.mask_blocks():
            empty = ~masks[:, start:stop].any(axis=1)
            forced = rng.integers(start, stop, size=batch)
            masks[np.flatnonzero(empty), forced[empty]] = True
        return masks

    def illegal_rows(self, actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Rows whose action uses a masked entry (an all-False block must give 0)."""
        raise TypeError(f"{type(self).__name__} takes no mask")


# Box bounds beyond this magnitude are treated as absent when sampling check inputs (they
# get the tails infinite bounds get): see `Box.sample_numpy` and docs/artifact.md.
HUGE_BOUND = 1e6


def _illegal_categorical(
    actions: np.ndarray, masks: np.ndarray, blocks: list[tuple[int, int]]
) -> np.ndarray:
    """Rows choosing a masked entry in any block; an all-False block must choose 0."""
    bad = np.zeros(len(actions), dtype=bool)
    for i, (start, stop) in enumerate(blocks):
        block, chosen = masks[:, start:stop], actions[:, i]
        in_range = (chosen >= 0) & (chosen < stop - start)
        legal = np.zeros(len(actions), dtype=bool)
        legal[in_range] = block[np.flatnonzero(in_range), chosen[in_range]]
        all_false = ~block.any(axis=1)
        bad |= ~legal & ~(all_false & (chosen == 0))
    return bad


def _encode_float(x: float) -> float | str:
    """JSON has no infinities: write them as strings."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _decode_float(x: float | str) -> float:
    if isinstance(x, str):
        if x not in ("inf", "-inf"):
            raise ValueError(f"expected a number, 'inf' or '-inf', found {x!r}")
        return float(x)
    return float(x)


# The element types a Box may declare: float32 (the default), and the integer types
# gymnasium's Box allows that JAX holds without x64 (frames from a camera are uint8).
BOX_DTYPES = ("float32", "uint8", "int8", "uint16", "int16", "int32")
# What other libraries' Box dtypes become: wider floats are read as float32 (as JAX does
# without x64), int64 as int32 (likewise); bool (gymnax's MinAtar frames) stays float32
# 0/1, as policyport read every Box before integer types existed.
_FOREIGN_DTYPES = {"float64": "float32", "float16": "float32", "int64": "int32", "bool": "float32"}


def box_dtype(dtype: Any) -> str:
    """The name of a Box element type policyport handles, or `InputError` naming the choices."""
    try:
        name = np.dtype(dtype).name
    except TypeError as e:
        raise InputError(f"Box dtype {dtype!r} is not a dtype; use one of {BOX_DTYPES}.") from e
    if name not in BOX_DTYPES:
        raise InputError(
            f"Box dtype {name} is not supported: use one of {', '.join(BOX_DTYPES)} "
            "(frames as uint8, features as float32)."
        )
    return name


def _integers_between(key: Key[Array, ""], low: Array, high: Array) -> Array:
    """int32 draws between `low` and `high`, both included, elementwise. In uint32
    arithmetic, so a Box over all of int32 (`high - low + 1` = 2^32) needs no wider type
    (`randint`'s exclusive `high + 1` overflows there); uniform up to a bias of at most
    (high - low + 1) / 2^32, none for the small integer types."""
    base = jax.lax.bitcast_convert_type(low.astype(jnp.int32), jnp.uint32)
    top = jax.lax.bitcast_convert_type(high.astype(jnp.int32), jnp.uint32)
    count = top - base + jnp.uint32(1)  # wraps to 0 when the bounds span all of int32
    bits = jr.bits(key, low.shape, dtype=jnp.uint32)
    offset = jnp.where(count == 0, bits, bits % jnp.where(count == 0, 1, count))
    return jax.lax.bitcast_convert_type(base + offset, jnp.int32)


class Box(AbstractSpace):
    """Arrays between `low` and `high` of one element type (`dtype`, float32 by default).

    Float bounds may be infinite. An integer Box (e.g. uint8 camera frames) holds the
    integers between its bounds; an infinite bound means the type's own limit. The bounds
    are stored in the element type, so the type travels with the leaves (no field is added
    to the pytree lerax's files are laid out by).
    """

    kind: ClassVar[str] = "Box"

    _shape: tuple[int, ...]
    low: Float[Array, "..."]
    high: Float[Array, "..."]

    def __init__(
        self,
        low: ArrayLike,
        high: ArrayLike,
        shape: tuple[int, ...] | None = None,
        dtype: Any = np.float32,
    ):
        name = box_dtype(dtype)
        if name != "float32":  # integer bounds: rounded inwards, infinite ones the type's limits
            info = np.iinfo(name)
            low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
            low = np.clip(np.where(np.isfinite(low), np.ceil(low), info.min), info.min, info.max)
            high = np.clip(
                np.where(np.isfinite(high), np.floor(high), info.max), info.min, info.max
            )
        low, high = jnp.asarray(low, dtype=name), jnp.asarray(high, dtype=name)
        if shape is None:
            low, high = jnp.broadcast_arrays(low, high)
            shape = low.shape
        self._shape = tuple(int(d) for d in shape)
        self.low = jnp.broadcast_to(low, self._shape)
        self.high = jnp.broadcast_to(high, self._shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> str:
        """The element type's name ("float32", "uint8", ...)."""
        return np.dtype(self.low.dtype).name

    @property
    def integer(self) -> bool:
        return self.dtype != "float32"

    def input_dtype(self) -> str:
        return self.dtype

    def flatten_sample(self, sample: ArrayLike) -> Float[Array, " n"]:
        return jnp.asarray(sample).astype(float).ravel()

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> Float[Array, "..."]:
        """Uniform where bounded, exponential from a finite bound, normal where unbounded;
        integers uniform between the bounds (both included)."""
        if mask is not None:
            raise InputError("Box spaces take no action mask; pass mask=None.")
        if self.integer:
            return _integers_between(key, self.low, self.high).astype(self.dtype)
        k_bounded, k_unbounded, k_upper, k_lower = jr.split(key, 4)
        above, below = jnp.isfinite(self.high), jnp.isfinite(self.low)
        sample = jnp.zeros(self._shape, dtype=self.low.dtype)
        sample = jnp.where(
            above & below,
            jr.uniform(k_bounded, self._shape, minval=self.low, maxval=self.high),
            sample,
        )
        sample = jnp.where(~above & ~below, jr.normal(k_unbounded, self._shape), sample)
        sample = jnp.where(~below & above, self.high - jr.exponential(k_upper, self._shape), sample)
        sample = jnp.where(below & ~above, self.low + jr.exponential(k_lower, self._shape), sample)
        return sample

    def contains(self, x: Any) -> Bool[Array, ""]:
        x = jnp.asarray(x)
        if x.shape != self._shape:
            return jnp.array(False)
        if self.integer and not jnp.all(x == jnp.floor(x)):
            return jnp.array(False)
        return jnp.all(x >= self.low) & jnp.all(x <= self.high)

    def canonical(self) -> Float[Array, "..."]:
        if self.integer:
            middle = (self.low.astype(jnp.float32) + self.high.astype(jnp.float32)) / 2
            return jnp.floor(middle).astype(self.dtype)
        return (self.low + self.high) / 2

    def sample_numpy(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Observations as a deployed policy sees them, in the Box's type, drawn with numpy.

        Integers: uniform between the bounds, both included. Floats: uniform between two
        usable bounds, exponential tails from one, normal if none. A bound is usable when
        finite and at most `HUGE_BOUND` in magnitude: gymnasium and gymnax write
        "unbounded" as float32's max (CartPole's velocities), and sampling up to 3.4e38
        tests inputs no deployed policy sees. Extreme inputs are the stress check's job
        (`policyport.checks`). The JAX sampler (`sample`), vmapped over thousands of keys,
        takes seconds to compile; this one does not.
        """
        shape = (batch, *self._shape)
        if self.integer:
            low, high = np.asarray(self.low, np.int64), np.asarray(self.high, np.int64)
            return rng.integers(low, high, size=shape, endpoint=True).astype(self.dtype)
        low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        below = np.isfinite(low) & (np.abs(low) <= HUGE_BOUND)
        above = np.isfinite(high) & (np.abs(high) <= HUGE_BOUND)
        bounded = np.where(below & above, high - low, 0.0)
        uniform = np.where(below & above, low, 0.0) + rng.random(shape) * bounded
        values = np.where(
            below & above,
            uniform,
            np.where(
                below,
                np.where(below, low, 0.0) + rng.exponential(size=shape),
                np.where(
                    above,
                    np.where(above, high, 0.0) - rng.exponential(size=shape),
                    rng.normal(size=shape),
                ),
            ),
        )
        return values.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "type": self.kind,
            "shape": list(self._shape),
            "low": [_encode_float(v) for v in np.asarray(self.low).ravel().tolist()],
            "high": [_encode_float(v) for v in np.asarray(self.high).ravel().tolist()],
        }
        if self.integer:  # float32 Boxes are described as before this field existed
            described["dtype"] = self.dtype
        return described

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Box)
            and self._shape == other._shape
            and self.dtype == other.dtype
            and bool(jnp.array_equal(self.low, other.low))
            and bool(jnp.array_equal(self.high, other.high))
        )

    def __hash__(self) -> int:
        return hash(
            (
                self._shape,
                self.dtype,
                np.asarray(self.low).tobytes(),
                np.asarray(self.high).tobytes(),
            )
        )

    def __repr__(self) -> str:
        dtype = f", dtype={self.dtype}" if self.integer else ""
        return f"Box(low={np.asarray(self.low)}, high={np.asarray(self.high)}{dtype})"


class Discrete(AbstractSpace):
    """The integers `0 .. n-1`; masked with a bool vector of length `n`."""

    kind: ClassVar[str] = "Discrete"

    n: int

    def __init__(self, n: int):
        if int(n) <= 0:
            raise InputError(f"Discrete(n) needs n > 0, found n={n}.")
        self.n = int(n)

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def flat_size(self) -> int:
        return 1

    @property
    def mask_size(self) -> int:
        return self.n

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> Int[Array, ""]:
        mask = jnp.ones((self.n,), dtype=bool) if mask is None else jnp.asarray(mask)
        return jr.choice(key, self.n, p=mask / jnp.sum(mask))

    def contains(self, x: Any) -> Bool[Array, ""]:
        x = jnp.asarray(x)
        if x.ndim != 0:
            return jnp.array(False)
        return (x == jnp.floor(x)) & (x >= 0) & (x < self.n)

    def canonical(self) -> Int[Array, ""]:
        return jnp.array(0, dtype=int)

    def sample_numpy(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.integers(0, self.n, size=batch).astype(np.float32)

    def mask_blocks(self) -> list[tuple[int, int]]:
        return [(0, self.n)]

    def illegal_rows(self, actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return _illegal_categorical(actions.reshape(len(actions), 1), masks, self.mask_blocks())

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "n": self.n}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Discrete) and self.n == other.n

    def __hash__(self) -> int:
        return hash(("Discrete", self.n))

    def __repr__(self) -> str:
        return f"Discrete({self.n})"


class MultiDiscrete(AbstractSpace):
    """Several discrete choices; masked with one block of `nvec[i]` bools per choice."""

    kind: ClassVar[str] = "MultiDiscrete"

    nvec: tuple[int, ...]

    def __init__(self, nvec: tuple[int, ...]):
        nvec = tuple(int(n) for n in nvec)
        if not nvec or any(n <= 0 for n in nvec):
            raise InputError(f"MultiDiscrete(nvec) needs a non-empty tuple of n > 0, found {nvec}.")
        self.nvec = nvec

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.nvec),)

    @property
    def mask_size(self) -> int:
        return sum(self.nvec)

    def split_mask(self, mask: ArrayLike) -> tuple[Bool[Array, "..."], ...]:
        """Split a `[..., sum(nvec)]` mask into one block per sub-action."""
        mask = jnp.asarray(mask)
        bounds = np.cumsum(self.nvec)[:-1].tolist()
        return tuple(jnp.split(mask, bounds, axis=-1))

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> Int[Array, " k"]:
        if mask is None:
            return jr.randint(
                key, self.shape, minval=0, maxval=jnp.array(self.nvec, dtype=int), dtype=int
            )
        keys = jr.split(key, len(self.nvec))
        return jnp.stack(
            [
                jr.choice(k, n, p=m / jnp.sum(m))
                for k, n, m in zip(keys, self.nvec, self.split_mask(mask), strict=True)
            ]
        )

    def contains(self, x: Any) -> Bool[Array, ""]:
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.array(False)
        return jnp.all((x == jnp.floor(x)) & (x >= 0) & (x < jnp.asarray(self.nvec)))

    def canonical(self) -> Int[Array, " k"]:
        return jnp.zeros(self.shape, dtype=int)

    def sample_numpy(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.integers(0, np.asarray(self.nvec), size=(batch, *self.shape)).astype(np.float32)

    def mask_blocks(self) -> list[tuple[int, int]]:
        bounds = np.concatenate([[0], np.cumsum(self.nvec)]).tolist()
        return list(itertools.pairwise(bounds))

    def illegal_rows(self, actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return _illegal_categorical(actions.reshape(len(actions), -1), masks, self.mask_blocks())

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "nvec": list(self.nvec)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MultiDiscrete) and self.nvec == other.nvec

    def __hash__(self) -> int:
        return hash(("MultiDiscrete", self.nvec))

    def __repr__(self) -> str:
        return f"MultiDiscrete({self.nvec})"


class MultiBinary(AbstractSpace):
    """Independent bits; masked with one bool per bit, a masked bit is forced to 0."""

    kind: ClassVar[str] = "MultiBinary"

    n: tuple[int, ...]

    def __init__(self, n: int | tuple[int, ...]):
        n = (int(n),) if isinstance(n, int | np.integer) else tuple(int(d) for d in n)
        if not n or any(d <= 0 for d in n):
            raise InputError(f"MultiBinary(n) needs n > 0 in every dimension, found {n}.")
        self.n = n

    @property
    def shape(self) -> tuple[int, ...]:
        return self.n

    @property
    def mask_size(self) -> int:
        return self.flat_size

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> Bool[Array, "..."]:
        bits = jr.bernoulli(key, shape=self.shape)
        if mask is None:
            return bits
        return bits & jnp.asarray(mask, dtype=bool).reshape(self.shape)

    def contains(self, x: Any) -> Bool[Array, ""]:
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.array(False)
        return jnp.all((x == 0) | (x == 1))

    def canonical(self) -> Bool[Array, "..."]:
        return jnp.zeros(self.shape, dtype=bool)

    def sample_numpy(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.integers(0, 2, size=(batch, *self.shape)).astype(np.float32)

    def random_masks(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Any mask is legal for bits: a masked bit is simply 0."""
        return rng.random((batch, self.flat_size)) < 0.5

    def illegal_rows(self, actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """A masked bit set to 1."""
        return np.any((actions.reshape(len(actions), -1) != 0) & ~masks, axis=1)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "n": list(self.n)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MultiBinary) and self.n == other.n

    def __hash__(self) -> int:
        return hash(("MultiBinary", self.n))

    def __repr__(self) -> str:
        return f"MultiBinary({self.n})"


class Dict(AbstractSpace):
    """Named sub-spaces, in insertion order (lerax's `Dict`); observations only.

    An artifact takes one input per leaf, named `observation.<key>` (nested keys joined
    by dots); the policy's own encoder sees the leaves flattened and concatenated.
    """

    kind: ClassVar[str] = "Dict"

    # An OrderedDict, as in lerax: JAX flattens a plain dict in sorted key order, so any
    # tree operation (a jit boundary, loading a file) would reorder the encoder's inputs.
    spaces: OrderedDict[str, AbstractSpace]

    def __init__(self, spaces: Any):
        self.spaces = OrderedDict((str(k), as_space(v)) for k, v in dict(spaces).items())
        if not self.spaces:
            raise InputError("Dict(spaces) needs at least one sub-space.")

    @property
    def shape(self) -> tuple[int, ...]:
        raise InputError("A Dict space has no single shape: use its leaves().")

    @property
    def flat_size(self) -> int:
        return sum(s.flat_size for s in self.spaces.values())

    def flatten_sample(self, sample: Any) -> Float[Array, " n"]:
        return jnp.concatenate([s.flatten_sample(sample[k]) for k, s in self.spaces.items()])

    def leaves(self, prefix: str = "observation") -> list[tuple[str, AbstractSpace]]:
        return [leaf for k, s in self.spaces.items() for leaf in s.leaves(f"{prefix}.{k}")]

    def unflatten(self, leaves: list[Any]) -> dict[str, Any]:
        return {k: s.unflatten(leaves) for k, s in self.spaces.items()}

    def sample_leaves(self, sample: Any) -> list[Any]:
        return [leaf for k, s in self.spaces.items() for leaf in s.sample_leaves(sample[k])]

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> dict[str, Any]:
        keys = jr.split(key, len(self.spaces))
        return {k: s.sample(key=kk) for (k, s), kk in zip(self.spaces.items(), keys, strict=True)}

    def contains(self, x: Any) -> Bool[Array, ""]:
        if not hasattr(x, "keys") or set(x.keys()) != set(self.spaces):
            return jnp.array(False)
        return jnp.all(jnp.stack([s.contains(x[k]) for k, s in self.spaces.items()]))

    def canonical(self) -> dict[str, Any]:
        return {k: s.canonical() for k, s in self.spaces.items()}

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "spaces": {k: s.to_json() for k, s in self.spaces.items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dict) and list(self.spaces.items()) == list(other.spaces.items())

    def __hash__(self) -> int:
        return hash(("Dict", tuple(self.spaces.items())))

    def __repr__(self) -> str:
        return f"Dict({', '.join(f'{k}: {s!r}' for k, s in self.spaces.items())})"


class Tuple(AbstractSpace):
    """Positional sub-spaces (lerax's `Tuple`); observations only, leaves `observation.<i>`."""

    kind: ClassVar[str] = "Tuple"

    spaces: tuple[AbstractSpace, ...]

    def __init__(self, spaces: Any):
        self.spaces = tuple(as_space(s) for s in spaces)
        if not self.spaces:
            raise InputError("Tuple(spaces) needs at least one sub-space.")

    @property
    def shape(self) -> tuple[int, ...]:
        raise InputError("A Tuple space has no single shape: use its leaves().")

    @property
    def flat_size(self) -> int:
        return sum(s.flat_size for s in self.spaces)

    def flatten_sample(self, sample: Any) -> Float[Array, " n"]:
        return jnp.concatenate(
            [s.flatten_sample(x) for s, x in zip(self.spaces, sample, strict=True)]
        )

    def leaves(self, prefix: str = "observation") -> list[tuple[str, AbstractSpace]]:
        return [leaf for i, s in enumerate(self.spaces) for leaf in s.leaves(f"{prefix}.{i}")]

    def unflatten(self, leaves: list[Any]) -> tuple[Any, ...]:
        return tuple(s.unflatten(leaves) for s in self.spaces)

    def sample_leaves(self, sample: Any) -> list[Any]:
        return [
            leaf for s, x in zip(self.spaces, sample, strict=True) for leaf in s.sample_leaves(x)
        ]

    def sample(self, *, key: Key[Array, ""], mask: ArrayLike | None = None) -> tuple[Any, ...]:
        keys = jr.split(key, len(self.spaces))
        return tuple(s.sample(key=k) for s, k in zip(self.spaces, keys, strict=True))

    def contains(self, x: Any) -> Bool[Array, ""]:
        if not isinstance(x, tuple | list) or len(x) != len(self.spaces):
            return jnp.array(False)
        return jnp.all(jnp.stack([s.contains(v) for s, v in zip(self.spaces, x, strict=True)]))

    def canonical(self) -> tuple[Any, ...]:
        return tuple(s.canonical() for s in self.spaces)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "spaces": [s.to_json() for s in self.spaces]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tuple) and self.spaces == other.spaces

    def __hash__(self) -> int:
        return hash(("Tuple", self.spaces))

    def __repr__(self) -> str:
        return f"Tuple({', '.join(repr(s) for s in self.spaces)})"


SPACE_TYPES: dict[str, type[AbstractSpace]] = {
    cls.kind: cls for cls in (Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple)
}


def space_from_json(data: Any) -> AbstractSpace:
    """Rebuild a space from `AbstractSpace.to_json` output; the type comes from a fixed table."""
    if not isinstance(data, dict) or data.get("type") not in SPACE_TYPES:
        known = ", ".join(SPACE_TYPES)
        raise ValueError(f"expected a space description with 'type' one of {known}, found {data!r}")
    kind = data["type"]
    if kind == "Dict":
        return Dict({str(k): space_from_json(v) for k, v in data["spaces"].items()})
    if kind == "Tuple":
        return Tuple([space_from_json(v) for v in data["spaces"]])
    if kind == "Box":
        shape = tuple(int(d) for d in data["shape"])
        dtype = box_dtype(data.get("dtype", "float32"))  # descriptions before it: float32
        low = np.array([_decode_float(v) for v in data["low"]], dtype=np.float64).reshape(shape)
        high = np.array([_decode_float(v) for v in data["high"]], dtype=np.float64).reshape(shape)
        return Box(low, high, shape, dtype)
    if kind == "Discrete":
        return Discrete(int(data["n"]))
    if kind == "MultiDiscrete":
        return MultiDiscrete(tuple(int(n) for n in data["nvec"]))
    return MultiBinary(tuple(int(n) for n in data["n"]))


def _foreign_dtype(space: Any) -> str:
    """The Box dtype of another library's Box (gymnasium, gymnax, lerax): its `dtype`, or
    its bounds' type when it has none; float64 and int64 become their 32-bit types."""
    dtype = getattr(space, "dtype", None)
    if dtype is None:
        dtype = getattr(np.asarray(space.low), "dtype", np.float32)
    name = np.dtype(dtype).name
    return box_dtype(_FOREIGN_DTYPES.get(name, name))


def as_space(space: Any) -> AbstractSpace:
    """Accept our spaces as they are and convert lerax's (or look-alikes) by their fields.

    lerax's spaces are recognised by class name and fields, never by importing lerax, so
    policies can be built against lerax envs without lerax's policy code.
    """
    if isinstance(space, AbstractSpace):
        return space
    name = type(space).__name__
    try:
        if name == "Box":
            return Box(space.low, space.high, tuple(space.shape), _foreign_dtype(space))
        if name == "Discrete":
            return Discrete(int(space.n))
        if name == "MultiDiscrete":
            return MultiDiscrete(tuple(int(n) for n in space.nvec))
        if name == "MultiBinary":
            return MultiBinary(tuple(int(n) for n in space.n))
        if name == "Dict":
            return Dict(space.spaces)
        if name == "Tuple":
            return Tuple(space.spaces)
    except AttributeError as e:
        raise InputError(f"A space named {name} lacks an expected field: {e}") from e
    known = ", ".join(SPACE_TYPES)
    raise InputError(
        f"Unsupported space {name}: policyport handles {known} (ours or lerax's). "
        "Flatten other spaces into a Box before building the policy."
    )

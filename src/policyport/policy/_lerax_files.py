"""Files lerax's own `serialize` wrote: equinox leaves, with or without a fingerprint.

Two layouts, told apart by where equinox's first `\\x93NUMPY` record starts:

- lerax 0.0.5: the leaves only, written from inside `jax.debug.callback`, so the policy's
  Python ints, floats and bools are stored as JAX arrays (int32, float32, bool).
- lerax 0.0.6 (repository head): 32 bytes of sha256(`repr(jax.tree.structure(policy))`),
  then the leaves, written from plain Python (scalars stored as NumPy stores them). The
  fingerprint covers the static structure (classes, layer sizes, activations), so it is
  checked against the skeleton the given class, env and kwargs build before any weight
  is read.

Either way the file names no code: the class is the caller's choice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from .._errors import ModelFileError
from ._architecture import MAX_DEPTH, MAX_SPACE_SIZE, MAX_WIDTH
from ._serialization import (
    CLASSES,
    _check_float32,
    _check_spaces,
    _constructor,
    _load_leaves,
    check_byte_count,
    check_kwargs_accepted,
    check_limits,
    class_name,
    default_kwargs,
    env_spaces,
    known_class_name,
    split_arguments,
)

NUMPY_MAGIC = b"\x93NUMPY"
FINGERPRINT_BYTES = 32


def structure_fingerprint(tree: Any) -> bytes:
    """lerax 0.0.6's fingerprint of a pytree: sha256 of its structure's repr (no leaves)."""
    return hashlib.sha256(repr(jax.tree.structure(tree)).encode()).digest()


def split_fingerprint(path: Path, data: bytes) -> tuple[bytes | None, bytes]:
    """(fingerprint or None, leaf bytes) of a lerax-written file."""
    if data.startswith(NUMPY_MAGIC):
        return None, data
    if data[FINGERPRINT_BYTES:].startswith(NUMPY_MAGIC):
        return data[:FINGERPRINT_BYTES], data[FINGERPRINT_BYTES:]
    raise ModelFileError(
        f"{path} is not a policy file: it has neither a policyport header nor equinox's "
        "leaf format (with or without lerax 0.0.6's 32-byte fingerprint). Give a .eqx file "
        "written by policyport or by lerax's serialize."
    )


def _mismatch_hint(env: Any, stored: bytes) -> str:
    """Which known class with default kwargs the fingerprint matches, if any."""
    for name in CLASSES:
        try:
            skeleton = eqx.filter_eval_shape(
                lambda name=name: _constructor(name)(env, key=jax.random.key(0))
            )
        except Exception:  # that class cannot be built for this env: it is not the one
            continue
        if structure_fingerprint(skeleton) == stored:
            return (
                f" It matches the {name} this env builds with default kwargs: load it as one "
                f"(--policy-class policyport.policy:{name}, or lerax.policy:{name}) without "
                "--policy-kwargs."
            )
    return ""


def _check_fingerprint(
    path: Path, stored: bytes, cls: type, env: Any, kwargs: dict[str, Any]
) -> None:
    try:
        skeleton = eqx.filter_eval_shape(lambda: cls(env, key=jax.random.key(0), **kwargs))
    except Exception:  # _load_leaves reports a constructor that fails, with its message
        return
    if structure_fingerprint(skeleton) != stored:
        raise ModelFileError(
            f"{path} carries lerax's structure fingerprint, and it does not match the "
            f"{class_name(cls)} built for this env with kwargs {kwargs or '(defaults)'}: the "
            "file was saved from another policy class or with other constructor kwargs "
            "(layer widths, depths, sizes). Pass the class (--policy-class MODULE:ATTR) and "
            "the kwargs (--policy-kwargs) it was trained with." + _mismatch_hint(env, stored)
        )


def closed_form_name(cls: type) -> str | None:
    """The `CLASSES` name whose closed form bounds `cls`: policyport's own classes, and
    lerax's classes of the same name (policyport's are built to match them layer for
    layer, see `_mismatch_hint`), whose kwargs mean the same."""
    known = known_class_name(cls)
    if known is not None:
        return known
    module = getattr(cls, "__module__", "") or ""
    name = class_name(cls)
    return name if module.split(".")[0] == "lerax" and name in CLASSES else None


# Any other class is built, to be checked, from kwargs nothing bounds in closed form, and
# building costs time in the depth and memory in the widths: so by name, at least these.
_NAMED_LIMITS = (("depth", MAX_DEPTH + 1), ("layers", MAX_DEPTH + 1), ("width", MAX_WIDTH))


def _int_limit(name: str) -> int:
    """The largest integer a kwarg called `name` may be for a class with no closed form."""
    for part, limit in _NAMED_LIMITS:
        if part in name.lower():
            return limit
    return MAX_SPACE_SIZE


def _shown(value: int) -> str:
    """An integer for a message: `str` refuses ints of over 4300 digits."""
    if value.bit_length() <= 64:
        return str(value)
    return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"


def check_open_kwargs(path: Path, cls: type, kwargs: dict[str, Any]) -> None:
    """Bound the integer kwargs of a class with no closed form, before it is built."""
    for name, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        limit = _int_limit(name)
        if abs(value) > limit:
            raise ModelFileError(
                f"{path}: {class_name(cls)} kwarg {name}={_shown(value)} is beyond policyport's "
                f"limits for classes it has no closed form for ({limit} for a kwarg named "
                f"like {name!r}; depths <= {MAX_DEPTH + 1}, widths <= {MAX_WIDTH}, other "
                f"integers <= {MAX_SPACE_SIZE} in size). Pass the kwargs the policy was "
                "trained with."
            )


def read_lerax_file(
    cls: type, path: Path, data: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Rebuild a `cls` policy from a lerax-written file, given lerax's `deserialize`
    arguments: the env (by position or `env=`), an ignored `key`, constructor kwargs.

    For policyport's own classes the kwargs are bounded and the weights' size checked in
    closed form before anything is built; lerax's classes of the same names are bounded
    by the same closed form, and any other class's integer kwargs by name
    (`check_open_kwargs`). Their weights are then checked on the policy they build (as
    shapes) in `_load_leaves`.
    """
    fingerprint, leaves = split_fingerprint(path, data)
    env, kwargs = split_arguments(path, args, kwargs)
    check_kwargs_accepted(cls, kwargs)
    if env is None:
        raise ModelFileError(
            f"{path} has no policyport header, so it was probably written by lerax's "
            "serialize, which stores weights only. Pass the env it was trained on: "
            "deserialize(path, env, **kwargs) in Python, or --env MODULE:ATTR on the command "
            "line (e.g. --env lerax.env:CartPole)."
        )
    described_as = f"as {class_name(cls)} for this env with kwargs {kwargs or '(defaults)'}"
    known = known_class_name(cls)
    bounded_as = closed_form_name(cls)
    if bounded_as is not None:
        spaces = env_spaces(path, env)
        all_kwargs = {**default_kwargs(cls), **kwargs}
        check_limits(path, bounded_as, spaces, all_kwargs, in_header=False)
    else:
        check_open_kwargs(path, cls, kwargs)
    if fingerprint is not None:
        _check_fingerprint(path, fingerprint, cls, env, kwargs)
    if known is not None:
        check_byte_count(
            path,
            known,
            spaces,
            all_kwargs,
            len(leaves),
            written_by_lerax=fingerprint is None,
            described_as=described_as,
        )
    policy = _load_leaves(
        path,
        leaves,
        lambda: cls(env, key=jax.random.key(0), **kwargs),
        described_as,
        written_by_lerax=fingerprint is None,
    )
    _check_spaces(path, policy, env, "the env given", "Pass the env the policy was trained on.")
    _check_float32(path, policy)
    return policy

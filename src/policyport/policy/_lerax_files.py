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
import inspect
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from .._errors import ModelFileError
from ._serialization import CLASSES, _check_float32, _check_spaces, _constructor, _load_leaves

NUMPY_MAGIC = b"\x93NUMPY"
FINGERPRINT_BYTES = 32
# Constructor parameters that are never kwargs of a file: the env and the init key.
_NOT_KWARGS = ("env", "key")


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


def accepted_kwargs(cls: type) -> tuple[str, ...] | None:
    """The keyword arguments `cls(env, ..., key=...)` takes, or None if it takes **kwargs."""
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None  # no signature to read: let the constructor itself judge
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if named and named[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
        named = named[1:]  # the env
    return tuple(p.name for p in named if p.name not in _NOT_KWARGS)


def _class_name(cls: type) -> str:
    return getattr(cls, "name", None) or cls.__name__


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
            f"{_class_name(cls)} built for this env with kwargs {kwargs or '(defaults)'}: the "
            "file was saved from another policy class or with other constructor kwargs "
            "(layer widths, depths, sizes). Pass the class (--policy-class MODULE:ATTR) and "
            "the kwargs (--policy-kwargs) it was trained with." + _mismatch_hint(env, stored)
        )


def read_lerax_file(
    cls: type, path: Path, data: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Rebuild a `cls` policy from a lerax-written file: `args` is `(env,)`."""
    fingerprint, leaves = split_fingerprint(path, data)
    if not args:
        raise ModelFileError(
            f"{path} has no policyport header, so it was probably written by lerax's "
            "serialize, which stores weights only. Pass the env it was trained on: "
            "deserialize(path, env, **kwargs) in Python, or --env MODULE:ATTR on the command "
            "line (e.g. --env lerax.env:CartPole)."
        )
    env, *rest = args
    if rest:
        raise ModelFileError("deserialize(path, env, **kwargs) takes one positional argument.")
    kwargs = dict(kwargs)
    kwargs.pop("key", None)  # the weights come from the file: the key changes nothing
    accepted = accepted_kwargs(cls)
    unknown = set() if accepted is None else set(kwargs) - set(accepted)
    if unknown:
        raise ModelFileError(
            f"Unknown policy kwargs {sorted(unknown)}; {_class_name(cls)} takes "
            f"{list(accepted or ())}."
        )
    if fingerprint is not None:
        _check_fingerprint(path, fingerprint, cls, env, kwargs)
    policy = _load_leaves(
        path,
        leaves,
        lambda: cls(env, key=jax.random.key(0), **kwargs),
        f"as {_class_name(cls)} for this env with kwargs {kwargs or '(defaults)'}",
        written_by_lerax=fingerprint is None,
    )
    _check_spaces(path, policy, env, "the env given", "Pass the env the policy was trained on.")
    _check_float32(path, policy)
    return policy

"""The policy file: a JSON header, then equinox's leaf serialisation.

Layout: `MAGIC`, a 4-byte little-endian header length, the UTF-8 JSON header, then the
bytes `equinox.tree_serialise_leaves` writes. The header is data: classes and spaces
are looked up in fixed tables, nothing it names is ever imported or called.

Files without `MAGIC` are taken as lerax-written (leaves only) and need the env and
constructor kwargs they were built with.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ModelFileError
from ._spaces import AbstractSpace, as_space, space_from_json

if TYPE_CHECKING:
    from ._policy import MLPActorCriticPolicy

MAGIC = b"POLICYPORT-EQX\n"
# Header format versions this code reads. 1 (2026-11-25): the first.
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 20
_KNOWN_CLASSES = ("MLPActorCriticPolicy",)
_KWARG_NAMES = (
    "feature_size",
    "feature_width",
    "feature_depth",
    "value_width",
    "value_depth",
    "action_width",
    "action_depth",
)


@dataclass(frozen=True)
class SpacesEnv:
    """The smallest env a policy can be built from: just its two spaces."""

    observation_space: AbstractSpace
    action_space: AbstractSpace


@dataclass(frozen=True)
class PolicyHeader:
    """What a self-describing file says about the policy inside it."""

    format_version: int
    class_name: str
    observation_space: AbstractSpace
    action_space: AbstractSpace
    kwargs: dict[str, int]
    dtype: str
    leaves_sha256: str
    producer: str


def leaves_bytes(policy: eqx.Module) -> bytes:
    """The bytes equinox's `tree_serialise_leaves` writes for `policy`."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, policy)
    return buffer.getvalue()


def weights_sha256(policy: eqx.Module) -> str:
    """A hash of the policy's leaves: the identity of its weights."""
    return hashlib.sha256(leaves_bytes(policy)).hexdigest()


def _producer() -> str:
    from .. import __version__

    return f"policyport {__version__}"


def write_policy(policy: MLPActorCriticPolicy, path: Path, *, no_suffix: bool = False) -> Path:
    """Write `policy` to `path` atomically (a temporary file, then a rename)."""
    if path.suffix != ".eqx" and not no_suffix:
        path = path.with_suffix(".eqx")
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = leaves_bytes(policy)
    header = {
        "format": "policyport.eqx",
        "format_version": FORMAT_VERSION,
        "producer": _producer(),
        "class": type(policy).name,
        "observation_space": policy.observation_space.to_json(),
        "action_space": policy.action_space.to_json(),
        "kwargs": policy.constructor_kwargs(),
        "dtype": "float32",
        "leaves_sha256": hashlib.sha256(leaves).hexdigest(),
    }
    encoded = json.dumps(header, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + _LENGTH.pack(len(encoded)) + encoded + leaves)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or an error that says why they cannot be had."""
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}. Check the path.")
    if path.is_dir():
        raise ModelFileError(f"Model path is a directory, not a file: {path}.")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"Cannot read model file {path}: {e.strerror}.") from e
    if not data:
        raise ModelFileError(f"Model file is empty: {path}. Re-save the policy.")
    return data


def _bad_header(path: Path, what: str) -> ModelFileError:
    return ModelFileError(
        f"{path} starts like a policyport file but its header is invalid: {what}. "
        "The file is damaged; re-save the policy with MLPActorCriticPolicy.serialize."
    )


def parse_header(path: Path, data: bytes) -> tuple[PolicyHeader, bytes]:
    """Split a self-describing file into its validated header and its leaf bytes."""
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start:
        raise _bad_header(path, "the file ends inside the header")
    (length,) = _LENGTH.unpack(data[len(MAGIC) : start])
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise _bad_header(path, f"header length {length} runs past the end of the file")
    try:
        raw = json.loads(data[start : start + length].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad_header(path, f"not JSON ({e})") from e
    if not isinstance(raw, dict):
        raise _bad_header(path, "not a JSON object")
    version = raw.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(
            f"{path} has policy file format version {version!r} (written by "
            f"{raw.get('producer', 'an unknown producer')}); this policyport reads versions "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}. Upgrade policyport, or re-save the policy "
            "with this version."
        )
    if raw.get("class") not in _KNOWN_CLASSES:
        raise _bad_header(path, f"unknown policy class {raw.get('class')!r}")
    kwargs = raw.get("kwargs")
    if not isinstance(kwargs, dict) or set(kwargs) != set(_KWARG_NAMES):
        raise _bad_header(path, f"'kwargs' must hold exactly {list(_KWARG_NAMES)}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in kwargs.values()):
        raise _bad_header(path, f"'kwargs' must be non-negative integers, found {kwargs}")
    if raw.get("dtype") != "float32":
        raise _bad_header(path, f"unsupported dtype {raw.get('dtype')!r}")
    try:
        observation_space = space_from_json(raw.get("observation_space"))
        action_space = space_from_json(raw.get("action_space"))
    except (ValueError, TypeError, KeyError) as e:
        raise _bad_header(path, f"bad space description ({e})") from e
    digest = raw.get("leaves_sha256")
    leaves = data[start + length :]
    if digest != hashlib.sha256(leaves).hexdigest():
        raise ModelFileError(
            f"{path}: the weights do not match the hash in the file's header: the file was "
            "truncated or altered after it was written. Re-save or re-download it."
        )
    header = PolicyHeader(
        format_version=version,
        class_name=raw["class"],
        observation_space=observation_space,
        action_space=action_space,
        kwargs=dict(kwargs),
        dtype=raw["dtype"],
        leaves_sha256=digest,
        producer=str(raw.get("producer", "")),
    )
    return header, leaves


def _as_callback_leaves(tree: Any) -> Any:
    """`tree` with Python scalars as the 0-d arrays `jax.debug.callback` turns them into.

    lerax's `serialize` runs inside `jax.debug.callback`, so its files store the ints and
    bools of a policy (e.g. a Discrete space's `n`) as int32/bool arrays.
    """
    return jax.tree.map(
        lambda x: np.asarray(jnp.asarray(x)) if isinstance(x, bool | int | float) else x, tree
    )


def _load_leaves(
    path: Path, leaves: bytes, build: Any, described_as: str, *, written_by_lerax: bool = False
) -> Any:
    """Load `leaves` into the policy `build()` makes, checking the sizes agree first."""
    template = build()
    sized = _as_callback_leaves(template) if written_by_lerax else template
    expected = len(leaves_bytes(sized))
    if expected != len(leaves):
        raise ModelFileError(
            f"{path} holds {len(leaves)} bytes of weights, but a policy built {described_as} "
            f"needs {expected}. The file is truncated, or it was saved with other constructor "
            "kwargs: pass the ones it was trained with (e.g. --policy-kwargs "
            "'{\"feature_width\": 128}')."
        )
    try:
        policy = eqx.tree_deserialise_leaves(io.BytesIO(leaves), template)
    except Exception as e:  # equinox and numpy raise many kinds here; all mean one thing.
        raise ModelFileError(
            f"{path}: the weights do not fit a policy built {described_as} ({e}). Pass the "
            "env and constructor kwargs the policy was trained with."
        ) from e
    return policy


def read_policy(cls: type, path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Rebuild a policy from a self-describing or a lerax-written file."""
    data = read_bytes(path)
    if data.startswith(MAGIC):
        header, leaves = parse_header(path, data)
        if args or kwargs:
            raise ModelFileError(
                f"{path} is self-describing (it records its spaces and architecture): "
                "call deserialize(path) with no env or kwargs."
            )
        env = SpacesEnv(header.observation_space, header.action_space)
        return _load_leaves(
            path,
            leaves,
            lambda: cls(env, key=jax.random.key(0), **header.kwargs),
            f"as its header describes ({header.kwargs})",
        )
    if not data.startswith(b"\x93NUMPY"):
        raise ModelFileError(
            f"{path} is not a policy file: it has neither a policyport header nor equinox's "
            "leaf format. Give a .eqx file written by policyport or by lerax's serialize."
        )
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
    key = kwargs.pop("key", None)
    key = jax.random.key(0) if key is None else key
    unknown = set(kwargs) - {*_KWARG_NAMES, "log_std_init"}
    if unknown:
        raise ModelFileError(
            f"Unknown policy kwargs {sorted(unknown)}; MLPActorCriticPolicy takes "
            f"{[*_KWARG_NAMES, 'log_std_init']}."
        )
    policy = _load_leaves(
        path,
        data,
        lambda: cls(env, key=key, **kwargs),
        f"for this env with kwargs {kwargs or '(defaults)'}",
        written_by_lerax=True,
    )
    for name in ("observation_space", "action_space"):
        saved, given = getattr(policy, name), as_space(getattr(env, name))
        if saved != given:
            raise ModelFileError(
                f"{path} was saved with {name} {saved!r}, but the env given has {given!r}. "
                "Pass the env the policy was trained on."
            )
    _check_float32(path, policy)
    return policy


def _check_float32(path: Path, policy: Any) -> None:
    for leaf in jax.tree.leaves(eqx.filter(policy, eqx.is_array)):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != np.float32:
            raise ModelFileError(f"{path}: weights must be float32, found {leaf.dtype}.")

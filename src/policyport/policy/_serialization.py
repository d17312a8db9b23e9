"""The policy file: a JSON header, then equinox's leaf serialisation.

Layout: `MAGIC`, a 4-byte little-endian header length, the UTF-8 JSON header, then the
bytes `equinox.tree_serialise_leaves` writes. The header is data: classes and spaces
are looked up in fixed tables, nothing it names is ever imported or called.

Files without `MAGIC` are taken as lerax-written (leaves only) and need the env and
constructor kwargs they were built with.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, ModelFileError
from ._spaces import (
    AbstractSpace,
    Box,
    Discrete,
    MultiBinary,
    MultiDiscrete,
    as_space,
    space_from_json,
)
from ._structure import structure_difference, structure_sha256

if TYPE_CHECKING:
    from ._policy import MLPActorCriticPolicy

MAGIC = b"POLICYPORT-EQX\n"
# Header format versions this code reads.
# 1 (2026-11-25): the first; `leaves_sha256` hashes the leaves only.
# 2 (2026-12-02): adds `structure_sha256`, the hash of what the constructor builds from the
#   header (module classes, static fields, activations, shapes, dtypes); `serialize` refuses
#   a policy whose structure differs from that rebuild. Version 1 files are still read.
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 20
_KNOWN_CLASSES = ("MLPActorCriticPolicy",)
# Every size in a header (widths, depths, space dimensions) is at most this.
_MAX_SIZE = 1 << 24
_MAX_NDIM = 32
# Dict and Tuple observation spaces: how deep they nest and how many sub-spaces each holds.
_MAX_NESTING = 4
_MAX_SUBSPACES = 64
_HEADER_KEYS = (
    "action_space",
    "class",
    "dtype",
    "format",
    "format_version",
    "kwargs",
    "leaves_sha256",
    "observation_space",
    "producer",
)
_HEADER_KEYS_BY_VERSION = {1: _HEADER_KEYS, 2: (*_HEADER_KEYS, "structure_sha256")}
_SPACE_KEYS = {
    "Box": {"type", "shape", "low", "high"},
    "Discrete": {"type", "n"},
    "MultiDiscrete": {"type", "nvec"},
    "MultiBinary": {"type", "n"},
}
# The constructor's size arguments (what a header records), and all its keyword arguments.
SIZE_KWARGS = (
    "feature_size",
    "feature_width",
    "feature_depth",
    "value_width",
    "value_depth",
    "action_width",
    "action_depth",
)
CONSTRUCTOR_KWARGS = (*SIZE_KWARGS, "log_std_init")


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
    structure_sha256: str | None  # None in version 1 files


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
    """Write `policy` to `path` atomically (a temporary file, then a rename).

    Nothing is written unless the file would reload into an identical policy.
    """
    if path.suffix != ".eqx" and not no_suffix:
        path = path.with_suffix(".eqx")
    _check_float32_to_write(path, policy)
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
        "structure_sha256": structure_sha256(policy),
    }
    encoded = json.dumps(header).encode()  # not sorted: a Dict space's key order matters
    data = MAGIC + _LENGTH.pack(len(encoded)) + encoded + leaves
    _check_reloads(path, policy, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _cannot_save(path: Path, policy: Any, why: str) -> InputError:
    name = type(policy).name
    return InputError(
        f"Cannot save {path}: {why}. A policy file records {name}'s constructor kwargs and "
        f"the weights, so only a policy that {name}(env, **kwargs) builds (with any weights) "
        "reloads as itself. Keep the structure the constructor builds, or export the policy "
        "directly with policyport.export(policy)."
    )


def _check_float32_to_write(path: Path, policy: Any) -> None:
    """The header says float32: every floating weight must be float32."""
    for where, leaf in jax.tree_util.tree_flatten_with_path(policy)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and dtype != np.float32:
            raise _cannot_save(
                path,
                policy,
                f"the weight {jax.tree_util.keystr(where)} is {np.dtype(dtype).name}, and the "
                "file format holds float32 only (cast it with .astype(jnp.float32))",
            )


def _check_reloads(path: Path, policy: Any, data: bytes) -> None:
    """Refuse a file that would not reload into an identical policy: read its header back,
    rebuild the policy it describes (as shapes) and compare structures."""
    cls = type(policy)
    if cls.__name__ != cls.name:
        raise _cannot_save(path, policy, f"{cls.__name__} would reload as {cls.name}")
    try:
        header, _ = parse_header(path, data)
    except ModelFileError as e:
        raise _cannot_save(path, policy, f"its header would not read back ({e})") from e
    env = SpacesEnv(header.observation_space, header.action_space)
    for name in ("observation_space", "action_space"):
        if getattr(env, name) != getattr(policy, name):
            raise _cannot_save(
                path,
                policy,
                f"its {name} {getattr(policy, name)!r} reads back as {getattr(env, name)!r}",
            )
    problem = architecture_problem(env.observation_space, env.action_space, header.kwargs)
    if problem is not None:
        raise _cannot_save(path, policy, f"{problem} (policyport's limits: {_limits()})")
    rebuilt = eqx.filter_eval_shape(lambda: cls(env, key=jax.random.key(0), **header.kwargs))
    difference = structure_difference(policy, rebuilt)
    if difference is not None:
        raise _cannot_save(path, policy, f"it would reload as something else: {difference}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or an error that says why they cannot be had.

    Only regular files are read: a FIFO or a device (e.g. /dev/zero) would block or
    never end.
    """
    try:
        info = path.stat()
    except FileNotFoundError as e:
        raise ModelFileError(f"Model file not found: {path}. Check the path.") from e
    except NotADirectoryError as e:
        raise ModelFileError(
            f"Model file not found: {path} (a parent of it is a file, not a folder). "
            "Check the path."
        ) from e
    except OSError as e:
        raise ModelFileError(
            f"Cannot read model file {path}: {e.strerror}. Check its folder's permissions."
        ) from e
    if stat.S_ISDIR(info.st_mode):
        raise ModelFileError(
            f"Model path is a directory, not a file: {path}. Give the .eqx file inside it."
        )
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(
            f"Model path is not a regular file (a FIFO, socket or device): {path}. "
            "Give a .eqx file."
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFileError(
            f"Cannot read model file {path}: {e.strerror}. Check its permissions."
        ) from e
    if not data:
        raise ModelFileError(f"Model file is empty: {path}. Re-save the policy.")
    return data


def _bad_header(path: Path, what: str) -> ModelFileError:
    return ModelFileError(
        f"{path} starts like a policyport file but its header is invalid: {what}. "
        "The file is damaged; re-save the policy with MLPActorCriticPolicy.serialize."
    )


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_bound(value: Any) -> bool:
    """'inf', '-inf', or a number float32 holds (the writer writes float32 values; NaN and
    larger numbers, which would turn into inf silently, only come from damage)."""
    if isinstance(value, str):
        return value in ("inf", "-inf")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= _FLOAT32_MAX  # False for NaN


def _space_problem(data: Any, nesting: int = 0) -> str | None:
    """What is wrong with a space description, checked as data before anything is built."""
    if isinstance(data, dict) and data.get("type") in ("Dict", "Tuple"):
        return _composite_problem(data, nesting)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("type"), str)
        or data["type"] not in _SPACE_KEYS
    ):
        known = [*_SPACE_KEYS, "Dict", "Tuple"]
        return f"expected an object with 'type' one of {known}, found {data!r:.200}"
    kind = data["type"]
    if set(data) != _SPACE_KEYS[kind]:
        return (
            f"a {kind} space has exactly the keys {sorted(_SPACE_KEYS[kind])}, found {sorted(data)}"
        )
    if kind == "Discrete":
        return None if _is_int(data["n"], 1, _MAX_SIZE) else f"bad Discrete n {data['n']!r:.80}"
    dims = data["nvec"] if kind == "MultiDiscrete" else data.get("n", data.get("shape"))
    low = 0 if kind == "Box" else 1
    if not isinstance(dims, list) or not all(_is_int(d, low, _MAX_SIZE) for d in dims):
        return f"bad {kind} dimensions {dims!r:.80}"
    if len(dims) > _MAX_NDIM:
        return f"a {kind} space has at most {_MAX_NDIM} dimensions, found {len(dims)}"
    if kind != "Box" and not dims:
        return f"a {kind} space needs at least one dimension"
    if kind == "Box":
        size = math.prod(dims)
        for bound in ("low", "high"):
            values = data[bound]
            if not isinstance(values, list) or len(values) != size:
                return f"Box {bound} must list {size} numbers for shape {dims}"
            if not all(_is_bound(v) for v in values):
                return (
                    f"Box {bound} must hold numbers float32 can hold (|x| <= {_FLOAT32_MAX:.7g}),"
                    " 'inf' or '-inf'"
                )
    return None


def _composite_problem(data: dict, nesting: int) -> str | None:
    """What is wrong with a Dict or Tuple description (sub-spaces checked recursively)."""
    kind = data["type"]
    if set(data) != {"type", "spaces"}:
        return f"a {kind} space has exactly the keys ['spaces', 'type'], found {sorted(data)}"
    subspaces = data["spaces"]
    expected = dict if kind == "Dict" else list
    if not isinstance(subspaces, expected) or not subspaces:
        return f"a {kind} space's 'spaces' must be a non-empty {expected.__name__}"
    if nesting >= _MAX_NESTING or len(subspaces) > _MAX_SUBSPACES:
        return (
            f"{kind} spaces nest at most {_MAX_NESTING} deep with at most {_MAX_SUBSPACES} "
            "sub-spaces each"
        )
    values = subspaces.values() if kind == "Dict" else subspaces
    for value in values:
        problem = _space_problem(value, nesting + 1)
        if problem is not None:
            return problem
    return None


def parse_header(path: Path, data: bytes) -> tuple[PolicyHeader, bytes]:
    """Split a self-describing file into its validated header and its leaf bytes.

    The header is only ever compared with fixed tables and type-checked: nothing it
    names is imported, looked up or called.
    """
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start:
        raise _bad_header(path, "the file ends inside the header")
    (length,) = _LENGTH.unpack(data[len(MAGIC) : start])
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise _bad_header(path, f"header length {length} runs past the end of the file")
    try:
        raw = json.loads(data[start : start + length].decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise _bad_header(path, f"not JSON ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(raw, dict):
        raise _bad_header(path, "not a JSON object")
    version = raw.get("format_version")
    if not _is_int(version, 0, 2**31) or version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelFileError(
            f"{path} has policy file format version {version!r:.40} (written by "
            f"{str(raw.get('producer', 'an unknown producer'))[:80]}); this policyport reads "
            f"versions {list(SUPPORTED_FORMAT_VERSIONS)}. Upgrade policyport, or re-save the "
            "policy with this version."
        )
    keys = _HEADER_KEYS_BY_VERSION[version]
    if set(raw) != set(keys):
        unknown = sorted(set(raw) - set(keys))[:10]
        missing = sorted(set(keys) - set(raw))
        raise _bad_header(
            path,
            f"expected exactly the keys {sorted(keys)}; unknown {unknown}, missing {missing}",
        )
    structure = raw.get("structure_sha256")
    if version >= 2 and not (isinstance(structure, str) and len(structure) == 64):
        raise _bad_header(path, "'structure_sha256' must be a sha256 hex digest")
    if raw["format"] != "policyport.eqx":
        raise _bad_header(path, f"'format' must be 'policyport.eqx', found {raw['format']!r:.80}")
    if raw["class"] not in _KNOWN_CLASSES:
        raise _bad_header(
            path, f"unknown policy class {raw['class']!r:.80}; known: {list(_KNOWN_CLASSES)}"
        )
    if not isinstance(raw["producer"], str):
        raise _bad_header(path, "'producer' must be a string")
    kwargs = raw["kwargs"]
    if not isinstance(kwargs, dict) or set(kwargs) != set(SIZE_KWARGS):
        raise _bad_header(path, f"'kwargs' must hold exactly {list(SIZE_KWARGS)}")
    if not all(_is_int(v, 0, _MAX_SIZE) for v in kwargs.values()):
        raise _bad_header(path, f"'kwargs' must be integers in 0..{_MAX_SIZE}, found {kwargs}")
    if raw["dtype"] != "float32":
        raise _bad_header(path, f"unsupported dtype {raw['dtype']!r:.80}; expected 'float32'")
    spaces = {}
    for name in ("observation_space", "action_space"):
        problem = _space_problem(raw[name])
        if problem is None:
            try:
                spaces[name] = space_from_json(raw[name])
            except (ValueError, TypeError, KeyError, OverflowError, InputError) as e:
                problem = str(e)
        if problem is not None:
            raise _bad_header(path, f"bad {name}: {problem}")
    digest = raw["leaves_sha256"]
    leaves = data[start + length :]
    if digest != hashlib.sha256(leaves).hexdigest():
        raise ModelFileError(
            f"{path}: the weights do not match the hash in the file's header: the file was "
            "truncated or altered after it was written. Re-save or re-download it."
        )
    header = PolicyHeader(
        format_version=version,
        class_name=raw["class"],
        observation_space=spaces["observation_space"],
        action_space=spaces["action_space"],
        kwargs=dict(kwargs),
        dtype=raw["dtype"],
        leaves_sha256=digest,
        producer=raw["producer"],
        structure_sha256=structure,
    )
    return header, leaves


def _npy_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """How many bytes `np.save` writes for an array of `shape` and `dtype`."""
    dtype = np.dtype(dtype)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape},
    )
    return len(header.getvalue()) + math.prod(shape) * dtype.itemsize


def _expected_bytes(template: Any, written_by_lerax: bool) -> int:
    """The size of the leaves equinox writes for `template` (a tree of shapes).

    lerax's `serialize` runs inside `jax.debug.callback`, so its files store the Python
    ints and bools of a policy (e.g. a Discrete space's `n`) as int32/bool arrays.
    """
    total = 0
    for leaf in jax.tree.leaves(template):
        if isinstance(leaf, jax.ShapeDtypeStruct | jax.Array | np.ndarray):
            total += _npy_bytes(tuple(leaf.shape), leaf.dtype)
        elif isinstance(leaf, bool | int | float):
            dtype = jnp.asarray(leaf).dtype if written_by_lerax else np.asarray(leaf).dtype
            total += _npy_bytes((), dtype)
    return total


# Architecture limits, checked from the header's numbers before anything is built: a
# header is data anyone can write, and building a policy costs time in its depth even when
# its arrays are empty (a header asking for "feature_depth": 100000 took 107 s to refuse).
MAX_DEPTH = 64  # hidden layers of each MLP (action_depth counts the head: at most 65)
MAX_WIDTH = 1 << 16  # hidden widths and feature_size
MAX_SPACE_SIZE = 1 << 24  # elements of a flat observation, or action outputs
MAX_PARAMETERS = 1 << 28  # float32 weights in all (1 GiB)
_DEPTH_LIMITS = {
    "feature_depth": MAX_DEPTH,
    "value_depth": MAX_DEPTH,
    "action_depth": MAX_DEPTH + 1,
}


def _mlp_arrays(in_size: int, out_size: int, width: int, depth: int) -> list[tuple[tuple, int]]:
    """`(shape, count)` of the weights and biases of `eqx.nn.MLP`, in closed form."""
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


def _head_scalars(space: AbstractSpace) -> list[type]:
    """The Python scalars the action head keeps as leaves (sizes, the scalar flag)."""
    if isinstance(space, Box):
        return [bool]
    if isinstance(space, MultiBinary):
        return [int] * len(space.shape)
    if isinstance(space, MultiDiscrete):
        return [int] * (len(space.nvec) + 1)
    return []


def _weight_arrays(
    observation_space: AbstractSpace, action_space: AbstractSpace, sizes: dict[str, int]
) -> list[tuple[tuple, int]]:
    """`(shape, count)` of every float32 array of the policy but the spaces' bounds."""
    feature = sizes["feature_size"]
    outputs = _action_outputs(action_space)
    scalar_box = isinstance(action_space, Box) and action_space.shape == ()
    return [
        *_mlp_arrays(
            observation_space.flat_size, feature, sizes["feature_width"], sizes["feature_depth"]
        ),
        *_mlp_arrays(feature, 1, sizes["value_width"], sizes["value_depth"]),
        *_mlp_arrays(feature, feature, sizes["action_width"], max(0, sizes["action_depth"] - 1)),
        ((outputs, feature), 1),
        ((outputs,), 1),
        (() if scalar_box else (outputs,), 1 if isinstance(action_space, Box) else 0),
    ]


def architecture_problem(
    observation_space: AbstractSpace, action_space: AbstractSpace, sizes: dict[str, Any]
) -> str | None:
    """What makes this architecture illegal, from its numbers alone, or None."""
    if not isinstance(action_space, Box | Discrete | MultiBinary | MultiDiscrete):
        return f"no action head for a {type(action_space).__name__} action space"
    for name in SIZE_KWARGS:
        value, high = sizes.get(name), _DEPTH_LIMITS.get(name, MAX_WIDTH)
        if not _is_int(value, 0, high):
            return f"{name} must be an integer in 0..{high}, found {value!r:.40}"
    for name, space in (("observation", observation_space), ("action", action_space)):
        size = space.flat_size if name == "observation" else _action_outputs(action_space)
        if size > MAX_SPACE_SIZE:
            return f"the {name} space has {size} elements; the limit is {MAX_SPACE_SIZE}"
    parameters = sum(
        math.prod(shape) * count
        for shape, count in _weight_arrays(observation_space, action_space, sizes)
    )
    if parameters > MAX_PARAMETERS:
        return f"{parameters} weights in all; the limit is {MAX_PARAMETERS}"
    return None


def expected_leaf_bytes(
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    sizes: dict[str, int],
    *,
    written_by_lerax: bool = False,
) -> int:
    """The bytes equinox writes for this architecture, in closed form (nothing is built).

    Cross-checked against `_expected_bytes` of the built policy in tests/test_loader.py.
    """
    scalar = (lambda t: jnp.asarray(t()).dtype) if written_by_lerax else np.dtype
    spaces = _expected_bytes((observation_space, action_space), written_by_lerax)
    weights = sum(
        _npy_bytes(shape, np.float32) * count
        for shape, count in _weight_arrays(observation_space, action_space, sizes)
    )
    return spaces + weights + sum(_npy_bytes((), scalar(t)) for t in _head_scalars(action_space))


def _limits() -> str:
    return (
        f"depths <= {MAX_DEPTH} (action_depth <= {MAX_DEPTH + 1}), widths and feature_size "
        f"<= {MAX_WIDTH}, spaces of <= {MAX_SPACE_SIZE} elements, <= {MAX_PARAMETERS} weights"
    )


def _check_architecture(
    path: Path,
    spaces: SpacesEnv,
    sizes: dict[str, Any],
    n_bytes: int,
    *,
    written_by_lerax: bool,
    described_as: str,
) -> None:
    """Refuse an illegal or wrongly sized architecture before building anything."""
    obs, act = spaces.observation_space, spaces.action_space
    problem = architecture_problem(obs, act, sizes)
    if problem is not None and not written_by_lerax:
        raise _bad_header(path, f"{problem} (policyport's limits: {_limits()})")
    if problem is not None:
        raise ModelFileError(
            f"{path}: a policy {described_as} is beyond policyport's limits: {problem} "
            f"(limits: {_limits()}). Pass the env and kwargs the policy was trained with."
        )
    expected = expected_leaf_bytes(obs, act, sizes, written_by_lerax=written_by_lerax)
    if expected != n_bytes:
        raise ModelFileError(
            f"{path} holds {n_bytes} bytes of weights, but a policy built {described_as} "
            f"needs {expected}. The file is truncated, or it was saved with other constructor "
            "kwargs: pass the ones it was trained with (e.g. --policy-kwargs "
            "'{\"feature_width\": 128}')."
        )


def _default_sizes(cls: type) -> dict[str, Any]:
    """The constructor's defaults for the size kwargs (what lerax assumes when not given)."""
    parameters = inspect.signature(cls).parameters
    return {name: parameters[name].default for name in SIZE_KWARGS if name in parameters}


def _env_spaces(path: Path, env: Any) -> SpacesEnv:
    """The env's spaces as ours, or an error saying why the env cannot be used."""
    try:
        return SpacesEnv(as_space(env.observation_space), as_space(env.action_space))
    except (AttributeError, InputError) as e:
        raise ModelFileError(
            f"Cannot load {path} for the env given: {e}. Pass the env the policy was trained "
            "on (anything with observation_space and action_space)."
        ) from e


def _template(build: Any, described_as: str, path: Path) -> Any:
    """The policy `build()` makes, as shapes only: nothing is allocated or initialised."""
    try:
        return eqx.filter_eval_shape(build)
    except Exception as e:  # the arguments are the user's: any failure means they don't fit
        raise ModelFileError(
            f"{path}: cannot build a policy {described_as}: {type(e).__name__}: "
            f"{str(e)[:300]}. Pass the env and constructor kwargs it was trained with."
        ) from e


def _load_leaves(
    path: Path, leaves: bytes, build: Any, described_as: str, *, written_by_lerax: bool = False
) -> Any:
    """Load `leaves` into the policy `build()` makes, checking the sizes agree first."""
    template = _template(build, described_as, path)
    expected = _expected_bytes(template, written_by_lerax)
    if expected != len(leaves):
        raise ModelFileError(
            f"{path} holds {len(leaves)} bytes of weights, but a policy built {described_as} "
            f"needs {expected}. The file is truncated, or it was saved with other constructor "
            "kwargs: pass the ones it was trained with (e.g. --policy-kwargs "
            "'{\"feature_width\": 128}')."
        )
    buffer = io.BytesIO(leaves)
    try:
        policy = eqx.tree_deserialise_leaves(buffer, template)
    except Exception as e:  # equinox and numpy raise many kinds here; all mean one thing.
        raise ModelFileError(
            f"{path}: the weights do not fit a policy built {described_as} "
            f"({type(e).__name__}: {str(e)[:300]}). The file is damaged, or it was saved "
            "with another env or other constructor kwargs: pass the ones it was trained with."
        ) from e
    if buffer.tell() != len(leaves):
        raise ModelFileError(
            f"{path}: {len(leaves) - buffer.tell()} bytes are left over after the weights of "
            f"a policy built {described_as}. The file is damaged; re-save it."
        )
    return policy


def _check_spaces(path: Path, policy: Any, spaces: Any, source: str, fix: str) -> None:
    """The spaces stored in the leaves must be the ones the header or env describes."""
    for name in ("observation_space", "action_space"):
        saved, given = getattr(policy, name), as_space(getattr(spaces, name))
        if saved != given:
            raise ModelFileError(
                f"{path} was saved with {name} {saved!r}, but {source} has {given!r}. {fix}"
            )


def _split_arguments(
    path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any | None, dict[str, Any]]:
    """`deserialize`'s extra arguments as lerax passes them: the env (by position or as
    `env=`), an ignored `key`, and constructor kwargs (checked against CONSTRUCTOR_KWARGS)."""
    kwargs = dict(kwargs)
    kwargs.pop("key", None)  # the weights come from the file: the key changes nothing
    env = kwargs.pop("env", None)
    if len(args) > 1 or (args and env is not None):
        both = " and env=" if env is not None else ""
        raise ModelFileError(
            f"deserialize({path}, env, **kwargs) takes the env once (by position or as "
            f"env=), found {len(args)} positional argument(s){both}."
        )
    if args:
        env = args[0]
    unknown = set(kwargs) - set(CONSTRUCTOR_KWARGS)
    if unknown:
        raise ModelFileError(
            f"Unknown policy kwargs {sorted(unknown)}; MLPActorCriticPolicy takes "
            f"{list(CONSTRUCTOR_KWARGS)}."
        )
    return env, kwargs


def _check_given_arguments(path: Path, header: PolicyHeader, env: Any, kwargs: dict) -> None:
    """A self-describing file may be given lerax's arguments, but they must agree with it.

    `log_std_init` only sets an initial value that the file's weights replace.
    """
    differ = {
        k: (v, header.kwargs[k])
        for k, v in kwargs.items()
        if k in header.kwargs and v != header.kwargs[k]
    }
    if differ:
        raise ModelFileError(
            f"{path} records its architecture {header.kwargs}, but the kwargs given differ: "
            + ", ".join(f"{k}={given!r} (file: {saved!r})" for k, (given, saved) in differ.items())
            + ". Drop them: a self-describing file needs no kwargs."
        )
    if env is None:
        return
    for name in ("observation_space", "action_space"):
        try:
            given = as_space(getattr(env, name))
        except AttributeError as e:
            raise ModelFileError(
                f"The env given to deserialize({path}, env) has no {name}: pass an env (or "
                "anything with observation_space and action_space), or no env at all."
            ) from e
        saved = getattr(header, name)
        if given != saved:
            raise ModelFileError(
                f"{path} was saved with {name} {saved!r}, but the env given has {given!r}. "
                "Pass the env the policy was trained on, or no env at all."
            )


def read_policy(cls: type, path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Rebuild a policy from a self-describing or a lerax-written file.

    Both take lerax's `deserialize(path, env, key=..., **kwargs)`; a self-describing file
    also loads with no arguments, and checks any it is given against its header.
    """
    data = read_bytes(path)
    env, kwargs = _split_arguments(path, args, kwargs)
    if data.startswith(MAGIC):
        header, leaves = parse_header(path, data)
        _check_given_arguments(path, header, env, kwargs)
        env = SpacesEnv(header.observation_space, header.action_space)
        _check_architecture(
            path,
            env,
            header.kwargs,
            len(leaves),
            written_by_lerax=False,
            described_as=f"as its header describes ({header.kwargs})",
        )
        policy = _load_leaves(
            path,
            leaves,
            lambda: cls(env, key=jax.random.key(0), **header.kwargs),
            f"as its header describes ({header.kwargs})",
        )
        _check_spaces(path, policy, env, "its header", "The file is damaged; re-save it.")
        _check_float32(path, policy)
        _check_structure(path, policy, header)
        return policy
    if not data.startswith(b"\x93NUMPY"):
        raise ModelFileError(
            f"{path} is not a policy file: it has neither a policyport header nor equinox's "
            "leaf format. Give a .eqx file written by policyport or by lerax's serialize."
        )
    if env is None:
        raise ModelFileError(
            f"{path} has no policyport header, so it was probably written by lerax's "
            "serialize, which stores weights only. Pass the env it was trained on: "
            "deserialize(path, env, **kwargs) in Python, or --env MODULE:ATTR on the command "
            "line (e.g. --env lerax.env:CartPole)."
        )
    _check_architecture(
        path,
        _env_spaces(path, env),
        {**_default_sizes(cls), **kwargs},
        len(data),
        written_by_lerax=True,
        described_as=f"for this env with kwargs {kwargs or '(defaults)'}",
    )
    policy = _load_leaves(
        path,
        data,
        lambda: cls(env, key=jax.random.key(0), **kwargs),
        f"for this env with kwargs {kwargs or '(defaults)'}",
        written_by_lerax=True,
    )
    _check_spaces(path, policy, env, "the env given", "Pass the env the policy was trained on.")
    _check_float32(path, policy)
    return policy


def _check_structure(path: Path, policy: Any, header: PolicyHeader) -> None:
    """The policy rebuilt from the header must be the one that was saved (version >= 2)."""
    if header.structure_sha256 is None or structure_sha256(policy) == header.structure_sha256:
        return
    raise ModelFileError(
        f"{path}: the policy this policyport builds from the header differs in structure "
        f"(modules, activations or static fields) from the one {header.producer[:80]} saved. "
        "Load it with the policyport (and equinox) versions that wrote it, or re-save it "
        "with these."
    )


def _check_float32(path: Path, policy: Any) -> None:
    for leaf in jax.tree.leaves(eqx.filter(policy, eqx.is_array)):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != np.float32:
            raise ModelFileError(f"{path}: weights must be float32, found {leaf.dtype}.")

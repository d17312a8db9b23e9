"""The policy file: a JSON header, then equinox's leaf serialisation.

Layout: `MAGIC`, a 4-byte little-endian header length, the UTF-8 JSON header, then the
bytes `equinox.tree_serialise_leaves` writes. The header is data: classes and spaces
are looked up in fixed tables, nothing it names is ever imported or called.

Files without `MAGIC` are taken as lerax-written (`_lerax_files`: leaves only, or lerax
0.0.6's fingerprint then leaves) and need the env and constructor kwargs they were built
with.
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
from ._architecture import (
    architecture_problem,
    expected_leaf_bytes,
    limits,
)
from ._architecture import expected_bytes as _expected_bytes
from ._architecture import is_int as _is_int
from ._spaces import AbstractSpace, as_space, space_from_json
from ._structure import structure_difference, structure_sha256

if TYPE_CHECKING:
    from ._policy import MLPActorCriticPolicy
    from ._q_policy import MLPQPolicy

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
# MLPActorCriticPolicy's size arguments: what its header records.
SIZE_KWARGS = (
    "feature_size",
    "feature_width",
    "feature_depth",
    "value_width",
    "value_depth",
    "action_width",
    "action_depth",
)


@dataclass(frozen=True)
class ClassSchema:
    """What a header may say about one policy class: its kwargs and each one's kind.

    `kwargs` maps every constructor argument a header records to "size" (an integer in
    0.._MAX_SIZE) or "float" (a finite number). Headers are checked against this table
    only; the class itself comes from `_constructor`, never from the header.
    """

    kwargs: dict[str, str]


# The classes a self-describing file can hold. Adding one is a row here, in `_constructor`
# and in `_architecture.ARCHITECTURES` (its closed form); files of format version 1 name
# only these.
CLASSES: dict[str, ClassSchema] = {
    "MLPActorCriticPolicy": ClassSchema(dict.fromkeys(SIZE_KWARGS, "size")),
    "MLPQPolicy": ClassSchema({"epsilon": "float", "width_size": "size", "depth": "size"}),
}


def _constructor(class_name: str) -> type[Any]:
    """The class a header's (already validated) class name stands for: a fixed table."""
    from ._policy import MLPActorCriticPolicy
    from ._q_policy import MLPQPolicy

    return {"MLPActorCriticPolicy": MLPActorCriticPolicy, "MLPQPolicy": MLPQPolicy}[class_name]


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
    kwargs: dict[str, int | float]
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
    from .._version import __version__

    return f"policyport {__version__}"


def write_policy(
    policy: MLPActorCriticPolicy | MLPQPolicy, path: Path, *, no_suffix: bool = False
) -> Path:
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
    problem = architecture_problem(
        header.class_name, env.observation_space, env.action_space, header.kwargs
    )
    if problem is not None:
        limits_text = limits(header.class_name)
        raise _cannot_save(path, policy, f"{problem} (policyport's limits: {limits_text})")
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
        "The file is damaged; re-save the policy with its class's serialize."
    )


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
    values = subspaces.values() if isinstance(subspaces, dict) else subspaces
    for value in values:
        problem = _space_problem(value, nesting + 1)
        if problem is not None:
            return problem
    return None


def _kwargs_problem(class_name: str, kwargs: Any) -> str | None:
    """What is wrong with a header's kwargs for `class_name`, checked against its schema."""
    schema = CLASSES[class_name].kwargs
    if not isinstance(kwargs, dict) or set(kwargs) != set(schema):
        return f"'kwargs' of a {class_name} must hold exactly {list(schema)}"
    for name, kind in schema.items():
        value = kwargs[name]
        if kind == "size" and not _is_int(value, 0, _MAX_SIZE):
            return f"'kwargs' {name} must be an integer in 0..{_MAX_SIZE}, found {value!r:.80}"
        if kind == "float" and not (
            _is_int(value, -_MAX_SIZE, _MAX_SIZE)
            or (isinstance(value, float) and math.isfinite(value))
        ):
            return f"'kwargs' {name} must be a finite number, found {value!r:.80}"
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
    if not isinstance(raw["class"], str) or raw["class"] not in CLASSES:
        raise _bad_header(
            path, f"unknown policy class {raw['class']!r:.80}; known: {list(CLASSES)}"
        )
    if not isinstance(raw["producer"], str):
        raise _bad_header(path, "'producer' must be a string")
    kwargs = raw["kwargs"]
    problem = _kwargs_problem(raw["class"], kwargs)
    if problem is not None:
        raise _bad_header(path, problem)
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


def known_class_name(cls: type) -> str | None:
    """The `CLASSES` name of `cls` if it is one of policyport's own classes (not a subclass,
    not lerax's class of the same name), else None: only those have a closed form."""
    for name in CLASSES:
        if _constructor(name) is cls:
            return name
    return None


def default_kwargs(cls: type) -> dict[str, Any]:
    """The constructor's defaults for its kwargs (what lerax assumes when not given)."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name not in ("env", "key")
    }


def check_limits(
    path: Path, class_name: str, spaces: SpacesEnv, kwargs: dict[str, Any], *, in_header: bool
) -> None:
    """Refuse an architecture beyond policyport's limits before building anything."""
    problem = architecture_problem(
        class_name, spaces.observation_space, spaces.action_space, kwargs
    )
    if problem is None:
        return
    if in_header:
        raise _bad_header(path, f"{problem} (policyport's limits: {limits(class_name)})")
    raise ModelFileError(
        f"{path}: a {class_name} with kwargs {kwargs} is beyond policyport's limits: "
        f"{problem} (limits: {limits(class_name)}). Pass the env and kwargs the policy was "
        "trained with."
    )


def check_byte_count(
    path: Path,
    class_name: str,
    spaces: SpacesEnv,
    kwargs: dict[str, Any],
    n_bytes: int,
    *,
    written_by_lerax: bool,
    described_as: str,
) -> None:
    """Refuse weights whose size is not the closed form's, before building anything.

    `check_limits` must have passed."""
    expected = expected_leaf_bytes(
        class_name,
        spaces.observation_space,
        spaces.action_space,
        kwargs,
        written_by_lerax=written_by_lerax,
    )
    if expected != n_bytes:
        raise _wrong_size(path, n_bytes, expected, described_as)


def _wrong_size(path: Path, n_bytes: int, expected: int, described_as: str) -> ModelFileError:
    return ModelFileError(
        f"{path} holds {n_bytes} bytes of weights, but a policy built {described_as} "
        f"needs {expected}. The file is truncated, or it was saved with other constructor "
        "kwargs: pass the ones it was trained with (e.g. --policy-kwargs "
        "'{\"feature_width\": 128}')."
    )


def env_spaces(path: Path, env: Any) -> SpacesEnv:
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
        raise _wrong_size(path, len(leaves), expected, described_as)
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


def saved_class(path: Path, data: bytes) -> type[Any]:
    """The policyport class a self-describing file holds, from the fixed class table."""
    header, _ = parse_header(path, data)
    return _constructor(header.class_name)


def _check_spaces(path: Path, policy: Any, spaces: Any, source: str, fix: str) -> None:
    """The spaces stored in the leaves must be the ones the header or env describes."""
    for name in ("observation_space", "action_space"):
        saved, given = as_space(getattr(policy, name)), as_space(getattr(spaces, name))
        if saved != given:
            raise ModelFileError(
                f"{path} was saved with {name} {saved!r}, but {source} has {given!r}. {fix}"
            )


def split_arguments(
    path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any | None, dict[str, Any]]:
    """`deserialize`'s extra arguments as lerax passes them: the env (by position or as
    `env=`, None if not given), an ignored `key`, and the constructor kwargs."""
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
    return env, kwargs


# Constructor parameters that are never kwargs of a file: the env and the init key.
_NOT_KWARGS = ("env", "key")


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


def class_name(cls: type) -> str:
    """The name a class goes by in files and messages (lerax's classes have a `name`)."""
    return getattr(cls, "name", None) or cls.__name__


def check_kwargs_accepted(cls: type, kwargs: dict[str, Any]) -> None:
    """Refuse kwargs `cls`'s own constructor does not take (by its signature)."""
    accepted = accepted_kwargs(cls)
    unknown = set() if accepted is None else set(kwargs) - set(accepted)
    if unknown:
        raise ModelFileError(
            f"Unknown policy kwargs {sorted(unknown)}; {class_name(cls)} takes "
            f"{list(accepted or ())}."
        )


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
    if not data.startswith(MAGIC):
        from ._lerax_files import read_lerax_file

        return read_lerax_file(cls, path, data, args, kwargs)
    env, kwargs = split_arguments(path, args, kwargs)
    header, leaves = parse_header(path, data)
    if header.class_name != class_name(cls):
        raise ModelFileError(
            f"{path} holds an {header.class_name}, not an {cls.__name__}: load it with "
            f"{header.class_name}.deserialize(path)."
        )
    check_kwargs_accepted(cls, kwargs)
    _check_given_arguments(path, header, env, kwargs)
    spaces = SpacesEnv(header.observation_space, header.action_space)
    described_as = f"as its header describes ({header.kwargs})"
    check_limits(path, header.class_name, spaces, header.kwargs, in_header=True)
    check_byte_count(
        path,
        header.class_name,
        spaces,
        header.kwargs,
        len(leaves),
        written_by_lerax=False,
        described_as=described_as,
    )
    policy = _load_leaves(
        path, leaves, lambda: cls(spaces, key=jax.random.key(0), **header.kwargs), described_as
    )
    _check_spaces(path, policy, spaces, "its header", "The file is damaged; re-save it.")
    _check_float32(path, policy)
    _check_structure(path, policy, header)
    _check_reads_as_stored(path, policy, leaves)
    return policy


def _check_reads_as_stored(path: Path, policy: Any, leaves: bytes) -> None:
    """The loaded policy must write back the very leaves the file holds.

    equinox casts a stored scalar to the type the header's kwargs give (a header's
    `"epsilon": 0` reads a stored 0.1 as int 0); version 1 files have no structure hash
    to catch that.
    """
    if leaves_bytes(policy) != leaves:
        raise ModelFileError(
            f"{path}: the weights read back differently from how the file stores them: its "
            "header's kwargs disagree with the stored values (e.g. an integer where a number "
            "with a fraction was saved). The file is damaged; re-save the policy."
        )


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

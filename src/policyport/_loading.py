"""Loading a policy the way the CLI is asked to: a file, maybe an env, a class, kwargs."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx

from . import _bounded_json as bounded_json
from ._errors import InputError, ModelFileError
from .policy import MLPActorCriticPolicy
from .policy._lerax_files import read_lerax_file
from .policy._serialization import MAGIC, accepted_kwargs, read_bytes, saved_class

_KWARGS_EXAMPLE = (
    "Pass the constructor kwargs the policy was built with as one JSON object, e.g. "
    "--policy-kwargs '{\"feature_width\": 128}'."
)


def parse_policy_kwargs(text: str | None) -> dict[str, Any]:
    """`--policy-kwargs` as a JSON object; `check_policy_kwargs` judges it against the class."""
    if not text:
        return {}
    kwargs = bounded_json.loads(text, "--policy-kwargs", InputError, _KWARGS_EXAMPLE)
    if not isinstance(kwargs, dict):
        raise InputError(
            f"--policy-kwargs must be a JSON object, found {text[:200]!r}. {_KWARGS_EXAMPLE}"
        )
    return kwargs


def check_policy_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` checked against `cls`'s constructor signature: names, and value kinds where
    the parameter's default tells them (an int default wants a non-negative integer, a
    float default a number, a bool default a boolean)."""
    accepted = accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - set(accepted)) if accepted is not None else []
    if unknown:
        raise InputError(
            f"--policy-kwargs has unknown key(s) {unknown}; "
            f"{cls.__name__} takes {list(accepted or ())}."
        )
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return kwargs
    for name, value in kwargs.items():
        default = parameters[name].default if name in parameters else None
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            expected = "a non-negative integer"
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            expected = "a number"
        else:
            continue
        if not ok:
            raise InputError(f"--policy-kwargs {name} must be {expected}, found {value!r}.")
    return kwargs


def import_policy_class(spec: str) -> type:
    """`MODULE:ATTR` -> a policy class (an equinox Module built as `cls(env, key=...)`).

    Importing it is the user's explicit choice, like `--env`; a model file never names it.
    """
    target = _import_attr(spec, "--policy-class", "lerax.policy:MLPQPolicy")
    if not isinstance(target, type) or not issubclass(target, eqx.Module):
        raise InputError(
            f"--policy-class {spec} gives {target!r:.80}, which is not an equinox Module "
            "class. Point it at a policy class such as lerax.policy:MLPQPolicy or "
            "policyport.policy:MLPQPolicy."
        )
    return target


def _is_module_name(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _import_attr(spec: str, flag: str, example: str) -> Any:
    """`MODULE:ATTR` imported (MODULE may also be found from the current directory).

    MODULE is a dotted module name, never a path (`../x` or `envs/maze` is refused), and
    whatever importing it raises, `SystemExit` included (the user's code runs), is an
    input error naming it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"{flag} must look like MODULE:ATTR (e.g. {example}), found {spec!r}.")
    if not _is_module_name(module_name) or not attr.isidentifier():
        raise InputError(
            f"{flag} {spec[:200]!r}: {module_name[:200]!r} is not a module name or "
            f"{attr[:200]!r} not an attribute name. MODULE is a dotted Python module name "
            f"(e.g. {example}), not a file path: run from the folder that holds the module "
            "(`envs/maze.py` is `envs.maze`)."
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after installed packages: they win a name clash
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(
            f"{flag} {spec}: cannot import module {module_name!r} ({e}). Is it installed in "
            "this environment (for lerax: pip install 'policyport[lerax]')?"
        ) from e
    except (Exception, SystemExit) as e:  # the user's module failed while it was imported
        raise InputError(
            f"{flag} {spec}: importing module {module_name!r} failed: {_raised(e)}. Fix "
            "that module, or point it at another."
        ) from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise InputError(f"{flag} {spec}: module {module_name!r} has no attribute {attr!r}.") from e
    except (Exception, SystemExit) as e:  # a module `__getattr__` of the user's
        raise InputError(f"{flag} {spec}: reading {attr!r} failed: {_raised(e)}.") from e


def _raised(e: BaseException) -> str:
    """An exception as a message quotes it: its name and at most 300 characters."""
    return f"{type(e).__name__}: {str(e)[:300]}" if str(e) else type(e).__name__


def import_env(spec: str) -> Any:
    """`MODULE:ATTR` -> an env: ATTR is an env, or a class or function that makes one.

    Like `python -m`, MODULE may also be found from the current directory, so a project's
    own env works as `--env envs.maze:Maze` when run from the project's root.
    """
    target = _import_attr(spec, "--env", "lerax.env:CartPole")
    attr = spec.partition(":")[2]
    env = target
    if callable(target) and not _has_spaces(target):
        try:
            env = target()
        # The user's code: any failure means the same to them, `sys.exit` included.
        except (Exception, SystemExit) as e:
            raise InputError(
                f"--env {spec}: calling {attr}() to make the env failed: "
                f"{_raised(e)}. Point --env at an env, or at a class or function "
                "that makes one with no arguments."
            ) from e
    if not _has_spaces(env):
        raise InputError(
            f"--env {spec} gives {type(env).__name__}, which has no observation_space and "
            "action_space. Point --env at an env (or a class or function that makes one)."
        )
    return env


def _has_spaces(obj: Any) -> bool:
    try:
        obj.observation_space  # noqa: B018
        obj.action_space  # noqa: B018
    except Exception:
        return False
    return not isinstance(obj, type)


def load_policy(
    model: Path,
    env_spec: str | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    class_spec: str | None = None,
    bake_wrappers: bool = False,
) -> Any:
    """A self-describing file needs nothing else; a lerax-written one needs the env, and
    the class (`class_spec`, default policyport's MLPActorCriticPolicy) and kwargs it was
    built with.

    With `bake_wrappers` the env is a wrapper chain, and a policy built against its base
    env (as lerax users often do, training in the chain) loads too: see `_spaces_envs`."""
    cls = MLPActorCriticPolicy if class_spec is None else import_policy_class(class_spec)
    data = read_bytes(model)
    if data.startswith(MAGIC):
        saved = saved_class(model, data)
        if class_spec is not None and saved.__name__ != getattr(cls, "name", cls.__name__):
            raise InputError(
                f"{model} holds {saved.__name__} (its header says so), but --policy-class "
                f"{class_spec} is {cls.__name__}. Drop --policy-class for self-describing "
                "files."
            )
        policy_kwargs = check_policy_kwargs(saved, policy_kwargs or {})
        policy = saved.deserialize(model)
        _check_agrees(policy, model, env_spec, policy_kwargs, bake_wrappers)
        return policy
    policy_kwargs = check_policy_kwargs(cls, policy_kwargs or {})
    if env_spec is None:  # read_lerax_file says what to pass
        return read_lerax_file(cls, model, data, (), policy_kwargs)
    wrapped, *base = _spaces_envs(import_env(env_spec), bake_wrappers)
    try:
        return read_lerax_file(cls, model, data, (wrapped,), policy_kwargs)
    except ModelFileError:
        if not base:
            raise
        try:
            return read_lerax_file(cls, model, data, (base[0],), policy_kwargs)
        except ModelFileError:
            pass
        raise  # the wrapped env's complaint: neither env's spaces fit


def _spaces_envs(env: Any, bake_wrappers: bool) -> list[Any]:
    """The envs whose spaces a policy may carry: the env, and with `bake_wrappers` its base.

    A policy trained in `ClipAction(Pendulum())` but built against `Pendulum()` carries
    `Pendulum()`'s Box(-2, 2) action space, not the wrapper's unbounded one. Either is
    right for a baked export: the artifact's spaces are the base env's, the policy keeps
    the spaces it was saved with, and its layer sizes are checked either way.
    """
    if not bake_wrappers:
        return [env]
    from .tracing import unwrap

    return [env, unwrap(env).base_env]


def _check_agrees(
    policy: Any,
    model: Path,
    env_spec: str | None,
    kwargs: dict[str, Any],
    bake_wrappers: bool = False,
) -> None:
    """A self-describing file may be given --env/--policy-kwargs, but they must agree."""
    saved = policy.constructor_kwargs()
    differ = {k: v for k, v in kwargs.items() if k in saved and saved[k] != v}
    if differ:
        raise InputError(
            f"{model} records its architecture {saved}; --policy-kwargs disagrees on "
            f"{sorted(differ)}. Drop --policy-kwargs for self-describing files."
        )
    if env_spec is not None:
        from .policy import as_space

        env, *base = _spaces_envs(import_env(env_spec), bake_wrappers)
        if base and all(
            as_space(getattr(base[0], name)) == getattr(policy, name)
            for name in ("observation_space", "action_space")
        ):
            return
        for name in ("observation_space", "action_space"):
            if as_space(getattr(env, name)) != getattr(policy, name):
                raise InputError(
                    f"{model} was saved with {name} {getattr(policy, name)!r}, but --env "
                    f"{env_spec} has {as_space(getattr(env, name))!r}."
                )


def _brax(reader: str) -> Callable[..., Any]:
    """`policyport.brax.<reader>`, imported when a checkpoint is read (core imports no Brax)."""

    def read(path: Path, **kwargs: Any) -> Any:
        from . import brax

        return getattr(brax, reader)(path, **kwargs)

    return read


def parse_frame_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """`--frame-shape KEY=HxWxC` (repeatable) as `{KEY: (H, W, C)}`."""
    if not values:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        key, _, dims = value.rpartition("=")
        parts = dims.lower().split("x")
        if not key or len(parts) != 3 or not all(p.isdigit() and len(p) <= 6 for p in parts):
            raise InputError(
                f"--frame-shape {value!r:.80}: give KEY=HxWxC, e.g. pixels/view_0=64x64x3."
            )
        shapes[key] = tuple(int(p) for p in parts)
    return shapes


# `--from`: what MODEL is, besides a policy file: a checkpoint folder of another library,
# read by a subpackage imported only when asked for. A loader is one row here.
CHECKPOINTS: dict[str, Callable[..., Any]] = {
    "brax-ppo": _brax("from_ppo"),
    "brax-sac": _brax("from_sac"),
}
SOURCES = ("policy", *CHECKPOINTS)


def parse_frame_range(value: str | None) -> tuple[float, float] | None:
    """`--frame-range LOW:HIGH` as `(low, high)`."""
    if value is None:
        return None
    low, _, high = value.partition(":")
    try:
        return float(low), float(high)
    except ValueError:
        raise InputError(
            f"--frame-range {value!r:.60}: give LOW:HIGH, e.g. --frame-range=-0.5:0.5."
        ) from None


def load_checkpoint(
    source: str,
    path: Path,
    frame_shapes: list[str] | None = None,
    frame_range: str | None = None,
    uint8_frames: bool = False,
) -> Any:
    """A checkpoint folder of another library (`--from brax-ppo`, ...) as a policy
    (`--frame-shape`, `--frame-range`, `--uint8-frames`: Brax's vision PPO's frames)."""
    if source not in CHECKPOINTS:
        raise InputError(f"--from {source!r}: choose one of {', '.join(SOURCES)}.")
    frames: dict[str, Any] = {
        "frame_shapes": parse_frame_shapes(frame_shapes),
        "frame_range": parse_frame_range(frame_range),
        "uint8_frames": uint8_frames or None,
    }
    frames = {k: v for k, v in frames.items() if v is not None}
    if frames and source != "brax-ppo":
        raise InputError(
            "--frame-shape, --frame-range and --uint8-frames apply to --from brax-ppo only."
        )
    return CHECKPOINTS[source](path, **frames)

"""Loading a policy the way the CLI is asked to: a file, maybe an env, maybe kwargs."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._errors import InputError
from .policy import MLPActorCriticPolicy
from .policy._serialization import CONSTRUCTOR_KWARGS, MAGIC, read_bytes


def parse_policy_kwargs(text: str | None) -> dict[str, Any]:
    """`--policy-kwargs` JSON, checked against the constructor's keyword arguments."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"--policy-kwargs is not valid JSON ({e.msg}): {text!r}. "
            "Example: --policy-kwargs '{\"feature_width\": 128}'"
        ) from e
    if not isinstance(kwargs, dict):
        raise InputError(f"--policy-kwargs must be a JSON object, found {text!r}.")
    unknown = sorted(set(kwargs) - set(CONSTRUCTOR_KWARGS))
    if unknown:
        raise InputError(
            f"--policy-kwargs has unknown key(s) {unknown}; "
            f"MLPActorCriticPolicy takes {list(CONSTRUCTOR_KWARGS)}."
        )
    for name, value in kwargs.items():
        if name == "log_std_init":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            expected = "a number"
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            expected = "a non-negative integer"
        if not ok:
            raise InputError(f"--policy-kwargs {name} must be {expected}, found {value!r}.")
    return kwargs


def import_env(spec: str) -> Any:
    """`MODULE:ATTR` -> an env: ATTR is an env, or a class or function that makes one.

    Like `python -m`, MODULE may also be found from the current directory, so a project's
    own env works as `--env envs.maze:Maze` when run from the project's root.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(
            f"--env must look like MODULE:ATTR (e.g. lerax.env:CartPole), found {spec!r}."
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after installed packages: they win a name clash
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(
            f"--env {spec}: cannot import module {module_name!r} ({e}). Is it installed in "
            "this environment (for lerax envs: pip install 'policyport[lerax]')?"
        ) from e
    try:
        target = getattr(module, attr)
    except AttributeError as e:
        raise InputError(f"--env {spec}: module {module_name!r} has no attribute {attr!r}.") from e
    env = target
    if callable(target) and not _has_spaces(target):
        try:
            env = target()
        except Exception as e:  # the user's code: any failure means the same to them
            raise InputError(
                f"--env {spec}: calling {attr}() to make the env failed: "
                f"{type(e).__name__}: {e}. Point --env at an env, or at a class or function "
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
    model: Path, env_spec: str | None = None, policy_kwargs: dict[str, Any] | None = None
) -> MLPActorCriticPolicy:
    """A self-describing file needs nothing else; a lerax-written one needs the env."""
    policy_kwargs = policy_kwargs or {}
    data = read_bytes(model)
    if data.startswith(MAGIC):
        policy = MLPActorCriticPolicy.deserialize(model)
        _check_agrees(policy, model, env_spec, policy_kwargs)
        return policy
    if env_spec is None:
        # deserialize says what to pass.
        return MLPActorCriticPolicy.deserialize(model)
    return MLPActorCriticPolicy.deserialize(model, import_env(env_spec), **policy_kwargs)


def _check_agrees(
    policy: MLPActorCriticPolicy, model: Path, env_spec: str | None, kwargs: dict[str, Any]
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

        env = import_env(env_spec)
        for name in ("observation_space", "action_space"):
            if as_space(getattr(env, name)) != getattr(policy, name):
                raise InputError(
                    f"{model} was saved with {name} {getattr(policy, name)!r}, but --env "
                    f"{env_spec} has {as_space(getattr(env, name))!r}."
                )

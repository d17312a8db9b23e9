"""`bake_wrappers`: a lerax wrapper chain's pure transforms, traced into the artifact.

A policy trained on `ClipAction(RescaleObservation(Pendulum()))` sees rescaled
observations and emits actions the wrapper clips. Baked, the artifact takes the
observation the base env emits and returns the action the base env accepts: the pure
observation transforms run in front of the policy (innermost wrapper first, as the env
applies them) and the pure action transforms after it (outermost first). Wrappers that
are not pure functions of one observation or action (`TimeLimit` counts steps, reward
wrappers never touch what the policy sees, `Identity` does nothing) are left out and
named; a wrapper policyport does not know is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jaxtyping import Array

from .._errors import InputError, MissingDependencyError, UnsupportedError, missing_dependency
from ..policy import AbstractSpace, as_space

Transform = Callable[[Any], Any]


@dataclass(frozen=True)
class BakedWrappers:
    """What the artifact computes around the policy, and what the env does outside it.

    `observation` and `action` are applied in order; `inside` describes each baked
    transform (wrapper class, side, the space it produces: its constants), then each
    wrapper left out (side `outside`); `left_out` names those.
    """

    base_env: Any
    observation_space: AbstractSpace
    action_space: AbstractSpace
    observation: tuple[Transform, ...]
    action: tuple[Transform, ...]
    inside: tuple[dict[str, Any], ...]
    left_out: tuple[str, ...]

    def prepare(self, observation: Any) -> Any:
        for transform in self.observation:
            observation = transform(observation)
        return observation

    def finish(self, action: Array) -> Array:
        for transform in self.action:
            action = transform(action)
        return action


def _lerax_wrappers() -> tuple[Any, Any, Any, tuple[type, ...]]:  # lerax is untyped
    try:
        from lerax.wrapper import AbstractWrapper, Identity, TimeLimit
        from lerax.wrapper.transform_action import AbstractPureTransformActionWrapper
        from lerax.wrapper.transform_observation import AbstractPureObservationWrapper
        from lerax.wrapper.transform_reward import AbstractPureTransformRewardWrapper
    except ImportError as e:
        raise missing_dependency("lerax", "lerax", "--bake-wrappers") from e
    left_out = (Identity, TimeLimit, AbstractPureTransformRewardWrapper)
    return (
        AbstractWrapper,
        AbstractPureObservationWrapper,
        AbstractPureTransformActionWrapper,
        (left_out),
    )


def unwrap(env: Any) -> BakedWrappers:
    """Walk a lerax wrapper chain from the outside in; collect its pure transforms."""
    try:
        wrapper, pure_observation, pure_action, left_out_kinds = _lerax_wrappers()
    except MissingDependencyError:
        raise
    observation: list[Transform] = []
    action: list[Transform] = []
    inside: list[dict[str, Any]] = []
    left_out: list[str] = []
    current = env
    while isinstance(current, wrapper):
        name = type(current).__name__
        if isinstance(current, pure_observation):
            observation.insert(0, current.func)  # inner wrappers transform first
            space = as_space(current.observation_space).to_json()
            inside.insert(0, {"wrapper": name, "side": "observation", "space": space})
        elif isinstance(current, pure_action):
            action.append(current.func)  # the outermost wrapper receives the action first
            space = as_space(current.env.action_space).to_json()
            inside.append({"wrapper": name, "side": "action", "space": space})
        elif isinstance(current, left_out_kinds):
            left_out.append(name)
        else:
            raise UnsupportedError(
                f"--bake-wrappers does not know the wrapper {name}: it may change what the "
                "policy sees, so it is not guessed at. Bake only lerax's pure observation and "
                "action wrappers (RescaleObservation, ClipObservation, FlattenObservation, "
                "TransformObservation, ClipAction, RescaleAction, TransformAction), or export "
                "without --bake-wrappers."
            )
        current = current.env
    if current is env:
        raise InputError(
            f"--bake-wrappers needs --env to be a lerax wrapper chain; {type(env).__name__} "
            "wraps nothing. Export without --bake-wrappers."
        )
    outside = tuple({"wrapper": name, "side": "outside"} for name in left_out)
    return BakedWrappers(
        base_env=current,
        observation_space=as_space(current.observation_space),
        action_space=as_space(current.action_space),
        observation=tuple(observation),
        action=tuple(action),
        inside=(*inside, *outside),
        left_out=tuple(left_out),
    )

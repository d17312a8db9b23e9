"""Brax's PPO and SAC networks with their parameters, as protocol policies.

The exported action is what Brax's own inference function returns with
`deterministic=True`: `make_inference_fn(networks)(params, deterministic=True)`, i.e. the
mode of the action distribution after its postprocessing (`tanh(loc)` for Brax's default
`tanh_normal`, `loc` for `normal`), computed on the observation normalised by the running
statistics exactly as Brax normalises it (`(obs - mean) / std`, inside the network's
`apply`). Nothing is re-implemented: the functions traced are Brax's.

Observations come as Brax gives them: an array, or a dict of arrays (MuJoCo Playground's
`state` / `privileged_state`). For a dict, only the keys the policy network reads become
inputs (found from the trace); see `from_ppo_params` for the value head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var

from .._errors import InputError, ModelFileError, missing_dependency
from ..policy import Box, Dict, FunctionPolicy, from_function

# The observation space's bounds are the normaliser's mean +- this many standard deviations:
# Brax records no observation bounds, and this is where training saw observations, so the
# parity check samples there (the stress check still feeds extremes).
BOUND_STDS = 4.0

Observation = Any  # an array, or a dict of arrays


def require_brax() -> None:
    """Brax is an optional dependency: say which extra installs it."""
    try:
        import brax.training  # noqa: F401
    except ImportError as e:
        raise missing_dependency("brax", "brax", "Exporting Brax policies") from e


def _params_tuple(params: Any, length: int, algorithm: str) -> tuple[Any, ...]:
    if not isinstance(params, Sequence) or len(params) != length:
        kinds = {
            3: "(normalizer_params, policy_params, value_params)",
            2: "(normalizer_params, policy_params)",
        }
        raise InputError(
            f"Brax {algorithm} params must be the tuple {kinds[length]} that Brax's training "
            f"returns and saves, found {type(params).__name__}"
            f"{f' of length {len(params)}' if isinstance(params, Sequence) else ''}."
        )
    normalizer = params[0]
    if not hasattr(normalizer, "mean") or not hasattr(normalizer, "std"):
        raise InputError(
            f"The first element of Brax {algorithm} params must be the running statistics "
            f"(brax.training.acme.running_statistics.RunningStatisticsState), found "
            f"{type(normalizer).__name__}."
        )
    return tuple(params)


def _leaf_space(mean: Any, std: Any) -> Box:
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return Box(mean - BOUND_STDS * std, mean + BOUND_STDS * std, mean.shape)


@dataclass(frozen=True)
class Frames:
    """What a vision network's frames are: their shapes by `pixels/` key, the range of the
    floats Brax reads, and whether the artifact takes them as uint8 bytes instead (byte `b`
    read as `low + (high - low) * b / 255`, the way a renderer's bytes become those floats)."""

    shapes: Mapping[str, Sequence[int]]
    low: float = 0.0
    high: float = 1.0
    uint8: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise InputError(
                f"The frames' range is [{self.low}, {self.high}]; give finite low < high "
                "(MuJoCo Playground's renderers give [0, 1]; its CartpoleBalance frames "
                "[-0.5, 0.5])."
            )

    def space(self, shape: Sequence[int]) -> Box:
        shape = tuple(int(d) for d in shape)
        if self.uint8:
            return Box(0, 255, shape, dtype=np.uint8)
        low, high = np.full(shape, self.low, np.float32), np.full(shape, self.high, np.float32)
        return Box(low, high, shape)

    def as_floats(self, observation: Observation) -> Observation:
        """The observation as Brax's network reads it: bytes mapped to the frames' range."""
        if not self.uint8 or not isinstance(observation, dict):
            return observation
        scale = np.float32((self.high - self.low) / 255.0)
        return {
            k: np.float32(self.low) + scale * v.astype(jnp.float32) if k in self.shapes else v
            for k, v in observation.items()
        }


def _full_observation_space(normalizer: Any, frames: Frames | None = None) -> Box | Dict:
    """Every observation leaf the normaliser tracks (Brax keeps stats for each key), and
    the frames of a vision network (which it does not track)."""
    frame_shapes = frames.shapes if frames is not None else {}
    if isinstance(normalizer.mean, dict):
        spaces = {k: _leaf_space(normalizer.mean[k], normalizer.std[k]) for k in normalizer.mean}
        spaces |= {k: frames.space(v) for k, v in frame_shapes.items()}  # type: ignore[union-attr]
        return Dict({k: spaces[k] for k in sorted(spaces)})
    if frame_shapes:
        raise InputError(
            "Frame shapes were given, but the normaliser's statistics are one array, not a "
            "dict by observation key: Brax's vision networks read a dict of observations."
        )
    return _leaf_space(normalizer.mean, normalizer.std)


def keys_read(fn: Callable[[Observation], Any], space: Dict) -> list[str]:
    """The top-level keys of a dict observation that `fn` reads, from its jaxpr."""
    names = [name for name, _ in space.leaves()]
    avals = [_leaf_aval(s) for _, s in space.leaves()]
    closed = jax.make_jaxpr(lambda *leaves: fn(space.unflatten(list(leaves))))(*avals)
    used = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
    used |= {v for v in closed.jaxpr.outvars if isinstance(v, Var)}
    read = {
        name.split(".")[1]
        for name, var in zip(names, closed.jaxpr.invars, strict=True)
        if var in used
    }
    return [k for k in space.spaces if k in read]


def _subspace(space: Dict, keys: list[str]) -> Dict:
    return Dict({k: space.spaces[k] for k in keys})


def _action_space(networks: Any, act: Callable[[Observation], Any], observation: Any) -> Box:
    """tanh-normal actions lie in [-1, 1] (Brax's action range); a `normal` mode is
    unbounded. The size comes from the action itself."""
    from brax.training import distribution

    shape = tuple(jax.eval_shape(act, observation).shape)
    if isinstance(networks.parametric_action_distribution, distribution.NormalTanhDistribution):
        return Box(-np.ones(shape, np.float32), np.ones(shape, np.float32), shape)
    return Box(np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32), shape)


def _abstract(space: Box | Dict) -> Any:
    return space.unflatten([_leaf_aval(s) for _, s in space.leaves()])


def _leaf_aval(space: Any) -> jax.ShapeDtypeStruct:
    """The abstract array of one leaf of a Brax observation space (each is a Box)."""
    return jax.ShapeDtypeStruct(space.shape, np.dtype(space.dtype))


def _check_apply(fn: Callable[[Observation], Any], space: Box | Dict, what: str) -> None:
    """The params fit the networks: Brax's own apply runs on one abstract observation."""
    try:
        jax.eval_shape(fn, _abstract(space))
    except Exception as e:  # flax's shape errors, KeyError for a missing dict key, ...
        raise ModelFileError(
            f"The Brax {what} does not run on these params and observations: "
            f"{type(e).__name__}: {str(e)[:400]}. The params must be the ones trained with "
            "these networks (same layer sizes, observation and action sizes)."
        ) from e


def from_ppo_params(
    networks: Any,
    params: Any,
    *,
    value: bool | None = None,
    name: str = "brax.ppo",
    frame_shapes: Mapping[str, Sequence[int]] | None = None,
    frame_range: tuple[float, float] = (0.0, 1.0),
    uint8_frames: bool = False,
) -> FunctionPolicy:
    """A protocol policy from Brax PPO networks and params, as Brax's training returns them.

    **Arguments:**

    - `networks`: `brax.training.agents.ppo.networks.PPONetworks` (from
      `make_ppo_networks(..., preprocess_observations_fn=running_statistics.normalize)`
      when training normalised observations).
    - `params`: `(normalizer_params, policy_params, value_params)`.
    - `value`: export Brax's value network as `value` (with the normaliser applied as Brax
      applies it). `None` (default): when it reads only observation keys the policy reads,
      so the artifact needs no extra input; an asymmetric critic (MuJoCo Playground's
      `value_obs_key="privileged_state"`, simulator-only) is left out. `True`: always (its
      keys become inputs too). `False`: never.
    - `name`: recorded as the policy's class in artifact metadata.
    - `frame_shapes`: for Brax's vision networks (`make_ppo_networks_vision`), each
      `pixels/` key's `(height, width, channels)`: the normaliser keeps no statistics of
      frames, so their shapes come from here. Frames are NHWC as Brax reads them, float32
      in `frame_range` (Brax records none: [0, 1] for the renderer's RGB; MuJoCo
      Playground's CartpoleBalance vision frames are gray - 0.5, in [-0.5, 0.5]): the
      observation space's bounds, where the parity check samples.
    - `uint8_frames`: the artifact takes the frames as uint8 bytes (a camera's), byte `b`
      read as `low + (high - low) * b / 255` of `frame_range` before Brax's network.

    The action is `make_inference_fn(networks)(params, deterministic=True)(obs, key)[0]`.
    """
    require_brax()
    from brax.training.agents.ppo import networks as ppo_networks

    normalizer, _, value_params = _params_tuple(params, 3, "PPO")
    inference = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    low, high = (float(bound) for bound in frame_range)
    frames = Frames(frame_shapes or {}, low, high, uint8=uint8_frames)
    if not frames.shapes and (uint8_frames or tuple(frame_range) != (0.0, 1.0)):
        raise InputError(
            "A frame range or uint8 frames were asked for, but these networks read no "
            "frames (Brax's vision networks read 'pixels/' keys): drop them."
        )

    def act(observation: Observation) -> jax.Array:
        # deterministic: the key is never read
        return inference(frames.as_floats(observation), None)[0]

    def value_head(observation: Observation) -> jax.Array:
        observation = frames.as_floats(observation)
        out = networks.value_network.apply(normalizer, value_params, observation)
        return out[0] if isinstance(out, tuple) else out  # a distributional critic: (v, q)

    space = _full_observation_space(normalizer, frames)
    _check_apply(act, space, "policy network")
    with_value = value is not False
    if with_value:
        _check_apply(value_head, space, "value network")
    if isinstance(space, Dict):
        policy_keys = keys_read(act, space)
        value_keys = keys_read(value_head, space) if with_value else []
        if value is None and not set(value_keys) <= set(policy_keys):
            with_value = False
        keys = policy_keys + [k for k in value_keys if with_value and k not in policy_keys]
        space = _subspace(space, [k for k in space.spaces if k in keys])
    return from_function(
        act,
        observation_space=space,
        action_space=_action_space(networks, act, _abstract(space)),
        value=value_head if with_value else None,
        name=name,
    )


def from_sac_params(networks: Any, params: Any, *, name: str = "brax.sac") -> FunctionPolicy:
    """A protocol policy from Brax SAC networks and `(normalizer_params, policy_params)`.

    The action is `make_inference_fn(networks)(params, deterministic=True)(obs, key)[0]`.
    SAC's critic is a function of observation and action, not a protocol head: not exported.
    """
    require_brax()
    from brax.training.agents.sac import networks as sac_networks

    normalizer, _ = _params_tuple(params, 2, "SAC")
    inference = sac_networks.make_inference_fn(networks)(tuple(params), deterministic=True)

    def act(observation: Observation) -> jax.Array:
        return inference(observation, None)[0]

    space = _full_observation_space(normalizer)
    _check_apply(act, space, "policy network")
    if isinstance(space, Dict):
        space = _subspace(space, keys_read(act, space))
    return from_function(
        act,
        observation_space=space,
        action_space=_action_space(networks, act, _abstract(space)),
        name=name,
    )

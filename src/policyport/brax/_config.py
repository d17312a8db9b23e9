"""A Brax network config judged in closed form, before Brax builds anything from it.

Brax's factories allocate as they build (`make_policy_network` makes a `(1, obs_size)`
dummy observation: `observation_size` 10^9 took 8 GB) and take time in the depth (10^4
hidden layers: 13 s). So the config is bounded by policyport's own limits (those of its
policy files: `policy._architecture`), its values' types checked, and the weights the
networks would hold counted from the numbers alone. Nothing here imports Brax: a refusal
costs no more than reading the file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ModelFileError
from ..policy._architecture import MAX_DEPTH, MAX_PARAMETERS, MAX_SPACE_SIZE, MAX_WIDTH, is_int
from ..policy._serialization import _MAX_NDIM, _MAX_SUBSPACES

# Brax's PPO training records `observation_size` as a `specs.Array` per leaf, which its
# config writer turns into {"shape": [n], "dtype": "unserializable object: float32"}.
SPEC_KEYS = {"shape", "dtype"}
Shapes = tuple[int, ...] | dict[str, tuple[int, ...]]

# Brax 0.14.2's hidden-layer kwargs and defaults, per algorithm (tests/test_brax.py checks
# them against the factories' signatures): read here without importing Brax.
HIDDEN_DEFAULTS: dict[str, dict[str, tuple[int, ...]]] = {
    "ppo": {
        "policy_hidden_layer_sizes": (32, 32, 32, 32),
        "value_hidden_layer_sizes": (256, 256, 256, 256, 256),
    },
    "sac": {"hidden_layer_sizes": (256, 256)},
}
OBS_KEY = "state"  # Brax's default `policy_obs_key` / `value_obs_key` (SAC's only key)

LIMITS = (
    f"policyport's limits: <= {MAX_DEPTH} hidden layers of <= {MAX_WIDTH} units, "
    f"observations and actions of <= {MAX_SPACE_SIZE} elements, <= {MAX_PARAMETERS} weights"
)


def _refuse(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: {problem} ({LIMITS}). The config is damaged or was not written by Brax's "
        "checkpoint code: re-save the checkpoint with Brax."
    )


def _leaf_shape(value: Any, path: Path) -> tuple[int, ...]:
    """One observation's shape: a size, a shape, or Brax's array spec of one."""
    if isinstance(value, dict) and set(value) == SPEC_KEYS:
        value = value["shape"]
    if is_int(value, 1, MAX_SPACE_SIZE):
        return (value,)
    if (
        isinstance(value, list)
        and 1 <= len(value) <= _MAX_NDIM
        and all(is_int(d, 1, MAX_SPACE_SIZE) for d in value)
        and math.prod(value) <= MAX_SPACE_SIZE
    ):
        return tuple(value)
    raise _refuse(
        path,
        f"observation_size holds {value!r:.80}; expected a size in 1..{MAX_SPACE_SIZE}, a "
        f"shape (1..{_MAX_NDIM} positive sizes, <= {MAX_SPACE_SIZE} elements), or Brax's "
        "array spec ({'shape': [...], 'dtype': ...}) per observation key",
    )


def observation_shapes(value: Any, path: Path) -> Shapes:
    """`observation_size` as Brax writes it (an int, a shape, an array spec, or a dict of
    those per observation key) as shapes within the limits."""
    if isinstance(value, dict) and set(value) != SPEC_KEYS:
        if not 1 <= len(value) <= _MAX_SUBSPACES:
            raise _refuse(
                path, f"observation_size has {len(value)} keys; 1..{_MAX_SUBSPACES} are allowed"
            )
        shapes = {str(k): _leaf_shape(v, path) for k, v in value.items()}
        total = sum(math.prod(s) for s in shapes.values())
        if total > MAX_SPACE_SIZE:
            raise _refuse(path, f"the observations have {total} elements in all")
        return shapes
    return _leaf_shape(value, path)


def _hidden_sizes(
    kwargs: Mapping[str, Any], name: str, default: Sequence[int], path: Path
) -> tuple[int, ...]:
    """A hidden-layer kwarg: a list of at most MAX_DEPTH positive widths."""
    sizes = kwargs.get(name, default)
    if not isinstance(sizes, list | tuple) or len(sizes) > MAX_DEPTH:
        shown = f"{len(sizes)} layers" if isinstance(sizes, list) else f"{sizes!r:.80}"
        raise _refuse(path, f"{name} is {shown}; expected a list of <= {MAX_DEPTH} widths")
    for width in sizes:
        if not is_int(width, 1, MAX_WIDTH):
            raise _refuse(
                path, f"{name} holds {width!r:.40}; every width is an integer in 1..{MAX_WIDTH}"
            )
    return tuple(sizes)


def mlp_weights(sizes: Sequence[int]) -> int:
    """Kernels, biases and (at most) a layer norm's scale and offset of Brax's MLP through
    layer `sizes` (input first): an upper bound of the weights it holds."""
    return sum(a * b + 3 * b for a, b in itertools.pairwise(sizes))


def _input_size(
    shapes: Shapes, kwargs: Mapping[str, Any], key_kwarg: str | None, path: Path
) -> int:
    """The size Brax's MLP takes: the last dim of the observation its obs key names
    (`key_kwarg`; None for SAC, whose networks read only Brax's default key)."""
    key = kwargs.get(key_kwarg, OBS_KEY) if key_kwarg else OBS_KEY
    if not isinstance(key, str):
        raise _refuse(path, f"{key_kwarg} is {key!r:.40}; expected an observation key")
    if isinstance(shapes, dict):
        if key not in shapes:
            fix = (
                f"Set {key_kwarg} in network_factory_kwargs to the key the network reads."
                if key_kwarg
                else "Brax's SAC networks read only that key: re-save with it."
            )
            raise ModelFileError(
                f"{path}: observation_size has keys {sorted(shapes)[:8]}, but the network "
                f"reads {key!r} ({key_kwarg or 'Brax SAC'}'s default is {OBS_KEY!r}). {fix}"
            )
        return shapes[key][-1]
    return shapes[-1]


def _outputs(kwargs: Mapping[str, Any], path: Path) -> int:
    """The value network's outputs: 1, or the quantiles of a distributional critic."""
    if kwargs.get("use_distributional_critic", False) is not True:
        return 1
    quantiles = kwargs.get("num_quantiles", 32)
    if not is_int(quantiles, 1, MAX_WIDTH):
        raise _refuse(path, f"num_quantiles is {quantiles!r:.40}; expected 1..{MAX_WIDTH}")
    return quantiles


def network_weights(
    algorithm: str, shapes: Shapes, action_size: int, kwargs: Mapping[str, Any], path: Path
) -> int:
    """At most how many weights the networks Brax builds from this config hold (its
    policy's outputs are at most the location and scale of each action)."""
    hidden = {
        name: _hidden_sizes(kwargs, name, default, path)
        for name, default in HIDDEN_DEFAULTS[algorithm].items()
    }
    if algorithm == "sac":
        inputs = _input_size(shapes, kwargs, None, path)
        return mlp_weights((inputs, *hidden["hidden_layer_sizes"], 2 * action_size))
    policy_in = _input_size(shapes, kwargs, "policy_obs_key", path)
    value_in = _input_size(shapes, kwargs, "value_obs_key", path)
    policy = (policy_in, *hidden["policy_hidden_layer_sizes"], 2 * action_size)
    value = (value_in, *hidden["value_hidden_layer_sizes"], _outputs(kwargs, path))
    return mlp_weights(policy) + mlp_weights(value)


def check_config(config: Any, algorithm: str, path: Path) -> tuple[Shapes, dict[str, Any]]:
    """The config's observation shapes and factory kwargs, every number used bounded.

    Refuses (ModelFileError) before anything is built: nothing here allocates more than
    the config's own JSON."""
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} must hold a JSON object, found {type(config).__name__}.")
    required = ("network_factory_kwargs", "normalize_observations", "observation_size")
    missing = [k for k in (*required, "action_size") if k not in config]
    if missing:
        raise ModelFileError(f"{path} lacks {missing}: it is not a Brax network config.")
    kwargs = config["network_factory_kwargs"]
    if not isinstance(kwargs, dict):
        raise ModelFileError(f"{path}: network_factory_kwargs must be an object.")
    if not isinstance(config["normalize_observations"], bool):
        raise _refuse(path, "normalize_observations must be true or false")
    action_size = config["action_size"]
    if not is_int(action_size, 1, MAX_SPACE_SIZE):
        raise _refuse(path, f"action_size is {action_size!r:.40}; expected 1..{MAX_SPACE_SIZE}")
    shapes = observation_shapes(config["observation_size"], path)
    weights = network_weights(algorithm, shapes, action_size, kwargs, path)
    if weights > MAX_PARAMETERS:
        raise _refuse(path, f"the networks it describes hold up to {weights} weights")
    return shapes, dict(kwargs)

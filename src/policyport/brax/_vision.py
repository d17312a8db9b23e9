"""Brax's vision PPO config (`networks_vision.make_ppo_networks_vision`) judged in closed form,
and the functions its config names mapped from a fixed table.

The vision factory reads every observation key starting `pixels/` (NHWC frames, the layout
MuJoCo Playground writes) through one CNN each, and an optional state key
(`policy_obs_key`). Its options are bounded here before Brax builds anything: the CNN's
layers, kernels and strides, the frames they run on, and the weights they hold. Brax
silently ignores a `cnn_global_pool` it does not know (its output then has the wrong rank),
so every option outside Brax 0.14.2's is refused by name.

Brax's `network_config` writes a default that is a function (`cnn_activation=linen.relu`)
as a best-effort dump of the function object (`{"__module__": "jax._src.nn.functions",
"__name__": "relu", "__doc__": ..., "_jit_info": [...]}`) or as `"function relu"`; a
registered name (`"relu"`, what Playground's configs give) is read as is. Each is mapped by
its name through `ACTIVATIONS`, policyport's own table: nothing the file names is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from .._errors import ModelFileError
from ..policy._architecture import MAX_DEPTH, MAX_SPACE_SIZE, MAX_WIDTH, is_int

PIXELS = "pixels/"  # Brax's VisionMLP runs a CNN on every key with this prefix
# Brax 0.14.2's vision factory defaults (tests/test_brax_vision.py checks them against it).
VISION_HIDDEN_DEFAULTS = {
    "policy_hidden_layer_sizes": (256, 256),
    "value_hidden_layer_sizes": (256, 256),
}
CNN_DEFAULTS = {
    "cnn_output_channels": (32, 64, 64),
    "cnn_kernel_size": (8, 4, 3),
    "cnn_stride": (4, 2, 1),
}
# `cnn_padding` as Brax maps it (`_PADDING_MAP` on the lowered name, else passed to flax).
PADDINGS = {"zeros": "SAME", "valid": "VALID", "SAME": "SAME", "VALID": "VALID"}
GLOBAL_POOLS = ("avg", "max", "none", "spatial_softmax")
MAX_KERNEL = 64  # kernel sizes and strides: larger ones fit no frame policyport takes
# Options that only initialise weights (read from the file instead): checked for their
# kind, then left to the factory's defaults, so no initialiser is ever looked up.
INITIALISER_OPTIONS = (
    "cnn_kernel_init_fn",
    "cnn_kernel_init_kwargs",
    "output_kernel_init_fn",
    "output_kernel_init_kwargs",
)
CHECKED_HERE = (
    *CNN_DEFAULTS,
    "cnn_padding",
    "cnn_global_pool",
    "cnn_max_pool",
    "cnn_activation",
    "normalise_channels",
    *INITIALISER_OPTIONS,
)

# Element-wise activations by the name a dump or a config carries: the functions flax's
# `linen.<name>` and Brax's `networks.ACTIVATION` are (`swish` is `silu`'s other name).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "celu": jax.nn.celu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_silu,
    "hard_tanh": jax.nn.hard_tanh,
    "leaky_relu": jax.nn.leaky_relu,
    "log_sigmoid": jax.nn.log_sigmoid,
    "mish": jax.nn.mish,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "selu": jax.nn.selu,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "soft_sign": jax.nn.soft_sign,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}
# Where those functions live, as a dump's `__module__` records it.
ACTIVATION_MODULES = (
    "jax._src.nn.functions",
    "jax.nn",
    "jax.numpy",
    "jax._src.numpy.ufuncs",
    "flax.linen",
    "flax.linen.activation",
)
_FUNCTION_REPR = "function "  # ml_collections' best-effort text for a plain function


def is_vision(shapes: Any, kwargs: Mapping[str, Any]) -> bool:
    """A vision config: `pixels/` observations, or any of the vision factory's own options."""
    pixels = isinstance(shapes, dict) and any(k.startswith(PIXELS) for k in shapes)
    return pixels or any(k.startswith("cnn_") or k == "normalise_channels" for k in kwargs)


def _refuse(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: {problem}. Brax 0.14.2's make_ppo_networks_vision takes no other value: "
        "the config is damaged or was written by another Brax version; re-save the "
        "checkpoint with Brax's checkpoint code."
    )


def activation(value: Any, key: str, path: Path) -> Callable[[jax.Array], jax.Array]:
    """The function a config entry names: a name, `"function <name>"`, or a dump of the
    function object; looked up in `ACTIVATIONS` only."""
    if isinstance(value, dict) and "__name__" in value:
        module, name = value.get("__module__"), value["__name__"]
        if module not in ACTIVATION_MODULES:
            raise _refuse(
                path,
                f"{key} is a dump of the function {name!r:.60} from module {module!r:.80}, "
                f"which is not one of policyport's activations ({', '.join(sorted(ACTIVATIONS))} "
                f"from {', '.join(ACTIVATION_MODULES)})",
            )
    elif isinstance(value, str):
        name = value.removeprefix(_FUNCTION_REPR)
    else:
        raise _refuse(path, f"{key} is {value!r:.60}; expected an activation's name")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise _refuse(
            path,
            f"{key} names the function {name!r:.60}, which is not one of policyport's "
            f"activations ({', '.join(sorted(ACTIVATIONS))})",
        )
    return ACTIVATIONS[name]


def _sizes(kwargs: Mapping[str, Any], name: str, limit: int, path: Path) -> tuple[int, ...]:
    value = kwargs.get(name, CNN_DEFAULTS[name])
    if (
        not isinstance(value, list | tuple)
        or not 1 <= len(value) <= MAX_DEPTH
        or not all(is_int(v, 1, limit) for v in value)
    ):
        raise _refuse(
            path, f"{name} is {value!r:.80}; expected 1..{MAX_DEPTH} integers in 1..{limit}"
        )
    return tuple(value)


def _option(kwargs: Mapping[str, Any], name: str, default: Any, allowed: Any, path: Path) -> Any:
    value = kwargs.get(name, default)
    if isinstance(value, bool) != isinstance(default, bool) or value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise _refuse(path, f"{name} is {value!r:.60}; expected one of {shown}")
    return value


def _initialiser(kwargs: Mapping[str, Any], name: str, path: Path) -> None:
    """An initialiser option holds a name, a dump, null or an object of kwargs."""
    value = kwargs.get(name)
    if value is not None and not isinstance(value, str | dict):
        raise _refuse(path, f"{name} is {value!r:.60}; expected a name, an object or null")


def _frame(shape: tuple[int, ...], key: str, path: Path) -> tuple[int, int, int]:
    if len(shape) != 3:
        fix = (
            " Brax's PPO training records only a frame's last dimension in the config; give "
            "the frames' shapes: policyport.brax.from_ppo(path, frame_shapes={"
            f"{key!r}: (height, width, channels)}}) or --frame-shape {key}=HxWxC"
            if len(shape) == 1
            else ""
        )
        raise ModelFileError(
            f"{path}: observation {key!r} has shape {list(shape)}; Brax's vision network "
            f"reads frames of shape (height, width, channels).{fix}"
        )
    return shape


def _conv_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """One side after a convolution, as XLA computes it for SAME / VALID."""
    if padding == "SAME":
        return -(-size // stride)
    return -(-(size - kernel + 1) // stride) if size >= kernel else 0


def cnn_options(kwargs: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The CNN's options, each one Brax 0.14.2 takes."""
    padding = kwargs.get("cnn_padding", "zeros")
    resolved = None
    if isinstance(padding, str):  # as Brax reads it: the lowered name mapped, else as is
        lowered = padding.lower()
        resolved = PADDINGS[lowered] if lowered in ("zeros", "valid") else PADDINGS.get(padding)
    if resolved is None:
        raise _refuse(path, f"cnn_padding is {padding!r:.60}; expected 'zeros' or 'valid'")
    channels = _sizes(kwargs, "cnn_output_channels", MAX_WIDTH, path)
    kernels = _sizes(kwargs, "cnn_kernel_size", MAX_KERNEL, path)
    strides = _sizes(kwargs, "cnn_stride", MAX_KERNEL, path)
    if not len(channels) == len(kernels) == len(strides):
        raise _refuse(
            path,
            f"cnn_output_channels, cnn_kernel_size and cnn_stride have {len(channels)}, "
            f"{len(kernels)} and {len(strides)} entries; Brax zips them (one per layer)",
        )
    for name in INITIALISER_OPTIONS:
        _initialiser(kwargs, name, path)
    if "cnn_activation" in kwargs:
        activation(kwargs["cnn_activation"], "cnn_activation", path)
    return {
        "layers": tuple(zip(channels, kernels, strides, strict=True)),
        "padding": resolved,
        "max_pool": _option(kwargs, "cnn_max_pool", False, (False, True), path),
        "global_pool": _option(kwargs, "cnn_global_pool", "avg", GLOBAL_POOLS, path),
        "normalise_channels": _option(kwargs, "normalise_channels", False, (False, True), path),
    }


def cnn_weights_and_features(
    frame: tuple[int, int, int], options: Mapping[str, Any], key: str, path: Path
) -> tuple[int, int]:
    """The weights of one view's CNN and the features it hands the MLP."""
    height, width, features = frame
    weights = 0
    for channels, kernel, stride in options["layers"]:
        weights += kernel * kernel * features * channels + channels
        height = _conv_size(height, kernel, stride, options["padding"])
        width = _conv_size(width, kernel, stride, options["padding"])
        if options["max_pool"]:
            height, width = -(-height // 2), -(-width // 2)
        if height < 1 or width < 1:
            raise _refuse(
                path,
                f"the CNN's layers (kernels and strides {options['layers']}, padding "
                f"{options['padding']}) leave nothing of the {frame[0]}x{frame[1]} frames "
                f"of {key!r}",
            )
        features = channels
    pool = options["global_pool"]
    outputs = {"avg": 1, "max": 1, "spatial_softmax": 2, "none": height * width}[pool]
    return weights, outputs * features


def vision_input_sizes(
    shapes: Mapping[str, tuple[int, ...]], kwargs: Mapping[str, Any], path: Path
) -> tuple[int, dict[str, int]]:
    """The CNNs' weights (one network's) and the MLP's input size of the policy and value
    networks, from the numbers alone."""
    options = cnn_options(kwargs, path)
    weights, features = 0, 0
    for key, shape in shapes.items():
        if key.startswith(PIXELS):
            w, f = cnn_weights_and_features(_frame(shape, key, path), options, key, path)
            weights, features = weights + w, features + f
    inputs = {}
    for network, key_kwarg in (("policy", "policy_obs_key"), ("value", "value_obs_key")):
        key = kwargs.get(key_kwarg, "")
        if not isinstance(key, str):
            raise _refuse(path, f"{key_kwarg} is {key!r:.40}; expected an observation key")
        state = 0
        if key:
            if key not in shapes or key.startswith(PIXELS):
                raise ModelFileError(
                    f"{path}: {key_kwarg} is {key!r:.60}, but observation_size has no such "
                    f"state key (its keys: {sorted(shapes)[:8]}). Set {key_kwarg} in "
                    "network_factory_kwargs to the state key the network reads."
                )
            state = math.prod(shapes[key][-1:])
        inputs[network] = features + state
    if features == 0:
        raise ModelFileError(
            f"{path}: the config has vision options but observation_size has no 'pixels/' "
            f"key (its keys: {sorted(shapes)[:8] if isinstance(shapes, dict) else shapes}): "
            "Brax's vision network reads its frames from keys starting 'pixels/': re-save "
            "the checkpoint with the observation shapes it was trained on."
        )
    return weights, inputs


def with_frames(shapes: Any, frame_shapes: Mapping[str, Sequence[int]] | None, path: Path) -> Any:
    """The config's shapes with the frames' shapes given by the user (Brax's training
    records only their last dimension, which must agree)."""
    if not frame_shapes:
        return shapes
    if not isinstance(shapes, dict):
        raise ModelFileError(f"{path}: frame shapes were given, but the observation is no dict.")
    out = dict(shapes)
    for key, frame in frame_shapes.items():
        frame = tuple(frame)
        if key not in shapes or not key.startswith(PIXELS):
            raise ModelFileError(
                f"{path}: a frame shape was given for {key!r}, which is not a 'pixels/' key "
                f"of the checkpoint's observations ({sorted(shapes)[:8]})."
            )
        if (
            len(frame) != 3
            or not all(is_int(d, 1, MAX_WIDTH) for d in frame)
            or math.prod(frame) > MAX_SPACE_SIZE
        ):
            raise ModelFileError(
                f"The frame shape of {key!r} is {frame!r:.60}; give (height, width, channels), "
                f"at most {MAX_SPACE_SIZE} elements."
            )
        recorded = tuple(shapes[key])
        if recorded[-1] != frame[-1] or (len(recorded) == 3 and recorded != frame):
            raise ModelFileError(
                f"{path}: the config records {key!r} with shape {list(recorded)}, but its "
                f"frame shape was given as {frame}."
            )
        out[key] = frame
    return out


def resolve(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    """The vision kwargs as the factory takes them: the activation a function from
    `ACTIVATIONS`, initialisers left to the factory's defaults."""
    kwargs = dict(kwargs)
    if "cnn_activation" in kwargs:
        kwargs["cnn_activation"] = activation(kwargs["cnn_activation"], "cnn_activation", path)
    for name in INITIALISER_OPTIONS:
        kwargs.pop(name, None)
    return kwargs

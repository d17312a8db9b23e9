"""Reading the checkpoint folder Brax's own `agents.{ppo,sac}.checkpoint.save` writes.

A step folder holds orbax params (read with Brax's own `checkpoint.load`, orbax's array
files and JSON metadata: no pickle) and `ppo_network_config.json` /
`sac_network_config.json`: the network factory's kwargs with the activation and kernel
initialisers by registered name, `normalize_observations`, `observation_size`,
`action_size`. The networks are rebuilt with Brax's own factory from that config.

The config is read here rather than with Brax's `load_config`, which in Brax 0.14.2 fails on
configs its own `save` writes (`"mean_kernel_init_fn": null` -> `KeyError: None`). Names
are looked up in Brax's own tables (`brax.training.networks.ACTIVATION`,
`KERNEL_INITIALIZER`); nothing a file names is imported, and nothing is unpickled.

A PPO config with `pixels/` observation keys or `cnn_*` options is Brax's vision network's
(`networks_vision.make_ppo_networks_vision`): its options and the function dumps Brax
writes for them are read by `_vision`; its frames are not normalised (Brax keeps no
statistics of them) and their shapes come from the config or from the caller.

A checkpoint is bounded before anything it describes is allocated: the config in closed
form (`_config`, policyport's own limits), then the stored arrays' shapes from Orbax's
metadata against the networks the config describes (`_stored`), and only then the restore.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import _bounded_json as bounded_json
from .._errors import ModelFileError
from ..policy import FunctionPolicy
from ..policy._architecture import MAX_WIDTH, is_int
from . import _vision as vision
from ._config import HIDDEN_DEFAULTS, check_config
from ._policies import from_ppo_params, from_sac_params, require_brax
from ._stored import (
    abstract_observation,
    check_fits,
    check_metadata_files,
    check_stored,
    expected_count,
)

# Brax's kernel-initialiser kwargs (`brax.training.checkpoint._KERNEL_INIT_FN_KEYWORDS`).
_KERNEL_INIT_KEYS = (
    "policy_network_kernel_init_fn",
    "value_network_kernel_init_fn",
    "q_network_kernel_init_fn",
    "mean_kernel_init_fn",
)
# Factory kwargs whose default is None: a null there is a value, not a missing name.
_NULLABLE = ("mean_kernel_init_fn",)
# The factory's arguments that are not network kwargs (Brax passes them itself).
_NOT_KWARGS = ("observation_size", "action_size", "preprocess_observations_fn")
_PICKLE_MARKERS = (b"\x80",)  # pickle protocols 2-5 start with PROTO (0x80)
_RESAVE_CONFIG = "The config is damaged: re-save the checkpoint with Brax's checkpoint code."

_RESAVE = (
    "Re-save the params with Brax's checkpoint code, which writes orbax files and a JSON "
    "config: `brax.training.agents.{algo}.checkpoint.save(folder, step, params, "
    "checkpoint.network_config(observation_size, action_size, normalize_observations, "
    "network_factory))` (or train with `save_checkpoint_path=`), then pass the step folder."
)


@dataclass(frozen=True)
class Algorithm:
    """What differs between PPO and SAC checkpoints."""

    name: str  # "ppo" / "sac", as in `brax.training.agents.<name>`
    config_file: str
    params_length: int


PPO = Algorithm("ppo", "ppo_network_config.json", 3)
SAC = Algorithm("sac", "sac_network_config.json", 2)
ALGORITHMS = (PPO, SAC)


def _import_brax() -> Any:
    require_brax()
    from brax.training import networks

    return networks


def _looks_pickled(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return head.startswith(_PICKLE_MARKERS)


def find_step_folder(path: Path, algorithm: Algorithm) -> Path:
    """The step folder holding `algorithm`'s config: `path` itself, or the latest step
    folder inside it (a `save_checkpoint_path` holds one folder per saved step)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist: give a Brax checkpoint folder.")
    if path.is_file():
        if _looks_pickled(path):
            raise ModelFileError(
                f"{path} is a pickle (Brax's `brax.io.model.save_params` writes those). "
                "policyport never unpickles: loading a pickle runs whatever code it names. "
                + _RESAVE.format(algo=algorithm.name)
            )
        raise ModelFileError(
            f"{path} is a file, but a Brax checkpoint is a folder (orbax params plus "
            f"{algorithm.config_file}). " + _RESAVE.format(algo=algorithm.name)
        )
    if (path / algorithm.config_file).is_file():
        return path
    steps = sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    if steps and (steps[-1] / algorithm.config_file).is_file():
        return steps[-1]
    others = [a for a in ALGORITHMS if a != algorithm and (path / a.config_file).is_file()]
    if others:
        raise ModelFileError(
            f"{path} is a Brax {others[0].name.upper()} checkpoint (it has "
            f"{others[0].config_file}), not {algorithm.name.upper()}: use "
            f"--from brax-{others[0].name} (policyport.brax.from_{others[0].name})."
        )
    pickles = [p.name for p in sorted(path.iterdir()) if p.is_file() and _looks_pickled(p)]
    found = f" It holds pickle file(s) {pickles}, which policyport never loads." if pickles else ""
    raise ModelFileError(
        f"{path} has no {algorithm.config_file}, so it is not a checkpoint folder written "
        f"by Brax's {algorithm.name} checkpoint code (nor a folder of numbered step "
        f"folders holding one).{found} " + _RESAVE.format(algo=algorithm.name)
    )


def _named(table: dict[str, Any], name: Any, key: str, config: Path) -> Any:
    if not isinstance(name, str) or name not in table:
        raise ModelFileError(
            f"{config}: {key} is {name!r}, which is not a name Brax 0.14.2 registers; known: "
            f"{', '.join(sorted(table))}."
        )
    return table[name]


def _kind_problem(value: Any, default: Any) -> str | None:
    """Why `value` cannot stand where the factory's `default` stands, or None.

    Sizes and hidden layers are bounded in `_config`; this checks the remaining kwargs'
    kinds, so Brax never meets a string where it computes with a number."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if is_int(value, 1, MAX_WIDTH) else f"an integer in 1..{MAX_WIDTH}"
    if isinstance(default, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number and math.isfinite(value) else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) and len(value) <= 100 else "a name"
    if default is None:  # mean_clip_scale, the initialisers' kwargs
        ok = value is None or isinstance(value, dict) or is_int(value, 0, MAX_WIDTH)
        ok = ok or (isinstance(value, float) and math.isfinite(value))
        return None if ok else "null, a number or an object"
    return None


def _check_kinds(kwargs: dict[str, Any], algorithm: Algorithm, path: Path, vision_: bool) -> None:
    """Every kwarg is one the factory takes, of the kind its default has."""
    parameters = inspect.signature(_factory(algorithm, vision_)).parameters
    hidden = vision.VISION_HIDDEN_DEFAULTS if vision_ else HIDDEN_DEFAULTS[algorithm.name]
    for name, value in kwargs.items():
        if name not in parameters or name in _NOT_KWARGS:
            raise ModelFileError(
                f"{path}: network_factory_kwargs has {name!r:.60}, which Brax 0.14.2's "
                f"{_factory(algorithm, vision_).__name__} does not take. Was the checkpoint "
                "written with another network factory or Brax version? Re-save it with "
                "Brax's checkpoint code and the factory it was trained with."
            )
        if (
            name == "activation"
            or name in _KERNEL_INIT_KEYS
            or name in hidden
            or (vision_ and name in vision.CHECKED_HERE)
        ):
            continue  # names (looked up below), hidden sizes and the CNN (in `_config`)
        problem = _kind_problem(value, parameters[name].default)
        if problem is not None:
            raise ModelFileError(
                f"{path}: network_factory_kwargs {name} is {value!r:.60}; Brax expects "
                f"{problem}. The config is damaged: re-save the checkpoint with Brax."
            )


def read_config(
    step: Path, algorithm: Algorithm, frame_shapes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config as a dict of factory arguments, names replaced by Brax's functions
    (key `vision`: whether it is Brax's vision network's).

    Bounded before Brax sees it: the file's bytes before reading, its JSON while parsing,
    its numbers in closed form (`_config.check_config`)."""
    path = step / algorithm.config_file
    text = bounded_json.read_text(path, "the network config", ModelFileError)
    config = bounded_json.loads(text, f"{path}", ModelFileError, _RESAVE_CONFIG)
    shapes, kwargs = check_config(config, algorithm.name, path, frame_shapes)
    is_vision = algorithm is PPO and vision.is_vision(shapes, kwargs)
    networks = _import_brax()
    _check_kinds(kwargs, algorithm, path, is_vision)
    if is_vision:
        kwargs = vision.resolve(kwargs, path)
    if "activation" in kwargs:
        kwargs["activation"] = _named(
            networks.ACTIVATION, kwargs["activation"], "the activation", path
        )
    for key in _KERNEL_INIT_KEYS:
        if key not in kwargs:
            continue
        if kwargs[key] is None:
            if key not in _NULLABLE:
                del kwargs[key]  # only initialises weights, which are read from the file
            continue
        kwargs[key] = _named(networks.KERNEL_INITIALIZER, kwargs[key], key, path)
    return {
        **config,
        "network_factory_kwargs": kwargs,
        "observation_size": shapes,
        "vision": is_vision,
    }


def _factory(algorithm: Algorithm, vision_: bool = False) -> Callable[..., Any]:
    if vision_:
        from brax.training.agents.ppo.networks_vision import make_ppo_networks_vision

        return make_ppo_networks_vision
    if algorithm is PPO:
        from brax.training.agents.ppo.networks import make_ppo_networks

        return make_ppo_networks
    from brax.training.agents.sac.networks import make_sac_networks

    return make_sac_networks


def build_networks(config: dict[str, Any], algorithm: Algorithm, path: Path) -> Any:
    """Brax's own factory, called as Brax's `checkpoint.get_network` calls it."""
    from brax.training import checkpoint
    from ml_collections import config_dict

    config = dict(config)
    factory = _factory(algorithm, config.pop("vision", False))
    shapes = config["observation_size"]
    # A flat observation goes to the factory as its size, as Brax's trainers pass it (SAC's
    # factory takes nothing else); a dict of shapes as PPO's trainer passes it.
    size = shapes[0] if isinstance(shapes, tuple) and len(shapes) == 1 else shapes
    try:
        return checkpoint.get_network(
            config_dict.create(**{**config, "observation_size": size}), factory
        )
    except (TypeError, ValueError) as e:
        raise ModelFileError(
            f"{path}: Brax 0.14.2's {factory.__name__} cannot be built from this config: "
            f"{str(e).rstrip('.')}. Was the checkpoint written with another network factory "
            "or another Brax version?"
        ) from e


def read_params(step: Path, algorithm: Algorithm) -> tuple[Any, ...]:
    """The params with Brax's own `checkpoint.load` (orbax: array files, JSON metadata)."""
    from brax.training import checkpoint

    if not (step / "_METADATA").is_file():
        raise ModelFileError(
            f"{step} has {algorithm.config_file} but no orbax params (_METADATA): the "
            "checkpoint is incomplete."
        )
    try:
        params = checkpoint.load(step.resolve())  # orbax refuses relative paths
    except Exception as e:  # orbax / tensorstore failures have no common base class
        raise ModelFileError(
            f"{step}: reading the orbax params failed: {type(e).__name__}: {str(e)[:300]}."
        ) from e
    if len(params) != algorithm.params_length:
        raise ModelFileError(
            f"{step} holds {len(params)} parameter groups; a Brax {algorithm.name.upper()} "
            f"checkpoint holds {algorithm.params_length}."
        )
    return tuple(params)


def normalised_shapes(shapes: Any) -> Any:
    """The observations Brax's normaliser tracks: all but the frames (Brax's PPO training
    keeps no statistics of `pixels/` keys)."""
    if isinstance(shapes, dict):
        return {k: v for k, v in shapes.items() if not k.startswith(vision.PIXELS)}
    return shapes


def _check_observation_size(config: dict[str, Any], normalizer: Any, path: Path) -> None:
    expected = normalised_shapes(config["observation_size"])
    mean = normalizer.mean
    found = (
        {k: tuple(np.shape(v)) for k, v in mean.items()}
        if isinstance(mean, dict)
        else tuple(np.shape(mean))
    )
    if found != expected:
        raise ModelFileError(
            f"{path}: the normaliser's observation shapes {found} do not match the config's "
            f"observation_size {expected}."
        )


def _expected_params(networks: Any, algorithm: Algorithm, path: Path) -> tuple[Any, ...]:
    """The policy's (and PPO's value's) params as abstract arrays: Brax's own init, traced."""
    key = jax.random.key(0)
    inits = [networks.policy_network.init]
    if algorithm is PPO:
        inits.append(networks.value_network.init)
    try:
        return tuple(jax.eval_shape(init, key) for init in inits)
    except Exception as e:  # Brax's init on the config's kwargs (an initialiser's kwargs)
        raise ModelFileError(
            f"{path}: Brax 0.14.2's networks cannot be initialised from this config: "
            f"{type(e).__name__}: {str(e)[:300]}. Re-save the checkpoint with Brax."
        ) from e


def load(path: Path, algorithm: Algorithm) -> tuple[Any, tuple[Any, ...], Path]:
    """Networks and params of the checkpoint at `path` (see `load_frames`)."""
    networks, params, step, _ = load_frames(path, algorithm)
    return networks, params, step


def load_frames(
    path: Path, algorithm: Algorithm, frame_shapes: dict[str, Any] | None = None
) -> tuple[Any, tuple[Any, ...], Path, dict[str, tuple[int, ...]]]:
    """Networks and params of the checkpoint at `path`, checked against each other, and
    the shapes of the frames a vision network reads (none for the others).

    Everything is bounded before it is allocated: the config in closed form, then the
    stored arrays' shapes against the networks it describes, and only then the restore."""
    step = find_step_folder(Path(path), algorithm)
    config = read_config(step, algorithm, frame_shapes)
    networks = build_networks(config, algorithm, step)
    expected = _expected_params(networks, algorithm, step)
    shapes = config["observation_size"]
    frames = {}
    if isinstance(shapes, dict):
        frames = {k: v for k, v in shapes.items() if k not in normalised_shapes(shapes)}
    observation = abstract_observation(normalised_shapes(shapes))
    check_metadata_files(step, expected_count(expected, observation))
    check_stored(step, expected, observation, algorithm.params_length, algorithm.name)
    params = read_params(step, algorithm)
    _check_observation_size(config, params[0], step)
    for what, want, found in zip(("policy", "value"), expected, params[1:], strict=False):
        check_fits(want, found, what, step)
    return networks, params, step, frames


def from_ppo(
    path: str | Path,
    *,
    value: bool | None = None,
    frame_shapes: dict[str, tuple[int, int, int]] | None = None,
    frame_range: tuple[float, float] = (0.0, 1.0),
    uint8_frames: bool = False,
) -> FunctionPolicy:
    """The policy in a Brax PPO checkpoint folder (`ppo_network_config.json` + orbax params),
    Brax's MLP networks or its vision networks (`make_ppo_networks_vision`, recognised from
    the config's `pixels/` keys and CNN options).

    `path` is a step folder, or a `save_checkpoint_path` holding step folders (the latest
    is read). `value` as in `from_ppo_params`. `frame_shapes`: each `pixels/` key's
    `(height, width, channels)`, needed where the config records only the channels (Brax's
    PPO training writes the config so); a config with the full shapes needs none.
    `frame_range`, `uint8_frames`: what the frames are, as in `from_ppo_params`.
    """
    networks, params, step, frames = load_frames(Path(path), PPO, frame_shapes)
    return from_ppo_params(
        networks,
        params,
        value=value,
        name=f"brax.ppo:{step.name}",
        frame_shapes=frames,
        frame_range=frame_range,
        uint8_frames=uint8_frames,
    )


def from_sac(path: str | Path) -> FunctionPolicy:
    """The policy in a Brax SAC checkpoint folder (`sac_network_config.json` + orbax params)."""
    networks, params, step = load(Path(path), SAC)
    return from_sac_params(networks, params, name=f"brax.sac:{step.name}")

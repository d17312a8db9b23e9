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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._errors import ModelFileError
from ..policy import FunctionPolicy
from ._policies import from_ppo_params, from_sac_params, require_brax

# Brax's kernel-initialiser kwargs (`brax.training.checkpoint._KERNEL_INIT_FN_KEYWORDS`).
_KERNEL_INIT_KEYS = (
    "policy_network_kernel_init_fn",
    "value_network_kernel_init_fn",
    "q_network_kernel_init_fn",
    "mean_kernel_init_fn",
)
# Factory kwargs whose default is None: a null there is a value, not a missing name.
_NULLABLE = ("mean_kernel_init_fn",)
_PICKLE_MARKERS = (b"\x80",)  # pickle protocols 2-5 start with PROTO (0x80)

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


def read_config(step: Path, algorithm: Algorithm) -> dict[str, Any]:
    """The config as a dict of factory arguments, names replaced by Brax's functions."""
    networks = _import_brax()
    path = step / algorithm.config_file
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path} is not readable JSON: {e}.") from e
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} must hold a JSON object, found {type(config).__name__}.")
    missing = [
        k
        for k in ("network_factory_kwargs", "normalize_observations", "observation_size")
        if k not in config
    ] + ([] if "action_size" in config else ["action_size"])
    if missing:
        raise ModelFileError(f"{path} lacks {missing}: it is not a Brax network config.")
    kwargs = config["network_factory_kwargs"]
    if not isinstance(kwargs, dict):
        raise ModelFileError(f"{path}: network_factory_kwargs must be an object.")
    kwargs = dict(kwargs)
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
    shapes = observation_shapes(config["observation_size"], path)
    return {**config, "network_factory_kwargs": kwargs, "observation_size": shapes}


# Brax's PPO training records `observation_size` as a `specs.Array` per leaf, which its
# config writer turns into {"shape": [n], "dtype": "unserializable object: float32"}.
_SPEC_KEYS = {"shape", "dtype"}
Shapes = tuple[int, ...] | dict[str, tuple[int, ...]]


def _leaf_shape(value: Any, path: Path) -> tuple[int, ...]:
    if isinstance(value, dict) and set(value) == _SPEC_KEYS:
        value = value["shape"]
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and all(isinstance(d, int) for d in value):
        return tuple(value)
    raise ModelFileError(
        f"{path}: observation_size holds {value!r}; expected a size, a shape, or Brax's "
        "array spec ({'shape': [...], 'dtype': ...}) per observation key."
    )


def observation_shapes(value: Any, path: Path) -> Shapes:
    """`observation_size` as Brax writes it (an int, a shape, an array spec, or a dict of
    those per observation key) as shapes."""
    if isinstance(value, dict) and set(value) != _SPEC_KEYS:
        return {str(k): _leaf_shape(v, path) for k, v in value.items()}
    return _leaf_shape(value, path)


def _factory(algorithm: Algorithm) -> Callable[..., Any]:
    if algorithm is PPO:
        from brax.training.agents.ppo.networks import make_ppo_networks

        return make_ppo_networks
    from brax.training.agents.sac.networks import make_sac_networks

    return make_sac_networks


def build_networks(config: dict[str, Any], algorithm: Algorithm, path: Path) -> Any:
    """Brax's own factory, called as Brax's `checkpoint.get_network` calls it."""
    from brax.training import checkpoint
    from ml_collections import config_dict

    shapes = config["observation_size"]
    # A flat observation goes to the factory as its size, as Brax's trainers pass it (SAC's
    # factory takes nothing else); a dict of shapes as PPO's trainer passes it.
    size = shapes[0] if isinstance(shapes, tuple) and len(shapes) == 1 else shapes
    try:
        return checkpoint.get_network(
            config_dict.create(**{**config, "observation_size": size}), _factory(algorithm)
        )
    except (TypeError, ValueError) as e:
        raise ModelFileError(
            f"{path}: Brax 0.14.2's make_{algorithm.name}_networks cannot be built from this "
            f"config: {str(e).rstrip('.')}. Was the checkpoint written with another network "
            "factory (vision networks are not supported) or another Brax version?"
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


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    return {
        jax.tree_util.keystr(p): tuple(np.shape(x))
        for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def check_fits(expected: Any, found: Any, what: str, path: Path) -> None:
    """`found` has exactly the leaves and shapes of `expected` (from the network's init)."""
    want, have = _shapes(expected), _shapes(found)
    problems = [f"{k}: missing (expected {v})" for k, v in want.items() if k not in have]
    problems += [f"{k}: unexpected" for k in have if k not in want]
    problems += [
        f"{k}: shape {have[k]}, expected {v}" for k, v in want.items() if k in have and have[k] != v
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise ModelFileError(
            f"{path}: the {what} params do not fit the network its config describes: {shown}."
        )


def _check_observation_size(config: dict[str, Any], normalizer: Any, path: Path) -> None:
    expected = config["observation_size"]
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


def load(path: Path, algorithm: Algorithm) -> tuple[Any, tuple[Any, ...], Path]:
    """Networks and params of the checkpoint at `path`, checked against each other."""
    step = find_step_folder(Path(path), algorithm)
    config = read_config(step, algorithm)
    networks = build_networks(config, algorithm, step)
    params = read_params(step, algorithm)
    _check_observation_size(config, params[0], step)
    key = jax.random.key(0)
    check_fits(jax.eval_shape(networks.policy_network.init, key), params[1], "policy", step)
    if algorithm is PPO:
        check_fits(jax.eval_shape(networks.value_network.init, key), params[2], "value", step)
    return networks, params, step


def from_ppo(path: str | Path, *, value: bool | None = None) -> FunctionPolicy:
    """The policy in a Brax PPO checkpoint folder (`ppo_network_config.json` + orbax params).

    `path` is a step folder, or a `save_checkpoint_path` holding step folders (the latest
    is read). `value` as in `from_ppo_params`.
    """
    networks, params, step = load(Path(path), PPO)
    return from_ppo_params(networks, params, value=value, name=f"brax.ppo:{step.name}")


def from_sac(path: str | Path) -> FunctionPolicy:
    """The policy in a Brax SAC checkpoint folder (`sac_network_config.json` + orbax params)."""
    networks, params, step = load(Path(path), SAC)
    return from_sac_params(networks, params, name=f"brax.sac:{step.name}")

"""The arrays a Brax checkpoint stores, judged by their metadata before they are restored.

Orbax allocates each array at the shape its stored metadata claims: one claiming 10^12
elements aborted the process inside Orbax (`std::bad_alloc`, SIGABRT), which no `except`
catches. So the shapes are read first with Orbax's metadata API (`PyTreeCheckpointer().
metadata`, what Brax's own `checkpoint.load` reads to build its restore arguments) and
must be exactly those of the networks the (already bounded) config describes; and the
JSON files Orbax parses on the way are bounded in bytes, nesting and entries before that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import _bounded_json as bounded_json
from .._errors import ModelFileError

# What Orbax parses before it opens any array: the tree, the per-array metadata, the
# shardings and the checkpoint's own metadata.
_ORBAX_JSON = ("_METADATA", "_CHECKPOINT_METADATA", "_sharding")
_ORBAX_JSON_FOLDERS = ("array_metadatas",)
# The normaliser's arrays with the observation's shapes; its others are scalars
# (`count`, or its `hi`/`lo` halves, and `std_eps`).
NORMALISER_ARRAYS = ("mean", "std", "summed_variance")
_NORMALISER_SCALARS = 3
_RESAVE = "The checkpoint is damaged: re-save it with Brax's checkpoint code."
_SLACK = 8  # entries beyond those counted, for scalars a later Brax may add


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Each leaf's shape by path: arrays, abstract arrays and Orbax's `ArrayMetadata`."""
    return {
        jax.tree_util.keystr(p): tuple(x.shape if hasattr(x, "shape") else np.shape(x))
        for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def check_fits(expected: Any, found: Any, what: str, path: Path) -> None:
    """`found` has exactly the leaves and shapes of `expected` (from the network's init)."""
    want, have = shapes(expected), shapes(found)
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
            f"{path}: the {what} params do not fit the network its config describes: {shown}. "
            "Re-save the checkpoint with the config it was trained with."
        )


def _bounded_files(step: Path) -> list[Path]:
    files = [step / name for name in _ORBAX_JSON]
    for folder in _ORBAX_JSON_FOLDERS:
        if (step / folder).is_dir():
            files += sorted((step / folder).iterdir())[: _SLACK + 1]
    return [f for f in files if f.exists()]


def check_metadata_files(step: Path, expected_arrays: int) -> None:
    """Orbax's JSON files are small and the tree names no more arrays than expected."""
    if not (step / "_METADATA").is_file():
        raise ModelFileError(
            f"{step} has a network config but no orbax params (_METADATA): the checkpoint "
            "is incomplete."
        )
    for file in _bounded_files(step):
        text = bounded_json.read_text(file, "orbax's metadata", ModelFileError)
        if file.name == "_METADATA":
            tree = bounded_json.loads(text, str(file), ModelFileError, _RESAVE)
            entries = tree.get("tree_metadata") if isinstance(tree, dict) else None
            if not isinstance(entries, dict):
                raise ModelFileError(f"{file} has no tree_metadata object. {_RESAVE}")
            if len(entries) > expected_arrays + _SLACK:
                raise ModelFileError(
                    f"{file} lists {len(entries)} arrays; the networks the config describes "
                    f"have {expected_arrays}. The params were saved from other networks: "
                    "re-save the checkpoint with the config it was trained with."
                )


def read_metadata(step: Path) -> Any:
    """The stored tree, each leaf Orbax's `ArrayMetadata` (shape, dtype): nothing restored.

    Orbax's `ScalarMetadata` says shape () without looking, yet its restore reads the
    stored array whole, at whatever shape it claims: those are opened (not read) here."""
    from orbax import checkpoint as ocp

    try:
        metadata = ocp.PyTreeCheckpointer().metadata(step.resolve()).item_metadata
        for leaf in jax.tree.leaves(metadata.tree):
            if isinstance(leaf, ocp.metadata.ScalarMetadata):
                _check_scalar(step, leaf.name, bool(metadata.use_zarr3))
            elif not isinstance(leaf, ocp.metadata.ArrayMetadata):
                raise ModelFileError(
                    f"{step} stores a {type(leaf).__name__} where Brax stores arrays. " + _RESAVE
                )
        return metadata.tree
    except ModelFileError:
        raise
    except Exception as e:  # orbax / tensorstore failures have no common base class
        raise ModelFileError(
            f"{step}: reading the orbax metadata failed: {type(e).__name__}: {str(e)[:300]}. "
            + _RESAVE
        ) from e


def _shown(shapes_: dict[str, tuple[int, ...]]) -> str:
    """Shapes by path as the config writes them: one shape, or a dict by key."""
    if list(shapes_) == [""]:
        return str(shapes_[""])
    return str({k.strip("[]'"): v for k, v in shapes_.items()})


def _check_scalar(step: Path, name: str, zarr3: bool) -> None:
    """The array Orbax restores a scalar from holds one element (opened, not read)."""
    import tensorstore as ts

    base: dict[str, Any] = {"driver": "file", "path": f"{step.resolve()}/"}
    if (step / "manifest.ocdbt").is_file():
        base = {"driver": "ocdbt", "base": base}
    spec = {"driver": "zarr3" if zarr3 else "zarr", "kvstore": base, "path": f"{name}/"}
    shape = tuple(ts.open(spec, open=True, read=True).result().shape)
    if shape != ():
        raise ModelFileError(
            f"{step}: the scalar {name} is stored as an array of shape {shape}. " + _RESAVE
        )


def _normaliser_problem(stored: Any, observation: Any, path: Path) -> None:
    """The normaliser's statistics have the observation's shapes; its others are scalars."""
    if not isinstance(stored, dict) or not {"mean", "std"} <= set(stored):
        raise ModelFileError(
            f"{path}: the first parameter group is not Brax's running statistics (no mean "
            "and std): the checkpoint was not written by Brax's checkpoint code. " + _RESAVE
        )
    want = shapes(observation)
    for name in (k for k in NORMALISER_ARRAYS if k in stored):
        found = shapes(stored[name])
        if found != want:
            raise ModelFileError(
                f"{path}: the normaliser's observation shapes {_shown(found)} do not match "
                f"the config's observation_size {_shown(want)} (its {name}): the config was "
                "edited, or belongs to another checkpoint: re-save the checkpoint with Brax."
            )
    others = {k: v for k, v in stored.items() if k not in NORMALISER_ARRAYS}
    for name, shape in shapes(others).items():
        if shape != ():
            raise ModelFileError(
                f"{path}: the normaliser's {name} has shape {shape}; Brax stores a scalar. "
                + _RESAVE
            )


def check_stored(
    step: Path, expected: tuple[Any, ...], observation: Any, length: int, algorithm: str
) -> None:
    """The stored arrays are exactly `expected`'s (the normaliser's, then the networks'),
    judged from Orbax's metadata before any is restored."""
    tree = read_metadata(step)
    if not isinstance(tree, list | tuple) or len(tree) != length:
        found = len(tree) if isinstance(tree, list | tuple) else type(tree).__name__
        raise ModelFileError(
            f"{step} holds {found} parameter groups; a Brax {algorithm.upper()} checkpoint "
            f"holds {length}."
        )
    _normaliser_problem(tree[0], observation, step)
    for what, want, found in zip(("policy", "value"), expected, tree[1:], strict=False):
        check_fits(want, found, what, step)


def abstract_observation(shapes_: Any) -> Any:
    """The config's observation shapes as abstract float32 arrays (a tree)."""
    if isinstance(shapes_, dict):
        return {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in shapes_.items()}
    return jax.ShapeDtypeStruct(shapes_, np.float32)


def expected_count(expected: tuple[Any, ...], observation: Any) -> int:
    """How many arrays a checkpoint of these networks stores."""
    statistics = len(jax.tree.leaves(observation)) * len(NORMALISER_ARRAYS)
    return sum(len(jax.tree.leaves(t)) for t in expected) + statistics + _NORMALISER_SCALARS

"""Which model files a sweep exports, and where each one's artifacts go.

Models are files, folders (every `*.eqx` below them) and globs (`runs/**/policy.eqx`,
`**` recursive). Outputs are named per model by `-o`: nothing (beside each model), an
existing folder (or a path ending in `/`: `FOLDER/{stem}` plus the format's suffix), or a
template whose fields are `TEMPLATE_FIELDS`. Every destination is known before anything
is exported, so two models that would write the same path are refused up front.
"""

from __future__ import annotations

import glob
import os
import string
from collections.abc import Sequence
from pathlib import Path

from .._errors import InputError
from ..formats import FORMATS

# Files a folder given as a model stands for.
MODEL_PATTERN = "*.eqx"
# Fields of an `-o` template, and what each gives for `runs/lr3/seed1/policy.eqx` in
# `policyport export-policy runs/` (the docs show the same table).
TEMPLATE_FIELDS = {
    "stem": "the model's file name without its suffix (`policy`)",
    "name": "the model's file name (`policy.eqx`)",
    "parent": "the name of the model's folder (`seed1`)",
    "relstem": "the model's path below the models' common folder, without its suffix, "
    "`/` kept (`lr3/seed1/policy`)",
    "index": "the model's position in the sorted list, from 0",
    "format": "the format (`onnx`)",
}
_GLOB_CHARS = frozenset("*?[")


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def expand_models(models: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every model file named by `models` (files, folders, globs), sorted, without repeats.

    A folder or glob that matches no file is refused: it is a typo more often than not. A
    plain file is kept even if missing: the sweep then reports it as refused.
    """
    if not models:
        raise InputError("No models given: name policy files, folders or globs.")
    found: dict[Path, None] = {}
    for model in models:
        text = os.fspath(model)
        path = Path(text)
        if os.path.isdir(path):  # os.path's tests say False where pathlib's raise
            matches = sorted(p for p in path.rglob(MODEL_PATTERN) if os.path.isfile(p))
            if not matches:
                raise InputError(
                    f"Folder {path} holds no {MODEL_PATTERN} file (searched recursively). "
                    "Name the model files or a glob such as 'runs/**/policy.eqx'."
                )
        elif _is_glob(text) and not os.path.exists(path):
            found_files = glob.glob(text, recursive=True)
            matches = sorted(Path(p) for p in found_files if os.path.isfile(p))
            if not matches:
                raise InputError(
                    f"No file matches {text!r}. Check the pattern (quote it so the shell "
                    "does not expand it; '**' matches any depth of folders)."
                )
        else:
            matches = [path]
        for match in matches:
            found.setdefault(Path(os.path.normpath(match)), None)
    return list(found)


def _common_folder(models: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(m.absolute().parent) for m in models]))


def template_fields(text: str) -> list[str]:
    """The fields `text` uses; unknown ones refused with the list of known ones."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as e:
        raise InputError(f"-o {text!r} is not a valid template ({e}).") from e
    unknown = sorted({n for n in names if n not in TEMPLATE_FIELDS})
    if unknown or any(n == "" or n.isdigit() for n in names):
        raise InputError(
            f"-o {text!r} uses unknown field(s) {unknown or names}; fields: "
            f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}."
        )
    return names


def output_paths(
    models: Sequence[Path], output: str | os.PathLike[str] | None, format: str
) -> list[Path | None]:
    """The `-o` path handed to `export` for each model (None: beside the model)."""
    if output is None:
        return [None] * len(models)
    text = os.fspath(output)
    if "{" in text:
        template_fields(text)
        common = _common_folder(models)
        return [
            Path(
                text.format(
                    stem=m.stem,
                    name=m.name,
                    parent=m.absolute().parent.name,
                    relstem=str(m.absolute().with_suffix("").relative_to(common)),
                    index=i,
                    format=format,
                )
            )
            for i, m in enumerate(models)
        ]
    folder = Path(text)
    if os.path.isdir(folder) or text.endswith(("/", os.sep)):
        suffix = "" if format not in FORMATS else FORMATS[format].suffix
        return [folder / f"{m.stem}{suffix}" for m in models]
    raise InputError(
        f"-o {text} names one file, but {len(models)} models are exported: give a folder "
        "(an existing one, or a path ending in '/') or a template such as "
        "'out/{stem}.onnx'."
    )


def find_collisions(
    models: Sequence[Path], destinations: Sequence[Sequence[Path]]
) -> tuple[Path, Path, Path] | None:
    """The first path two models would both write (and the two models), if any."""
    owner: dict[Path, Path] = {}
    for model, paths in zip(models, destinations, strict=True):
        for path in paths:
            key = Path(os.path.normpath(path.absolute()))
            if key in owner and owner[key] != model:
                return key, owner[key], model
            owner[key] = model
    return None

"""Which model files a sweep exports, and where each one's artifacts go.

Models are files, folders (every `*.eqx` below them) and globs (`runs/**/policy.eqx`,
`**` recursive; a symlink is followed only into a folder not visited yet, so links that
loop end). Outputs are named per model by `-o`: nothing (beside each model), an existing
folder (or a path ending in `/`: `FOLDER/{stem}` plus the format's suffix), or a template
whose fields are `TEMPLATE_FIELDS`. Every output is made absolute and normalised
(`os.path.abspath`: `..` taken away by the text, as a shell's `cd` does) once, here. Every
destination is known before anything is exported, so two models that would write the same
path are refused up front.
"""

from __future__ import annotations

import fnmatch
import os
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def names_folder(text: str) -> bool:
    """Whether `-o text` names a folder to write into: a path ending in `/`, or an existing
    folder that is not an artifact (a SavedModel or StableHLO folder is replaced by
    `--force`, not written into)."""
    from ..formats import FORMATS

    if text.endswith(("/", os.sep)):
        return True
    if not os.path.isdir(text):
        return False
    markers = {f.marker for f in FORMATS.values() if f.marker is not None}
    return not any(os.path.lexists(os.path.join(text, marker)) for marker in markers)


def _subfolders(folder: str, hidden: bool) -> tuple[list[str], list[str]]:
    """`folder`'s subfolders, sorted: the real ones, and those reached through a symlink."""
    real: list[str] = []
    linked: list[str] = []
    try:
        with os.scandir(folder or os.curdir) as entries:
            for entry in entries:
                if not hidden and entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():  # follows a symlink
                        (linked if entry.is_symlink() else real).append(entry.name)
                except OSError:
                    continue
    except OSError:  # unreadable, vanished, not a folder: nothing below it
        pass
    return sorted(real), sorted(linked)


def _folder_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path or os.curdir)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def walk_folders(top: str, hidden: bool = False) -> list[str]:
    """`top` and every folder below it (as paths joined onto `top`; `""` is the current
    folder), each real folder once by `os.stat`'s device and inode: the real tree first,
    then symlinks into folders not visited yet. A symlink loop, or two links to one
    folder, cannot make the walk repeat or run on."""
    visited: set[tuple[int, int]] = set()
    found: list[str] = []
    pending = [top]  # the top, then folders reached through a symlink
    while pending:
        stack = [pending.pop(0)]
        while stack:
            folder = stack.pop()
            key = _folder_id(folder)
            if key is None or key in visited:
                continue
            visited.add(key)
            found.append(folder)
            real, linked = _subfolders(folder, hidden)
            pending.extend(os.path.join(folder, name) for name in linked)
            stack.extend(os.path.join(folder, name) for name in reversed(real))
    return found


def _names(folder: str, pattern: str) -> list[str]:
    """The entries of `folder` whose names match one glob component (hidden names only for
    a component that starts with `.`, as `glob` does)."""
    try:
        names = os.listdir(folder or os.curdir)
    except (OSError, ValueError):
        return []
    hidden = pattern.startswith(".")
    return sorted(
        n for n in names if (hidden or not n.startswith(".")) and fnmatch.fnmatchcase(n, pattern)
    )


def glob_paths(pattern: str) -> list[str]:
    """What `glob.glob(pattern, recursive=True)` finds, but `**` follows a symlink only
    into a folder it has not visited (`walk_folders`): `glob`'s own walk repeats a symlink
    loop until the path is too long (one loop: the same model 41 times), and two loops
    multiply without end."""
    found = [os.sep] if pattern.startswith(os.sep) else [""]
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if part == "":  # the root, `a//b`, or a trailing `/`
            if i:
                found = [f for f in found if os.path.isdir(f or os.curdir)]
            continue
        matches: list[str] = []
        for base in found:
            if part == "**":
                folders = walk_folders(base)
                matches.extend(folders)
                if i == len(parts) - 1:  # `runs/**`: the files in each folder too
                    for folder in folders:
                        matches.extend(os.path.join(folder, n) for n in _names(folder, "*"))
            elif _is_glob(part):
                matches.extend(os.path.join(base, n) for n in _names(base, part))
            elif os.path.lexists(path := os.path.join(base, part)):
                matches.append(path)
        found = list(dict.fromkeys(matches))
    return [f for f in found if f]


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
            found_files = glob_paths(text)
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
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(m)) for m in models]))


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


def _field_values(model: Path, index: int, common: Path, format: str) -> dict[str, Any]:
    absolute = Path(os.path.abspath(model))
    return {
        "stem": model.stem,
        "name": model.name,
        "parent": absolute.parent.name,
        "relstem": str(absolute.with_suffix("").relative_to(common)),
        "index": index,  # an int: `{index:03d}` works
        "format": format,
    }


def _format(text: str, values: dict[str, Any]) -> str:
    try:
        return text.format(**values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise InputError(
            f"-o {text!r} is not a valid template ({type(e).__name__}: {e}). Fields take "
            "no format spec except {index}'s (e.g. '{index:03d}')."
        ) from e


def template_refusals(
    models: Sequence[Path], output: str | os.PathLike[str] | None
) -> dict[int, str]:
    """Models (by index) whose `-o` template fields would climb out of the folder the
    template names: a model file named `..eqx` or `...eqx` has the stem `.` or `..`, so
    `out/{stem}/x.onnx` would be `out/../x.onnx`. Each is refused on its own; the others
    are exported."""
    text = "" if output is None else os.fspath(output)
    if "{" not in text:
        return {}
    used = set(template_fields(text))
    common = _common_folder(models)
    refusals = {}
    for i, model in enumerate(models):
        values = _field_values(model, i, common, "")
        bad = sorted(f for f in used if {".", ".."} & set(str(values[f]).split("/")))
        if bad:
            refusals[i] = (
                f"{model}: its {', '.join('{' + f + '}' for f in bad)} is "
                f"{values[bad[0]]!r}, which would make -o {text!r} name a path outside the "
                "template's folder. Rename the model file, or use another field such as "
                "{index} or {parent}."
            )
    return refusals


def output_paths(
    models: Sequence[Path], output: str | os.PathLike[str] | None, format: str
) -> list[Path | None]:
    """The `-o` path handed to `export` for each model (None: beside the model), absolute
    and normalised."""
    if output is None:
        return [None] * len(models)
    text = os.fspath(output)
    if "{" in text:
        template_fields(text)
        common = _common_folder(models)
        return [
            Path(os.path.abspath(_format(text, _field_values(m, i, common, format))))
            for i, m in enumerate(models)
        ]
    if names_folder(text):
        folder = os.path.abspath(text)
        suffix = "" if format not in FORMATS else FORMATS[format].suffix
        return [Path(folder, f"{m.stem}{suffix}") for m in models]
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
            key = Path(os.path.abspath(path))
            if key in owner and owner[key] != model:
                return key, owner[key], model
            owner[key] = model
    return None

"""A policy's structure: everything about it but its weights' values.

Equinox's leaf serialisation stores array values and Python scalars only; which activation
an MLP applies, its static fields and its modules' classes live in the code that rebuilds
it. Two policies with the same leaves but another structure compute different things, so a
policy file must be checked (and hashed) for structure as well as leaves.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import equinox as eqx
import jax
import numpy as np


def _name(obj: Any) -> str:
    """A callable's name, stable across processes and library reorganisations."""
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


def describe_structure(tree: Any, path: str = "") -> list[str]:
    """One line per node: module classes, static fields, container sizes, array shapes and
    dtypes, Python scalars and callables by name. Array values are left out.

    Works on a built policy and on its `eqx.filter_eval_shape` twin alike.
    """
    if isinstance(tree, eqx.Module):
        lines = [f"{path or '.'}: {type(tree).__qualname__}"]
        for field in dataclasses.fields(tree):
            value = getattr(tree, field.name, None)
            if field.metadata.get("static", False):
                lines.append(f"{path}.{field.name} = static {value!r}")
            else:
                lines.extend(describe_structure(value, f"{path}.{field.name}"))
        return lines
    if isinstance(tree, list | tuple):
        lines = [f"{path}: {type(tree).__name__} of {len(tree)}"]
        for i, item in enumerate(tree):
            lines.extend(describe_structure(item, f"{path}[{i}]"))
        return lines
    if isinstance(tree, dict):
        lines = [f"{path}: dict {list(tree)!r}"]
        for key, item in tree.items():
            lines.extend(describe_structure(item, f"{path}[{key!r}]"))
        return lines
    if isinstance(tree, jax.Array | jax.ShapeDtypeStruct | np.ndarray | np.generic):
        return [f"{path}: {np.dtype(tree.dtype).name}{list(tree.shape)}"]
    if tree is None or isinstance(tree, bool | int | float | str):
        return [f"{path}: {type(tree).__name__} {tree!r}"]
    if callable(tree):
        return [f"{path}: callable {_name(tree)}"]
    return [f"{path}: {type(tree).__qualname__}"]


def structure_sha256(tree: Any) -> str:
    """A hash of `describe_structure(tree)`."""
    return hashlib.sha256("\n".join(describe_structure(tree)).encode()).hexdigest()


def structure_difference(policy: Any, rebuilt: Any) -> str | None:
    """The first way `policy`'s structure differs from `rebuilt`'s, or None.

    Callables are compared by identity too: two functions may share a name.
    """
    ours, theirs = describe_structure(policy), describe_structure(rebuilt)
    for mine, other in zip(ours, theirs, strict=False):
        if mine != other:
            return f"{mine!r} where the constructor builds {other!r}"
    if len(ours) != len(theirs):
        return f"{len(ours)} nodes where the constructor builds {len(theirs)}"
    pairs = zip(jax.tree.leaves(policy), jax.tree.leaves(rebuilt), strict=True)
    for mine, other in pairs:
        if callable(mine) and not isinstance(mine, eqx.Module) and mine is not other:
            return f"the function {mine!r} where the constructor uses {other!r}"
    return None

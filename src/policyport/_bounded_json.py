"""JSON from outside (a checkpoint's config, `--policy-kwargs`), bounded before it is used.

Python's `json` reads a whole file however large, recurses once per nesting level (100k
`[` end in RecursionError) and parses integers of any length (thousands of digits end in
a ValueError from `int`): each would reach the user as a crash, or as gigabytes read. Here
the bytes are bounded before reading, the digits while parsing and the nesting after, and
every refusal is the caller's `InputError` subclass with a message that says what to do.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from ._errors import InputError

# A Brax network config is ~1 KB; a policyport header may be 1 MiB: so may a config.
MAX_JSON_BYTES = 1 << 20
# Brax's deepest config value is a kernel initialiser's kwargs inside the factory's kwargs.
MAX_JSON_DEPTH = 16
# Sizes are at most 2**24 and seeds fit 64 bits: 20 digits hold every legitimate integer.
MAX_INT_DIGITS = 20


def read_text(path: Path, what: str, error: type[InputError], limit: int = MAX_JSON_BYTES) -> str:
    """The UTF-8 text of the regular file `path`, refused unread when over `limit` bytes."""
    try:
        info = path.stat()
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}.") from e
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {what} must be a regular file (not a folder, FIFO or device).")
    if info.st_size > limit:
        raise error(
            f"{path}: {what} is {info.st_size} bytes; the limit is {limit}, and a real one "
            "is a few KB. The file is damaged or is not what it is named: re-save it."
        )
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # the file may have grown since `stat`
        if len(data) > limit:
            raise error(f"{path}: {what} grew past {limit} bytes while being read.")
        return data.decode()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read {what}: {e}.") from e


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def depth(value: Any) -> int:
    """How deeply `value`'s lists and objects nest (a scalar: 0), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def loads(text: str, what: str, error: type[InputError], fix: str) -> Any:
    """`text` parsed as JSON within `MAX_JSON_BYTES`, `MAX_JSON_DEPTH` and `MAX_INT_DIGITS`;
    a refusal names the problem, then `fix` (what to do)."""
    size = len(text.encode())
    if size > MAX_JSON_BYTES:
        raise error(f"{what} is {size} bytes of JSON; the limit is {MAX_JSON_BYTES}. {fix}")
    limits = (
        f"(policyport's limits: {MAX_JSON_BYTES} bytes, {MAX_JSON_DEPTH} levels of "
        f"nesting, integers of {MAX_INT_DIGITS} digits)"
    )
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except RecursionError as e:
        raise error(f"{what} nests deeper than Python can parse {limits}. {fix}") from e
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise error(f"{what} is not valid JSON ({e.msg} at {where}): {text[:200]!r}. {fix}") from e
    except ValueError as e:  # from _bounded_int
        raise error(f"{what} holds {e} {limits}. {fix}") from e
    levels = depth(value)
    if levels > MAX_JSON_DEPTH:
        raise error(f"{what} nests {levels} levels deep {limits}. {fix}")
    return value

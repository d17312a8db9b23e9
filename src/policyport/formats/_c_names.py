"""C spellings of the contract: identifiers, element types, and literals.

Shared by the generator's wrapper, the header and the runtime, so that all three agree on
how `observation.goal` or `policy.sample` is spelled in C.
"""

from __future__ import annotations

import math
import re

from .._errors import UnsupportedError

# The contract's element types and their C99 spellings (stdint.h, stdbool.h).
C_TYPES = {
    "float32": "float",
    "int64": "int64_t",
    "int32": "int32_t",
    "bool": "bool",
    "uint8": "uint8_t",
}


def c_identifier(name: str) -> str:
    """`policy.sample` -> `policy_sample`; `2x` -> `p_2x`: a valid, non-reserved C name."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit() or ident.startswith("_"):
        ident = f"p_{ident}"
    return ident


def c_type(dtype: str) -> str:
    if dtype not in C_TYPES:
        raise UnsupportedError(
            f"The c format has no C element type for {dtype!r}; it writes "
            f"{', '.join(C_TYPES)}. Export another format (onnx) for this policy."
        )
    return C_TYPES[dtype]


def parameter_names(names: list[str]) -> list[str]:
    """The C parameter name of each contract tensor, refusing two that collide."""
    idents = [c_identifier(n) for n in names]
    if len(set(idents)) != len(idents):
        raise UnsupportedError(
            f"The contract's tensors {', '.join(names)} collide when spelled as C "
            "identifiers; rename the observation keys so that they differ in letters, "
            "digits or underscores."
        )
    return idents


def c_string(text: str) -> str:
    """`text` as a C string literal (quotes, backslashes and `?`, for trigraphs, escaped)."""
    out = []
    for ch in text:
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return '"' + "".join(out) + '"'


def c_float(value: float | str) -> str:
    """A float32 literal; the space JSON writes infinite bounds as the strings `inf`."""
    number = float(value)
    if math.isinf(number):
        return "(-INFINITY)" if number < 0 else "INFINITY"
    if math.isnan(number):
        return "NAN"
    return f"{number!r}f"


def size_macro(prefix: str, parameter: str) -> str:
    """`POLICY_OBSERVATION_SIZE`: the header's macro for a tensor's elements per row."""
    return f"{prefix.upper()}_{parameter.upper()}_SIZE"

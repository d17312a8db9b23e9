"""The `.h` beside the C policy: the contract as macros, the metadata as a comment.

C has no metadata store, so the header is where the artifact's metadata lives: a JSON object
between two marker lines of a comment, one key a line (readable, and read back by
`read_header_metadata`). Everything else in the header is derived from that metadata and
the function prefix, so rewriting the metadata rewrites the header and never the `.c`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..tracing import TensorSpec
from ._c_generate import prototype
from ._c_names import c_float, c_string, parameter_names, size_macro

BEGIN, END = "policyport-metadata-begin", "policyport-metadata-end"
_PROTOTYPE = re.compile(r"^int (\w+)_run\(", re.M)


def specs(metadata: dict[str, str], key: str) -> tuple[TensorSpec, ...]:
    """The contract's inputs or outputs (`policyport.inputs` / `.outputs`), batch dropped."""
    return tuple(
        TensorSpec(s["name"], tuple(int(d) for d in s["shape"][1:]), s["dtype"])
        for s in json.loads(metadata[f"policyport.{key}"])
    )


def _comment_json(metadata: dict[str, str]) -> list[str]:
    """The metadata as JSON lines that cannot open or end a C comment or form a trigraph:
    `*` and `?` occur only inside JSON strings, where `\\u002a` and `\\u003f` mean the same."""
    text = json.dumps(metadata, sort_keys=True, indent=1)
    return _without_comment_breakers(text).splitlines()


def _without_comment_breakers(json_text: str) -> str:
    """JSON text with `*` and `?` written as escapes: no `/*`, `*/` or `??` trigraph left."""
    return json_text.replace("*", "\\u002a").replace("?", "\\u003f")


def _comment_text(text: str) -> str:
    """`text` (a name from the policy's file) as it may appear inside a C comment: as a
    JSON string's content, so no comment breaker, trigraph or line break is left."""
    return _without_comment_breakers(json.dumps(text)[1:-1])


def read_header_metadata(header: str) -> dict[str, str]:
    """The metadata a header written by `header_text` carries (empty if none)."""
    lines = header.splitlines()
    if f" * {BEGIN}" not in lines or f" * {END}" not in lines:
        return {}
    body = lines[lines.index(f" * {BEGIN}") + 1 : lines.index(f" * {END}")]
    return json.loads("\n".join(line.removeprefix(" * ") for line in body))


def header_prefix(header: str) -> str:
    """The function prefix a header declares (`policy` for `int policy_run(...)`)."""
    match = _PROTOTYPE.search(header)
    if match is None:
        raise ValueError("the header declares no `int <prefix>_run(...)`")
    return match.group(1)


def _space_macros(prefix: str, space: dict[str, Any]) -> list[str]:
    """The action space as macros: its type, and its sizes or bounds."""
    p = prefix.upper()
    lines = [f"#define {p}_ACTION_SPACE_TYPE {c_string(space['type'])}"]
    kind = space["type"]
    if kind == "Discrete":
        lines.append(f"#define {p}_ACTION_N {int(space['n'])}  /* actions 0..N-1 */")
    elif kind == "MultiDiscrete":
        nvec = [int(n) for n in space["nvec"]]
        lines.append(f"#define {p}_ACTION_NVEC {{{', '.join(map(str, nvec))}}}")
    elif kind == "MultiBinary":
        n = space["n"]
        count = math.prod(n) if isinstance(n, list) else int(n)
        lines.append(f"#define {p}_ACTION_N {count}  /* bits, each 0 or 1 */")
    elif kind == "Box":
        for bound in ("low", "high"):
            values = ", ".join(c_float(v) for v in space[bound])
            lines.append(f"#define {p}_ACTION_{bound.upper()} {{{values}}}")
    return lines


def _noise_comment(metadata: dict[str, str]) -> list[str]:
    """How to fill `noise` (the sample entry): its blocks, as docs/artifact.md tells."""
    if "policyport.noise" not in metadata:
        return []
    lines = [
        " *",
        " * noise: the sample entry's randomness, drawn by the caller. Blocks, in order:",
    ]
    for block in json.loads(metadata["policyport.noise"]):
        shape = "x".join(map(str, block["shape"])) or "1"
        lines.append(f" *   offset {block['offset']}, {shape} values, {block['distribution']}")
    lines += [
        " * Any noise of the stated distribution gives a correctly distributed sample; to",
        " * reproduce JAX exactly, feed policyport.sampling_noise(policy, key) (see",
        " * docs/artifact.md, 'Sampling: the noise is an input').",
    ]
    return lines


def header_text(prefix: str, metadata: dict[str, str]) -> str:
    """The header for a policy whose functions start with `prefix`."""
    inputs, outputs = specs(metadata, "inputs"), specs(metadata, "outputs")
    p = prefix.upper()
    names = parameter_names([s.name for s in (*inputs, *outputs)])
    tensors = []
    for spec, name in zip((*inputs, *outputs), names, strict=True):
        shape = "x".join(map(str, spec.shape)) or "scalar"
        size = math.prod(spec.shape)
        about = f"{_comment_text(spec.name)}: {spec.dtype} {shape}"
        tensors.append(f"#define {size_macro(prefix, name)} {size}  /* {about} */")
    signature = prototype(prefix, inputs, outputs)
    guard = f"{p}_H_"
    version = metadata.get("policyport.policyport_version", "?")
    contract = metadata.get("policyport.contract_version", "?")
    lines = [
        f"/* {prefix}: a policy exported by policyport {version}",
        f" * (format c, contract version {contract}).",
        " *",
        f" * Call {prefix}_run once per step: one row (batch 1), inputs then outputs, each a",
        " * flat row-major array of the size below; it returns 0. It allocates nothing, keeps",
        " * no state between calls and is reentrant; the weights are const (flash).",
        " * Masks: true = legal. A row with every action masked gives action 0.",
        *_noise_comment(metadata),
        " *",
        " * The artifact's metadata (JSON, the keys every policyport format embeds):",
        f" * {BEGIN}",
        *(f" * {line}" for line in _comment_json(metadata)),
        f" * {END}",
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <math.h>",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "/* Elements per row of each input, then each output (contract order). */",
        *tensors,
        "",
        f"#define {p}_CONTRACT_VERSION {int(metadata.get('policyport.contract_version', 0))}",
        f"#define {p}_INPUTS {len(inputs)}",
        f"#define {p}_OUTPUTS {len(outputs)}",
        f"#define {p}_MASK_INPUT {int(json.loads(metadata.get('policyport.mask_input', 'false')))}",
        *_space_macros(prefix, json.loads(metadata["policyport.action_space"])),
        f"#define {p}_ACTION_SPACE_JSON {c_string(metadata['policyport.action_space'])}",
        f"#define {p}_OBSERVATION_SPACE_JSON {c_string(metadata['policyport.observation_space'])}",
        "",
        f"{signature};",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)

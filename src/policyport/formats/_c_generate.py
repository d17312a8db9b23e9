"""The policy's optimised ONNX graph as C99, by emx-onnx-cgen, and our wrapper around it.

emx-onnx-cgen (the `c` extra) writes the computation: one function taking
`[restrict 1][...]` arrays, weights as `const` arrays. We make every symbol it defines
`static`, so that the only external symbol is `<prefix>_run` and two policies link into one
firmware, and append `<prefix>_run`, which takes the contract's flat pointers. The output
form we rewrite is that of the pinned version (pyproject's `c` extra); anything else is
refused with a message rather than compiled into something unchecked.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from .._errors import UnsupportedError
from ..tracing import TensorSpec
from ._c_names import c_type, parameter_names, size_macro
from ._targets import fix_batch

# What the `c` extra pins (pyproject.toml): the version whose output form is rewritten here.
EMX_VERSION = "1.4.0"
_FLAGS = (
    # Temporaries on the stack and weights inline: no heap, no data file to load.
    "--large-temp-threshold",
    "0",
    "--large-weight-threshold",
    "0",
    "--restrict-arrays",
    "--color",
    "never",
)


@dataclass(frozen=True)
class Parameter:
    """One parameter of the generated function: element type, and per-row shape."""

    ctype: str
    shape: tuple[int, ...]
    const: bool


def untransposed_gemms(model: onnx.ModelProto) -> None:
    """Store each Gemm's constant weights as `[K][N]` (`transB=0`).

    emx-onnx-cgen writes a Gemm as `acc += a[k] * b[..]` over k for each output j. With
    `b[j][k]` (our graphs' `transB=1`) that is a chain of dependent adds the compiler may not
    vectorise without reassociating; with `b[k][j]` it vectorises across j and adds in the
    same order, so the results are the same bits (2.8x faster at -O2, measured; bench/C.md).
    """
    weights = {init.name: init for init in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    done: dict[str, str] = {}  # weights shared by several Gemms are transposed once
    for node in model.graph.node:
        trans_b = next((a for a in node.attribute if a.name == "transB"), None)
        if node.op_type != "Gemm" or trans_b is None or trans_b.i != 1:
            continue
        source = weights.get(node.input[1])
        if source is None or len(source.dims) != 2:
            continue
        if source.name not in done:
            transposed = numpy_helper.from_array(
                numpy_helper.to_array(source).T.copy(), f"{source.name}_kn"
            )
            model.graph.initializer.append(transposed)
            done[source.name] = transposed.name
        uses[source.name] -= 1
        if uses[source.name] == 0:
            model.graph.initializer.remove(source)
        node.input[1] = done[source.name]
        node.attribute.remove(trans_b)
        node.attribute.append(helper.make_attribute("transB", 0))


def run_generator(model: onnx.ModelProto, function: str) -> str:
    """The C source emx-onnx-cgen writes for `model` (batch pinned to 1), as `function`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    # The C file holds the computation only: metadata lives in the header, so that
    # rewriting it leaves the compiled code as checked.
    del model.metadata_props[:]
    fix_batch(model, 1)  # the generator refuses a dynamic batch
    untransposed_gemms(model)
    with tempfile.TemporaryDirectory(prefix="policyport-c-") as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.c"
        onnx.save_model(model, source)
        command = [sys.executable, "-m", "emx_onnx_cgen", "compile", *_FLAGS]
        command += ["--model-name", function, str(source), str(target)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not target.exists():
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise UnsupportedError(
                f"emx-onnx-cgen cannot write this policy's graph as C:\n{tail}\n"
                "Export another format (onnx), or --target mcu to see which operator it "
                "lacks before generation."
            )
        return target.read_text()


def _unexpected(what: str) -> UnsupportedError:
    return UnsupportedError(
        f"emx-onnx-cgen's output is not in the form policyport {what}; policyport "
        f"rewrites the output of emx-onnx-cgen {EMX_VERSION}: pip install "
        f"'emx-onnx-cgen=={EMX_VERSION}' (or 'policyport[c]')."
    )


def make_static(source: str, function: str) -> str:
    """Every symbol the generated file defines made internal (`static`)."""
    # The weights' forward declarations become tentative definitions with internal linkage.
    source = re.sub(r"^extern const ", "static const ", source, flags=re.M)
    source = re.sub(r"^const EMX_UNUSED ", "static const EMX_UNUSED ", source, flags=re.M)
    loader = (
        rf"^_Bool {function}_load\(const char \*path\) \{{\n    \(void\)path;\n    return 1;\n\}}\n"
    )
    source, loaders = re.subn(loader, "", source, flags=re.M)
    source, entries = re.subn(
        rf"^void {function}\(", f"static void {function}(", source, flags=re.M
    )
    if loaders != 1 or entries != 1:
        raise _unexpected("expects (one entry function and its no-op loader)")
    # Top-level declarations start at column 0; each must now be internal.
    outside = [
        line
        for line in source.splitlines()
        if re.match(r"[A-Za-z_]", line) and not line.startswith(("static ", "EMX_NODE_FN "))
    ]
    if outside:
        raise _unexpected(f"expects (an external declaration: {outside[0][:80]!r})")
    return source


def parameters(source: str, function: str) -> list[Parameter]:
    """The generated function's parameters, in order."""
    match = re.search(rf"^static void {function}\((.*)\) \{{$", source, flags=re.M)
    if match is None:
        raise _unexpected("expects (the entry function's signature on one line)")
    found = []
    for text in match.group(1).split(", "):
        part = re.fullmatch(r"(const )?(\w+) \w+\[restrict 1\]((?:\[\d+\])*)", text)
        if part is None:
            raise _unexpected(f"expects (a parameter {text!r})")
        dims = tuple(int(d) for d in re.findall(r"\[(\d+)\]", part.group(3)))
        found.append(Parameter(part.group(2), dims, part.group(1) is not None))
    return found


def check_parameters(found: list[Parameter], specs: tuple[TensorSpec, ...]) -> None:
    """The generated function takes the contract's tensors, in the contract's order."""
    want = [Parameter(c_type(s.dtype), tuple(s.shape), False) for s in specs]
    got = [Parameter(p.ctype, p.shape, False) for p in found]
    if got != want:
        raise _unexpected(
            f"expects (parameters {[(p.ctype, p.shape) for p in got]} where the contract "
            f"has {[(p.ctype, p.shape) for p in want]})"
        )


def wrapper(
    prefix: str, function: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> str:
    """`<prefix>_run`: flat pointers in, the generated function's array pointers passed on."""
    specs = (*inputs, *outputs)
    names = parameter_names([s.name for s in specs])
    arguments = []
    for i, (spec, name) in enumerate(zip(specs, names, strict=True)):
        const = "const " if i < len(inputs) else ""
        rows = "".join(f"[{d}]" for d in spec.shape)
        # A per-row scalar is `T x[restrict 1]` there: the flat pointer as it is.
        arguments.append(f"({const}{c_type(spec.dtype)} (*){rows})({name})" if rows else name)
    call = f"{function}({', '.join(arguments)});"
    return (
        f"\n/* The contract's entry point (declared in the header): batch 1, returns 0. */\n"
        f"{prototype(prefix, inputs, outputs)} {{\n    {call}\n    return 0;\n}}\n"
    )


def prototype(prefix: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> str:
    """`int <prefix>_run(...)`: one parameter per input, then per output, sized by macro."""
    specs = (*inputs, *outputs)
    names = parameter_names([s.name for s in specs])
    params = [
        f"{'const ' if i < len(inputs) else ''}{c_type(spec.dtype)} {name}"
        f"[{size_macro(prefix, name)}]"
        for i, (spec, name) in enumerate(zip(specs, names, strict=True))
    ]
    return f"int {prefix}_run({', '.join(params)})"


def c_source(
    model: onnx.ModelProto,
    prefix: str,
    header_name: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> str:
    """The whole `.c` file: our banner and include, the generated code, our wrapper."""
    function = f"{prefix}_model"
    generated = make_static(run_generator(model, function), function)
    check_parameters(parameters(generated, function), (*inputs, *outputs))
    banner = (
        f"/* Written by policyport: the computation below is emx-onnx-cgen's, from the policy's\n"
        f" * optimised ONNX graph (batch 1); {prefix}_run at the end is the contract's entry\n"
        f" * point. C99, no allocation, needs only the C standard library and libm. */\n"
        f'#include "{header_name}"\n\n'
    )
    return banner + generated + wrapper(prefix, function, inputs, outputs)

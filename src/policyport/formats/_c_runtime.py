"""The runtime `c`: the policy's C compiled by the host compiler, called through ctypes.

It compiles exactly what a user compiles (`-std=c99 -Wall -Werror`, so a warning fails the
check), into a shared library, and calls `<prefix>_run` once per row: the checks' batches
become that many batch-1 calls, all-masked and stress rows included.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..tracing import TensorSpec
from ._base import Runner, Runtime
from ._c_header import header_prefix, read_header_metadata, specs

# What every compile of a policy's C uses: the artifact's promise (C99, warning-free).
C_FLAGS = ("-std=c99", "-Wall", "-Werror")
_NUMPY: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
}
_NUMPY["uint8"] = np.uint8


def compiler() -> str | None:
    """The host C compiler: `$CC`, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split()[0])
    return next((found for c in ("cc", "gcc", "clang") if (found := shutil.which(c))), None)


def missing_compiler() -> str | None:
    """A sentence saying what to install when no C compiler is found, else None."""
    if compiler() is not None:
        return None
    return (
        "The c format is checked by compiling it with the host C compiler, and none was "
        "found (set $CC, or put cc, gcc or clang on PATH). Install one: apt-get install "
        "gcc (Debian/Ubuntu), xcode-select --install (macOS)."
    )


def build_shared(source: Path, library: Path, optimize: str = "-O2") -> None:
    """Compile `source` (its header beside it) into the shared library `library`."""
    cc = compiler()
    if cc is None:
        raise RuntimeError(missing_compiler())
    command = [cc, *C_FLAGS, optimize, "-fPIC", "-shared", f"-I{source.parent}"]
    command += [str(source), "-o", str(library), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")


def _row_pointers(arrays: list[np.ndarray]) -> list[tuple[int, int]]:
    """(address, bytes per row) of each C-contiguous array."""
    return [(a.ctypes.data, a.strides[0] if a.ndim else 0) for a in arrays]


def load_c(path: Path) -> Runner:
    """The `.c` artifact at `path` (its `.h` beside it), compiled and opened."""
    header = path.with_suffix(".h").read_text()
    metadata = read_header_metadata(header)
    prefix = header_prefix(header)
    inputs, outputs = specs(metadata, "inputs"), specs(metadata, "outputs")
    with tempfile.TemporaryDirectory(prefix="policyport-c-") as folder:
        library = Path(folder) / f"lib{prefix}.so"
        build_shared(path, library)
        # Loaded before the folder goes: the mapping outlives the file (Linux, macOS).
        function = getattr(ctypes.CDLL(str(library)), f"{prefix}_run")
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p] * (len(inputs) + len(outputs))

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [_contiguous(feed[s.name], s) for s in inputs]
        rows = len(arrays[0]) if arrays else 1
        results = [np.zeros((rows, *s.shape), _NUMPY[s.dtype]) for s in outputs]
        pointers = _row_pointers([*arrays, *results])
        for row in range(rows):
            code = function(*[address + row * step for address, step in pointers])
            if code != 0:
                raise RuntimeError(f"{prefix}_run returned {code} on row {row}")
        return {s.name: r for s, r in zip(outputs, results, strict=True)}

    return run


def _contiguous(value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=_NUMPY[spec.dtype])
    if array.shape[1:] != spec.shape:
        raise ValueError(f"input {spec.name!r}: rows of shape {spec.shape}, got {array.shape}")
    return array


def _c_version() -> str:
    cc = compiler()
    if cc is None:
        return "c (no C compiler)"
    done = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout.splitlines() or ["?"])[0]
    return f"c ({first})"


C_RUNTIME = Runtime("c", ("c",), load_c, _c_version, missing_compiler)

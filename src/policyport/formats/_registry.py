"""The one table of formats and runtimes: the CLI, the docs and the tests all read it.

Adding a format is one file (its writer, and its runtime if new) plus one row here;
adding a runtime for an existing format is one `Runtime` plus one row.
"""

from __future__ import annotations

from typing import TypeVar

from ._base import ArtifactFormat, Runtime
from ._c import CFormat
from ._c_runtime import C_RUNTIME
from ._onnx import ONNXRUNTIME, OnnxFormat
from ._onnx_reference import ONNX_REFERENCE
from ._onnxruntime_legacy import ONNXRUNTIME_LEGACY
from ._openvino import OPENVINO
from ._ort import OrtFormat
from ._savedmodel import TENSORFLOW, SavedModelFormat
from ._stablehlo import JAX_EXPORT, StableHloFormat
from ._tflite import LITERT, TfliteFormat
from ._tract import TRACT

# A TypeVar rather than PEP 695's `def _table[T]`: policyport supports Python 3.11.
T = TypeVar("T", ArtifactFormat, Runtime)


def _table(rows: tuple[T, ...], kind: str) -> dict[str, T]:
    table: dict[str, T] = {}
    for row in rows:
        if row.name in table:
            raise RuntimeError(f"two {kind}s are registered as {row.name!r}")
        table[row.name] = row
    return table


FORMATS: dict[str, ArtifactFormat] = _table(
    (
        OnnxFormat(),
        OrtFormat(),
        SavedModelFormat(),
        StableHloFormat(),
        TfliteFormat(),
        CFormat(),
    ),
    "format",
)
RUNTIMES: dict[str, Runtime] = _table(
    (
        ONNXRUNTIME,
        TENSORFLOW,
        JAX_EXPORT,
        OPENVINO,
        TRACT,
        ONNX_REFERENCE,
        ONNXRUNTIME_LEGACY,
        LITERT,
        C_RUNTIME,
    ),
    "runtime",
)
# `--format all` means every registered format.
ALL = "all"


def _check_rows() -> None:
    for fmt in FORMATS.values():
        if fmt.runtime not in RUNTIMES or fmt.name not in RUNTIMES[fmt.runtime].formats:
            raise RuntimeError(
                f"format {fmt.name!r} names runtime {fmt.runtime!r}, which cannot open it"
            )


_check_rows()

"""The one table of formats: the CLI, the docs and the tests all read it."""

from __future__ import annotations

from ._base import ArtifactFormat
from ._onnx import OnnxFormat
from ._ort import OrtFormat
from ._savedmodel import SavedModelFormat
from ._stablehlo import StableHloFormat


def _table(*formats: ArtifactFormat) -> dict[str, ArtifactFormat]:
    table: dict[str, ArtifactFormat] = {}
    for fmt in formats:
        if fmt.name in table:
            raise RuntimeError(f"two formats are registered as {fmt.name!r}")
        table[fmt.name] = fmt
    return table


FORMATS: dict[str, ArtifactFormat] = _table(
    OnnxFormat(), OrtFormat(), SavedModelFormat(), StableHloFormat()
)
# `--format all` means every registered format.
ALL = "all"

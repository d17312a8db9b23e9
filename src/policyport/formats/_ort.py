"""ONNX Runtime's mobile `.ort` format, written by onnxruntime's own converter.

Beside `model.ort` goes `model.required_operators.config`, the operator list a reduced
(mobile) onnxruntime build is configured from.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import warnings
from pathlib import Path
from typing import ClassVar

import onnx

from ..tracing import TracedPolicy
from ._base import ArtifactFormat, ExportOptions
from ._onnx import build_model, read_onnxruntime_metadata, set_model_metadata

_CONFIG_SUFFIX = ".required_operators.config"


def _convert(onnx_path: Path) -> tuple[Path, Path]:
    """Run onnxruntime's converter on `onnx_path`; return the `.ort` and config paths."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    # The converter reports on stdout and through logging; keep our own output clean.
    quiet = logging.getLogger("ort_format_model.utils")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # The converter leaves a file handle for the garbage collector; collect it here.
        warnings.simplefilter("ignore", ResourceWarning)
        convert_onnx_models_to_ort(
            onnx_path, output_dir=onnx_path.parent, optimization_styles=[OptimizationStyle.Fixed]
        )
        gc.collect()
    quiet.setLevel(level)
    ort_path, config_path = onnx_path.with_suffix(".ort"), onnx_path.with_suffix(_CONFIG_SUFFIX)
    # The converter names the model it read by its full (staging) path; keep just the name.
    lines = config_path.read_text().splitlines()
    lines = [f"# - {ort_path.name}" if line.startswith("# - ") else line for line in lines]
    config_path.write_text("\n".join(lines) + "\n")
    return ort_path, config_path


class OrtFormat(ArtifactFormat):
    name: ClassVar[str] = "ort"
    suffix: ClassVar[str] = ".ort"
    runtime: ClassVar[str] = "onnxruntime"
    description: ClassVar[str] = "ONNX Runtime mobile format + reduced-build operator config"

    def destinations(self, primary: Path) -> tuple[Path, ...]:
        return primary, primary.with_suffix(_CONFIG_SUFFIX)

    def write(
        self,
        traced: TracedPolicy,
        staging: Path,
        stem: str,
        options: ExportOptions,
        metadata: dict[str, str],
    ) -> tuple[Path, ...]:
        model = build_model(traced, options, metadata)
        source = staging / "source" / f"{stem}.onnx"
        source.parent.mkdir()
        onnx.save_model(model, source)
        ort_path, config_path = _convert(source)
        return (
            ort_path.rename(staging / ort_path.name),
            config_path.rename(staging / config_path.name),
        )

    def read_metadata(self, artifact: Path) -> dict[str, str]:
        return read_onnxruntime_metadata(artifact)

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        # An .ort file is a flatbuffer without an editing API: convert the kept source again.
        source = staged[0].parent / "source" / staged[0].with_suffix(".onnx").name
        model = onnx.load_model(source)
        set_model_metadata(model, metadata)
        onnx.save_model(model, source)
        ort_path, config_path = _convert(source)
        ort_path.replace(staged[0])
        config_path.replace(staged[1])

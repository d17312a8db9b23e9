"""OpenVINO's CPU plugin, reading ONNX models (PyPI `openvino`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import Runner, Runtime
from ._runtime_io import graph_outputs, missing_package

# OpenVINO's CPU plugin computes in bf16 by default on CPUs that support it (AVX-512 BF16,
# AMX): measured here, that flips 1-4 of 512 discrete actions and moves values by up to
# 0.7. An artifact is checked, and must be deployed, with f32 inference precision.
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def load_openvino(path: Path, config: dict[str, str] | None = None) -> Runner:
    """An ONNX file compiled for OpenVINO's CPU device, f32 precision (plus `config`)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {**CPU_CONFIG, **(config or {})}
    )
    names = graph_outputs(path)
    request = compiled.create_infer_request()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = request.infer(inputs)
        return {
            name: np.array(results[port], copy=True)
            for name, port in zip(names, compiled.outputs, strict=True)
        }

    return run


def _version() -> str:
    import openvino as ov

    return f"openvino {ov.get_version().split('-')[0]}"


OPENVINO = Runtime(
    "openvino",
    ("onnx",),
    load_openvino,
    _version,
    lambda: missing_package("openvino", "openvino", "openvino"),
)

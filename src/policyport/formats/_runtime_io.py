"""What runtimes other than onnxruntime share: the ONNX graph's own input and output names,
and the check that an optional runtime package is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx


def graph_outputs(path: Path) -> list[str]:
    """The ONNX model's output names, in order.

    tract and OpenVINO keep the outputs' order but may rename them after optimising (tract
    reports `value` as the name of the node before its Squeeze): read them from the file.
    """
    return [o.name for o in onnx.load_model(str(path), load_external_data=False).graph.output]


def missing_package(module: str, extra: str, runtime: str) -> str | None:
    """A sentence saying how to install `module` for `runtime`, or None if it imports."""
    if importlib.util.find_spec(module) is not None:
        return None
    return (
        f"The runtime {runtime!r} needs the Python package '{module}', which is not "
        f"installed. Install it with: pip install 'policyport[{extra}]'"
    )

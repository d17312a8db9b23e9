"""tract, Sonos' Rust inference engine, through its Python bindings (PyPI `tract`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import Runner, Runtime
from ._runtime_io import graph_outputs, missing_package


def load_tract(path: Path) -> Runner:
    """An ONNX file loaded, typed, optimised and made runnable by tract (batch stays symbolic)."""
    import tract

    inference = tract.onnx().load(str(path))
    inputs = [inference.input_name(i) for i in range(inference.input_count())]
    runnable = inference.into_model().into_runnable()
    names = graph_outputs(path)

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = runnable.run([np.ascontiguousarray(feeds[name]) for name in inputs])
        return {name: t.to_numpy() for name, t in zip(names, outputs, strict=True)}

    return run


def _version() -> str:
    import tract

    return f"tract {tract.version()}"


TRACT = Runtime(
    "tract", ("onnx",), load_tract, _version, lambda: missing_package("tract", "tract", "tract")
)

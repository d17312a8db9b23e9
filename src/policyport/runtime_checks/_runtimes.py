"""One function per runtime: run an artifact on named inputs, return named outputs.

Each imports its runtime lazily, so checking an ONNX file never imports TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

RunFn = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_onnxruntime(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a `.onnx` or `.ort` file with onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the checks report their own findings
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def run_tensorflow(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a SavedModel's `serving_default` signature with TensorFlow."""
    from ..exporters._savedmodel import import_tensorflow

    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def run_jax_export(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Deserialize a `jax.export` artifact and call it."""
    import jax

    from ..exporters._stablehlo import EXPORTED_FILE, METADATA_FILE

    exported = jax.export.deserialize(bytearray((path / EXPORTED_FILE).read_bytes()))
    names = [
        s["name"]
        for s in json.loads(json.loads((path / METADATA_FILE).read_text())["policyport.inputs"])
    ]
    action, value = exported.call(*(inputs[n] for n in names))
    return {"action": np.asarray(action), "value": np.asarray(value)}


RUNTIMES: dict[str, RunFn] = {
    "onnxruntime": run_onnxruntime,
    "tensorflow": run_tensorflow,
    "jax.export": run_jax_export,
}


def runtime_version(name: str) -> str:
    """The runtime's name and version, for the report."""
    if name == "onnxruntime":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    if name == "tensorflow":
        import tensorflow

        return f"tensorflow {tensorflow.__version__}"
    import jax

    return f"jax.export (jax {jax.__version__})"

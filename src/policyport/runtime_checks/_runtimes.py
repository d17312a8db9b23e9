"""One loader per runtime: open an artifact once, then run it on named inputs.

Each imports its runtime lazily, so checking an ONNX file never imports TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def load_onnxruntime(path: Path) -> Runner:
    """A `.onnx` or `.ort` file in onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the checks report their own findings
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def load_tensorflow(path: Path) -> Runner:
    """A SavedModel's `serving_default` signature in TensorFlow."""
    from ..exporters._savedmodel import import_tensorflow

    tf = import_tensorflow()
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return run


def load_jax_export(path: Path) -> Runner:
    """A serialized `jax.export` artifact, deserialized and called."""
    import jax

    from ..exporters._stablehlo import EXPORTED_FILE, METADATA_FILE

    exported = jax.export.deserialize(bytearray((path / EXPORTED_FILE).read_bytes()))
    metadata = json.loads((path / METADATA_FILE).read_text())
    names = [s["name"] for s in json.loads(metadata["policyport.inputs"])]
    call = jax.jit(exported.call)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        action, value = call(*(inputs[n] for n in names))
        return {"action": np.asarray(action), "value": np.asarray(value)}

    return run


LOADERS: dict[str, Callable[[Path], Runner]] = {
    "onnxruntime": load_onnxruntime,
    "tensorflow": load_tensorflow,
    "jax.export": load_jax_export,
}


def _run_once(loader: Callable[[Path], Runner]) -> Callable[[Path, dict], dict]:
    return lambda path, inputs: loader(Path(path))(inputs)


# `RUNTIMES[name](path, inputs)`: open and run once, for callers with a single batch.
RUNTIMES: dict[str, Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    name: _run_once(loader) for name, loader in LOADERS.items()
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

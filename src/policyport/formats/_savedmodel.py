"""TensorFlow SavedModel via jax2tf, with a polymorphic batch and named signatures.

Signatures: `serving_default` (the contract's inputs -> `action` and the heads) and, for
a policy with heads, `value` (or `heads` when there is no value head: observation inputs
-> the heads). TensorFlow argument names cannot hold dots: `observation.goal` is the
argument `observation_goal`. The metadata lives in `assets.extra/policyport.json`, the
folder TF Serving reserves for files beside the graph.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._errors import UnsupportedError, missing_dependency
from .._quiet import native_stderr
from ..tracing import HEADS, TracedPolicy
from ._base import ArtifactFormat, ExportOptions, Runner, Runtime
from ._toolchain import stablehlo_tensorflow_reads, tensorflow_refusal

METADATA_FILE = Path("assets.extra") / "policyport.json"


def import_tensorflow() -> Any:
    # TensorFlow's C++ INFO/WARNING logs are not for our users (a value they set wins). Its
    # import-time absl/oneDNN notices ignore this setting: the import's stderr is captured
    # (`-v` shows it).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with native_stderr():
            import tensorflow as tf
    except ImportError as e:
        raise missing_dependency("tensorflow", "savedmodel", "The savedmodel format") from e
    return tf


def load_tensorflow(path: Path) -> Runner:
    """A SavedModel's `serving_default` signature in TensorFlow."""
    tf = import_tensorflow()
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = signature(**{_tf_name(k): tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return run


def _tf_name(name: str) -> str:
    """TensorFlow's argument names cannot hold dots, and it turns a slash into `_` in the
    signature's keys: `observation.goal` -> `observation_goal`, `observation.pixels/view_0`
    (a MuJoCo Playground key) -> `observation_pixels_view_0`."""
    return name.replace(".", "_").replace("/", "_")


def tf_input_names(traced: TracedPolicy) -> list[str]:
    """The inputs' TensorFlow names, refused when two become one (`observation.a_b` and
    `observation.a/b`): the signature would silently take one tensor for both."""
    names = [_tf_name(s.name) for s in traced.inputs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UnsupportedError(
            f"Inputs {[s.name for s in traced.inputs if _tf_name(s.name) in clashes]} all "
            f"become {clashes} in TensorFlow, whose argument names hold no '.' or '/': "
            "rename the observation keys so they differ in more than those characters, or "
            "export to a format that keeps the names (onnx, ort, stablehlo)."
        )
    return names


def _tensorflow_version() -> str:
    return f"tensorflow {import_tensorflow().__version__}"


TENSORFLOW = Runtime("tensorflow", ("savedmodel",), load_tensorflow, _tensorflow_version)


class SavedModelFormat(ArtifactFormat):
    name: ClassVar[str] = "savedmodel"
    suffix: ClassVar[str] = ".savedmodel"
    runtime: ClassVar[str] = "tensorflow"
    description: ClassVar[str] = "TensorFlow SavedModel (TF Serving, TF runtimes)"
    extra: ClassVar[str | None] = "savedmodel"
    marker: ClassVar[str | None] = "saved_model.pb"

    def refusal(self) -> str | None:
        return tensorflow_refusal(self.name)

    def write(
        self,
        traced: TracedPolicy,
        staging: Path,
        stem: str,
        options: ExportOptions,
        metadata: dict[str, str],
    ) -> tuple[Path, ...]:
        tf = import_tensorflow()
        from jax.experimental import jax2tf

        batch = ["(b, ...)"] * len(traced.inputs)
        forward = jax2tf.convert(
            traced.legal_batched, polymorphic_shapes=batch, with_gradient=False
        )
        specs = [
            tf.TensorSpec((None, *s.shape), tf.dtypes.as_dtype(s.dtype), name=name)
            for s, name in zip(traced.inputs, tf_input_names(traced), strict=True)
        ]
        names = traced.output_names
        observations = len(traced.observation_inputs)
        heads = [i for i, n in enumerate(names) if n in HEADS]

        @tf.function(input_signature=specs, autograph=False)
        def serving_default(*inputs):
            outputs = forward(*inputs)
            return {
                n: tf.cast(o, tf.int64) if o.dtype.is_integer else o
                for n, o in zip(names, outputs, strict=True)
            }

        @tf.function(input_signature=specs[:observations], autograph=False)
        def heads_only(*observation):
            # The heads never read the mask (nor the noise): ones stand in (XLA drops the rest).
            rows = tf.shape(observation[0])[0]
            filler = [
                tf.ones([rows, *s.shape], tf.dtypes.as_dtype(s.dtype))
                for s in traced.inputs[observations:]
            ]
            outputs = forward(*observation, *filler)
            return {names[i]: outputs[i] for i in heads}

        module = tf.Module()
        module.serving_default = serving_default
        signatures = {"serving_default": serving_default}
        if heads:
            module.heads = heads_only
            signatures["value" if names[heads[0]] == "value" else "heads"] = heads_only
        path = staging / f"{stem}{self.suffix}"
        with stablehlo_tensorflow_reads():  # jax2tf serializes while the functions trace
            tf.saved_model.save(module, str(path), signatures=signatures)
        self.set_metadata((path,), metadata)
        return (path,)

    def read_metadata(self, artifact: Path) -> dict[str, str]:
        path = artifact / METADATA_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        target = staged[0] / METADATA_FILE
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")

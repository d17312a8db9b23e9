"""TensorFlow Lite flatbuffer (`model.tflite`), run in LiteRT's interpreter.

Route (measured, see docs/embedding.md "LiteRT"): the policy's trace with every argmax made
of single-operand reductions (`tracing.without_argmax`; TFLite's converter cannot legalize
the variadic `reduce` argmax lowers to), through jax2tf, converted by TensorFlow's own
`TFLiteConverter` to builtin TFLite ops only (no Flex/TF ops, so the stock LiteRT runtime
runs it). The batch stays dynamic (`shape_signature` -1): LiteRT resizes the inputs on
each call.

One signature, `serving_default`, whose inputs and outputs carry the contract's names in
the contract's order (the converter's TF-style names, `observation_goal`, are renamed to
`observation.goal` in the flatbuffer). The metadata is a model metadata entry named
`policyport` (a JSON object) inside the flatbuffer, beside the converter's own entries.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._errors import MissingDependencyError, UnsupportedError, missing_dependency
from ..tracing import TracedPolicy, without_argmax
from ._base import ArtifactFormat, ExportOptions, Runner, Runtime
from ._runtime_io import missing_package
from ._savedmodel import _tf_name, import_tensorflow, tf_input_names
from ._toolchain import stablehlo_tensorflow_reads, tensorflow_refusal

SIGNATURE = "serving_default"
METADATA_NAME = "policyport"


def import_litert() -> Any:
    """LiteRT's Python package (`ai_edge_litert`), or the error naming the extra."""
    try:
        import ai_edge_litert.interpreter
    except ImportError as e:
        raise missing_dependency("ai-edge-litert", "tflite", "The tflite format") from e
    return ai_edge_litert


def tflite_function(traced: TracedPolicy) -> Callable[..., list[Array]]:
    """The batched function converted: `legal_batched`, its argmaxes single-operand."""
    per_sample = traced.legal_forward
    avals = [jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for s in traced.inputs]
    return jax.vmap(without_argmax(per_sample, avals))


def convert(traced: TracedPolicy) -> bytes:
    """The policy as a TFLite flatbuffer, as TensorFlow's converter writes it."""
    try:
        tf = import_tensorflow()
    except MissingDependencyError as e:
        raise missing_dependency("tensorflow", "tflite", "The tflite format's converter") from e
    from jax.experimental import jax2tf

    forward = jax2tf.convert(
        tflite_function(traced),
        polymorphic_shapes=["(b, ...)"] * len(traced.inputs),
        with_gradient=False,
    )
    specs = [
        tf.TensorSpec((None, *s.shape), tf.dtypes.as_dtype(s.dtype), name=name)
        for s, name in zip(traced.inputs, tf_input_names(traced), strict=True)
    ]
    names = traced.output_names

    @tf.function(input_signature=specs, autograph=False)
    def serving_default(*inputs):
        outputs = forward(*inputs)
        return {
            n: tf.cast(o, tf.int64) if o.dtype.is_integer else o
            for n, o in zip(names, outputs, strict=True)
        }

    module = tf.Module()  # the converter names the signature only with a trackable object
    module.serving_default = serving_default
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_default.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from tensorflow.lite.python.convert_phase import ConverterError

    try:
        with _native_stderr_silenced():
            return bytes(converter.convert())
    except ConverterError as e:
        raise UnsupportedError(_NOT_CONVERTIBLE.format(reason=_first_error(str(e)))) from None


_NOT_CONVERTIBLE = (
    "TensorFlow Lite's converter cannot express this policy ({reason}): the tflite format "
    "holds only operations with builtin TFLite kernels. Export another format (onnx, "
    "savedmodel), or avoid that operation in the policy."
)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hold back what native code prints to file descriptor 2 (the converter's absl warnings,
    LiteRT's delegate notice) while it runs: it ignores TF_CPP_MIN_LOG_LEVEL, and anything
    that matters reaches us as an exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_error(message: str) -> str:
    """The converter's first `error:` line, without its source location."""
    for line in message.splitlines():
        if "error: " in line:
            return line.split("error: ", 1)[1].strip()
    return message.splitlines()[0][:300] if message else "no reason given"


def _flatbuffer_utils() -> Any:
    import_litert()
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils


def with_contract_names(model_bytes: bytes, traced: TracedPolicy) -> bytes:
    """The model with its one signature's tensors named and ordered as the contract says."""
    fb = _flatbuffer_utils()
    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    (signature,) = model.signatureDefs
    by_name = {_decode(t.name): t for t in signature.inputs}
    signature.inputs = [by_name[_tf_name(spec.name)] for spec in traced.inputs]
    for tensor_map, spec in zip(signature.inputs, traced.inputs, strict=True):
        tensor_map.name = spec.name
    outputs = {_decode(t.name): t for t in signature.outputs}
    signature.outputs = [outputs[name] for name in traced.output_names]
    return bytes(fb.convert_object_to_bytearray(model))


def _decode(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def read_tflite_metadata(model_bytes: bytes) -> dict[str, str]:
    """The `policyport` metadata entry of a TFLite model (empty when it has none)."""
    import_litert()
    from ai_edge_litert.schema_py_generated import Model

    model = Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _decode(entry.Name()) == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(np.asarray(data, np.uint8).tobytes())
    return {}


def with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """The model with its `policyport` metadata entry set to `metadata` (JSON)."""
    fb = _flatbuffer_utils()
    from ai_edge_litert.schema_py_generated import BufferT, MetadataT

    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
    entries = [m for m in model.metadata or [] if _decode(m.name) != METADATA_NAME]
    buffer = BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    entries.append(MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1))
    model.metadata = entries
    return bytes(fb.convert_object_to_bytearray(model))


def load_litert(path: Path) -> Runner:
    """A `.tflite` model's one signature in LiteRT's interpreter."""
    litert = import_litert()
    with _native_stderr_silenced():  # the XNNPACK notice, printed when tensors are allocated
        interpreter = litert.interpreter.Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner(SIGNATURE)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return runner(**{k: np.ascontiguousarray(v) for k, v in inputs.items()})

    return run


def _litert_version() -> str:
    from importlib.metadata import version

    import_litert()
    return f"litert {version('ai-edge-litert')}"


LITERT = Runtime(
    "litert",
    ("tflite",),
    load_litert,
    _litert_version,
    lambda: missing_package("ai_edge_litert", "tflite", "litert"),
)


class TfliteFormat(ArtifactFormat):
    name: ClassVar[str] = "tflite"
    suffix: ClassVar[str] = ".tflite"
    runtime: ClassVar[str] = "litert"
    description: ClassVar[str] = "TensorFlow Lite flatbuffer (LiteRT: Android, iOS, embedded)"
    extra: ClassVar[str | None] = "tflite"

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
        with stablehlo_tensorflow_reads():
            flatbuffer = convert(traced)
        model = with_metadata(with_contract_names(flatbuffer, traced), metadata)
        path = staging / f"{stem}{self.suffix}"
        path.write_bytes(model)
        return (path,)

    def read_metadata(self, artifact: Path) -> dict[str, str]:
        return read_tflite_metadata(artifact.read_bytes())

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        staged[0].write_bytes(with_metadata(staged[0].read_bytes(), metadata))

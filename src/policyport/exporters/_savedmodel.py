"""TensorFlow SavedModel via jax2tf, with a polymorphic batch and named signatures.

Signatures: `serving_default` (the contract's inputs -> `action`, `value`) and `value`
(`observation` -> `value`). The metadata lives in `assets.extra/policyport.json`, the
folder TF Serving reserves for files beside the graph.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax.extend.core import jaxpr_as_fun

from .._errors import missing_dependency
from ._base import ArtifactFormat, ExportOptions
from ._traced import TracedPolicy

METADATA_FILE = Path("assets.extra") / "policyport.json"


def import_tensorflow() -> Any:
    # TensorFlow's C++ INFO/WARNING logs are not for our users (a value they set wins). Its
    # import-time absl/oneDNN notice ignores this setting and still prints.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise missing_dependency("tensorflow", "savedmodel", "The savedmodel format") from e
    return tf


def _value_jaxpr(traced: TracedPolicy):
    policy = traced.policy
    observation = jax.ShapeDtypeStruct(traced.inputs[0].shape, jnp.float32)
    return jax.make_jaxpr(lambda o: policy.value(None, o)[1])(observation)


class SavedModelFormat(ArtifactFormat):
    name: ClassVar[str] = "savedmodel"
    suffix: ClassVar[str] = ".savedmodel"
    runtime: ClassVar[str] = "tensorflow"
    description: ClassVar[str] = "TensorFlow SavedModel (TF Serving, TF runtimes)"
    extra: ClassVar[str | None] = "savedmodel"

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
        forward = jax2tf.convert(traced.batched, polymorphic_shapes=batch, with_gradient=False)
        value_only = jax2tf.convert(
            jax.vmap(jaxpr_as_fun(_value_jaxpr(traced))),
            polymorphic_shapes=["(b, ...)"],
            with_gradient=False,
        )
        specs = [
            tf.TensorSpec((None, *s.shape), tf.dtypes.as_dtype(s.dtype), name=s.name)
            for s in traced.inputs
        ]

        @tf.function(input_signature=specs, autograph=False)
        def serving_default(*inputs):
            action, value = forward(*inputs)
            if action.dtype.is_integer:
                action = tf.cast(action, tf.int64)
            return {"action": action, "value": value}

        @tf.function(input_signature=specs[:1], autograph=False)
        def value(observation):
            (out,) = value_only(observation)
            return {"value": out}

        module = tf.Module()
        module.serving_default = serving_default
        module.value = value
        path = staging / f"{stem}{self.suffix}"
        tf.saved_model.save(
            module, str(path), signatures={"serving_default": serving_default, "value": value}
        )
        self.set_metadata((path,), metadata)
        return (path,)

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        target = staged[0] / METADATA_FILE
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")

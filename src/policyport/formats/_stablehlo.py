"""StableHLO: the serialized `jax.export` artifact (what jax2tf embeds), with its MLIR text.

The artifact is a folder: `exported.bin` (`jax.export.deserialize` reads it), `module.mlir`
(the StableHLO module as text) and `policyport.json` (the metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..tracing import TracedPolicy
from ._base import ArtifactFormat, ExportOptions, Runner, Runtime

EXPORTED_FILE = "exported.bin"
MLIR_FILE = "module.mlir"
METADATA_FILE = "policyport.json"


def export_stablehlo(traced: TracedPolicy) -> jax.export.Exported:
    """`jax.export` of the batched policy, the batch a symbolic dimension."""
    (batch,) = jax.export.symbolic_shape("batch")
    avals = [jax.ShapeDtypeStruct((batch, *s.shape), jnp.dtype(s.dtype)) for s in traced.inputs]
    wants_int64 = [s.dtype == "int64" for s in traced.outputs]

    def forward(*inputs):
        outputs = traced.legal_batched(*inputs)
        return tuple(
            out.astype(jnp.int64) if wide else out
            for out, wide in zip(outputs, wants_int64, strict=True)
        )

    # int64 outputs exist only with x64 on; the weights and maths stay float32.
    with jax.enable_x64(True):
        return jax.export.export(jax.jit(forward))(*avals)


def load_jax_export(path: Path) -> Runner:
    """A serialized `jax.export` artifact, deserialized and called."""
    exported = jax.export.deserialize(bytearray((path / EXPORTED_FILE).read_bytes()))
    metadata = json.loads((path / METADATA_FILE).read_text())
    inputs = [s["name"] for s in json.loads(metadata["policyport.inputs"])]
    outputs = [s["name"] for s in json.loads(metadata["policyport.outputs"])]
    call = jax.jit(exported.call)

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = call(*(arrays[n] for n in inputs))
        return {n: np.asarray(r) for n, r in zip(outputs, results, strict=True)}

    return run


JAX_EXPORT = Runtime(
    "jax.export", ("stablehlo",), load_jax_export, lambda: f"jax.export (jax {jax.__version__})"
)


class StableHloFormat(ArtifactFormat):
    name: ClassVar[str] = "stablehlo"
    suffix: ClassVar[str] = ".stablehlo"
    runtime: ClassVar[str] = "jax.export"
    description: ClassVar[str] = "serialized jax.export artifact + StableHLO MLIR text"
    marker: ClassVar[str | None] = EXPORTED_FILE

    def write(
        self,
        traced: TracedPolicy,
        staging: Path,
        stem: str,
        options: ExportOptions,
        metadata: dict[str, str],
    ) -> tuple[Path, ...]:
        exported = export_stablehlo(traced)
        path = staging / f"{stem}{self.suffix}"
        path.mkdir()
        (path / EXPORTED_FILE).write_bytes(exported.serialize())
        (path / MLIR_FILE).write_text(exported.mlir_module())
        self.set_metadata((path,), metadata)
        return (path,)

    def read_metadata(self, artifact: Path) -> dict[str, str]:
        path = artifact / METADATA_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        (staged[0] / METADATA_FILE).write_text(text)

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

from ._base import ArtifactFormat, ExportOptions
from ._traced import TracedPolicy

EXPORTED_FILE = "exported.bin"
MLIR_FILE = "module.mlir"
METADATA_FILE = "policyport.json"


def export_stablehlo(traced: TracedPolicy) -> jax.export.Exported:
    """`jax.export` of the batched policy, the batch a symbolic dimension."""
    (batch,) = jax.export.symbolic_shape("batch")
    avals = [jax.ShapeDtypeStruct((batch, *s.shape), jnp.dtype(s.dtype)) for s in traced.inputs]
    wants_int64 = traced.outputs[0].dtype == "int64"

    def forward(*inputs):
        action, value = traced.batched(*inputs)
        return (action.astype(jnp.int64) if wants_int64 else action), value

    # int64 outputs exist only with x64 on; the weights and maths stay float32.
    with jax.enable_x64(True):
        return jax.export.export(jax.jit(forward))(*avals)


class StableHloFormat(ArtifactFormat):
    name: ClassVar[str] = "stablehlo"
    suffix: ClassVar[str] = ".stablehlo"
    runtime: ClassVar[str] = "jax.export"
    description: ClassVar[str] = "serialized jax.export artifact + StableHLO MLIR text"

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

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        (staged[0] / METADATA_FILE).write_text(text)

"""Formats whose toolchain must read what the installed JAX writes, asked before tracing.

The savedmodel and tflite formats go through jax2tf, which wraps the policy's StableHLO,
serialized by JAX as a versioned portable artifact, in an `XlaCallModule` op; TensorFlow
must deserialize it. JAX writes the newest version its compatibility window allows
(jax 0.10.2: 1.15.0; jax 0.12: 1.18.0, with `vhlo.custom_call_v2`, which TensorFlow 2.21
cannot read), and a TensorFlow older than the JAX fails only when the artifact is run.
So for a TensorFlow we measured, JAX is asked to write the StableHLO version that
TensorFlow reads (the parity check still runs the result); if this JAX cannot be asked
(its export internals moved), the format is refused before anything is traced, with the
versions named and what to install. Versions are read from the installed distributions'
metadata: nothing heavy is imported to answer (docs/install.md, "Formats and JAX
versions").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

# TensorFlow (major, minor) -> the StableHLO portable-artifact version it is given: one
# measured to run (a SavedModel and a .tflite of each action space exported with parity
# PASS). 1.15.0 is what jax 0.10.2 writes by itself; jax 0.12 asked for it passes too.
TENSORFLOW_STABLEHLO: dict[tuple[int, ...], str] = {
    (2, 21): "1.15.0",
}
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-gpu")


def installed_version(*distributions: str) -> str | None:
    """The installed version of the first of `distributions` that is installed, else None."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def release(version: str) -> tuple[int, ...]:
    """`0.12.0.1` -> (0, 12, 0, 1); `2.21.0rc1` -> (2, 21, 0): the numeric release part."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def tensorflow_stablehlo() -> str | None:
    """The StableHLO version the installed TensorFlow is known to read, or None (no
    TensorFlow, or one newer than the table: its own parity check decides)."""
    tensorflow = installed_version(*_TENSORFLOW_DISTRIBUTIONS)
    return None if tensorflow is None else TENSORFLOW_STABLEHLO.get(release(tensorflow)[:2])


def _jax_export_dialect() -> Any | None:
    """The StableHLO dialect module `jax.export` serializes with, or None if this JAX keeps
    it elsewhere (then its serialization version cannot be chosen)."""
    try:
        from jax._src.export import _export
    except ImportError:
        return None
    dialect = getattr(_export, "hlo", None)
    needed = ("get_version_from_compatibility_requirement", "StablehloCompatibilityRequirement")
    return dialect if all(hasattr(dialect, name) for name in needed) else None


def _jax_writes(dialect: Any) -> str:
    requirement = dialect.StablehloCompatibilityRequirement.WEEK_4  # what jax.export asks
    return str(dialect.get_version_from_compatibility_requirement(requirement))


def tensorflow_refusal(format: str) -> str | None:
    """Why `format` (built and run through jax2tf + TensorFlow) cannot work with the JAX
    installed here, or None when it can (or TensorFlow is absent: that is the format's
    own missing-dependency message)."""
    readable = tensorflow_stablehlo()
    if readable is None:
        return None
    dialect = _jax_export_dialect()
    if dialect is not None:
        return None  # any newer version JAX would write is pinned to `readable`
    tensorflow = installed_version(*_TENSORFLOW_DISTRIBUTIONS)
    jax = installed_version("jax")
    return (
        f"The {format} format runs the policy in TensorFlow through jax2tf, and TensorFlow "
        f"{tensorflow} reads StableHLO up to version {readable}, which jax {jax} cannot be "
        "asked to write (its export internals moved; see docs/install.md, 'Formats and JAX "
        "versions'). Nothing was written. Export --format onnx, ort or stablehlo from this "
        f"environment, or {format} from one with jax 0.10.* or 0.12.*: pip install "
        f"'jax==0.12.*' 'jaxlib==0.12.*' 'policyport[{format}]' in a separate virtual "
        "environment (the exporter reads policy files and checkpoints, so it need not be "
        "the training one)."
    )


class _PinnedDialect:
    """The StableHLO dialect module, but asked for a version, it answers `version`."""

    def __init__(self, dialect: Any, version: str):
        self._dialect, self._version = dialect, version

    def get_version_from_compatibility_requirement(self, requirement: Any) -> str:
        return self._version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dialect, name)


@contextmanager
def stablehlo_tensorflow_reads() -> Iterator[None]:
    """Inside: `jax.export` (and so jax2tf) serializes StableHLO at a version the
    installed TensorFlow reads, when JAX would otherwise write a newer one."""
    readable = tensorflow_stablehlo()
    dialect = _jax_export_dialect()
    if readable is None or dialect is None or release(_jax_writes(dialect)) <= release(readable):
        yield
        return
    from jax._src.export import _export

    # A stand-in for the `hlo` module, read by attribute while exporting.
    _export.hlo = _PinnedDialect(dialect, readable)  # type: ignore[assignment]
    try:
        yield
    finally:
        _export.hlo = dialect

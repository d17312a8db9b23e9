"""What a format is, and what a runtime is: the two kinds of row in `_registry.py`.

A format knows how to write an artifact from the one traced policy; a runtime knows how
to open an artifact of some formats and run it on named inputs. The checks see only a
runtime's `Runner`, never a format.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..tracing import TracedPolicy

# ONNX opsets we write. 21 is the default: every consumer we test loads it (onnxruntime
# 1.29 C/C++, onnxruntime-node/-web 1.30, the 1.32 wheel); -web 1.30 refuses opsets above
# 26 (docs/design.md, Decisions). policyport's own lowering writes opset 13 and up (Unity
# Sentis reads 7-15; 13 is where Squeeze/Split/ReduceSum take axes as inputs); jax2onnx's
# fallback keeps its own floor, 18.
MIN_OPSET, DEFAULT_OPSET, MAX_OPSET = 13, 21, 26
JAX2ONNX_MIN_OPSET = 18

# Named inputs in, named outputs out: all a check needs from a runtime.
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ExportOptions:
    """Settings that change what a format writes."""

    opset: int = DEFAULT_OPSET
    # A deployment target's name (`formats/_targets.py`): its batch and operator choices.
    target: str | None = None


@dataclass(frozen=True)
class Runtime:
    """A runtime that opens artifacts of `formats` (imported lazily, inside `load`)."""

    name: str
    formats: tuple[str, ...]
    load: Callable[[Path], Runner]
    version: Callable[[], str]
    # What to install when the runtime is missing here (a sentence), else None: asked
    # before an export starts, so a missing runtime fails before anything is written.
    missing: Callable[[], str | None] = lambda: None


class ArtifactFormat(abc.ABC):
    """One artifact format.

    `write` puts the artifact (and any companion files) into `staging`, a private folder
    next to the destination; the orchestrator moves them into place only after they passed
    their parity check. `set_metadata` rewrites the embedded metadata in a staged artifact
    without touching its computation. `runtime` names the runtime that checks it.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    runtime: ClassVar[str]
    description: ClassVar[str]
    extra: ClassVar[str | None] = None
    # The file (inside a folder artifact) that marks a folder as this format's artifact.
    marker: ClassVar[str | None] = None

    def destinations(self, primary: Path) -> tuple[Path, ...]:
        """Every path the artifact occupies, the primary one first."""
        return (primary,)

    @abc.abstractmethod
    def write(
        self,
        traced: TracedPolicy,
        staging: Path,
        stem: str,
        options: ExportOptions,
        metadata: dict[str, str],
    ) -> tuple[Path, ...]:
        """Write the artifact into `staging`; return its paths, in `destinations` order."""

    @abc.abstractmethod
    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        """Replace the metadata of a staged artifact.

        May rewrite the artifact's bytes; the orchestrator then re-runs the rewritten
        artifact on every checked input and publishes it only if its outputs are the
        checked ones bit for bit (the published bytes are the checked bytes).
        """

    @abc.abstractmethod
    def read_metadata(self, artifact: Path) -> dict[str, str]:
        """The metadata embedded in a written artifact (empty if it holds none)."""

    def refusal(self) -> str | None:
        """Why this format cannot be written with the toolchain installed here (a message
        saying what to install), or None. Asked before anything is traced or written."""
        return None

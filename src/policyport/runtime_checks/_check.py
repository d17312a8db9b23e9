"""`check`: run an artifact in its runtime and compare it with the JAX policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import InputError
from ..exporters._contract import output_specs
from ..exporters._registry import FORMATS
from ..policy import MLPActorCriticPolicy
from ._inputs import DEFAULT_BATCH_SIZES, check_batches
from ._reference import reference_and_margins
from ._report import ParityReport, compare_output, tolerances
from ._runtimes import LOADERS, runtime_version


def format_of(artifact: Path) -> str:
    """The registered format whose suffix `artifact` has."""
    for name, fmt in FORMATS.items():
        if artifact.suffix == fmt.suffix:
            return name
    suffixes = ", ".join(f.suffix for f in FORMATS.values())
    raise InputError(f"Cannot tell the format of {artifact}: expected a suffix among {suffixes}.")


def check(
    policy: MLPActorCriticPolicy,
    artifact: str | Path,
    *,
    format: str | None = None,
    seed: int = 0,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
) -> ParityReport:
    """Run `artifact` in its runtime on sampled inputs and compare it with the JAX policy.

    `format` defaults to the one whose suffix `artifact` has (`.onnx`, `.ort`, ...).
    """
    format = format or format_of(Path(artifact))
    fmt = FORMATS[format]
    run = LOADERS[fmt.runtime](Path(artifact))
    batches = check_batches(policy, seed=seed, batch_sizes=batch_sizes)
    # The reference runs once on all rows (one compilation), then splits per batch.
    everything = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    all_expected, all_margins = reference_and_margins(policy, everything)
    bounds = np.cumsum([0, *batch_sizes])
    expected, actual, margins, masks = [], [], [], []
    for inputs, start, stop in zip(batches, bounds[:-1], bounds[1:], strict=True):
        expected.append({k: v[start:stop] for k, v in all_expected.items()})
        margins.append(None if all_margins is None else all_margins[start:stop])
        actual.append(run(inputs))
        masks.append(inputs.get("action_mask"))
    outputs = [
        compare_output(
            policy,
            spec.name,
            spec.dtype,
            [e[spec.name] for e in expected],
            [a.get(spec.name) for a in actual],
            margins if spec.name == "action" else [None] * len(batches),
            masks if spec.name == "action" else [None] * len(batches),
        )
        for spec in output_specs(policy)
    ]
    notes = []
    extra = sorted(set().union(*actual) - {s.name for s in output_specs(policy)})
    if extra:
        notes.append(f"unexpected extra outputs: {extra}")
    return ParityReport(
        format=format,
        artifact=str(artifact),
        runtime=runtime_version(fmt.runtime),
        seed=seed,
        batch_sizes=list(batch_sizes),
        tolerances=tolerances(),
        outputs=outputs,
        passed=all(o.passed for o in outputs) and not extra,
        notes=notes,
    )

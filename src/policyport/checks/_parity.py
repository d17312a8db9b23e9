"""Parity: run an artifact through a runner and compare it with the traced JAX policy.

Nothing here knows formats: the orchestrator opens the artifact and hands over a runner.
"""

from __future__ import annotations

import numpy as np

from .._backend import describe_reference
from ..formats import Runner
from ..tracing import ACTION, LOG_PROB, MASK, SAMPLED_ACTION, TracedPolicy
from ._inputs import DEFAULT_BATCH_SIZES, INPUT_RULE, check_batches
from ._reference import reference_and_margins
from ._report import ParityReport, compare_output, tolerances
from ._sequence import sequence_check


def compare_runner(
    traced: TracedPolicy,
    run: Runner,
    *,
    format: str,
    artifact: str,
    runtime: str,
    seed: int = 0,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
) -> ParityReport:
    """Run `run` on sampled inputs and compare every output with the JAX policy's."""
    batches = check_batches(traced, seed=seed, batch_sizes=batch_sizes)
    # The reference runs once on all rows (one compilation), then splits per batch.
    everything = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    all_expected, all_margins = reference_and_margins(traced, everything)
    bounds = np.cumsum([0, *batch_sizes])
    expected, actual, masks = [], [], []
    margins: dict[str, list] = {ACTION: [], SAMPLED_ACTION: []}
    width = None if all_margins is None else all_margins.shape[1]
    if traced.sampling is not None and width is not None:
        width //= 2  # the sampled action's margins follow the action's
    for inputs, start, stop in zip(batches, bounds[:-1], bounds[1:], strict=True):
        expected.append({k: v[start:stop] for k, v in all_expected.items()})
        for i, name in enumerate((ACTION, SAMPLED_ACTION)):
            rows = (
                None
                if width is None or all_margins is None
                else all_margins[start:stop, i * width : (i + 1) * width]
            )
            margins[name].append(rows)
        actual.append(run(inputs))
        masks.append(inputs.get(MASK))
    nothing: list[np.ndarray | None] = [None] * len(batches)
    outputs = [
        compare_output(
            traced.action_space,
            spec.name,
            spec.dtype,
            [e[spec.name] for e in expected],
            [a.get(spec.name) for a in actual],
            margins.get(spec.name, nothing),
            masks if spec.name in margins else nothing,
            nan_where_expected=spec.name == LOG_PROB,
        )
        for spec in traced.outputs
    ]
    notes = []
    extra = sorted(set().union(*actual) - set(traced.output_names))
    if extra:
        notes.append(f"unexpected extra outputs: {extra}")
    sequence = None
    if traced.state is not None:
        checked = sequence_check(traced, run, seed=seed)
        notes.extend(checked.lines())
        sequence = {**checked.to_json(), "summary": checked.summary()}
    return ParityReport(
        format=format,
        artifact=artifact,
        runtime=runtime,
        seed=seed,
        batch_sizes=list(batch_sizes),
        tolerances=tolerances(),
        outputs=outputs,
        passed=all(o.passed for o in outputs)
        and not extra
        and (sequence is None or sequence["passed"]),
        notes=notes,
        inputs=INPUT_RULE,
        reference=describe_reference(),
        sequence=sequence,
    )

"""ONNX's own `ReferenceEvaluator`: the operators as the standard defines them, in numpy.

Slow, and not a deployment runtime: a second opinion on what the graph means, independent
of any optimising runtime's kernels. It ships with `onnx`, so it is always available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import Runner, Runtime


def load_reference(path: Path) -> Runner:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    names = list(evaluator.output_names)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The stress check feeds observations up to float32's max on purpose: overflow to
        # inf is the expected result there (onnxruntime computes it silently too). The
        # sample entry masks with `logits + log(legal)`: Log(0) is -inf by definition.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return dict(zip(names, evaluator.run(names, inputs), strict=True))

    return run


def _version() -> str:
    import onnx

    return f"onnx-reference {onnx.__version__}"


ONNX_REFERENCE = Runtime("onnx-reference", ("onnx",), load_reference, _version)

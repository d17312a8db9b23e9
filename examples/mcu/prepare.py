"""Export the committed gridworld policy as C into BUILD, and write BUILD/inputs.h: fixed
inputs (observations and masks, the first rows all masked) with the actions JAX chooses
for them, which the firmware must reproduce.

    .venv/bin/python examples/mcu/prepare.py build/mcu [ROWS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import policyport
from policyport._loading import load_policy
from policyport.checks import reference_outputs, sample_inputs

POLICY = Path(__file__).resolve().parents[1] / "gridworld" / "policy.eqx"
ALL_MASKED = 4


def c_array(name: str, ctype: str, array: np.ndarray) -> str:
    rows = array.reshape(len(array), -1)
    cell = (lambda x: f"{float(x)!r}f") if array.dtype.kind == "f" else (lambda x: str(int(x)))
    body = ",\n    ".join("{" + ", ".join(cell(x) for x in row) + "}" for row in rows)
    return f"static const {ctype} {name}[ROWS][{rows.shape[1]}] = {{\n    {body}}};\n"


def main(build: Path, rows: int) -> None:
    build.mkdir(parents=True, exist_ok=True)
    policy = load_policy(POLICY)
    [result] = policyport.export(policy, "c", build / "policy.c", target="mcu", force=True)
    assert result.report.passed
    inputs = sample_inputs(policy, seed=0, batch=rows, all_false_rows=ALL_MASKED)
    want = reference_outputs(policy, inputs)["action"]
    text = [
        "/* Written by prepare.py: inputs and the actions JAX chose for them. */",
        f"#define ROWS {rows}",
        '#include "policy.h"',
        c_array("OBSERVATION", "float", inputs["observation"]),
        c_array("ACTION_MASK", "bool", inputs["action_mask"]),
        c_array("EXPECTED", "int64_t", np.asarray(want)),
    ]
    (build / "inputs.h").write_text("\n".join(text))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1000)

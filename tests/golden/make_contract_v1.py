"""Write the contract-1 golden artifacts (run once, with policyport at contract 1).

Run with the last contract-1 code on the path (main's commit 4642b6f):

    git -C <repo> archive 4642b6f | tar -x -C /tmp/pp-v1
    PYTHONPATH=/tmp/pp-v1/src python tests/golden/make_contract_v1.py tests/golden/contract_v1

It writes a tiny masked Discrete policy (`policy.eqx`), one artifact per format, and
`io.npz`: inputs and the outputs the JAX policy computed for them at that commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from policyport.runtime_checks._inputs import sample_inputs
from policyport.runtime_checks._reference import reference_outputs

import policyport
from policyport.policy import Box, Discrete, MLPActorCriticPolicy, SpacesEnv

SIZES = dict(feature_size=4, feature_width=8, feature_depth=1, value_width=8, value_depth=1)
SIZES |= dict(action_width=8, action_depth=1)


def main(folder: Path) -> None:
    observation = Box(
        np.array([-2.0, -np.inf, 0.0], dtype=np.float32),
        np.array([2.0, np.inf, 1.0], dtype=np.float32),
    )
    env = SpacesEnv(observation, Discrete(3))
    policy = MLPActorCriticPolicy(env, key=jax.random.key(7), **SIZES)
    policy.serialize(folder / "policy.eqx")
    for format in ("onnx", "ort", "savedmodel", "stablehlo"):
        policyport.export(policy, format, source=folder / "policy.eqx", force=True)
    inputs = sample_inputs(policy, seed=11, batch=64, all_false_rows=2)
    expected = reference_outputs(policy, inputs)
    np.savez(folder / "io.npz", **inputs, **{f"expected.{k}": v for k, v in expected.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]))

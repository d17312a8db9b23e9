"""How discrete.onnx and discrete_io.npz were made (see README.md): run with policyport at
4642b6f on PYTHONPATH, e.g. `python make_golden.py OUT_FOLDER`. Kept for the record; running it
with a newer policyport writes a different contract, which is not what these files are for."""

import sys
from pathlib import Path

import jax
import numpy as np

import policyport
from policyport.checks import reference_outputs, sample_inputs
from policyport.policy import Box, Discrete, MLPActorCriticPolicy


class Env:
    observation_space = Box(-np.ones(5, np.float32), np.ones(5, np.float32))
    action_space = Discrete(4)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(feature_size=8, feature_width=16, feature_depth=1, value_width=16)
    sizes.update(value_depth=1, action_width=16, action_depth=1)
    policy = MLPActorCriticPolicy(Env(), key=jax.random.key(11), **sizes)
    policyport.export(policy, "onnx", out / "discrete.onnx")
    inputs = sample_inputs(policy, seed=0, batch=32)
    inputs["action_mask"][:2] = False
    expected = reference_outputs(policy, inputs)
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    arrays.update({f"output.{k}": v for k, v in expected.items()})
    np.savez(out / "discrete_io.npz", **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Serve the exported Pendulum SavedModel with TensorFlow alone (no JAX).

Loads `policy.savedmodel`, calls its `serving_default` signature on a batch of
observations, and prints the actions (torques, not clipped: clip to [-2, 2] in your
controller, as Pendulum itself does) and values as JSON. Usage, from the repository root:

    .venv/bin/export-policy examples/pendulum/policy.eqx --env lerax.env:Pendulum \
        --format savedmodel
    .venv/bin/python examples/pendulum/serve_savedmodel.py examples/pendulum/policy.savedmodel

Observations are `[cos(theta), sin(theta), theta_dot]` rows: read from a raw float32 file
(`--observations FILE`, row-major `[N, 3]`) or, by default, 8 evenly spaced angles at rest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

# Contract 1 (2026-11-25) and 2 (2026-12-02) name a Box policy's inputs alike.
SUPPORTED_CONTRACT_VERSIONS = ("1", "2")


def default_observations(n: int = 8) -> np.ndarray:
    theta = np.linspace(-np.pi, np.pi, n, endpoint=False)
    return np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("savedmodel", type=Path)
    parser.add_argument("--observations", type=Path, help="raw float32 [N, 3] observations")
    args = parser.parse_args()

    metadata = json.loads((args.savedmodel / "assets.extra" / "policyport.json").read_text())
    version = metadata["policyport.contract_version"]
    if version not in SUPPORTED_CONTRACT_VERSIONS:
        raise SystemExit(f"{args.savedmodel}: contract version {version} is not supported here.")
    if args.observations is None:
        observations = default_observations()
    else:
        observations = np.fromfile(args.observations, dtype="<f4").reshape(-1, 3)
    serve = tf.saved_model.load(str(args.savedmodel)).signatures["serving_default"]
    outputs = serve(observation=tf.constant(observations))
    print(json.dumps({k: v.numpy().tolist() for k, v in sorted(outputs.items())}))


if __name__ == "__main__":
    main()

"""Drive the pendulum with an exported artifact: onnxruntime and NumPy only, no JAX.

    .venv/bin/python examples/brax/closed_loop.py examples/brax/checkpoint.onnx

Prints the mean deterministic return over the episodes (start states drawn with NumPy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dynamics import episode_returns_numpy


def onnx_policy(path: Path):
    """`observations [n, 3] -> actions [n, 1]` through onnxruntime (one thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    [observation] = [i.name for i in session.get_inputs()]
    return lambda obs: session.run(["action"], {observation: obs})[0]


def random_starts(episodes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(-np.pi, np.pi, episodes), rng.uniform(-1.0, 1.0, episodes)], axis=1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    returns = episode_returns_numpy(
        onnx_policy(args.artifact), random_starts(args.episodes, args.seed)
    )
    print(
        f"{args.episodes} episodes: mean return {returns.mean():.2f} "
        f"(min {returns.min():.2f}, max {returns.max():.2f})"
    )


if __name__ == "__main__":
    main()

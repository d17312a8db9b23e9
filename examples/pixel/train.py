"""Train the Catch CNN by imitating the scripted teacher, export it, drive Catch with both.

Run from the repository root: `.venv/bin/python examples/pixel/train.py [--steps N]`.
Trains `CatchCNN` (catch.py) on every frame the game can show (ball row and column, paddle
column: 900 frames, labels from `oracle`) with Adam, a few seconds on one core; exports it
with `policyport.from_function` to `policy.onnx` next to this file (the observation space
`Box(0, 255, (10, 10, 1), dtype=np.uint8)`: the artifact takes the uint8 frame, the cast
and scaling run inside it), then drives Catch from uint8 frames with the JAX policy and
with the artifact in onnxruntime, from the same seeds, and prints both returns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import optax
from catch import FRAME, SIZE, CatchCNN, episode, oracle, render

import policyport
from policyport.policy import Box, Discrete

HERE = Path(__file__).resolve().parent


def dataset() -> tuple[np.ndarray, np.ndarray]:
    states = [(r, c, p) for r in range(SIZE - 1) for c in range(SIZE) for p in range(SIZE)]
    frames = np.stack([render(r, c, p) for r, c, p in states])
    labels = np.array([oracle(c, p) for _, c, p in states])
    return frames, labels


def train(steps: int, seed: int = 0) -> tuple[CatchCNN, dict, float]:
    """Full-batch Adam on cross-entropy; returns the model, its parameters and the accuracy."""
    frames, labels = dataset()
    model = CatchCNN()
    params = model.init(jax.random.key(seed), jnp.zeros(FRAME, jnp.uint8))
    optimizer = optax.adam(3e-3)
    state = optimizer.init(params)
    batched = jax.vmap(model.apply, in_axes=(None, 0))

    def loss(p):
        logits = batched(p, frames)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(p, s):
        grads = jax.grad(loss)(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    for _ in range(steps):
        params, state = step(params, state)
    accuracy = float((jnp.argmax(batched(params, frames), axis=1) == labels).mean())
    return model, params, accuracy


def export(model: CatchCNN, params: dict, output: Path, formats: str = "onnx") -> list:
    policy = policyport.from_function(
        lambda frame: jnp.argmax(model.apply(params, frame)),
        observation_space=Box(0, 255, FRAME, dtype=np.uint8),
        action_space=Discrete(3),
        name="CatchCNN",
    )
    return policyport.export(policy, formats, output, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    model, params, accuracy = train(args.steps)
    print(f"trained {args.steps} steps: the teacher's action on {accuracy:.1%} of frames")
    for result in export(model, params, HERE / "policy.onnx"):
        print(result.report.to_table())
    jitted = jax.jit(lambda frame: jnp.argmax(model.apply(params, frame)))
    session = ort.InferenceSession(str(HERE / "policy.onnx"), providers=["CPUExecutionProvider"])
    for seed in range(args.episodes):
        by_jax = episode(lambda frame: int(jitted(frame)), seed)
        by_onnx = episode(
            lambda frame: int(session.run(["action"], {"observation": frame[None]})[0][0]), seed
        )
        same = "identical actions" if by_jax.actions == by_onnx.actions else "ACTIONS DIFFER"
        print(
            f"seed {seed}: return jax {by_jax.total_return:+.0f}, "
            f"onnxruntime {by_onnx.total_return:+.0f} ({same})"
        )


if __name__ == "__main__":
    main()

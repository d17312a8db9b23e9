"""Drive the baked, sampled Pendulum artifact with NumPy and onnxruntime only: no JAX.

The artifact (see README.md for the export command) takes Pendulum's observation and
returns a torque already clipped to [-2, 2] (`ClipAction` is baked in). `--sample` wrote
it as two entry points, named in its metadata `policyport.entries`: `pendulum.onnx` (the
deterministic action) and `pendulum.sample.onnx`, whose `noise` input is one standard
normal per row (metadata `policyport.noise`), drawn here with NumPy. Run from the
repository root:

    python examples/pendulum/drive_numpy.py pendulum.onnx --episodes 100 --seed 0

It prints the mean return of deterministic episodes (output `action`) and of sampled
episodes (output `sampled_action`), from the same start states.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

# lerax 0.0.5's `Pendulum()` defaults.
MAX_SPEED, MAX_TORQUE, G, MASS, LENGTH, DT = 8.0, 2.0, 9.8, 1.0, 1.0, 0.05
EPISODE_STEPS = 200  # the TimeLimit the policy was evaluated with
SUBSTEPS = 10  # RK4 steps per DT: lerax integrates adaptively to rtol = atol = 1e-5


def initial_states(rng: np.random.Generator, episodes: int) -> np.ndarray:
    """Angle uniform in [-pi, pi], angular velocity uniform in [-1, 1], as lerax draws them."""
    high = np.array([np.pi, 1.0])
    return rng.uniform(-high, high, size=(episodes, 2))


def observe(states: np.ndarray) -> np.ndarray:
    """[cos(theta), sin(theta), theta_dot] per row, float32 as the artifact takes it."""
    theta, theta_dot = states[:, 0], states[:, 1]
    return np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=1).astype(np.float32)


def _derivative(states: np.ndarray, torque: np.ndarray) -> np.ndarray:
    theta, theta_dot = states[:, 0], states[:, 1]
    theta_dd = 3.0 * G / (2.0 * LENGTH) * np.sin(theta) + 3.0 / (MASS * LENGTH**2) * torque
    return np.stack([theta_dot, theta_dd], axis=1)


def step(states: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One DT of lerax's Pendulum: integrate, wrap the angle, clip the speed; the reward.

    The torque is held for DT; the reward is the cost of the state reached (lerax's
    `reward` reads `next_state`).
    """
    torque = np.clip(np.asarray(action, np.float64), -MAX_TORQUE, MAX_TORQUE)
    h = DT / SUBSTEPS
    y = states
    for _ in range(SUBSTEPS):  # classic Runge-Kutta 4
        k1 = _derivative(y, torque)
        k2 = _derivative(y + h / 2 * k1, torque)
        k3 = _derivative(y + h / 2 * k2, torque)
        k4 = _derivative(y + h * k3, torque)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    theta = (y[:, 0] + np.pi) % (2 * np.pi) - np.pi
    theta_dot = np.clip(y[:, 1], -MAX_SPEED, MAX_SPEED)
    reward = -(theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)
    return np.stack([theta, theta_dot], axis=1), reward


def run_episodes(
    session: ort.InferenceSession, states: np.ndarray, noise: np.ndarray | None = None
) -> np.ndarray:
    """Each row's undiscounted return over EPISODE_STEPS, all rows as one batch.

    Without `noise`, `session` is the default entry and its `action` (the Gaussian mean)
    drives; with `noise` (shape [EPISODE_STEPS, episodes, 1], standard normal) `session`
    is the sample entry and its `sampled_action` does.
    """
    returns = np.zeros(len(states))
    output = "action" if noise is None else "sampled_action"
    for t in range(EPISODE_STEPS):
        feeds = {"observation": observe(states)}
        if noise is not None:
            feeds["noise"] = noise[t].astype(np.float32)
        [action] = session.run([output], feeds)
        states, reward = step(states, action.reshape(len(states)))
        returns += reward
    return returns


def open_entries(artifact: str | Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """The default and the sample entry of an artifact exported with --sample."""
    default = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    meta = default.get_modelmeta().custom_metadata_map
    if "policyport.entries" not in meta:
        raise SystemExit(f"{artifact}: no sample entry; export it with --sample")
    entries = json.loads(meta["policyport.entries"])
    sample_path = Path(artifact).parent / entries["sample"]
    sample = ort.InferenceSession(str(sample_path), providers=["CPUExecutionProvider"])
    blocks = json.loads(sample.get_modelmeta().custom_metadata_map["policyport.noise"])
    if [b["distribution"] for b in blocks] != ["standard_normal"]:
        raise SystemExit(f"{sample_path}: expected one standard normal noise block, got {blocks}")
    return default, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="the ONNX file exported with --sample (default entry)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    default, sample = open_entries(args.artifact)

    rng = np.random.default_rng(args.seed)
    states = initial_states(rng, args.episodes)
    noise = rng.standard_normal((EPISODE_STEPS, args.episodes, 1))
    deterministic = run_episodes(default, states)
    sampled = run_episodes(sample, states, noise)
    print(f"{args.episodes} episodes of {EPISODE_STEPS} steps, seed {args.seed}")
    print(
        f"deterministic mean return {deterministic.mean():8.2f}  (worst {deterministic.min():.1f})"
    )
    print(f"sampled       mean return {sampled.mean():8.2f}  (worst {sampled.min():.1f})")


if __name__ == "__main__":
    main()

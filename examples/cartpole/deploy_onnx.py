"""Drive CartPole with the exported `.onnx` policy: numpy and onnxruntime only, no JAX.

CartPole here is Gymnasium's: explicit Euler steps of 0.02 s, the same equations as
`lerax.env.CartPole(solver=diffrax.Euler())`. Usage, from the repository root:

    .venv/bin/export-policy examples/cartpole/policy.eqx --env lerax.env:CartPole --format onnx
    .venv/bin/python examples/cartpole/deploy_onnx.py examples/cartpole/policy.onnx

Prints one JSON line: the return, the number of steps, and the actions taken.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import onnxruntime as ort

GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE_MAG, DT = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = CART_MASS + POLE_MASS
POLEMASS_LENGTH = POLE_MASS * HALF_LENGTH
X_THRESHOLD, THETA_THRESHOLD = 2.4, 12 * 2 * math.pi / 360
DEFAULT_INITIAL_STATE = (0.01, -0.02, 0.03, 0.04)
# Contract 1 (2026-11-25) and 2 (2026-12-02) name a CartPole policy's inputs alike.
SUPPORTED_CONTRACT_VERSIONS = ("1", "2")


def step(state: np.ndarray, action: int) -> np.ndarray:
    """One explicit Euler step of the cart-pole equations of motion."""
    _, x_dot, theta, theta_dot = state
    force = (action * 2 - 1) * FORCE_MAG
    sin, cos = math.sin(theta), math.cos(theta)
    temp = (force + POLEMASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / TOTAL_MASS)
    )
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return state + DT * np.array([x_dot, x_acc, theta_dot, theta_acc])


def terminated(state: np.ndarray) -> bool:
    x, _, theta, _ = state
    return not (-X_THRESHOLD <= x <= X_THRESHOLD and -THETA_THRESHOLD <= theta <= THETA_THRESHOLD)


def load_policy(path: str) -> ort.InferenceSession:
    """Open the artifact and refuse a contract this script was not written for."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    version = metadata.get("policyport.contract_version")
    if version not in SUPPORTED_CONTRACT_VERSIONS:
        sys.exit(f"{path}: policyport contract version {version!r} is not supported here.")
    if json.loads(metadata["policyport.action_space"]) != {"type": "Discrete", "n": 2}:
        sys.exit(f"{path}: not a CartPole policy (action space must be Discrete(2)).")
    return session


def run_episode(session: ort.InferenceSession, initial: np.ndarray, max_steps: int) -> dict:
    state = np.asarray(initial, dtype=np.float64)
    mask = np.ones((1, 2), dtype=bool)  # CartPole masks nothing
    actions: list[int] = []
    for _ in range(max_steps):
        observation = state.astype(np.float32)[None]
        inputs = {"observation": observation}
        if any(i.name == "action_mask" for i in session.get_inputs()):
            inputs["action_mask"] = mask  # contract 2: only when the policy reads masks
        [action] = session.run(["action"], inputs)
        actions.append(int(action[0]))
        state = step(state, actions[-1])
        if terminated(state):
            break
    # Reward 1 per step, the terminating step included (as lerax and Gymnasium count it).
    return {"return": float(len(actions)), "steps": len(actions), "actions": actions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the exported CartPole policy (.onnx or .ort)")
    parser.add_argument(
        "--initial",
        type=float,
        nargs=4,
        default=DEFAULT_INITIAL_STATE,
        metavar=("X", "X_DOT", "THETA", "THETA_DOT"),
    )
    parser.add_argument("--max-steps", type=int, default=500)
    args = parser.parse_args()
    result = run_episode(load_policy(args.model), np.array(args.initial), args.max_steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

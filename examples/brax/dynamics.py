"""Pendulum-v1's dynamics for `xp` = `jax.numpy` or `numpy`: one definition, stepped by the
Brax env (`pendulum.py`) in training and by NumPy when an artifact drives it without JAX.

Observation `[cos(theta), sin(theta), theta_dot]`; action one number in [-1, 1] (Brax's
action range, scaled to a torque of +-2); reward `-(theta^2 + 0.1 theta_dot^2 + 0.001
torque^2)` with theta wrapped to [-pi, pi), 0 upright. Episodes last `EPISODE_LENGTH` steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPISODE_LENGTH = 200
MAX_SPEED, MAX_TORQUE, DT, GRAVITY, MASS, LENGTH = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0


def physics(xp: Any, theta: Any, theta_dot: Any, action: Any) -> tuple[Any, Any, Any]:
    """One step of Pendulum-v1 for `xp` = `jax.numpy` or `numpy`: new theta, theta_dot, reward."""
    torque = xp.clip(action, -1.0, 1.0) * MAX_TORQUE
    angle = ((theta + np.pi) % (2 * np.pi)) - np.pi
    reward = -(angle**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)
    acceleration = 3 * GRAVITY / (2 * LENGTH) * xp.sin(theta) + 3.0 / (MASS * LENGTH**2) * torque
    theta_dot = xp.clip(theta_dot + acceleration * DT, -MAX_SPEED, MAX_SPEED)
    return theta + theta_dot * DT, theta_dot, reward


def observe(xp: Any, theta: Any, theta_dot: Any) -> Any:
    return xp.stack([xp.cos(theta), xp.sin(theta), theta_dot], axis=-1).astype(xp.float32)


def episode_returns_numpy(act: Any, starts: np.ndarray) -> np.ndarray:
    """Returns of one episode per start state `[theta, theta_dot]` (rows of `starts`),
    stepped in NumPy float32 (as the JAX env steps in float32), all episodes at once;
    `act` maps observations `[n, 3]` to actions `[n, 1]`."""
    theta, theta_dot = (np.asarray(starts, np.float32)[:, i] for i in (0, 1))
    total = np.zeros(len(theta), np.float32)
    for _ in range(EPISODE_LENGTH):
        action = np.asarray(act(observe(np, theta, theta_dot)), np.float32)[:, 0]
        theta, theta_dot, reward = physics(np, theta, theta_dot, action)
        total += reward.astype(np.float32)
    return total

"""Catch, drawn as uint8 frames: a ball falls, a paddle on the bottom row catches it.

A 10x10 frame, one channel, 255 where the ball and the paddle are, 0 elsewhere. Each step
the ball falls one row and the paddle moves (action 0 left, 1 stay, 2 right); when the
ball reaches the bottom row the step's reward is +1 if the paddle is under it, else -1,
and a new ball starts at the top of a random column. An episode is `BALLS` balls. The
loop is plain numpy, so the JAX policy and the exported artifact drive it alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

SIZE, BALLS = 10, 10
FRAME = (SIZE, SIZE, 1)

Act = Callable[[np.ndarray], int]


class CatchCNN(nn.Module):
    """Two convolutions and a dense layer over uint8 frames; three logits."""

    @nn.compact
    def __call__(self, frame):
        x = frame.astype(jnp.float32) / 255.0
        x = nn.relu(nn.Conv(8, (3, 3), padding="SAME")(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), padding="SAME")(x))
        x = nn.relu(nn.Dense(64)(x.reshape(-1)))
        return nn.Dense(3)(x)


def render(ball_row: int, ball_col: int, paddle: int) -> np.ndarray:
    frame = np.zeros(FRAME, np.uint8)
    frame[ball_row, ball_col, 0] = 255
    frame[SIZE - 1, paddle, 0] = 255
    return frame


def oracle(ball_col: int, paddle: int) -> int:
    """The scripted teacher: step towards the ball's column."""
    return 1 + int(np.sign(ball_col - paddle))


@dataclass(frozen=True)
class Episode:
    actions: tuple[int, ...]
    total_return: float


def episode(act: Act, seed: int) -> Episode:
    """One episode of `BALLS` balls from `seed`, each action chosen by `act(frame)`."""
    rng = np.random.default_rng(seed)
    paddle, total, actions = SIZE // 2, 0.0, []
    for _ in range(BALLS):
        column = int(rng.integers(SIZE))
        for row in range(SIZE - 1):
            action = int(act(render(row, column, paddle)))
            actions.append(action)
            paddle = int(np.clip(paddle + action - 1, 0, SIZE - 1))
        total += 1.0 if paddle == column else -1.0
    return Episode(tuple(actions), total)

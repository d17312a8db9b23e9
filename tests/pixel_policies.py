"""Pixel policies for the tests and the bench: a Flax NatureCNN reading uint8 frames, and an
equinox convolution + max-pool policy reading CHW frames."""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import policyport
from policyport.policy import Box, Discrete


class NatureCNN(nn.Module):
    """The DQN/PPO Atari torso (Mnih et al. 2015): conv 8x8/4, 4x4/2, 3x3/1, dense 512."""

    actions: int

    @nn.compact
    def __call__(self, frames):
        x = frames.astype(jnp.float32) / 255.0
        x = nn.relu(nn.Conv(32, (8, 8), strides=(4, 4), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (4, 4), strides=(2, 2), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = nn.relu(nn.Dense(512)(x.reshape(-1)))
        return nn.Dense(self.actions)(x), nn.Dense(1)(x)[0]


def frames(shape: tuple[int, ...]) -> Box:
    """uint8 frames of `shape` (HWC), 0..255."""
    return Box(0, 255, shape, dtype=np.uint8)


def nature_cnn(shape: tuple[int, int, int] = (84, 84, 4), actions: int = 6, seed: int = 0):
    """A `from_function` policy: logits -> argmax action, and a value, from uint8 frames."""
    model = NatureCNN(actions)
    params = model.init(jax.random.key(seed), jnp.zeros(shape, jnp.uint8))

    def act(observation):
        return jnp.argmax(model.apply(params, observation)[0])

    def value(observation):
        return model.apply(params, observation)[1]

    return policyport.from_function(
        act,
        observation_space=frames(shape),
        action_space=Discrete(actions),
        value=value,
        name="nature_cnn",
    )


class ConvPool(eqx.Module):
    """equinox Conv2d + MaxPool2d + Conv2d + global average, then a linear head (CHW)."""

    conv1: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, channels: int, actions: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(channels, 8, 3, padding=1, key=k1)
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.conv2 = eqx.nn.Conv2d(8, 8, 3, stride=2, key=k2)
        self.head = eqx.nn.Linear(8, actions, key=k3)

    def __call__(self, x):
        x = jax.nn.relu(self.conv1(x))
        x = jax.nn.relu(self.conv2(self.pool(x)))
        return self.head(jnp.mean(x, axis=(1, 2)))


def equinox_conv_pool(shape: tuple[int, int, int] = (2, 16, 16), actions: int = 4, seed: int = 0):
    """A `from_function` policy over float32 CHW frames in [0, 1]."""
    net = ConvPool(shape[0], actions, key=jax.random.key(seed))
    space = Box(np.zeros(shape, np.float32), np.ones(shape, np.float32))
    return policyport.from_function(
        lambda observation: jnp.argmax(net(observation)),
        observation_space=space,
        action_space=Discrete(actions),
        name="conv_pool",
    )

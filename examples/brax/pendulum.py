"""Pendulum swing-up (Gymnasium's Pendulum-v1 dynamics, `dynamics.py`) written against
Brax's `Env` interface: what `train.py` trains with Brax's own PPO."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State
from dynamics import EPISODE_LENGTH, observe, physics


def initial_state(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """theta uniform in [-pi, pi), theta_dot uniform in [-1, 1): as Pendulum-v1 resets."""
    k_theta, k_speed = jax.random.split(key)
    return (
        jax.random.uniform(k_theta, minval=-np.pi, maxval=np.pi),
        jax.random.uniform(k_speed, minval=-1.0, maxval=1.0),
    )


class Pendulum(Env):
    """The swing-up as a Brax env; `pipeline_state` is `[theta, theta_dot]`."""

    def reset(self, rng: jax.Array) -> State:
        theta, theta_dot = initial_state(rng)
        zero = jnp.zeros(())
        return State(jnp.stack([theta, theta_dot]), observe(jnp, theta, theta_dot), zero, zero)

    def step(self, state: State, action: jax.Array) -> State:
        theta, theta_dot = state.pipeline_state
        theta, theta_dot, reward = physics(jnp, theta, theta_dot, action[0])
        return state.replace(
            pipeline_state=jnp.stack([theta, theta_dot]),
            obs=observe(jnp, theta, theta_dot),
            reward=reward,
            done=jnp.zeros(()),
        )

    @property
    def observation_size(self) -> int:
        return 3

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "jax"


def episode_returns_jax(policy: Any, keys: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Returns of one episode per key with a Brax policy `(obs, key) -> (action, extras)`,
    stepped by the Brax env; also the start states, to replay them elsewhere."""
    env = Pendulum()

    def episode(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        state = env.reset(key)

        def step(carry: tuple[State, jax.Array], _: None) -> tuple[Any, None]:
            state, total = carry
            action, _ = policy(state.obs, key)
            state = env.step(state, action)
            return (state, total + state.reward), None

        (_, total), _ = jax.lax.scan(step, (state, jnp.zeros(())), None, EPISODE_LENGTH)
        return total, env.reset(key).pipeline_state

    totals, starts = jax.jit(jax.vmap(episode))(keys)
    return np.asarray(totals), np.asarray(starts)

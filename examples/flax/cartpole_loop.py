"""Closed loop on gymnax's CartPole-v1: one episode driven by any policy function.

The same loop runs the JAX policy and the exported artifact (onnxruntime), from the same
seed, so the two episodes differ only in who chooses the actions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import flax.serialization
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from actor_critic import ActorCritic

HERE = Path(__file__).resolve().parent
PARAMS_PATH = HERE / "params.msgpack"
ENV_ID = "CartPole-v1"

Act = Callable[[np.ndarray], int]


@dataclass(frozen=True)
class Episode:
    actions: tuple[int, ...]
    total_return: float


def load_trained() -> tuple[ActorCritic, dict]:
    """The committed model and its parameters (flax msgpack: no code is run to read it)."""
    env, env_params = gymnax.make(ENV_ID)
    model = ActorCritic(action_dim=env.action_space(env_params).n)
    template = model.init(jax.random.key(0), jnp.zeros(env.observation_space(env_params).shape))
    return model, flax.serialization.from_bytes(template, PARAMS_PATH.read_bytes())


@functools.cache
def _env() -> tuple:
    env, env_params = gymnax.make(ENV_ID)
    reset = jax.jit(lambda key: env.reset_env(key, env_params))

    @jax.jit
    def step(key, state, action):
        obs, state, reward, terminated, _ = env.step_env(key, state, action, env_params)
        return obs, state, reward, terminated | env.is_truncated(state, env_params)

    return reset, step


def episode(act: Act, seed: int) -> Episode:
    """One episode from `seed`, each action `act(observation)` on a float32 `(4,)` array."""
    reset, step = _env()
    key, reset_key = jax.random.split(jax.random.key(seed))
    obs, state = reset(reset_key)
    actions, total, done = [], 0.0, False
    while not done:
        action = act(np.asarray(obs, np.float32))
        key, step_key = jax.random.split(key)
        obs, state, reward, done = step(step_key, state, jnp.int32(action))
        actions.append(action)
        total += float(reward)
    return Episode(tuple(actions), total)


def jax_act(model: ActorCritic, params: dict) -> Act:
    """The JAX policy: the argmax of the actor's logits, jitted."""
    greedy = jax.jit(lambda obs: jnp.argmax(model.apply(params, obs)[0]))
    return lambda obs: int(greedy(obs))


def onnxruntime_act(artifact: Path) -> Act:
    """The exported artifact in onnxruntime: no JAX in the policy's call."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    return lambda obs: int(session.run(["action"], {"observation": obs[None]})[0][0])

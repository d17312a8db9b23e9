"""The baked, sampled artifact's returns against the lerax policy's, episode by episode.

JAX side: lerax's own `MLPActorCriticPolicy` in the env it was trained in (`envs.py`,
`ClipAction` clipping its actions), from `env.initial(key)`, sampling with each step's
key. Artifact side: drive_numpy.py's NumPy Pendulum from the same start states, fed
`policyport.sampling_noise(policy, key)` for the same keys. Run from the repository root:

    python examples/pendulum/compare_jax.py pendulum.onnx --episodes 100
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import random as jr
from lerax.env import Pendulum
from lerax.policy import MLPActorCriticPolicy

import policyport
from policyport.tracing import trace

HERE = Path(__file__).resolve().parent


def _sibling(name: str) -> Any:
    """envs.py or drive_numpy.py, importable from any working directory."""
    spec = importlib.util.spec_from_file_location(f"pendulum_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # equinox resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


envs, drive = _sibling("envs"), _sibling("drive_numpy")


def load_policy() -> MLPActorCriticPolicy:
    """policy.eqx as lerax loads it (README's "Load")."""
    return MLPActorCriticPolicy.deserialize(HERE / "policy.eqx", Pendulum(), key=jr.key(0))


def jax_episodes(
    policy: MLPActorCriticPolicy, episodes: int, seed: int
) -> tuple[np.ndarray, jax.Array, np.ndarray, np.ndarray]:
    """Start states `[episodes, 2]`, step keys `[episodes, steps]`, and the deterministic
    and sampled returns of `policy` in the trained env."""
    env = envs.trained_env()
    keys = jr.split(jr.key(seed), episodes)
    step_keys = jax.vmap(lambda k: jr.split(k, drive.EPISODE_STEPS))(keys)

    def episode(key: jax.Array, keys: jax.Array, sample: bool) -> tuple[jax.Array, jax.Array]:
        def step(state: Any, k: jax.Array) -> tuple[Any, jax.Array]:
            observation = env.observation(state, key=k)
            _, action = policy(None, observation, key=k) if sample else policy(None, observation)
            next_state = env.transition(state, action, key=k)  # ClipAction clips the action
            return next_state, env.reward(state, action, next_state, key=k)

        state = env.initial(key=key)
        _, rewards = jax.lax.scan(step, state, keys)
        return state.unwrapped.y, jnp.sum(rewards)

    def returns(sample: bool) -> tuple[jax.Array, jax.Array]:
        return jax.jit(jax.vmap(lambda k, ks: episode(k, ks, sample)))(keys, step_keys)

    (starts, deterministic), (_, sampled) = returns(False), returns(True)
    return np.asarray(starts, np.float64), step_keys, np.asarray(deterministic), np.asarray(sampled)


def noise_for(policy: MLPActorCriticPolicy, step_keys: jax.Array) -> np.ndarray:
    """`sampling_noise` for each episode's step keys, `[steps, episodes, 1]` as drive_numpy
    takes it (traced once: `sampling_noise` accepts the trace)."""
    traced = trace(policy, sample=True)
    noise = [[policyport.sampling_noise(traced, key) for key in keys] for keys in step_keys]
    return np.asarray(noise).transpose(1, 0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    policy = load_policy()
    starts, step_keys, deterministic, sampled = jax_episodes(policy, args.episodes, args.seed)
    default, sample = drive.open_entries(args.artifact)
    artifact = {
        "deterministic": drive.run_episodes(default, starts),
        "sampled": drive.run_episodes(sample, starts, noise_for(policy, step_keys)),
    }
    print(f"{args.episodes} episodes of {drive.EPISODE_STEPS} steps, seed {args.seed}")
    for kind, want in (("deterministic", deterministic), ("sampled", sampled)):
        got = artifact[kind]
        gap = np.abs(got - want)
        print(
            f"{kind:13s} JAX {want.mean():9.3f}  artifact {got.mean():9.3f}  "
            f"worst |gap| {gap.max():.1e}  worst |gap|/|JAX| (|JAX| > 1) "
            f"{np.max(gap[np.abs(want) > 1] / np.abs(want[np.abs(want) > 1])):.1e}"
        )


if __name__ == "__main__":
    main()

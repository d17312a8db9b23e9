"""Export the trained recurrent policy, then play the same episodes with JAX and the artifact.

Run from the repository root: `.venv/bin/python examples/recurrent/export.py [--format all]`.
Writes `policy.onnx` (or every format) next to this file and prints each parity report
(sequence parity included: free-running and teacher-forced). Then `run_artifact.py`'s NumPy
loop drives the ONNX artifact in onnxruntime over agents x episodes (one call per step,
state carried, `reset` at each episode's start), JAX's policy plays the same episodes with
gymnax's MemoryChain, and both mean returns are printed with the count of differing actions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.bsuite.memory_chain import EnvState
from jaxtyping import Array, Float, Int
from policies import RecurrentActorCritic, load_recurrent
from run_artifact import EPISODE_STEPS, Episodes, open_policy, play
from train import NUM_BITS, POLICY_PATH, make_env

import policyport

HERE = Path(__file__).resolve().parent


def export(format: str = "onnx", output: Path = HERE / "policy.onnx") -> list:
    """Export `policy.eqx` (its initial state is zeros: no `reset_seed` needed)."""
    return policyport.export(load_recurrent(POLICY_PATH, NUM_BITS), format, output, force=True)


def jax_play(
    policy: RecurrentActorCritic, context: Int[Array, "n bits"], query: Int[Array, " n"]
) -> tuple[Float[Array, " n"], Int[Array, "n steps"]]:
    """Returns and actions of one episode per row, gymnax's env, each from `reset`'s state."""
    env, env_params = make_env()

    def episode(context: Array, query: Array) -> tuple[Array, Array]:
        env_state = EnvState(
            context=context.astype(jnp.int32),
            query=query.astype(jnp.int32),
            total_perfect=jnp.int32(0),
            total_regret=jnp.float32(0.0),
            time=jnp.int32(0),
        )
        obs = env.get_obs(env_state, env_params)
        key = jax.random.key(0)  # MemoryChain's step draws nothing

        def step(carry, _):
            env_state, obs, state = carry
            state, action = policy(state, obs)
            obs, env_state, reward, _, _ = env.step_env(key, env_state, action, env_params)
            return (env_state, obs, state), (reward, action)

        initial = (env_state, obs, policy.reset(key=key))
        _, (rewards, actions) = jax.lax.scan(step, initial, None, EPISODE_STEPS)
        return rewards.sum(), actions

    return eqx.filter_jit(jax.vmap(episode))(context, query)


def compare(model: Path, agents: int, episodes: int, seed: int) -> dict:
    """The artifact's and JAX's returns on the same episodes, and how many actions differ."""
    drawn = Episodes.draw(agents, episodes, seed)
    session, leaves = open_policy(str(model))
    artifact = play(session, leaves, drawn)
    returns, actions = jax_play(
        load_recurrent(POLICY_PATH, NUM_BITS),
        jnp.asarray(drawn.context.reshape(-1, NUM_BITS)),
        jnp.asarray(drawn.query.reshape(-1)),
    )
    return {
        "artifact_mean_return": artifact["mean_return"],
        "jax_mean_return": float(returns.mean()),
        "episodes": agents * episodes,
        "differing_actions": int(
            (artifact["actions"].reshape(-1, EPISODE_STEPS) != np.asarray(actions)).sum()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="onnx", help="onnx (default), all, ...")
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=32, help="per agent")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for result in export(args.format):
        print(result.report.to_table())
    print(compare(HERE / "policy.onnx", args.agents, args.episodes, args.seed))


if __name__ == "__main__":
    main()

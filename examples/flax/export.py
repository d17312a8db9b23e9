"""Export the trained Flax actor-critic with `from_function`, then check it in closed loop.

Run from the repository root: `.venv/bin/python examples/flax/export.py [--episodes N]`.
Writes `policy.onnx` (and `.ort`, `.savedmodel/`, `.stablehlo/`) next to this file, prints
each format's parity report, then drives gymnax's CartPole-v1 with the ONNX artifact in
onnxruntime and with the JAX policy from the same seeds and prints both returns.
"""

from __future__ import annotations

import argparse

import gymnax
import jax.numpy as jnp
from cartpole_loop import ENV_ID, HERE, episode, jax_act, load_trained, onnxruntime_act

import policyport
from policyport.policy import Box, Discrete


def export(formats: str = "all", output=HERE / "policy.onnx") -> list:
    model, params = load_trained()
    env, env_params = gymnax.make(ENV_ID)
    space = env.observation_space(env_params)
    # The three lines: the policy is a function of one observation, its weights closed over.
    policy = policyport.from_function(
        lambda obs: jnp.argmax(model.apply(params, obs)[0]),
        observation_space=Box(space.low, space.high),
        action_space=Discrete(env.action_space(env_params).n),
        value=lambda obs: model.apply(params, obs)[1],
        name="ActorCritic",
    )
    return policyport.export(policy, formats, output, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    for result in export():
        print(result.report.to_table())
    model, params = load_trained()
    by_jax, by_onnx = jax_act(model, params), onnxruntime_act(HERE / "policy.onnx")
    for seed in range(args.episodes):
        reference, artifact = episode(by_jax, seed), episode(by_onnx, seed)
        same = "identical actions" if reference.actions == artifact.actions else "ACTIONS DIFFER"
        print(
            f"seed {seed}: return jax {reference.total_return:.1f}, "
            f"onnxruntime {artifact.total_return:.1f} ({same}, {len(artifact.actions)} steps)"
        )


if __name__ == "__main__":
    main()

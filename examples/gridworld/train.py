"""Train lerax's MLP actor-critic on the masked gridworld with lerax's PPO and save it.

Writes `policy.eqx` (policyport's self-describing format) and `training.json` next to this
file. Run from the repository root: `.venv/bin/python examples/gridworld/train.py --seed 0`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import optax
from jax import numpy as jnp
from jax import random as jr
from jaxtyping import Array, Bool, Key
from lerax.algorithm import PPO
from lerax.callback import AbstractIterationCallback, IterationContext, ResetContext
from lerax.callback.base_callback import EmptyCallbackState
from lerax.policy import MLPActorCriticPolicy as LeraxPolicy

from policyport.policy import MLPActorCriticPolicy

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # run as a script: import the env next to this file

from evaluate import EVAL_EPISODES, evaluate, masked_player, play, random_starts, report  # noqa: E402
from gridworld import MAX_STEPS, Gridworld  # noqa: E402

POLICY_PATH = HERE / "policy.eqx"
METADATA_PATH = HERE / "training.json"

TOTAL_TIMESTEPS = 2**17
LEARNING_RATE = 3e-4
ENTROPY_COEFFICIENT = 0.01
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_BATCHES = 8, 256, 8, 16
PROGRESS_EPISODES = 200
PROGRESS_EVERY = 4  # iterations; one iteration is NUM_ENVS * NUM_STEPS env steps


class PrintProgress(AbstractIterationCallback[EmptyCallbackState]):
    """Print the masked deterministic return and success rate every `every` iterations."""

    eval_env: Gridworld
    every: int = eqx.field(static=True)
    steps_per_iteration: int = eqx.field(static=True)

    def reset(self, ctx: ResetContext, *, key: Key[Array, ""]) -> EmptyCallbackState:
        return EmptyCallbackState()

    def on_iteration(self, ctx: IterationContext, *, key: Key[Array, ""]) -> EmptyCallbackState:
        def show() -> None:
            starts_key, play_key = jr.split(key)
            states = random_starts(self.eval_env, PROGRESS_EPISODES, key=starts_key)
            result = play(self.eval_env, masked_player(ctx.policy), states, key=play_key)
            jax.debug.print(
                "steps {steps:>6d}  return {ret:6.3f}  success {succ:5.1%}  "
                "entropy {ent:.3f}  explained var {ev:.3f}",
                steps=ctx.iteration_count * self.steps_per_iteration,
                ret=jnp.mean(result.returns),
                succ=jnp.mean(result.successes),
                ent=-ctx.training_log["entropy_loss"],
                ev=ctx.training_log["explained_variance"],
                ordered=True,
            )

        due: Bool[Array, ""] = ctx.iteration_count % self.every == 0
        jax.lax.cond(due, show, lambda: None)
        return ctx.state


def make_ppo(total_timesteps: int) -> PPO:
    """lerax's PPO with a small entropy bonus and the learning rate decayed to zero."""
    num_updates = total_timesteps // (NUM_ENVS * NUM_STEPS) * NUM_EPOCHS * NUM_BATCHES
    return PPO(
        num_envs=NUM_ENVS,
        num_steps=NUM_STEPS,
        num_epochs=NUM_EPOCHS,
        num_batches=NUM_BATCHES,
        entropy_loss_coefficient=ENTROPY_COEFFICIENT,
        learning_rate=optax.linear_schedule(LEARNING_RATE, 0.0, num_updates),
    )


def train(
    env: Gridworld, total_timesteps: int, *, key: Key[Array, ""]
) -> tuple[LeraxPolicy, float, float]:
    """Train a default-size lerax policy; return it, compile seconds and training seconds."""
    init_key, learn_key = jr.split(key)
    policy = LeraxPolicy(env, key=init_key)
    ppo = make_ppo(total_timesteps)
    callback = PrintProgress(env, PROGRESS_EVERY, ppo.num_envs * ppo.num_steps)

    start = time.perf_counter()
    learn = PPO.learn.lower(
        ppo, env, policy, total_timesteps, key=learn_key, callback=callback
    ).compile()
    compiled = time.perf_counter()
    policy = learn(ppo, env, policy, total_timesteps, key=learn_key, callback=callback)
    jax.block_until_ready(policy)
    jax.effects_barrier()
    done = time.perf_counter()
    return policy, compiled - start, done - compiled


def convert(policy: LeraxPolicy, env: Gridworld) -> MLPActorCriticPolicy:
    """The lerax policy as policyport's class, via lerax's own file format.

    lerax's `serialize` writes through `jax.debug.callback`, hence the effects barrier.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lerax_policy.eqx"
        policy.serialize(path)
        jax.effects_barrier()
        return MLPActorCriticPolicy.deserialize(path, env)


def metadata(
    seed: int,
    steps: int,
    compile_seconds: float,
    train_seconds: float,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """What `training.json` records: the run, its figures and the versions used."""
    return {
        "env": "examples/gridworld/gridworld.py:Gridworld",
        "max_episode_steps": MAX_STEPS,
        "seed": seed,
        "total_timesteps": steps,
        "compile_seconds": round(compile_seconds, 2),
        "training_seconds": round(train_seconds, 2),
        "eval_episodes": EVAL_EPISODES,
        "eval_starts": "the env's start rule; the same starts for every player",
        "figures": figures,
        "trained_with": "lerax.policy:MLPActorCriticPolicy, lerax PPO, masks on",
        "policy_class": "policyport.policy:MLPActorCriticPolicy",
        "policy_kwargs": {},
        "ppo": {
            "num_envs": NUM_ENVS,
            "num_steps": NUM_STEPS,
            "num_epochs": NUM_EPOCHS,
            "num_batches": NUM_BATCHES,
            "entropy_loss_coefficient": ENTROPY_COEFFICIENT,
            "learning_rate": f"linear {LEARNING_RATE} -> 0",
            "others": "lerax PPO() defaults",
        },
        "versions": {name: version(name) for name in ("lerax", "jax", "equinox", "policyport")},
    }


def main() -> None:
    """Train, convert, evaluate, save, reload and check, then write `training.json`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TOTAL_TIMESTEPS)
    args = parser.parse_args()

    train_key, eval_key = jr.split(jr.key(args.seed))
    env = Gridworld()
    print(f"training on Gridworld for {args.steps} steps, seed {args.seed}")
    lerax_policy, compile_seconds, train_seconds = train(env, args.steps, key=train_key)
    print(f"compiled in {compile_seconds:.1f} s, trained in {train_seconds:.1f} s")

    policy = convert(lerax_policy, env)
    figures = evaluate(env, policy, key=eval_key)
    report(figures)

    policy.serialize(POLICY_PATH)
    if evaluate(env, MLPActorCriticPolicy.deserialize(POLICY_PATH), key=eval_key) != figures:
        raise SystemExit("the reloaded policy scores differently")
    print(f"saved {POLICY_PATH.name} ({POLICY_PATH.stat().st_size} bytes), reload ok")

    record = metadata(args.seed, args.steps, compile_seconds, train_seconds, figures)
    METADATA_PATH.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

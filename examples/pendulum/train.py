"""Train lerax's MLP actor-critic on Pendulum with lerax's PPO and save it.

Writes `policy.eqx` (lerax's own `serialize`) and `training.json` next to this file.
Run from the repository root: `.venv/bin/python examples/pendulum/train.py --seed 0`.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import optax
from jax import random as jr
from jaxtyping import Array, Bool, Float, Key
from lerax.algorithm import PPO
from lerax.benchmark import average_reward
from lerax.callback import AbstractIterationCallback, IterationContext, ResetContext
from lerax.callback.base_callback import EmptyCallbackState
from lerax.env import AbstractEnvLike, Pendulum
from lerax.policy import MLPActorCriticPolicy
from lerax.space import AbstractSpace
from lerax.wrapper import ClipAction, TransformReward
from lerax.wrapper import TimeLimit as _LeraxTimeLimit
from lerax.wrapper.misc import TimeLimitState

HERE = Path(__file__).resolve().parent
POLICY_PATH = HERE / "policy.eqx"
METADATA_PATH = HERE / "training.json"

ENV_SPEC = "lerax.env:Pendulum"
MAX_EPISODE_STEPS = 200
REWARD_SCALE = 0.1
TOTAL_TIMESTEPS = 2**18
LEARNING_RATE = 1e-3
GAMMA = 0.9
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_BATCHES = 4, 1024, 10, 64
EVAL_EPISODES = 100
PROGRESS_EPISODES = 10
PROGRESS_EVERY = 8  # iterations; one iteration is num_envs * num_steps env steps


class TimeLimit(_LeraxTimeLimit):
    """lerax's `TimeLimit` plus the `action_mask` it leaves abstract (lerax 0.0.5)."""

    def action_mask(self, state: TimeLimitState, *, key: Key[Array, ""]) -> Any:
        return self.env.action_mask(state.env_state, key=key)


class ScaleReward(TransformReward):
    """lerax's `TransformReward` plus the spaces it leaves uninitialised (lerax 0.0.5)."""

    def __init__(self, env: AbstractEnvLike, scale: float) -> None:
        super().__init__(env, lambda reward: scale * reward)

    @property
    def action_space(self) -> AbstractSpace:
        return self.env.action_space

    @property
    def observation_space(self) -> AbstractSpace:
        return self.env.observation_space


class PrintProgress(AbstractIterationCallback[EmptyCallbackState]):
    """Print the deterministic return and PPO losses every `every` iterations."""

    eval_env: AbstractEnvLike
    every: int = eqx.field(static=True)
    steps_per_iteration: int = eqx.field(static=True)

    def reset(self, ctx: ResetContext, *, key: Key[Array, ""]) -> EmptyCallbackState:
        return EmptyCallbackState()

    def on_iteration(self, ctx: IterationContext, *, key: Key[Array, ""]) -> EmptyCallbackState:
        def report() -> None:
            mean_return = average_reward(
                self.eval_env,
                ctx.policy,
                num_episodes=PROGRESS_EPISODES,
                max_steps=MAX_EPISODE_STEPS,
                deterministic=True,
                key=key,
            )
            jax.debug.print(
                "steps {steps:>7d}  return {ret:7.1f}  loss {loss:8.4f}  "
                "kl {kl:.4f}  explained var {ev:.3f}",
                steps=ctx.iteration_count * self.steps_per_iteration,
                ret=mean_return,
                loss=ctx.training_log["loss"],
                kl=ctx.training_log["approx_kl"],
                ev=ctx.training_log["explained_variance"],
                ordered=True,
            )

        due: Bool[Array, ""] = ctx.iteration_count % self.every == 0
        jax.lax.cond(due, report, lambda: None)
        return ctx.state


def make_eval_env() -> TimeLimit:
    """Pendulum with a 200-step time limit (lerax's Pendulum never ends an episode)."""
    return TimeLimit(Pendulum(), MAX_EPISODE_STEPS)


def make_train_env() -> ClipAction:
    """The evaluation env with rewards scaled by 0.1 and actions clipped by a wrapper.

    `ClipAction` widens the action space to (-inf, inf), so PPO stores the action it
    sampled (not a clipped one) beside that action's log-prob; the wrapper clips it.
    """
    return ClipAction(ScaleReward(make_eval_env(), REWARD_SCALE))


def make_ppo(total_timesteps: int) -> PPO:
    """PPO tuned for Pendulum, with the learning rate decayed linearly to zero."""
    num_updates = total_timesteps // (NUM_ENVS * NUM_STEPS) * NUM_EPOCHS * NUM_BATCHES
    return PPO(
        num_envs=NUM_ENVS,
        num_steps=NUM_STEPS,
        num_epochs=NUM_EPOCHS,
        num_batches=NUM_BATCHES,
        gamma=GAMMA,
        learning_rate=optax.linear_schedule(LEARNING_RATE, 0.0, num_updates),
    )


def train(
    eval_env: TimeLimit, total_timesteps: int, *, key: Key[Array, ""]
) -> tuple[MLPActorCriticPolicy, float, float]:
    """Train a default-size policy; return it, compile seconds and training seconds.

    The policy is built against `eval_env`, whose spaces are `Pendulum()`'s, so the
    saved file loads against a bare `Pendulum()`; it is trained on `make_train_env()`.
    """
    init_key, learn_key = jr.split(key)
    policy = MLPActorCriticPolicy(eval_env, key=init_key)
    train_env = make_train_env()
    ppo = make_ppo(total_timesteps)
    callback = PrintProgress(eval_env, PROGRESS_EVERY, ppo.num_envs * ppo.num_steps)

    start = time.perf_counter()
    learn = PPO.learn.lower(
        ppo, train_env, policy, total_timesteps, key=learn_key, callback=callback
    ).compile()
    compiled = time.perf_counter()
    policy = learn(ppo, train_env, policy, total_timesteps, key=learn_key, callback=callback)
    jax.block_until_ready(policy)
    jax.effects_barrier()
    done = time.perf_counter()
    return policy, compiled - start, done - compiled


def evaluate(env: AbstractEnvLike, policy: MLPActorCriticPolicy, *, key: Key[Array, ""]) -> float:
    """Mean undiscounted return of the deterministic policy over `EVAL_EPISODES`."""
    mean_return: Float[Array, ""] = average_reward(
        env,
        policy,
        num_episodes=EVAL_EPISODES,
        max_steps=MAX_EPISODE_STEPS,
        deterministic=True,
        key=key,
    )
    return float(mean_return)


def save(policy: MLPActorCriticPolicy, path: Path) -> None:
    """Write with lerax's `serialize`, waiting for its `jax.debug.callback` to finish."""
    policy.serialize(path)
    jax.effects_barrier()


def load(path: Path) -> MLPActorCriticPolicy:
    """Load the way the exporter does: against a bare `lerax.env.Pendulum()`."""
    return MLPActorCriticPolicy.deserialize(path, Pendulum(), key=jr.key(0))


def metadata(
    seed: int, steps: int, compile_seconds: float, train_seconds: float, mean_return: float
) -> dict[str, Any]:
    """What `training.json` records: the run, its result and how to load the file."""
    return {
        "env": ENV_SPEC,
        "max_episode_steps": MAX_EPISODE_STEPS,
        "seed": seed,
        "total_timesteps": steps,
        "compile_seconds": round(compile_seconds, 2),
        "training_seconds": round(train_seconds, 2),
        "eval_episodes": EVAL_EPISODES,
        "eval_deterministic": True,
        "mean_return": mean_return,
        "policy_class": "lerax.policy:MLPActorCriticPolicy",
        "policy_kwargs": {},
        "training_wrappers": [
            f"TimeLimit({MAX_EPISODE_STEPS})",
            f"reward x {REWARD_SCALE}",
            "ClipAction",
        ],
        "ppo": {
            "num_envs": NUM_ENVS,
            "num_steps": NUM_STEPS,
            "num_epochs": NUM_EPOCHS,
            "num_batches": NUM_BATCHES,
            "gamma": GAMMA,
            "learning_rate": f"linear {LEARNING_RATE} -> 0",
            "others": "lerax PPO() defaults",
        },
        "versions": {name: version(name) for name in ("lerax", "jax", "equinox")},
    }


def main() -> None:
    """Train, evaluate, save, reload and check, then write `training.json`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TOTAL_TIMESTEPS)
    args = parser.parse_args()

    train_key, eval_key = jr.split(jr.key(args.seed))
    env = make_eval_env()
    print(f"training on {ENV_SPEC} for {args.steps} steps, seed {args.seed}")
    policy, compile_seconds, train_seconds = train(env, args.steps, key=train_key)
    print(f"compiled in {compile_seconds:.1f} s, trained in {train_seconds:.1f} s")

    mean_return = evaluate(env, policy, key=eval_key)
    print(f"mean return over {EVAL_EPISODES} deterministic episodes: {mean_return:.1f}")

    save(policy, POLICY_PATH)
    reloaded_return = evaluate(env, load(POLICY_PATH), key=eval_key)
    if reloaded_return != mean_return:
        raise SystemExit(f"reloaded policy returns {reloaded_return}, not {mean_return}")
    print(f"saved {POLICY_PATH.name} ({POLICY_PATH.stat().st_size} bytes), reload ok")

    record = metadata(args.seed, args.steps, compile_seconds, train_seconds, mean_return)
    METADATA_PATH.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

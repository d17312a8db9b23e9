"""Train a GRU actor-critic and a feed-forward one on gymnax's MemoryChain; save and compare.

MemoryChain (bsuite): the first observations show `num_bits` context bits, the last one
before the decision shows a query (which bit); the one rewarded action (+1 right, -1 wrong)
is to name that bit. Remembering the context across `memory_length` blank steps is the task.

The PPO is PureJaxRL's recurrent one (`ppo_rnn.py`) written compactly: one jitted
`lax.scan`; each rollout keeps the hidden state the segment started from and a `start` flag
per step (the step's observation begins an episode), and the update re-runs the GRU over each
env's segment from that state, resetting where `start` is set, as the artifact's `reset`
input does. Minibatches split the envs, never time. The feed-forward policy is trained by
the same code with the same budget (its state is `None`).

Writes `policy.eqx` (the recurrent policy), `feedforward.eqx` and `training.json` next to
this file. Run from the repository root (about a minute of training per policy on one core):

    taskset -c 0 .venv/bin/python examples/recurrent/train.py --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from gymnax.environments.bsuite.memory_chain import EnvParams, MemoryChain
from jaxtyping import Array, Bool, Float, Int, Key
from policies import (
    WIDTH,
    feedforward_policy,
    load_recurrent,
    recurrent_policy,
)

HERE = Path(__file__).resolve().parent
POLICY_PATH = HERE / "policy.eqx"
FEEDFORWARD_PATH = HERE / "feedforward.eqx"
METADATA_PATH = HERE / "training.json"

NUM_BITS, MEMORY_LENGTH = 2, 10
TOTAL_TIMESTEPS = 2**18
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_MINIBATCHES = 16, 128, 4, 4
LEARNING_RATE, MAX_GRAD_NORM = 1e-3, 0.5
GAMMA, GAE_LAMBDA, CLIP_EPS, ENT_COEF, VF_COEF = 0.99, 0.95, 0.2, 0.03, 0.5
EVAL_EPISODES = 1000


def make_env() -> tuple[MemoryChain, EnvParams]:
    """gymnax's MemoryChain with this example's sizes."""
    return MemoryChain(num_bits=NUM_BITS), EnvParams(memory_length=MEMORY_LENGTH)


class Transition(NamedTuple):
    start: Bool[Array, " envs"]  # the observation begins an episode: the state is reset
    observation: Float[Array, "envs obs"]
    action: Int[Array, " envs"]
    log_prob: Float[Array, " envs"]
    value: Float[Array, " envs"]
    reward: Float[Array, " envs"]
    done: Float[Array, " envs"]


def _select(start: Bool[Array, " envs"], initial: Any, state: Any) -> Any:
    """Per env, the initial state where `start`, else `state` (the artifact's `reset`)."""
    return jax.tree.map(
        lambda i, s: jnp.where(start.reshape(-1, *([1] * (s.ndim - 1))), i, s), initial, state
    )


def _unroll(policy: Any, initial: Any, state: Any, t: Transition) -> tuple[Array, Array]:
    """Logits and values of a `[time, envs]` segment, re-run from its starting `state`."""

    def step(state: Any, x: tuple[Array, Array]) -> tuple[Any, tuple[Array, Array]]:
        start, observation = x
        state = _select(start, initial, state)
        state, logits, value = jax.vmap(policy.step)(state, observation)
        return state, (logits, value)

    _, (logits, values) = jax.lax.scan(step, state, (t.start, t.observation))
    return logits, values


def make_train(policy: Any, total_timesteps: int):
    """The jitted training function of `policy` (recurrent or not) from a key."""
    env, env_params = make_env()
    num_updates = total_timesteps // (NUM_ENVS * NUM_STEPS)
    envs_per_minibatch = NUM_ENVS // NUM_MINIBATCHES
    optimizer = optax.chain(
        optax.clip_by_global_norm(MAX_GRAD_NORM),
        optax.adam(
            optax.linear_schedule(LEARNING_RATE, 0.0, num_updates * NUM_EPOCHS * NUM_MINIBATCHES),
            eps=1e-5,
        ),
    )
    params, static = eqx.partition(policy, eqx.is_inexact_array)
    initial_state = policy.reset(key=jax.random.key(0))  # zeros (or None): no key needed

    def batched_initial(n: int) -> Any:
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), initial_state)

    def advantages(rollout: Transition, last_value: Array) -> tuple[Array, Array]:
        def step(carry, t: Transition):
            gae, next_value = carry
            delta = t.reward + GAMMA * next_value * (1 - t.done) - t.value
            gae = delta + GAMMA * GAE_LAMBDA * (1 - t.done) * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(step, (jnp.zeros_like(last_value), last_value), rollout, reverse=True)
        return adv, adv + rollout.value

    def loss(params: Any, state: Any, t: Transition, adv: Array, target: Array) -> Array:
        policy = eqx.combine(params, static)
        logits, value = _unroll(policy, batched_initial(t.start.shape[1]), state, t)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, t.action[..., None], axis=-1)[..., 0]
        clipped = t.value + jnp.clip(value - t.value, -CLIP_EPS, CLIP_EPS)
        value_loss = 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()
        ratio = jnp.exp(log_prob - t.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        actor_loss = -jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1 - CLIP_EPS, 1 + CLIP_EPS) * adv
        ).mean()
        entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
        return actor_loss + VF_COEF * value_loss - ENT_COEF * entropy

    def train(key: Key[Array, ""]) -> Any:
        key, reset_key = jax.random.split(key)
        opt_state = optimizer.init(params)
        obs, env_state = jax.vmap(env.reset, (0, None))(
            jax.random.split(reset_key, NUM_ENVS), env_params
        )
        start = jnp.ones(NUM_ENVS, dtype=bool)
        state = batched_initial(NUM_ENVS)

        def env_step(carry, _):
            params, env_state, obs, start, state, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            policy = eqx.combine(params, static)
            state = _select(start, batched_initial(NUM_ENVS), state)
            state, logits, value = jax.vmap(policy.step)(state, obs)
            action = jax.random.categorical(act_key, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
            next_obs, env_state, reward, terminated, truncated, _ = jax.vmap(
                env.step, (0, 0, 0, None)
            )(jax.random.split(step_key, NUM_ENVS), env_state, action, env_params)
            done = terminated | truncated
            t = Transition(start, obs, action, log_prob, value, reward, done.astype(jnp.float32))
            return (params, env_state, next_obs, done, state, key), t

        def update(carry, _):
            params, opt_state, env_state, obs, start, state, key = carry
            first_state = state
            (_, env_state, obs, start, state, key), rollout = jax.lax.scan(
                env_step, (params, env_state, obs, start, state, key), None, NUM_STEPS
            )
            policy = eqx.combine(params, static)
            _, _, last_value = jax.vmap(policy.step)(
                _select(start, batched_initial(NUM_ENVS), state), obs
            )
            adv, target = advantages(rollout, last_value)

            def epoch(carry, _):
                params, opt_state, key = carry
                key, perm_key = jax.random.split(key)
                order = jax.random.permutation(perm_key, NUM_ENVS)

                def split(x: Array, env_axis: int) -> Array:
                    x = jnp.take(x, order, axis=env_axis)
                    x = jnp.moveaxis(x, env_axis, 0).reshape(
                        NUM_MINIBATCHES,
                        envs_per_minibatch,
                        *x.shape[:env_axis],
                        *x.shape[env_axis + 1 :],
                    )
                    return jnp.moveaxis(x, 1, env_axis + 1)

                minibatches = (
                    jax.tree.map(lambda x: split(x, 0), first_state),
                    jax.tree.map(lambda x: split(x, 1), (rollout, adv, target)),
                )

                def minibatch(carry, mb):
                    params, opt_state = carry
                    mb_state, (t, mb_adv, mb_target) = mb
                    grads = jax.grad(loss)(params, mb_state, t, mb_adv, mb_target)
                    updates, opt_state = optimizer.update(grads, opt_state)
                    return (optax.apply_updates(params, updates), opt_state), None

                (params, opt_state), _ = jax.lax.scan(minibatch, (params, opt_state), minibatches)
                return (params, opt_state, key), None

            (params, opt_state, key), _ = jax.lax.scan(
                epoch, (params, opt_state, key), None, NUM_EPOCHS
            )
            return (params, opt_state, env_state, obs, start, state, key), None

        (trained, *_), _ = jax.lax.scan(
            update, (params, opt_state, env_state, obs, start, state, key), None, num_updates
        )
        return trained

    return jax.jit(train), static


def episode_returns(
    act: Any, initial_state: Any, keys: Key[Array, " episodes"]
) -> Float[Array, " episodes"]:
    """The return of one episode per key; `act(state, observation, key) -> (state, action)`.

    Every MemoryChain episode lasts `MEMORY_LENGTH + 1` steps; the env's `reset(key)` draws
    the context and the query, the same for every player given the same keys.
    """
    env, env_params = make_env()

    def episode(key: Key[Array, ""]) -> Float[Array, ""]:
        reset_key, act_key = jax.random.split(key)
        obs, env_state = env.reset(reset_key, env_params)

        def step(carry, step_key):
            env_state, obs, state = carry
            state, action = act(state, obs, step_key)
            obs, env_state, reward, _, _ = env.step_env(step_key, env_state, action, env_params)
            return (env_state, obs, state), reward

        _, rewards = jax.lax.scan(
            step, (env_state, obs, initial_state), jax.random.split(act_key, MEMORY_LENGTH + 1)
        )
        return rewards.sum()

    return jax.jit(jax.vmap(episode))(keys)


def greedy(policy: Any) -> Any:
    """The deterministic player: the policy called without a key."""
    return lambda state, obs, key: policy(state, obs)


def initial(policy: Any) -> Any:
    """The policy's state at an episode's start (this example's does not depend on the key)."""
    return policy.reset(key=jax.random.key(0))


def random_player(state: Any, obs: Array, key: Key[Array, ""]) -> tuple[Any, Array]:
    """A uniformly random action each step."""
    return state, jax.random.randint(key, (), 0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TOTAL_TIMESTEPS)
    args = parser.parse_args()
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    eval_keys = jax.random.split(jax.random.key(args.seed + 1000), EVAL_EPISODES)

    results: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    for name, make in (("recurrent", recurrent_policy), ("feedforward", feedforward_policy)):
        policy = make(NUM_BITS, key=init_key)
        train, static = make_train(policy, args.steps)
        start = time.perf_counter()
        compiled = train.lower(train_key).compile()
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        params = jax.block_until_ready(compiled(train_key))
        training_seconds = time.perf_counter() - start
        trained[name] = policy = eqx.combine(params, static)
        returns = episode_returns(greedy(policy), initial(policy), eval_keys)
        results[name] = {
            "mean_return": float(returns.mean()),
            "solved_fraction": float((returns > 0).mean()),
            "compile_seconds": round(compile_seconds, 2),
            "training_seconds": round(training_seconds, 2),
        }
        print(name, json.dumps(results[name]))
    returns = episode_returns(random_player, None, eval_keys)
    results["random"] = {
        "mean_return": float(returns.mean()),
        "solved_fraction": float((returns > 0).mean()),
    }
    print("random", json.dumps(results["random"]))

    eqx.tree_serialise_leaves(POLICY_PATH, trained["recurrent"])
    eqx.tree_serialise_leaves(FEEDFORWARD_PATH, trained["feedforward"])
    reloaded_policy = load_recurrent(POLICY_PATH, NUM_BITS)
    reloaded = episode_returns(greedy(reloaded_policy), initial(reloaded_policy), eval_keys)
    if float(reloaded.mean()) != results["recurrent"]["mean_return"]:
        raise SystemExit(f"reloaded policy returns {float(reloaded.mean())}, not the trained one's")

    metadata = {
        "env": f"gymnax MemoryChain-bsuite (num_bits={NUM_BITS}, memory_length={MEMORY_LENGTH})",
        "episode_steps": MEMORY_LENGTH + 1,
        "seed": args.seed,
        "total_timesteps": args.steps,
        "eval_episodes": EVAL_EPISODES,
        "eval_deterministic": True,
        "eval_keys": f"jax.random.split(jax.random.key({args.seed + 1000}), {EVAL_EPISODES})",
        "results": results,
        "width": WIDTH,
        "ppo": {
            "num_envs": NUM_ENVS,
            "num_steps": NUM_STEPS,
            "num_epochs": NUM_EPOCHS,
            "num_minibatches": NUM_MINIBATCHES,
            "learning_rate": f"linear {LEARNING_RATE} -> 0",
            "gamma": GAMMA,
            "gae_lambda": GAE_LAMBDA,
            "clip_eps": CLIP_EPS,
            "ent_coef": ENT_COEF,
            "vf_coef": VF_COEF,
            "max_grad_norm": MAX_GRAD_NORM,
        },
        "versions": {n: version(n) for n in ("jax", "equinox", "optax", "gymnax")},
    }
    METADATA_PATH.write_text(json.dumps(metadata, indent=2) + "\n")


if __name__ == "__main__":
    main()

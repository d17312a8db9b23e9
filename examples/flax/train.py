"""Train the Flax `ActorCritic` on gymnax's CartPole-v1 with a short PPO and save it.

Writes `params.msgpack` (flax.serialization, no pickle) and `training.json` next to this
file. Run from the repository root: `.venv/bin/python examples/flax/train.py --seed 0`
(about a minute on two cores). The PPO is the usual clipped-surrogate one, everything in
one jitted `lax.scan`: 4 envs x 128 steps per update, 4 epochs of 4 minibatches, GAE, the
learning rate decayed linearly to 0 (PureJaxRL's CartPole settings).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import flax.serialization
import gymnax
import jax
import jax.numpy as jnp
import optax
from actor_critic import ActorCritic
from jaxtyping import Array, Float, Int, Key

HERE = Path(__file__).resolve().parent
PARAMS_PATH = HERE / "params.msgpack"
METADATA_PATH = HERE / "training.json"

ENV_ID = "CartPole-v1"
TOTAL_TIMESTEPS = 500_000
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_MINIBATCHES = 4, 128, 4, 4
LEARNING_RATE, MAX_GRAD_NORM = 2.5e-4, 0.5
GAMMA, GAE_LAMBDA, CLIP_EPS, ENT_COEF, VF_COEF = 0.99, 0.95, 0.2, 0.01, 0.5
EVAL_EPISODES = 32


class Transition(NamedTuple):
    observation: Float[Array, "envs obs"]
    action: Int[Array, " envs"]
    log_prob: Float[Array, " envs"]
    value: Float[Array, " envs"]
    reward: Float[Array, " envs"]
    done: Float[Array, " envs"]


def make_train(seed: int):
    env, env_params = gymnax.make(ENV_ID)
    model = ActorCritic(action_dim=env.action_space(env_params).n)
    num_updates = TOTAL_TIMESTEPS // (NUM_ENVS * NUM_STEPS)
    batch = NUM_ENVS * NUM_STEPS

    def learning_rate(count: Array) -> Array:
        done = count // (NUM_MINIBATCHES * NUM_EPOCHS)
        return LEARNING_RATE * (1.0 - done / num_updates)

    optimizer = optax.chain(
        optax.clip_by_global_norm(MAX_GRAD_NORM), optax.adam(learning_rate, eps=1e-5)
    )

    def advantages(rollout: Transition, last_value: Array) -> tuple[Array, Array]:
        def step(carry, t: Transition):
            gae, next_value = carry
            delta = t.reward + GAMMA * next_value * (1 - t.done) - t.value
            gae = delta + GAMMA * GAE_LAMBDA * (1 - t.done) * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(step, (jnp.zeros_like(last_value), last_value), rollout, reverse=True)
        return adv, adv + rollout.value

    def loss(params, t: Transition, adv: Array, target: Array) -> Array:
        logits, value = model.apply(params, t.observation)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, t.action[:, None], axis=-1)[:, 0]
        clipped = t.value + jnp.clip(value - t.value, -CLIP_EPS, CLIP_EPS)
        value_loss = 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()
        ratio = jnp.exp(log_prob - t.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        actor_loss = -jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1 - CLIP_EPS, 1 + CLIP_EPS) * adv
        ).mean()
        entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
        return actor_loss + VF_COEF * value_loss - ENT_COEF * entropy

    def train(key: Key[Array, ""]):
        key, init_key, reset_key = jax.random.split(key, 3)
        params = model.init(init_key, jnp.zeros(env.observation_space(env_params).shape))
        opt_state = optimizer.init(params)
        obs, env_state = jax.vmap(env.reset, (0, None))(
            jax.random.split(reset_key, NUM_ENVS), env_params
        )

        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            logits, value = model.apply(params, obs)
            action = jax.random.categorical(act_key, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
            obs_next, env_state, reward, terminated, truncated, _ = jax.vmap(
                env.step, (0, 0, 0, None)
            )(jax.random.split(step_key, NUM_ENVS), env_state, action, env_params)
            done = (terminated | truncated).astype(jnp.float32)
            t = Transition(obs, action, log_prob, value, reward, done)
            return (params, env_state, obs_next, key), t

        def update(carry, _):
            params, opt_state, env_state, obs, key = carry
            (_, env_state, obs, key), rollout = jax.lax.scan(
                env_step, (params, env_state, obs, key), None, NUM_STEPS
            )
            _, last_value = model.apply(params, obs)
            adv, target = advantages(rollout, last_value)

            def epoch(carry, _):
                params, opt_state, key = carry
                key, perm_key = jax.random.split(key)
                order = jax.random.permutation(perm_key, batch)
                flat = jax.tree.map(
                    lambda x: x.reshape(batch, *x.shape[2:])[order].reshape(
                        NUM_MINIBATCHES, -1, *x.shape[2:]
                    ),
                    (rollout, adv, target),
                )

                def minibatch(carry, mb):
                    params, opt_state = carry
                    grads = jax.grad(loss)(params, *mb)
                    updates, opt_state = optimizer.update(grads, opt_state)
                    return (optax.apply_updates(params, updates), opt_state), None

                (params, opt_state), _ = jax.lax.scan(minibatch, (params, opt_state), flat)
                return (params, opt_state, key), None

            (params, opt_state, key), _ = jax.lax.scan(
                epoch, (params, opt_state, key), None, NUM_EPOCHS
            )
            return (params, opt_state, env_state, obs, key), None

        (params, *_), _ = jax.lax.scan(
            update, (params, opt_state, env_state, obs, key), None, num_updates
        )
        return params

    return jax.jit(train), model, env, env_params


def greedy_return(model, params, env, env_params, key: Key[Array, ""]) -> Array:
    """One deterministic episode's return (argmax of the logits at every step)."""

    def cond(carry):
        return ~carry[3]

    def body(carry):
        state, obs, total, _, key = carry
        key, step_key = jax.random.split(key)
        action = jnp.argmax(model.apply(params, obs)[0])
        obs, state, reward, terminated, _ = env.step_env(step_key, state, action, env_params)
        done = terminated | env.is_truncated(state, env_params)
        return state, obs, total + reward, done, key

    key, reset_key = jax.random.split(key)
    obs, state = env.reset(reset_key, env_params)
    init = (state, obs, jnp.float32(0.0), jnp.bool_(False), key)
    return jax.lax.while_loop(cond, body, init)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, model, env, env_params = make_train(args.seed)
    start = time.perf_counter()
    compiled = train.lower(jax.random.key(args.seed)).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    params = jax.block_until_ready(compiled(jax.random.key(args.seed)))
    training_seconds = time.perf_counter() - start
    keys = jax.random.split(jax.random.key(args.seed + 1000), EVAL_EPISODES)
    returns = jax.jit(jax.vmap(lambda k: greedy_return(model, params, env, env_params, k)))(keys)
    PARAMS_PATH.write_bytes(flax.serialization.to_bytes(params))
    metadata = {
        "env": f"gymnax {ENV_ID}",
        "seed": args.seed,
        "total_timesteps": TOTAL_TIMESTEPS,
        "compile_seconds": round(compile_seconds, 2),
        "training_seconds": round(training_seconds, 2),
        "eval_episodes": EVAL_EPISODES,
        "eval_deterministic": True,
        "mean_return": float(returns.mean()),
        "min_return": float(returns.min()),
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
        "versions": {n: version(n) for n in ("flax", "gymnax", "optax", "jax")},
    }
    METADATA_PATH.write_text(json.dumps(metadata, indent=2) + "\n")
    print(json.dumps(metadata, indent=2))


if __name__ == "__main__":
    main()

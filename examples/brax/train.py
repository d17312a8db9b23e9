"""Train the pendulum swing-up with Brax's own PPO and save it with Brax's checkpoint code.

    .venv/bin/python examples/brax/train.py --seed 0

Writes `checkpoint/<step>/` (orbax params + `ppo_network_config.json`, exactly what
`brax.training.agents.ppo.checkpoint.save` writes) and `training.json` (settings, timings,
the deterministic return of 100 episodes with Brax's inference function, versions).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pendulum import EPISODE_LENGTH, Pendulum, episode_returns_jax  # noqa: E402


def _device_put_replicated(x, devices):
    """JAX's documented drop-in for `jax.device_put_replicated` (removed in jax 0.10),
    which Brax 0.14.2's PPO still calls once to place its training state."""
    mesh = jax.sharding.Mesh(np.array(devices), ("devices",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
    return jax.tree.map(lambda a: jax.device_put(jnp.stack([a] * len(devices)), sharding), x)


if not hasattr(jax, "device_put_replicated"):
    jax.device_put_replicated = _device_put_replicated

from brax.training.agents.ppo import checkpoint  # noqa: E402
from brax.training.agents.ppo import networks as ppo_networks  # noqa: E402
from brax.training.agents.ppo import train as ppo  # noqa: E402

# Brax's default policy network (4 x 32, swish, tanh-normal); a smaller value network than
# Brax's default 5 x 256, which would dominate the training time on 2 cores.
NETWORK = {"policy_hidden_layer_sizes": (32, 32, 32, 32), "value_hidden_layer_sizes": (64, 64)}
PPO = {
    "num_timesteps": 1_000_000,
    "episode_length": EPISODE_LENGTH,
    "num_envs": 64,
    "batch_size": 64,
    "num_minibatches": 16,
    "unroll_length": 32,
    "num_updates_per_batch": 8,
    "discounting": 0.95,
    "learning_rate": 1e-3,
    "entropy_cost": 1e-3,
    "reward_scaling": 0.1,
    "normalize_observations": True,
    "deterministic_eval": True,
    "num_evals": 6,
}
EVAL_EPISODES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "checkpoint")
    parser.add_argument("--timesteps", type=int, default=PPO["num_timesteps"])
    args = parser.parse_args()

    factory = functools.partial(ppo_networks.make_ppo_networks, **NETWORK)
    settings = {**PPO, "num_timesteps": args.timesteps}
    start = time.perf_counter()
    progress = []

    def report(step: int, metrics: dict) -> None:
        reward, seconds = float(metrics["eval/episode_reward"]), time.perf_counter() - start
        progress.append({"step": int(step), "return": reward, "seconds": round(seconds, 1)})
        print(f"step {step:>9,}  return {reward:9.2f}  {seconds:6.1f} s", flush=True)

    make_inference_fn, params, _ = ppo.train(
        environment=Pendulum(),
        network_factory=factory,
        seed=args.seed,
        progress_fn=report,
        **settings,
    )
    trained = time.perf_counter() - start

    steps = progress[-1]["step"]
    if args.out.exists():
        shutil.rmtree(args.out)
    config = checkpoint.network_config(
        Pendulum().observation_size, Pendulum().action_size, True, factory
    )
    checkpoint.save(args.out, steps, params, config)

    inference = make_inference_fn(params, deterministic=True)
    keys = jax.random.split(jax.random.key(10_000 + args.seed), EVAL_EPISODES)
    returns, _ = episode_returns_jax(inference, keys)
    print(f"mean return over {EVAL_EPISODES} deterministic episodes: {returns.mean():.2f}")
    record = {
        "seed": args.seed,
        "env": "examples/brax/pendulum.py:Pendulum",
        "network": NETWORK,
        "ppo": settings,
        "progress": progress,
        "train_seconds": round(trained, 1),
        "eval_episodes": EVAL_EPISODES,
        "eval_mean_return": round(float(returns.mean()), 3),
        "eval_min_return": round(float(returns.min()), 3),
        "versions": {p: importlib.metadata.version(p) for p in ("brax", "jax", "flax")},
    }
    (args.out.parent / "training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

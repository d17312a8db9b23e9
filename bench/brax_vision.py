"""A Playground-sized Brax vision PPO checkpoint: the one-command export, and onnxruntime
against Brax's own jitted inference function (#28).

Run from the repository root, pinned to one core, twice:

    taskset -c 0 .venv/bin/python bench/brax_vision.py

Saves with Brax's own checkpoint code a `make_ppo_networks_vision` checkpoint at Brax's
defaults (64x64x3 `pixels/view_0` frames and an 8-entry `state`, conv 32/64/64 with kernels
8/4/3 and strides 4/2/1, SAME, average global pooling, hidden 256x256, 4 actions), exports
it as `--from brax-ppo` does (timed: the export as a user runs it, imports excluded),
counts the graph's ops, then times in interleaved rounds (bench/run.py's: CPU time of this
process, median of rounds) onnxruntime (one thread, the exported file, action and value)
and Brax's `make_inference_fn(networks)(params, deterministic=True)` jitted (action) with
its value network, at batch 1 and 256, on the same observations. Prints JSON: the median
seconds per call of each and the ratio JAX / onnxruntime (above 1: onnxruntime faster).
"""

from __future__ import annotations

import collections
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from brax.training.acme import running_statistics
from brax.training.agents.ppo import checkpoint as ppo_checkpoint
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import networks_vision

import policyport
from policyport.brax import from_ppo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import interleaved  # the interleaving and CPU-time medians of bench/run.py

SHAPES = {"pixels/view_0": (64, 64, 3), "state": (8,)}
ACTIONS, ROUNDS = 4, 12


def _checkpoint(folder: Path):
    """Brax's vision networks at its defaults, saved with Brax's checkpoint code."""
    factory = functools.partial(
        networks_vision.make_ppo_networks_vision, policy_obs_key="state", value_obs_key="state"
    )
    networks = factory(SHAPES, ACTIONS, preprocess_observations_fn=running_statistics.normalize)
    spec = {"state": jax.ShapeDtypeStruct(SHAPES["state"], jnp.float32)}
    params = (
        running_statistics.init_state(spec),
        networks.policy_network.init(jax.random.key(0)),
        networks.value_network.init(jax.random.key(1)),
    )
    config = ppo_checkpoint.network_config(SHAPES, ACTIONS, True, factory)
    ppo_checkpoint.save(folder, 1, params, config)
    return networks, params


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    networks, params = _checkpoint(folder / "checkpoint")
    start = time.perf_counter()
    policy = from_ppo(folder / "checkpoint")
    [result] = policyport.export(policy, "onnx", folder / "vision.onnx")
    export_seconds = time.perf_counter() - start
    model = onnx.load(result.paths[0])
    session = _session(result.paths[0])
    inference = ppo_networks.make_inference_fn(networks)(params, deterministic=True)

    @jax.jit
    def brax(observation):
        with jax.numpy_rank_promotion("allow"):  # Brax's normaliser broadcasts
            action = inference(observation, jax.random.key(0))[0]
            return action, networks.value_network.apply(params[0], params[2], observation)

    results: dict = {
        "export_seconds": round(export_seconds, 2),
        "export_stages": {k: round(v, 2) for k, v in result.seconds.items()},
        "parity_batch_sizes": result.report.batch_sizes,
        "graph_ops": dict(collections.Counter(n.op_type for n in model.graph.node)),
    }
    for batch in (1, 256):
        rng = np.random.default_rng(batch)
        observation = {
            "pixels/view_0": rng.uniform(0, 1, (batch, *SHAPES["pixels/view_0"])),
            "state": rng.normal(size=(batch, *SHAPES["state"])),
        }
        observation = {k: v.astype(np.float32) for k, v in observation.items()}
        feed = {f"observation.{k}": v for k, v in observation.items()}
        device = {k: jnp.asarray(v) for k, v in observation.items()}
        expected = jax.block_until_ready(brax(device))  # compiled before the rounds
        got = session.run(["action", "value"], feed)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        calls = {
            "onnxruntime": lambda feed=feed: session.run(None, feed),
            "jax (jit)": lambda device=device: jax.block_until_ready(brax(device)),
        }
        timed = interleaved(calls, rounds=ROUNDS)
        cpu = {name: entry["cpu_us"] for name, entry in timed.items()}
        results[f"batch_{batch}"] = {
            "cpu_us": cpu,
            "wall_us": {name: entry["wall_us"] for name, entry in timed.items()},
            "jax_over_onnxruntime": cpu["jax (jit)"] / cpu["onnxruntime"],
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

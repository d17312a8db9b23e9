"""Does `--sample` make the deterministic `action` dearer? (issue #15)

Run from the repository root, pinned to one core:

    taskset -c 0 .venv/bin/python bench/sampling.py

Exports the default actor-critic policy (27-dim observation, 9 masked actions: the
`BENCH` size of tests/kinds.py) without and with `sample=True`, then times onnxruntime
(one thread) in interleaved rounds: the plain artifact's `action`, the `--sample` export's
default entry (`action`), and its sample entry, fetching `action` alone and every output
(onnxruntime computes every node whatever is fetched: that is why the default entry is its
own graph). Prints the median seconds per call and each ratio against the plain artifact,
at batch 1 and 4096. For scale, also jitted JAX sampling the same way the sample entry
does (sampled action, log-prob and value per row, from a key per row; the artifact is fed
noise drawn beforehand instead).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort

import policyport
from policyport.policy import Discrete, MLPActorCriticPolicy, SpacesEnv
from policyport.tracing import trace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kinds import BENCH, observation_space

ROUNDS, CALLS = 30, {1: 400, 4096: 4}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _jax_sampler(policy: MLPActorCriticPolicy):
    def row(observation, mask, key):
        _, action = policy(None, observation, key=key, action_mask=mask)
        _, _, log_prob, _ = policy.evaluate_action(None, observation, action, action_mask=mask)
        return action, log_prob, policy.value(None, observation)[1]

    return jax.jit(jax.vmap(row))


def _jax_call(sampler, inputs: dict[str, np.ndarray], batch: int):
    arrays = [jnp.asarray(inputs["observation"]), jnp.asarray(inputs["action_mask"])]
    keys = jax.random.split(jax.random.key(1), batch)
    jax.block_until_ready(sampler(*arrays, keys))  # compiled before the rounds
    return lambda: jax.block_until_ready(sampler(*arrays, keys))


def main() -> None:
    policy = MLPActorCriticPolicy(
        SpacesEnv(observation_space(BENCH), Discrete(9)), key=jax.random.key(0)
    )
    folder = Path(tempfile.mkdtemp())
    plain = _session(policyport.export(policy, "onnx", folder / "plain.onnx")[0].paths[0])
    default_entry, sample_entry = (
        _session(result.paths[0])
        for result in policyport.export(policy, "onnx", folder / "s.onnx", sample=True)
    )
    traced = trace(policy, sample=True)
    jax_sample = _jax_sampler(policy)
    results = {}
    for batch in (1, 4096):
        rng = np.random.default_rng(0)
        inputs = {
            "observation": traced.observation_space.sample_numpy(rng, batch),
            "action_mask": traced.action_space.random_masks(rng, batch),
        }
        noise = {**inputs, "noise": rng.gumbel(size=(batch, traced.sampling.size)).astype("f4")}
        calls = {
            "plain: action": lambda inputs=inputs: plain.run(["action"], inputs),
            "default entry: action": lambda inputs=inputs: default_entry.run(["action"], inputs),
            "sample entry: action": lambda noise=noise: sample_entry.run(["action"], noise),
            "sample entry: all outputs": lambda noise=noise: sample_entry.run(None, noise),
            "jax (jit): sample, log_prob, value": _jax_call(jax_sample, inputs, batch),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                start = time.perf_counter()
                for _ in range(CALLS[batch]):
                    call()
                times[name].append((time.perf_counter() - start) / CALLS[batch])
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["plain: action"]
        results[batch] = {
            name: {"seconds": m, "ratio_to_plain": m / base} for name, m in medians.items()
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

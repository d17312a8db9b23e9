"""NatureCNN from uint8 frames: onnxruntime against jitted JAX, and the export itself (#28).

Run from the repository root, pinned to one core, twice:

    taskset -c 0 .venv/bin/python bench/pixel.py

Builds the Flax NatureCNN of tests/pixel_policies.py (84x84x4 uint8 frames, conv 8x8/4,
4x4/2, 3x3/1, dense 512, 6 actions and a value), exports it to ONNX with parity (timed:
the export as a user runs it, imports excluded), counts the graph's ops, then times in
interleaved rounds (bench/run.py's: CPU time of this process, median of rounds, so a core
shared with other processes counts a call's work and not its wait) onnxruntime (one thread,
the exported file) and the jitted JAX function
(argmax action and value), at batch 1 and 256, on the same frames; for reference also the
graph jax2onnx writes for the same policy (policyport's fallback, as before native
convolutions: exported with the convolution emitter removed). Prints JSON: the median
seconds per call of each and the ratios JAX / onnxruntime (above 1: onnxruntime faster).
"""

from __future__ import annotations

import collections
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

import policyport
from policyport.formats import _onnx_emitters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pixel_policies import NatureCNN, nature_cnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import interleaved  # the interleaving and CPU-time medians of bench/run.py

SHAPE, ACTIONS, SEED = (84, 84, 4), 6, 0
ROUNDS = 12


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _jax_call(frames: np.ndarray):
    """The policy as JAX runs it: the same parameters as `nature_cnn`, batched and jitted."""
    model = NatureCNN(ACTIONS)
    params = model.init(jax.random.key(SEED), jnp.zeros(SHAPE, jnp.uint8))

    def row(frame):
        logits, value = model.apply(params, frame)
        return jnp.argmax(logits), value

    fn = jax.jit(jax.vmap(row))
    device = jnp.asarray(frames)
    jax.block_until_ready(fn(device))  # compiled before the rounds
    return lambda: jax.block_until_ready(fn(device))


def main() -> None:
    policy = nature_cnn(SHAPE, ACTIONS, SEED)
    folder = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    [result] = policyport.export(policy, "onnx", folder / "nature_cnn.onnx")
    export_seconds = time.perf_counter() - start
    model = onnx.load(result.paths[0])
    session = _session(result.paths[0])
    conv = _onnx_emitters.EMITTERS.pop("conv_general_dilated")
    try:
        start = time.perf_counter()
        [fallback] = policyport.export(policy, "onnx", folder / "fallback.onnx")
        fallback_seconds = time.perf_counter() - start
    finally:
        _onnx_emitters.EMITTERS["conv_general_dilated"] = conv
    fallback_model = onnx.load(fallback.paths[0])
    fallback_session = _session(fallback.paths[0])
    results: dict = {
        "export_seconds": round(export_seconds, 2),
        "export_stages": {k: round(v, 2) for k, v in result.seconds.items()},
        "parity_batch_sizes": result.report.batch_sizes,
        "graph_ops": dict(collections.Counter(n.op_type for n in model.graph.node)),
        "fallback_export_seconds": round(fallback_seconds, 2),
        "fallback_graph_ops": dict(
            collections.Counter(n.op_type for n in fallback_model.graph.node)
        ),
    }
    for batch in (1, 256):
        frames = np.random.default_rng(batch).integers(0, 256, (batch, *SHAPE), dtype=np.uint8)
        expected = np.asarray(_jax_call(frames)()[0])
        got = session.run(["action"], {"observation": frames})[0]
        assert (got == expected).all(), "onnxruntime and JAX chose different actions"
        calls = {
            "onnxruntime": lambda frames=frames: session.run(None, {"observation": frames}),
            "onnxruntime (jax2onnx graph)": lambda frames=frames: fallback_session.run(
                None, {"observation": frames}
            ),
            "jax (jit)": _jax_call(frames),
        }
        timed = interleaved(calls, rounds=ROUNDS)
        cpu = {name: entry["cpu_us"] for name, entry in timed.items()}
        results[f"batch_{batch}"] = {
            "cpu_us": cpu,
            "wall_us": {name: entry["wall_us"] for name, entry in timed.items()},
            "jax_over_onnxruntime": cpu["jax (jit)"] / cpu["onnxruntime"],
            "jax_over_jax2onnx_graph": cpu["jax (jit)"] / cpu["onnxruntime (jax2onnx graph)"],
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

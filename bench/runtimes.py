"""OpenVINO and tract beside onnxruntime and jitted JAX, at batch 1 and 4096 (issue 17).

    taskset -c 0 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/runtimes.py

One core, one thread per runtime (OpenVINO: INFERENCE_NUM_THREADS=1, one stream, f32
precision; tract runs single-threaded), the four masked actor-critic cases of bench/run.py
at its BENCH size. Ratios are throughput against jitted JAX in interleaved rounds (run.py's
`interleaved`: JAX, onnxruntime, OpenVINO, tract, then the reverse order, ...), from CPU
time. For MultiDiscrete and MultiBinary it also times the graph as it was before the
tract fix (an int32 round trip and a final `Cast(to=INT64)`), in onnxruntime, to show the
fix costs onnxruntime nothing. Prints a Markdown table; `--rounds N` (default 12).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from run import REFERENCE, _inputs, _jax_forward, _ort_session, _with_ratios, interleaved
from run import make_policy as bench_policy

CASES = (
    "actor_critic_discrete",
    "actor_critic_box",
    "actor_critic_multidiscrete",
    "actor_critic_multibinary",
)
BATCHES = (1, 4096)
BEFORE_FIX = "onnxruntime (graph before the tract fix)"


def _write_before_fix(traced, path: Path) -> None:
    """The ONNX graph without the rewrite that keeps `Cast(to=INT64)` off the action."""
    import onnx

    from policyport.formats import _onnx_optimize as rewrites
    from policyport.formats._onnx import lower_to_onnx

    kept = rewrites.RULES
    rewrites.RULES = tuple(r for r in kept if r is not rewrites._int64_without_cast)
    try:
        onnx.save_model(lower_to_onnx(traced, 21), path)
    finally:
        rewrites.RULES = kept


def _calls(policy, folder: Path, case: str) -> dict:
    """runtime name -> function(inputs) returning a call that runs one batch."""
    import jax
    import jax.numpy as jnp

    import policyport
    from policyport.formats._openvino import load_openvino
    from policyport.formats._tract import load_tract

    traced = policyport.trace(policy)
    path = folder / f"{case}.onnx"
    policyport.export(traced, "onnx", path, check=False)
    arguments, forward = _jax_forward(policy)
    session = _ort_session(str(path), 1)
    openvino = load_openvino(path, {"INFERENCE_NUM_THREADS": "1", "NUM_STREAMS": "1"})
    tract = load_tract(path)

    def jax_runner(inputs):
        arrays = [jnp.asarray(a) for a in arguments(inputs)]
        return lambda: jax.block_until_ready(forward(*arrays))

    calls = {
        REFERENCE: jax_runner,
        "onnxruntime 1.32": lambda inputs: lambda: session.run(None, inputs),
        "openvino": lambda inputs: lambda: openvino(inputs),
        "tract": lambda inputs: lambda: tract(inputs),
    }
    if case in ("actor_critic_multidiscrete", "actor_critic_multibinary"):
        before = folder / f"{case}.before.onnx"
        _write_before_fix(traced, before)
        old = _ort_session(str(before), 1)
        calls[BEFORE_FIX] = lambda inputs: lambda: old.run(None, inputs)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    print("| case | batch | runtime | us/call (CPU) | throughput vs JAX | quartiles |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            policy = bench_policy(case)
            calls = _calls(policy, Path(tmp), case)
            for batch in BATCHES:
                inputs = _inputs(policy, batch)
                results = _with_ratios(
                    interleaved({k: f(inputs) for k, f in calls.items()}, args.rounds), batch
                )
                for name, r in results.items():
                    q = r["vs_jax_cpu_quartiles"]
                    print(
                        f"| {case} | {batch} | {name} | {r['cpu_us']:.1f} | "
                        f"{r['vs_jax_cpu']:.2f}x | {q[0]:.2f}-{q[1]:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

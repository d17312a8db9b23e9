"""The benchmark suite: export cost, graph shape, latency and throughput per runtime.

Every figure is measured in one run on one machine and reported as a ratio against
jitted JAX from the same run (these machines are shared and noisy). Run from the
repository root:

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/run.py

It writes bench/RESULTS.md, bench/results.json and bench/throughput.png. Each timing runs
in a worker process pinned with `taskset` to one core (1 thread) or two (2 threads), with
every runtime's thread count set to match, and with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE
unset (set on these machines, they slow numpy's matmul, which the compute floor uses).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCHES = (1, 16, 256, 4096)


@dataclass(frozen=True)
class Case:
    """One policy to benchmark."""

    name: str
    action: str  # Discrete, Box, MultiDiscrete, MultiBinary
    kwargs: dict = field(default_factory=dict)
    obs_dim: int = 27


CASES = (
    Case("discrete-default", "Discrete"),
    Case("box-default", "Box"),
    Case("multidiscrete-default", "MultiDiscrete"),
    Case("multibinary-default", "MultiBinary"),
    Case(
        "discrete-large",
        "Discrete",
        {
            "feature_size": 64,
            "feature_width": 256,
            "feature_depth": 3,
            "value_width": 256,
            "value_depth": 3,
            "action_width": 256,
            "action_depth": 3,
        },
    ),
)


def make_policy(case: Case):
    import jax
    import numpy as np

    from policyport.policy import (
        Box,
        Discrete,
        MLPActorCriticPolicy,
        MultiBinary,
        MultiDiscrete,
        SpacesEnv,
    )

    action = {
        "Discrete": lambda: Discrete(9),
        "Box": lambda: Box(-np.ones(6, np.float32), np.ones(6, np.float32)),
        "MultiDiscrete": lambda: MultiDiscrete((3, 3, 3)),
        "MultiBinary": lambda: MultiBinary(9),
    }[case.action]()
    observation = Box(-np.ones(case.obs_dim, np.float32), np.ones(case.obs_dim, np.float32))
    return MLPActorCriticPolicy(
        SpacesEnv(observation, action), key=jax.random.key(0), **case.kwargs
    )


def _layer_shapes(policy) -> list[tuple[int, int]]:
    """(in, out) of every linear layer (`"scalar"` sizes count as 1)."""
    return [
        tuple(1 if d == "scalar" else int(d) for d in (m.in_features, m.out_features))
        for m in jax_tree_modules(policy)
    ]


def flops_per_observation(policy) -> int:
    """2 x multiply-adds of every linear layer the JAX policy runs for action and value."""
    return sum(2 * i * o for i, o in _layer_shapes(policy))


def jax_tree_modules(tree):
    import equinox as eqx
    import jax

    return [
        x
        for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, eqx.nn.Linear))
        if isinstance(x, eqx.nn.Linear)
    ]


# ---------------------------------------------------------------------------------------
# Worker: runs pinned, measures one case at one thread count.


def _timings(call, *, min_seconds: float, min_calls: int) -> list[float]:
    for _ in range(3):
        call()  # warm up (first calls allocate, compile, prepack)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def _summary(times: list[float], batch: int) -> dict:
    import numpy as np

    median = float(np.median(times))
    return {
        "median_us": median * 1e6,
        "p99_us": float(np.percentile(times, 99)) * 1e6,
        "calls": len(times),
        "obs_per_s": batch / median,
    }


def _inputs(policy, batch: int):
    from policyport.runtime_checks import sample_inputs

    return sample_inputs(policy, seed=batch, batch=batch)


def _runners(policy, artifacts: dict[str, str], threads: int) -> dict:
    """name -> function(inputs) returning a callable that runs one batch."""
    import jax
    import jax.numpy as jnp
    import onnxruntime as ort

    # The policy is closed over: `jax.jit` of a plain function is JAX's fastest call path
    # (`eqx.filter_jit` re-partitions the module on every call, ~80 us at batch 1).
    @jax.jit
    def jax_forward(observation, mask):
        action = jax.vmap(lambda o, m: policy(None, o, action_mask=m)[1])(observation, mask)
        value = jax.vmap(lambda o: policy.value(None, o)[1])(observation)
        return action, value

    @jax.jit
    def jax_forward_unmasked(observation):
        action = jax.vmap(lambda o: policy(None, o)[1])(observation)
        value = jax.vmap(lambda o: policy.value(None, o)[1])(observation)
        return action, value

    def jax_runner(inputs):
        observation = jnp.asarray(inputs["observation"])
        if "action_mask" in inputs:
            mask = jnp.asarray(inputs["action_mask"])
            return lambda: jax.block_until_ready(jax_forward(observation, mask))
        return lambda: jax.block_until_ready(jax_forward_unmasked(observation))

    def ort_runner(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda inputs: lambda: session.run(None, inputs)

    runners = {"jax (jit)": jax_runner}
    runners["onnxruntime .onnx"] = ort_runner(artifacts["onnx"])
    runners["onnxruntime .ort"] = ort_runner(artifacts["ort"])
    if "savedmodel" in artifacts:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        serve = tf.saved_model.load(artifacts["savedmodel"]).signatures["serving_default"]

        def tf_runner(inputs):
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            return lambda: serve(**tensors)

        runners["tensorflow savedmodel"] = tf_runner
    return runners


def worker(case_name: str, threads: int, artifacts: dict[str, str], with_tf: bool) -> dict:
    case = next(c for c in CASES if c.name == case_name)
    policy = make_policy(case)
    if not with_tf:
        artifacts = {k: v for k, v in artifacts.items() if k != "savedmodel"}
    results: dict = {}
    for name, make in _runners(policy, artifacts, threads).items():
        results[name] = {}
        for batch in BATCHES:
            slow = name.startswith("tensorflow")
            call = make(_inputs(policy, batch))
            times = _timings(
                call,
                min_seconds=0.3 if slow else 0.6,
                min_calls=(200 if slow else 2000) if batch == 1 else 20,
            )
            results[name][batch] = _summary(times, batch)
    return results


def matmul_rate(policy, threads: int) -> float:
    """float32 GFLOP/s of numpy matmuls at the policy's layer shapes, batch 4096."""
    import numpy as np

    layers = _layer_shapes(policy)
    x = {n: np.random.rand(4096, n).astype(np.float32) for n, _ in layers}
    w = [np.random.rand(o, i).astype(np.float32) for i, o in layers]

    def run():
        for (i, _), weight in zip(layers, w, strict=True):
            x[i] @ weight.T

    times = _timings(run, min_seconds=1.0, min_calls=50)
    flops = sum(2 * 4096 * i * o for i, o in layers)
    # The best time: the rate the machine can reach, which other load only ever lowers.
    return flops / float(np.min(times)) / 1e9


# ---------------------------------------------------------------------------------------
# Orchestrator.


def _worker_env(threads: int) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    # XLA sizes its thread pool itself; the taskset pinning is what bounds it to `threads`
    # cores. (Its single-thread flags made batch-1 calls 4x slower here, not fairer.)
    return env


def _pinned(threads: int) -> list[str]:
    return ["taskset", "-c", "0" if threads == 1 else "0,1"]


def measure_export(case: Case, folder: Path) -> dict:
    """Wall time of `export-policy` per format in a fresh process, and whether TF loaded."""
    policy = make_policy(case)
    model = folder / f"{case.name}.eqx"
    policy.serialize(model)
    results = {}
    probe = (
        "import sys, json; from policyport._cli import run; code = run(sys.argv[1:]); "
        "print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules}))"
    )
    for fmt in ("onnx", "ort", "savedmodel", "stablehlo"):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", probe, str(model), "--format", fmt, "--force"],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        last = json.loads(done.stdout.strip().splitlines()[-1])
        if last["code"] != 0:
            raise RuntimeError(f"export of {case.name} to {fmt} failed:\n{done.stderr}")
        suffix = {
            "onnx": ".onnx",
            "ort": ".ort",
            "savedmodel": ".savedmodel",
            "stablehlo": ".stablehlo",
        }[fmt]
        path = model.with_suffix(suffix)
        size = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        results[fmt] = {
            "wall_s": seconds,
            "tensorflow_imported": last["tensorflow"],
            "bytes": size,
            "path": str(path),
        }
    import onnx

    graph = onnx.load(model.with_suffix(".onnx")).graph
    results["onnx"]["ops"] = dict(Counter(n.op_type for n in graph.node))
    return results


def orchestrate(quick: bool) -> dict:
    cases = CASES[:1] if quick else CASES
    data: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="policyport-bench-") as tmp:
        folder = Path(tmp)
        for case in cases:
            print(f"[bench] {case.name}: exports", flush=True)
            exports = measure_export(case, folder)
            policy = make_policy(case)
            entry = {
                "action": case.action,
                "kwargs": case.kwargs,
                "flops_per_obs": flops_per_observation(policy),
                "exports": exports,
                "runs": {},
            }
            artifacts = {k: v["path"] for k, v in exports.items()}
            for threads in (1, 2):
                print(f"[bench] {case.name}: {threads} thread(s)", flush=True)
                with_tf = case.name == "discrete-default" or not quick
                done = subprocess.run(
                    [
                        *_pinned(threads),
                        sys.executable,
                        __file__,
                        "--worker",
                        case.name,
                        "--threads",
                        str(threads),
                        "--artifacts",
                        json.dumps(artifacts),
                        *(["--with-tf"] if with_tf else []),
                    ],
                    capture_output=True,
                    text=True,
                    env=_worker_env(threads),
                    check=False,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"worker failed:\n{done.stderr[-4000:]}")
                entry["runs"][threads] = json.loads(done.stdout.strip().splitlines()[-1])
            if case.name == "discrete-default":
                data["cpp"] = measure_cpp(Path(artifacts["onnx"]))
            data["cases"][case.name] = entry
    return data


def measure_cpp(model: Path) -> dict | None:
    """Batch-1 latency through ONNX Runtime's C++ API (examples/cpp), pinned to one core."""
    build = subprocess.run(
        ["bash", str(ROOT / "examples" / "cpp" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    program = ROOT / "examples" / "cpp" / "build" / "bench_latency"
    if build.returncode != 0 or not program.exists():
        print(f"[bench] C++ skipped: examples/cpp did not build\n{build.stderr[-2000:]}")
        return None
    print("[bench] discrete-default: C++", flush=True)
    done = subprocess.run(
        [*_pinned(1), str(program), str(model), "20000"],
        capture_output=True,
        text=True,
        check=True,
        env=_worker_env(1),
    )
    return {"modes": [json.loads(line) for line in done.stdout.splitlines() if line.strip()]}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("policyport", "jax", "jaxlib", "onnx", "onnxruntime", "jax2onnx", "tensorflow-cpu")
    return {n: version(n) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--artifacts")
    parser.add_argument("--with-tf", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only the first case")
    args = parser.parse_args()
    if args.worker:
        results = worker(args.worker, args.threads, json.loads(args.artifacts), args.with_tf)
        case = next(c for c in CASES if c.name == args.worker)
        results["matmul_gflops"] = matmul_rate(make_policy(case), args.threads)
        print(json.dumps(results))
        return
    data = orchestrate(args.quick)
    from report import write_report

    write_report(data, HERE)


if __name__ == "__main__":
    main()

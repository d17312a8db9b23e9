"""The benchmark suite: every policy kind, export cost, and each runtime against jitted JAX.

One command, from the repository root:

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/run.py

It measures two full runs back to back (`--runs N` for another count) and writes
bench/RESULTS.md (both runs' ratios side by side, with their largest disagreement),
bench/results.json (every figure of both runs) and bench/throughput.png. About 15 minutes
on two cores at load 4, 25 at load 12. `--quick` times one case in fewer rounds and writes
to a temporary folder: a smoke test of the script, its figures not representative.
`--cases a,b --rounds N` measures only those cases, in N rounds (default 24), and writes to
a temporary folder too (the committed results stay those of a full run).

The cases are every policy kind of `tests/kinds.py` (`KINDS`, at its `BENCH` size: a 27-dim
observation, hidden width 64) plus a large actor-critic. Times are ratios against jitted
JAX measured in the same process in interleaved rounds (JAX, onnxruntime .onnx,
onnxruntime .ort, TensorFlow, then the reverse order, ...; each round a fixed number of
calls per runtime), so that load from other processes falls on every runtime alike.
Each worker process is pinned with `taskset` to one core (1 thread) or two (2 threads),
every runtime's thread count set to match, with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
(set on these machines, they slow numpy's matmul, which the compute floor uses).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # kinds.py: the policy kinds the tests export too

BATCHES = (1, 256, 4096)
THREADS = (1, 2)
REFERENCE = "jax (jit)"
# Interleaving: rounds per (case, threads, batch), and how long one runtime's round lasts
# (its call count is fixed from a warm-up estimate, at least MIN_CALLS).
ROUNDS = 24
ROUND_SECONDS = 0.01
MIN_CALLS = 3
PROFILE_CALLS = 20
LARGE = "actor_critic_large"
LARGE_KWARGS = {
    "feature_size": 64,
    "feature_width": 256,
    "feature_depth": 3,
    "value_width": 256,
    "value_depth": 3,
    "action_width": 256,
    "action_depth": 3,
}


@dataclass(frozen=True)
class Case:
    """One policy to benchmark: a kind from tests/kinds.py (or the large actor-critic)."""

    name: str
    description: str


CASES = (
    Case("actor_critic_discrete", "actor-critic, Discrete(5), masked"),
    Case("actor_critic_box", "actor-critic, Box(2) (Gaussian mean)"),
    Case("actor_critic_multidiscrete", "actor-critic, MultiDiscrete(3, 4, 2), masked"),
    Case("actor_critic_multibinary", "actor-critic, MultiBinary(4), masked"),
    Case(LARGE, "actor-critic, Discrete(5), masked, widths 256, depth 3"),
    Case("q", "Q-values, Discrete(5), masked argmax"),
    Case("sac", "SAC-like, tanh-squashed Gaussian mode, Box(2)"),
    Case("deterministic", "deterministic, tanh MLP scaled to Box(2)"),
    Case("discrete_sac", "discrete SAC, argmax of logits, no mask input"),
    Case("actor_critic_dict", "actor-critic, Dict observation (4 leaves), Discrete(3)"),
    Case("flax_layernorm_swish", "Flax linen: normaliser, layer norm, swish, Discrete(5) masked"),
    Case("brax_ppo", "Brax PPO networks: normaliser, swish 4x64, tanh-normal mode, Box(2)"),
)


def make_policy(name: str) -> Any:
    import jax

    from kinds import BENCH, KINDS, observation_space
    from policyport.policy import Discrete, MLPActorCriticPolicy, SpacesEnv

    if name == LARGE:
        env = SpacesEnv(observation_space(BENCH), Discrete(5))
        return MLPActorCriticPolicy(env, key=jax.random.key(0), **LARGE_KWARGS)
    return KINDS[name](0, size=BENCH)


def _layer_shapes(policy: Any) -> list[tuple[int, int]]:
    """(in, out) of every linear layer (`"scalar"` sizes count as 1): equinox's `Linear`s
    and Flax's `Dense` kernels (2-D arrays named `kernel`, `(in, out)`)."""
    import equinox as eqx
    import jax

    layers = jax.tree.leaves(policy, is_leaf=lambda x: isinstance(x, eqx.nn.Linear))
    shapes = [
        tuple(1 if d == "scalar" else int(d) for d in (m.in_features, m.out_features))
        for m in layers
        if isinstance(m, eqx.nn.Linear)
    ]
    for path, leaf in jax.tree_util.tree_leaves_with_path(policy):
        name = getattr(path[-1], "key", None) if path else None
        if name == "kernel" and getattr(leaf, "ndim", 0) == 2:
            shapes.append((int(leaf.shape[0]), int(leaf.shape[1])))
    return shapes


def flops_per_observation(policy: Any) -> int:
    """2 x multiply-adds of every linear layer the policy holds (an upper bound on what a
    deterministic call runs: SAC's log-std head, for one, is not run)."""
    return sum(2 * i * o for i, o in _layer_shapes(policy))


# ---------------------------------------------------------------------------------------
# Worker: runs pinned, measures one case at one thread count.

Call = Callable[[], Any]


def _median(values: list[float]) -> float:
    import numpy as np

    return float(np.median(values))


def _calls_per_round(call: Call) -> int:
    """Warm up (first calls allocate, compile, prepack), then size a round to ROUND_SECONDS
    of this process's CPU time (which other processes' load does not stretch)."""
    for _ in range(3):
        call()
    count, cpu, start = 0, time.process_time(), time.perf_counter()
    while count < 5 or time.perf_counter() - start < 0.05:
        call()
        count += 1
    per_call = (time.process_time() - cpu) / count
    return max(MIN_CALLS, min(2000, round(ROUND_SECONDS / max(per_call, 1e-7))))


def _timed(call: Call) -> tuple[float, float]:
    """One call's (CPU, wall) seconds, CPU time being this whole process's."""
    cpu, wall = time.process_time(), time.perf_counter()
    call()
    return time.process_time() - cpu, time.perf_counter() - wall


def clock_overhead() -> tuple[float, float]:
    """What `_timed` reports for a call that does nothing (median): subtracted from every
    figure, so that the clocks' own cost does not pull ratios towards 1."""
    empty = [_timed(lambda: None) for _ in range(2000)]
    return _median([c for c, _ in empty]), _median([w for _, w in empty])


def interleaved(calls: dict[str, Call], rounds: int) -> dict[str, dict]:
    """Per runtime and round: the median CPU time and the median wall time of a call.

    Runtimes alternate round by round; odd rounds run them in reverse order, so none
    always follows the same one. Each runtime's round starts with one untimed call (the
    previous runtime evicted its caches). CPU time is this process's, every thread of it
    (`time.process_time`): on a core shared with other processes it counts the work of a
    call and not the time spent waiting for the core; wall time counts both. Medians, of
    calls in a round and then of rounds, leave out the calls another process interrupted.
    """
    import numpy as np

    counts = {name: _calls_per_round(call) for name, call in calls.items()}
    cpu_overhead, wall_overhead = clock_overhead()
    order = list(calls)
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    every: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            call = calls[name]
            call()
            timed = [_timed(call) for _ in range(counts[name])]
            cpu[name].append(_median([c for c, _ in timed]) - cpu_overhead)
            wall[name].append(_median([w for _, w in timed]) - wall_overhead)
            every[name].extend(w for _, w in timed)
    return {
        name: {
            "calls_per_round": counts[name],
            "clock_overhead_us": [cpu_overhead * 1e6, wall_overhead * 1e6],
            "cpu_rounds_us": [t * 1e6 for t in cpu[name]],
            "wall_rounds_us": [t * 1e6 for t in wall[name]],
            "cpu_us": _median(cpu[name]) * 1e6,
            "wall_us": _median(wall[name]) * 1e6,
            "p99_us": float(np.percentile(every[name], 99)) * 1e6,
        }
        for name in calls
    }


def _with_ratios(results: dict[str, dict], batch: int) -> dict[str, dict]:
    """Add each runtime's speed against JAX, in CPU and in wall time.

    `vs_jax_<metric>` is the ratio of the medians over rounds, with the quartiles of the
    per-round ratios (each round against the JAX round of the same index);
    `vs_jax_<metric>_best` is the ratio of the fastest rounds, each runtime's least
    disturbed round: on this shared machine the speed of a call drifts by up to 2x over
    seconds, as other jobs come and go, and not alike for every runtime.
    """
    import numpy as np

    for metric in ("cpu", "wall"):
        jax_rounds = np.array(results[REFERENCE][f"{metric}_rounds_us"])
        for entry in results.values():
            rounds = np.array(entry[f"{metric}_rounds_us"])
            entry[f"vs_jax_{metric}"] = results[REFERENCE][f"{metric}_us"] / entry[f"{metric}_us"]
            entry[f"vs_jax_{metric}_quartiles"] = [
                float(np.percentile(jax_rounds / rounds, q)) for q in (25, 75)
            ]
            entry[f"{metric}_best_us"] = float(rounds.min())
            entry[f"vs_jax_{metric}_best"] = float(jax_rounds.min() / rounds.min())
            entry[f"obs_per_{metric}_s"] = batch / (entry[f"{metric}_us"] * 1e-6)
    return results


def _inputs(policy: Any, batch: int) -> dict:
    from policyport.checks import sample_inputs

    return sample_inputs(policy, seed=batch, batch=batch)


def _jax_forward(policy: Any) -> Callable[..., Any]:
    """The policy's own `__call__` and heads, vmapped and jitted, on the contract's inputs.

    The policy is closed over: `jax.jit` of a plain function is JAX's fastest call path
    (`eqx.filter_jit` re-partitions the module on every call, ~80 us at batch 1).
    """
    import jax

    import policyport

    traced = policyport.trace(policy)
    space = traced.observation_space
    leaves = len(traced.observation_inputs)
    masked = traced.description.mask_input
    heads = traced.description.heads

    def row(*arrays):
        observation = space.unflatten(list(arrays[:leaves]))
        mask = arrays[leaves] if masked else None
        _, action = policy(None, observation, action_mask=mask)
        return (action, *(getattr(policy, head)(None, observation)[1] for head in heads))

    batched = jax.jit(jax.vmap(row))
    return lambda inputs: [inputs[name] for name in traced.input_names], batched


def _runners(policy: Any, artifacts: dict[str, str], threads: int) -> dict[str, Callable]:
    """runtime name -> function(inputs) returning a call that runs one batch."""
    import jax
    import jax.numpy as jnp

    arguments, forward = _jax_forward(policy)

    def jax_runner(inputs):
        arrays = [jnp.asarray(a) for a in arguments(inputs)]
        return lambda: jax.block_until_ready(forward(*arrays))

    def ort_runner(path):
        session = _ort_session(path, threads)
        return lambda inputs: lambda: session.run(None, inputs)

    runners = {
        REFERENCE: jax_runner,
        "onnxruntime .onnx": ort_runner(artifacts["onnx"]),
        "onnxruntime .ort": ort_runner(artifacts["ort"]),
    }
    if "savedmodel" in artifacts:
        from policyport.formats import RUNTIMES

        _tensorflow(threads)  # thread pools sized before the runtime loads the model
        runtime = next(r for r in RUNTIMES.values() if "savedmodel" in r.formats)
        run = runtime.load(Path(artifacts["savedmodel"]))
        runners["tensorflow savedmodel"] = lambda inputs: lambda: run(inputs)
    return runners


def _ort_session(path: str, threads: int, profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _tensorflow(threads: int) -> Any:
    """TensorFlow with its thread pools sized to the pinning (before any op runs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def ort_profile(path: str, inputs: dict, threads: int) -> dict:
    """Where onnxruntime's time goes: per-call microseconds by op type (its profiler)."""
    with tempfile.TemporaryDirectory(prefix="policyport-profile-") as tmp:
        session = _ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(3 + PROFILE_CALLS):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    # The warm-up calls are profiled too: count only the nodes inside the last runs.
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e["name"] == "model_run"
    )[-PROFILE_CALLS:]
    per_run: list[Counter[str]] = [Counter() for _ in runs]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            for i, (start, end) in enumerate(runs):
                if start <= e["ts"] <= end:
                    per_run[i][e["args"]["op_name"]] += e["dur"]
    ops = {op for run in per_run for op in run}
    # Medians over runs, like every other figure here: a preempted run must not dominate.
    by_op = {op: _median([run[op] for run in per_run]) for op in ops}
    return {
        "model_run_us": _median([end - start for start, end in runs]),
        "ops_us": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
    }


def worker(threads: int, artifacts: dict[str, dict[str, str]], rounds: int) -> dict:
    """Every case at one thread count, in this one pinned process (imports paid once)."""
    results = {}
    for name, paths in artifacts.items():
        print(f"[bench worker] {_now()} {name}: {threads} thread(s)", file=sys.stderr, flush=True)
        results[name] = measure_case(name, paths, threads, rounds)
    return results


def measure_case(case_name: str, artifacts: dict[str, str], threads: int, rounds: int) -> dict:
    policy = make_policy(case_name)
    runners = _runners(policy, artifacts, threads)
    results: dict = {"batches": {}}
    for batch in BATCHES:
        inputs = _inputs(policy, batch)
        calls = {name: make(inputs) for name, make in runners.items()}
        results["batches"][batch] = _with_ratios(interleaved(calls, rounds), batch)
    if threads == 1:
        results["ort_profile_4096"] = ort_profile(artifacts["onnx"], _inputs(policy, 4096), 1)
    results["matmul_gflops"] = matmul_rate(policy)
    return results


def matmul_rate(policy: Any) -> float:
    """float32 GFLOP/s of numpy matmuls at the policy's layer shapes, batch 4096."""
    import numpy as np

    layers = _layer_shapes(policy)
    x = {n: np.random.rand(4096, n).astype(np.float32) for n, _ in layers}
    w = [np.random.rand(o, i).astype(np.float32) for i, o in layers]

    def run():
        for (i, _), weight in zip(layers, w, strict=True):
            x[i] @ weight.T

    for _ in range(3):
        run()
    times = []
    start = time.perf_counter()
    while len(times) < 50 or time.perf_counter() - start < 0.5:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    flops = sum(2 * 4096 * i * o for i, o in layers)
    # The best time: the rate the machine can reach, which other load only ever lowers.
    return flops / min(times) / 1e9


def export_worker(case_name: str, output: str) -> dict:
    """Export one case to every format with policyport's API, in this fresh process."""
    import policyport

    policy = make_policy(case_name)
    results = {}
    for result in policyport.export(policy, "all", output, force=True):
        if not result.report.passed:
            raise RuntimeError(f"{case_name}: parity failed\n{result.report.to_table()}")
        results[result.format] = {"stages_s": result.seconds, "path": str(result.paths[0])}
    return results


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


def _last_json(done: subprocess.CompletedProcess, what: str) -> dict:
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}):\n{(done.stderr or '')[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def measure_export(case: Case, folder: Path) -> dict:
    """Each format's export stages (trace, lower, check, write) in one fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--export", case.name, "--output", folder / f"{case.name}.x"],
        capture_output=True,
        text=True,
        check=False,
    )
    results = _last_json(done, f"export of {case.name}")
    for entry in results.values():
        entry["export_s"] = sum(entry["stages_s"].values())
        entry["bytes"] = _size(Path(entry["path"]))
    import onnx

    graph = onnx.load(results["onnx"]["path"]).graph
    results["onnx"]["ops"] = dict(Counter(n.op_type for n in graph.node))
    return results


def measure_cli_export(folder: Path) -> dict:
    """`export-policy --format onnx` on the default actor-critic's file: the CLI's wall time."""
    policy = make_policy("actor_critic_discrete")
    model = folder / "cli.eqx"
    policy.serialize(model)
    probe = (
        "import sys, json; from policyport._cli import run; code = run(sys.argv[1:]); "
        "print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules}))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe, str(model), "--format", "onnx", "--force"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    last = _last_json(done, "export-policy")
    if last["code"] != 0:
        raise RuntimeError(f"export-policy exited {last['code']}:\n{done.stderr[-4000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": seconds, "cpu_s": cpu, "tensorflow_imported": last["tensorflow"]}


def machine_load() -> dict:
    """What else the machine is doing: load averages and the busiest processes' names."""
    one, five, fifteen = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    top = subprocess.run(
        ["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:8]
    busy = [
        {"cpu_percent": float(p), "command": c}
        for p, _, c in (line.strip().partition(" ") for line in top)
    ]
    return {"loadavg": [one, five, fifteen], "busiest": busy}


def measure_run(cases: tuple[Case, ...], artifacts: dict, rounds: int, with_tf: bool) -> dict:
    """One full pass: every case at every thread count, each in its own pinned worker."""
    run: dict = {
        "started": _now(),
        "load_before": machine_load(),
        "loadavg_1min": [],
    }
    paths = {
        case.name: {k: v for k, v in artifacts[case.name].items() if with_tf or k != "savedmodel"}
        for case in cases
    }
    by_threads = {}
    for threads in THREADS:
        print(f"[bench] {_now()} {threads} thread(s)", flush=True)
        run["loadavg_1min"].append(machine_load()["loadavg"][0])
        done = subprocess.run(
            [
                *_pinned(threads),
                sys.executable,
                __file__,
                "--worker",
                "--threads",
                str(threads),
                "--artifacts",
                json.dumps(paths),
                "--rounds",
                str(rounds),
            ],
            stdout=subprocess.PIPE,  # its progress lines and any traceback go to our stderr
            text=True,
            env=_worker_env(threads),
            check=False,
        )
        by_threads[threads] = _last_json(done, f"worker ({threads} thread(s))")
    run["loadavg_1min"].append(machine_load()["loadavg"][0])
    run["cases"] = {c.name: {t: by_threads[t][c.name] for t in THREADS} for c in cases}
    run["finished"] = _now()
    run["load_after"] = machine_load()
    return run


def orchestrate(
    quick: bool, runs: int, command: str, only: list[str] | None = None, rounds: int = ROUNDS
) -> dict:
    cases = CASES[:1] if quick else CASES
    if only:
        cases = tuple(c for c in CASES if c.name in only)
    rounds = 5 if quick else rounds
    data: dict = {
        "date": _now(),
        "command": command,
        "commit": _commit(),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "method": {"rounds": rounds, "round_seconds": ROUND_SECONDS, "batches": list(BATCHES)},
        "cases": {},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="policyport-bench-") as tmp:
        folder = Path(tmp)
        artifacts = {}
        for case in cases:
            print(f"[bench] {_now()} {case.name}: exports", flush=True)
            exports = measure_export(case, folder)
            policy = make_policy(case.name)
            data["cases"][case.name] = {
                "description": case.description,
                "flops_per_obs": flops_per_observation(policy),
                "exports": exports,
            }
            artifacts[case.name] = {k: v["path"] for k, v in exports.items()}
        data["cli_export"] = measure_cli_export(folder)
        # C++ latency is the headline case's; a subset of the cases leaves it out.
        data["cpp"] = None if only else measure_cpp(Path(artifacts[cases[0].name]["onnx"]))
        for i in range(runs):
            print(f"[bench] {_now()} run {i + 1} of {runs}", flush=True)
            data["runs"].append(measure_run(cases, artifacts, rounds, with_tf=not quick))
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
        print(f"[bench] C++ not measured: examples/cpp did not build\n{build.stderr[-2000:]}")
        return None
    print(f"[bench] {_now()} C++ latency", flush=True)
    done = subprocess.run(
        [*_pinned(1), str(program), str(model), "20000"],
        capture_output=True,
        text=True,
        check=True,
        env=_worker_env(1),
    )
    return {"modes": [json.loads(line) for line in done.stdout.splitlines() if line.strip()]}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


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
    parser.add_argument("--runs", type=int, default=2, help="full runs to measure and compare")
    parser.add_argument("--quick", action="store_true", help="one case, 5 rounds: a smoke test")
    parser.add_argument(
        "--cases",
        help="comma-separated case names to measure (default: all); the report then goes "
        "to a temporary folder, not over the committed results",
    )
    # Internal: the pinned timing worker and the fresh-process export.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default {ROUNDS})"
    )
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        artifacts = json.loads(args.artifacts)
        print(json.dumps(worker(args.threads, artifacts, args.rounds)))
        return
    if args.export:
        print(json.dumps(export_worker(args.export, args.output)))
        return
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, found {args.runs}")
    only = args.cases.split(",") if args.cases else None
    unknown = sorted(set(only or ()) - {c.name for c in CASES})
    if unknown:
        parser.error(f"unknown case(s) {unknown}; the cases are {[c.name for c in CASES]}")
    command = "python bench/run.py" + (" --quick" if args.quick else "")
    if args.runs != 2:
        command += f" --runs {args.runs}"
    if only:
        command += f" --cases {args.cases}"
    if args.rounds != ROUNDS:
        command += f" --rounds {args.rounds}"
    data = orchestrate(args.quick, args.runs, command, only, args.rounds)
    from report import write_report

    # A smoke test or a subset of the cases must not replace the committed results.
    partial = args.quick or only or args.rounds != ROUNDS
    folder = Path(tempfile.mkdtemp(prefix="policyport-bench-partial-")) if partial else HERE
    write_report(data, folder)
    print(f"[bench] wrote {folder / 'RESULTS.md'}", flush=True)


if __name__ == "__main__":
    main()

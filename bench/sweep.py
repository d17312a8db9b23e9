"""The sweep benchmark: one `export-policy` call over many checkpoints vs a shell loop.

One command, from the repository root (about 10 minutes on two busy cores):

    .venv/bin/python bench/sweep.py

It makes `--models` checkpoints (default 200) of one architecture (the default
`MLPActorCriticPolicy`, 4-dim observation, Discrete(2): CartPole's shape), each with its own
random weights, then measures in one run on this machine:

- a shell loop: `export-policy MODEL --format onnx` once per model, for `--loop` models
  (half before and half after the one-call run, so both see the same load), scaled to
  `--models` calls by the mean time per call;
- one `export-policy` call over all the models, and over the first 10 and 50: wall time
  per checkpoint as the count grows, next to the per-model floor (the median time of one
  model inside the 200-model call, its first model excluded) and where that time goes;
- scaling on `--scaling` models: `--workers 1` vs `--workers 2` (wall time of the whole
  command), and Dask `LocalCluster`s of 1 and 2 worker processes (workers warmed on two
  models first, then timed), against the same models exported in this process (warm);
  Dask's overhead per model is the 1-worker Dask time minus the in-process time, per model;
- memory: resident size after each of the models of one in-process `export_many` run
  (a child process), and its peak.

Writes bench/SWEEP.md and bench/sweep_results.json (`--out` for another folder).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "export-policy")


def make_checkpoints(folder: Path, count: int) -> list[Path]:
    import jax
    import numpy as np

    from policyport.policy import Box, Discrete, MLPActorCriticPolicy, SpacesEnv

    high = np.array([4.8, np.inf, 0.42, np.inf], dtype=np.float32)
    env = SpacesEnv(Box(-high, high), Discrete(2))
    paths = []
    for i in range(count):
        path = folder / f"run{i:03d}" / "policy.eqx"
        path.parent.mkdir(parents=True)
        MLPActorCriticPolicy(env, key=jax.random.key(i)).serialize(path)
        paths.append(path)
    return paths


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {done.returncode}: {done.stderr}")
    return seconds


def shell_loop(models: list[Path], out: Path) -> list[float]:
    """One `export-policy` process per model, as a shell loop would run them."""
    out.mkdir(exist_ok=True)
    return [
        _timed([CLI, str(m), "--format", "onnx", "-o", str(out / f"{i}.onnx")])
        for i, m in enumerate(models)
    ]


def one_call(models: list[Path], out: Path, extra: list[str] = ()) -> tuple[float, dict]:
    report = out.with_suffix(".json")
    command = [
        CLI,
        *map(str, models),
        "--format",
        "onnx",
        "-o",
        f"{out}/{{relstem}}.onnx",
        "--report",
        str(report),
        *extra,
    ]
    seconds = _timed(command)
    return seconds, json.loads(report.read_text())


def stage_medians(report: dict) -> dict[str, float]:
    """Median seconds per stage over the models of a sweep, its first model excluded."""
    models = report["models"][1:]
    stages = sorted({k for m in models for k in m["seconds"]})
    return {k: statistics.median(m["seconds"].get(k, 0.0) for m in models) for k in stages}


def rss_child(folder: str, out: str, result: str) -> None:
    """In a fresh process: export every model, recording resident memory after each."""
    import resource

    import policyport

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    after: list[float] = []
    start = time.perf_counter()
    results = policyport.export_many(
        folder, "onnx", f"{out}/{{relstem}}.onnx", progress=lambda *_: after.append(rss_mb())
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result).write_text(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "exported": sum(r.ok for r in results),
                "rss_mb_after_each": after,
                "peak_rss_mb": peak,
            }
        )
    )


def in_process(models: list[Path], out: Path, client: Any = None) -> float:
    import policyport

    start = time.perf_counter()
    results = policyport.export_many(models, "onnx", f"{out}/{{relstem}}.onnx", client=client)
    seconds = time.perf_counter() - start
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    return seconds


def scaling(models: list[Path], tmp: Path) -> dict[str, Any]:
    from distributed import LocalCluster

    found: dict[str, Any] = {"models": len(models)}
    tmp.mkdir()
    for workers in (1, 2):
        found[f"cli_workers_{workers}_s"], _ = one_call(
            models, tmp / f"cli-w{workers}", ["--workers", str(workers)]
        )
    in_process(models[:2], tmp / "warm-local")
    found["in_process_warm_s"] = in_process(models, tmp / "local")
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            cluster.get_client() as client,
        ):
            warm = [m for m in models[: 2 * workers]]
            in_process(warm, tmp / f"warm-dask{workers}", client)
            found[f"dask_workers_{workers}_s"] = in_process(models, tmp / f"dask{workers}", client)
    n = len(models)
    found["dask_overhead_per_model_ms"] = (
        1000 * (found["dask_workers_1_s"] - found["in_process_warm_s"]) / n
    )
    return found


def machine_load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def write_markdown(path: Path, r: dict[str, Any]) -> None:
    loop, one = r["shell_loop"], r["one_call"]
    rows = "\n".join(
        f"| {c['models']} | {c['seconds']:.1f} | {c['per_model_s']:.3f} |" for c in r["counts"]
    )
    stages = ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in r["stages_median_s"].items() if k != "total"
    )
    s, m = r["scaling"], r["memory"]
    rss = m["rss_mb_after_each"]
    noise = (
        " (below zero: smaller than this run's noise)"
        if s["dask_overhead_per_model_ms"] < 0
        else ""
    )
    marks = [i for i in (1, 10, 50, 100, len(rss)) if i <= len(rss)]
    text = f"""# Sweep benchmark

Measured {r["date"]} (commit {r["commit"]}) by `python bench/sweep.py`: {r["models"]}
checkpoints of one architecture (default `MLPActorCriticPolicy`, CartPole's spaces), each
with its own weights, exported to ONNX and checked. Two cores shared with other work; load
average {r["load_before"]} before, {r["load_after"]} after.

## One call vs a shell loop

- Shell loop: {loop["calls"]} `export-policy MODEL` processes timed (half before, half after
  the one-call run), mean {loop["mean_s"]:.2f} s a call (median {loop["median_s"]:.2f} s);
  scaled to {r["models"]} calls: **{loop["scaled_s"]:.0f} s** (an estimate from
  {loop["calls"]} calls, not {r["models"]} run).
- One `export-policy` call over all {r["models"]}: **{one["seconds"]:.1f} s**, every model
  exported. Speed-up: **{r["speedup"]:.1f}x**.

## Per checkpoint as the count grows (one call each, imports included)

| models | wall s | s per model |
|---:|---:|---:|
{rows}

Per-model floor inside the {r["models"]}-model call (median, first model excluded):
**{r["floor_s"] * 1000:.0f} ms**; by stage: {stages}.

## Scaling ({s["models"]} models)

| how | wall s |
|---|---:|
| `--workers 1` (whole command) | {s["cli_workers_1_s"]:.1f} |
| `--workers 2` (whole command, 2 spawned processes) | {s["cli_workers_2_s"]:.1f} |
| in this process, warm | {s["in_process_warm_s"]:.1f} |
| Dask LocalCluster, 1 worker, warm | {s["dask_workers_1_s"]:.1f} |
| Dask LocalCluster, 2 workers, warm | {s["dask_workers_2_s"]:.1f} |

Dask's overhead per model (1 worker minus in-process, per model):
{s["dask_overhead_per_model_ms"]:.0f} ms{noise}. `--workers N` includes starting N
processes that each import JAX and compile once per architecture (seconds each); the
other rows are timed warm. A second worker can only help when a core is idle: compare the
load average above with the 2 cores.

## Memory ({len(rss)} models, one process)

Resident size after model {", ".join(f"{i}: {rss[i - 1]:.0f} MB" for i in marks)}; peak
{m["peak_rss_mb"]:.0f} MB. Growth from model 50 to {len(rss)}:
{r["rss_growth_mb_per_100"]:.1f} MB per 100 models.
"""
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--loop", type=int, default=20, help="shell-loop calls actually timed")
    parser.add_argument("--scaling", type=int, default=40, help="models in the scaling runs")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip(),
        "models": args.models,
        "load_before": machine_load(),
    }
    with tempfile.TemporaryDirectory(prefix="policyport-sweep-bench-") as tmp_name:
        tmp = Path(tmp_name)
        models = make_checkpoints(tmp / "runs", args.models)
        half = args.loop // 2
        loop = shell_loop(models[:half], tmp / "loop-a")
        seconds, report = one_call(models, tmp / "all")
        loop += shell_loop(models[half : args.loop], tmp / "loop-b")
        assert report["counts"]["exported"] == args.models, report["counts"]
        results["shell_loop"] = {
            "calls": len(loop),
            "seconds": loop,
            "mean_s": statistics.mean(loop),
            "median_s": statistics.median(loop),
            "scaled_s": statistics.mean(loop) * args.models,
        }
        results["one_call"] = {"seconds": seconds, "counts": report["counts"]}
        results["speedup"] = results["shell_loop"]["scaled_s"] / seconds
        counts = []
        for n in (10, 50):
            if n < args.models:
                wall, _ = one_call(models[:n], tmp / f"count{n}")
                counts.append({"models": n, "seconds": wall, "per_model_s": wall / n})
        counts.append(
            {"models": args.models, "seconds": seconds, "per_model_s": seconds / args.models}
        )
        results["counts"] = counts
        results["stages_median_s"] = stage_medians(report)
        results["floor_s"] = results["stages_median_s"]["total"]
        results["scaling"] = scaling(models[: args.scaling], tmp / "scaling")
        memory = tmp / "memory.json"
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                str(tmp / "runs"),
                str(tmp / "mem"),
                str(memory),
            ],
            check=True,
        )
        results["memory"] = json.loads(memory.read_text())
        rss = results["memory"]["rss_mb_after_each"]
        start = min(50, len(rss) - 1)
        results["rss_growth_mb_per_100"] = (
            (rss[-1] - rss[start - 1]) / max(1, len(rss) - start) * 100
        )
    results["load_after"] = machine_load()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_results.json").write_text(json.dumps(results, indent=2))
    write_markdown(args.out / "SWEEP.md", results)
    print((args.out / "SWEEP.md").read_text())


if __name__ == "__main__":
    main()

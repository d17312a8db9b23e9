"""Turn the benchmark's runs into RESULTS.md, results.json and throughput.png.

Every speed is a ratio against jitted JAX from the same interleaved rounds; the report puts
each run's ratios side by side and says how far apart the runs are.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

REFERENCE = "jax (jit)"
ORT = "onnxruntime .onnx"
AGREEMENT = 0.10  # two runs agree when every ratio differs by at most 10%
TARGET_BATCH_1 = 1.5  # onnxruntime vs jitted JAX at batch 1, every kind
TARGET_BATCH_4096 = 1.0  # ... and at batch 4096 on one core
HEADLINE = "actor_critic_discrete"
# Each speed is measured in this process's CPU time per call and in wall time, and read two
# ways: the ratio of the medians over rounds, and the ratio of the fastest rounds.
METRICS = {
    "cpu": "CPU time, ratio of medians",
    "cpu_best": "CPU time, ratio of fastest rounds",
    "wall": "wall time, ratio of medians",
    "wall_best": "wall time, ratio of fastest rounds",
}
TABLES = ("cpu", "cpu_best")  # the run-by-run tables shown in full


def disagreement(a: float, b: float) -> float:
    """How far apart two ratios are, relative to the smaller: 0.1 means one is 10% above."""
    return max(a, b) / min(a, b) - 1


def _runtimes(cell: dict) -> list[str]:
    return [r for r in cell if r != REFERENCE]


def _cell(run: dict, case: str, threads: str, batch: str) -> dict:
    return run["cases"][case][threads]["batches"][batch]


def _met(value: float, target: float) -> str:
    return "met" if value >= target else "**missed**"


def _ratio(run: dict, case: str, threads: str, batch: str, metric: str) -> float:
    return _cell(run, case, threads, batch)[ORT][f"vs_jax_{metric}"]


def _pairs(runs: list[dict], metric: str) -> list[tuple[str, str, str, str, list[float]]]:
    """(case, threads, batch, runtime, ratio per run) for every `metric` ratio measured."""
    first = runs[0]["cases"]
    rows = []
    for case, by_threads in first.items():
        for threads, entry in by_threads.items():
            for batch, cell in entry["batches"].items():
                for runtime in _runtimes(cell):
                    ratios = [
                        _cell(r, case, threads, batch)[runtime][f"vs_jax_{metric}"] for r in runs
                    ]
                    rows.append((case, threads, batch, runtime, ratios))
    return rows


def _machine(data: dict) -> list[str]:
    lines = [
        f"{data['machine']['cpu']}, {data['machine']['cores']} cores, shared with other "
        "workers' jobs while this ran. Load average (1 min) sampled as each run's pinned "
        "workers started and ended, and the busiest processes when each run began:",
        "",
    ]
    for i, run in enumerate(data["runs"], 1):
        load = run["loadavg_1min"]
        busy = Counter(p["command"] for p in run["load_before"]["busiest"] if p["cpu_percent"] > 5)
        total = sum(p["cpu_percent"] for p in run["load_before"]["busiest"])
        names = ", ".join(f"{n} x{c}" for n, c in busy.most_common())
        lines.append(
            f"- Run {i} ({run['started']} to {run['finished']}): load {min(load):.1f} to "
            f"{max(load):.1f} on {data['machine']['cores']} cores; busiest processes {names} "
            f"({total:.0f}% CPU together)."
        )
    return lines


def _targets(data: dict) -> list[str]:
    runs = data["runs"]
    n = len(runs)
    head = " | ".join(f"r{i}" for i in range(1, n + 1))
    lines = [
        "onnxruntime (`.onnx`, from Python) over jitted JAX, 1 thread pinned to one core. "
        f"Targets: >= {TARGET_BATCH_1}x at batch 1 and >= {TARGET_BATCH_4096}x at batch 4096, "
        "every kind, judged on the ratio of median CPU times (on one pinned core, a call's "
        "CPU time is its wall time on an otherwise idle core). Beside it: the ratio of the "
        "fastest rounds' CPU times, and the ratio of median wall times. The last column: how "
        "far apart the two runs are, for the median and for the fastest-round ratios (the "
        "larger over both batch sizes).",
        "",
        f"| policy | b1 median: {head} | b1 fastest: {head} | b1 wall: {head} | target "
        f"| b4096 median: {head} | b4096 fastest: {head} | b4096 wall: {head} | target "
        "| runs differ by (median / fastest) |",
        "|---|" + ("---:|" * n * 3 + "---|") * 2 + "---:|",
    ]
    for case, entry in data["cases"].items():
        cells: list[str] = []
        worst = {"cpu": 0.0, "cpu_best": 0.0}
        for batch, target in (("1", TARGET_BATCH_1), ("4096", TARGET_BATCH_4096)):
            by = {m: [_ratio(r, case, "1", batch, m) for r in runs] for m in ("cpu", "cpu_best")}
            wall = [_ratio(r, case, "1", batch, "wall") for r in runs]
            cells += [f"{v:.2f}x" for v in by["cpu"] + by["cpu_best"] + wall]
            cells.append(_met(min(by["cpu"]), target))
            for m, values in by.items():
                worst[m] = max(worst[m], disagreement(min(values), max(values)))
        lines.append(
            f"| {case} ({entry['description']}) | "
            + " | ".join(cells)
            + f" | {worst['cpu']:.1%} / {worst['cpu_best']:.1%} |"
        )
    cli = data["cli_export"]
    met = "met" if cli["wall_s"] < 5 else "**missed**"
    lines += [
        "",
        f"`export-policy --format onnx` on the default actor-critic's file, in a fresh "
        f"process: {cli['wall_s']:.2f} s wall (target < 5 s: {met}), {cli['cpu_s']:.2f} s of "
        f"CPU; TensorFlow {'imported' if cli['tensorflow_imported'] else 'not imported'}.",
    ]
    return lines


def _agreement(data: dict) -> list[str]:
    runs = data["runs"]
    if len(runs) < 2:
        return ["One run only: nothing to compare (run without `--runs 1`)."]
    lines = [
        "Disagreement is max/min - 1 of the runs' ratios (0% = identical). Why two readings: "
        "on this shared machine a call's CPU time, for every runtime at once, drifts by up to "
        "2x over seconds as other jobs come and go (the per-round figures in results.json "
        "show it), and not by the same factor for every runtime. The median over rounds of "
        "each runtime can then fall in different phases of that drift; the fastest round of "
        "each is the least disturbed state of the machine, which both runs reach. (The "
        "fastest-round reading was added after a first pair of runs showed this; the runs "
        "here are a later, separate pair.)",
        "",
    ]
    for metric, label in METRICS.items():
        rows = _pairs(runs, metric)
        spread = {r[:4]: disagreement(min(r[4]), max(r[4])) for r in rows}
        worst = max(spread, key=spread.__getitem__)
        within = sum(v <= AGREEMENT for v in spread.values())
        one = [v for k, v in spread.items() if k[1] == "1"]
        head = [v for k, v in spread.items() if k[1] == "1" and k[3] == ORT and k[2] != "256"]
        lines.append(
            f"- {label}: largest disagreement **{spread[worst]:.1%}** ({worst[0]}, "
            f"{worst[1]} thread(s), batch {worst[2]}, {worst[3]})"
            f"; {within} of {len(rows)} ratios within {AGREEMENT:.0%}; 1 thread: largest "
            f"{max(one):.1%}; the target ratios (`.onnx`, 1 thread, batch 1 and 4096): "
            f"largest {max(head):.1%}."
        )
    for metric in TABLES:
        lines += [
            "",
            f"### {METRICS[metric]} (vs JAX), run by run",
            "",
            *_pair_table(runs, metric),
        ]
    return lines


def _pair_table(runs: list[dict], metric: str) -> list[str]:
    rows = _pairs(runs, metric)
    runtimes = list(dict.fromkeys(r[3] for r in rows))
    short = [r.removeprefix("onnxruntime ").removeprefix("tensorflow ") for r in runtimes]
    n = len(runs)
    lines = [
        "| policy | threads | batch | "
        + " | ".join(f"{s} r{i}" for s in short for i in range(1, n + 1))
        + " | max diff |",
        "|---|---:|---:|" + "---:|" * (len(runtimes) * n) + "---:|",
    ]
    grouped: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for case, threads, batch, runtime, ratios in rows:
        grouped.setdefault((case, threads, batch), {})[runtime] = ratios
    for (case, threads, batch), by_runtime in grouped.items():
        cells = [
            f"{v:.2f}" if rt in by_runtime else ""
            for rt in runtimes
            for v in by_runtime.get(rt, [0] * n)
        ]
        diff = max(disagreement(min(r), max(r)) for r in by_runtime.values())
        lines.append(f"| {case} | {threads} | {batch} | " + " | ".join(cells) + f" | {diff:.1%} |")
    return lines


def _profile(data: dict) -> list[str]:
    runs = data["runs"]
    lines = [
        "onnxruntime's profiler on the `.onnx`, batch 4096, 1 thread, run 1: each op type's "
        "summed kernel time per call (median over 20 calls) and its share of all kernels' "
        "time; `Run` is the median wall time of a whole profiled call, which the machine's "
        "load stretches (the kernels' medians much less). Cases marked * were below 1.0x "
        "JAX (ratio of median CPU times) at batch 4096 in some run.",
        "",
        "| policy | ORT/JAX (CPU), by run | Run (µs) | by op type (µs a call, share of kernels) |",
        "|---|---:|---:|---|",
    ]
    for case in data["cases"]:
        profile = runs[0]["cases"][case]["1"]["ort_profile_4096"]
        ratios = [_ratio(r, case, "1", "4096", "cpu") for r in runs]
        kernels = sum(profile["ops_us"].values())
        ops = ", ".join(
            f"{op} {us:.0f} ({us / kernels:.0%})"
            for op, us in list(profile["ops_us"].items())[:6]
            if us >= 1
        )
        mark = " *" if min(ratios) < TARGET_BATCH_4096 else ""
        lines.append(
            f"| {case}{mark} | {' / '.join(f'{v:.2f}x' for v in ratios)} | "
            f"{profile['model_run_us']:.0f} | {ops} |"
        )
    return lines


def _export_table(data: dict) -> list[str]:
    lines = [
        "Each case exported to every format by `policyport.export(policy, 'all')` in a fresh "
        "process; seconds are the export's own stages (trace, lower, check with parity, "
        "write), the trace counted in every format.",
        "",
        "| policy | format | export (s) | size (KiB) |",
        "|---|---|---:|---:|",
    ]
    for name, entry in data["cases"].items():
        for fmt, e in entry["exports"].items():
            lines.append(f"| {name} | {fmt} | {e['export_s']:.2f} | {e['bytes'] / 1024:.0f} |")
    lines += ["", "| policy | ONNX nodes | by op type |", "|---|---:|---|"]
    for name, entry in data["cases"].items():
        ops = entry["exports"]["onnx"]["ops"]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
        lines.append(f"| {name} | {sum(ops.values())} | {detail} |")
    return lines


def _latency_table(data: dict) -> list[str]:
    runs = data["runs"]
    n = len(runs)
    lines = [
        "Per call (µs), medians over rounds: CPU time and wall time of each run; p99 of wall "
        "time over every timed call of run 1; speed vs JAX in CPU time, run 1, with the "
        "quartiles of its per-round ratios.",
        "",
        "| policy | threads | runtime | "
        + " | ".join(f"CPU r{i}" for i in range(1, n + 1))
        + " | "
        + " | ".join(f"wall r{i}" for i in range(1, n + 1))
        + " | p99 wall r1 | vs JAX r1 (quartiles) |",
        "|---|---:|---|" + "---:|" * (2 * n) + "---:|---:|",
    ]
    for case, by_threads in runs[0]["cases"].items():
        for threads in by_threads:
            cell = _cell(runs[0], case, threads, "1")
            for runtime, r in cell.items():
                both = [_cell(run, case, threads, "1")[runtime] for run in runs]
                q1, q3 = r["vs_jax_cpu_quartiles"]
                lines.append(
                    f"| {case} | {threads} | {runtime} | "
                    + " | ".join(f"{b['cpu_us']:.1f}" for b in both)
                    + " | "
                    + " | ".join(f"{b['wall_us']:.1f}" for b in both)
                    + f" | {r['p99_us']:.1f} | {r['vs_jax_cpu']:.2f}x ({q1:.2f}-{q3:.2f}) |"
                )
    return lines


def _floor(data: dict, case: str, entry: dict) -> float:
    """Observations per second if every FLOP ran at the measured matmul rate."""
    return entry["matmul_gflops"] * 1e9 / data["cases"][case]["flops_per_obs"]


def _throughput_table(data: dict) -> list[str]:
    run = data["runs"][0]
    lines = [
        "Run 1, observations per second of CPU time (and of wall time at 4096); vs JAX in CPU "
        "time with the quartiles of the per-round ratios. Floor: observations per second if "
        "every linear layer ran at numpy's matmul rate (see below).",
        "",
        "| policy | threads | runtime | batch 256 (obs/CPU s) | vs JAX | batch 4096 (obs/CPU s) "
        "| vs JAX (quartiles) | obs/wall s | of floor |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, by_threads in run["cases"].items():
        for threads, entry in by_threads.items():
            floor = _floor(data, case, entry)
            for runtime in entry["batches"]["4096"]:
                a = entry["batches"]["256"][runtime]
                b = entry["batches"]["4096"][runtime]
                q1, q3 = b["vs_jax_cpu_quartiles"]
                lines.append(
                    f"| {case} | {threads} | {runtime} | {a['obs_per_cpu_s']:,.0f} | "
                    f"{a['vs_jax_cpu']:.2f}x | {b['obs_per_cpu_s']:,.0f} | {b['vs_jax_cpu']:.2f}x "
                    f"({q1:.2f}-{q3:.2f}) | {b['obs_per_wall_s']:,.0f} | "
                    f"{b['obs_per_cpu_s'] / floor:.0%} |"
                )
    return lines


def _floor_table(data: dict) -> list[str]:
    run = data["runs"][0]
    lines = [
        "FLOPs per observation count every linear layer the policy holds (2 per "
        "multiply-add; an upper bound: SAC's log-std head is not run by the deterministic "
        "action). The matmul rate is numpy's float32 matmul at the policy's layer shapes and "
        "batch 4096 in the same pinned worker (best of many repeats, so the least disturbed "
        "by other load).",
        "",
        "| policy | FLOPs / obs | threads | matmul rate (GFLOP/s) | floor (obs/s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for case, by_threads in run["cases"].items():
        for threads, entry in by_threads.items():
            lines.append(
                f"| {case} | {data['cases'][case]['flops_per_obs']:,} | {threads} | "
                f"{entry['matmul_gflops']:.0f} | {_floor(data, case, entry):,.0f} |"
            )
    return lines


def _cpp_table(data: dict) -> list[str]:
    cpp = data.get("cpp")
    if not cpp:
        return ["C++ was not measured in this run (examples/cpp did not build)."]
    case = next(iter(data["cases"]))
    python = _cell(data["runs"][0], case, "1", "1")[ORT]
    python = {"median_us": python["wall_us"], "p99_us": python["p99_us"]}
    lines = [
        f"{case}, batch 1, one core, one ONNX Runtime thread; `examples/cpp/build/"
        "bench_latency` (ONNX Runtime 1.29 C++ API) on the `.onnx` this run exported, "
        "measured alone before the interleaved runs (so not interleaved with Python).",
        "",
        "| caller | median (µs) | p99 (µs) |",
        "|---|---:|---:|",
        f"| Python `session.run` (onnxruntime 1.32; run 1, wall, interleaved) | "
        f"{python['median_us']:.1f} | {python['p99_us']:.1f} |",
    ]
    for mode in cpp["modes"]:
        lines.append(f"| C++ `{mode['mode']}` | {mode['median_us']:.1f} | {mode['p99_us']:.1f} |")
    return lines


def _plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = HEADLINE if HEADLINE in data["cases"] else next(iter(data["cases"]))
    threads = list(data["runs"][0]["cases"][case])
    fig, axes = plt.subplots(1, len(threads), figsize=(11, 4.2), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        for i, run in enumerate(data["runs"]):
            entry = run["cases"][case][t]
            batches = sorted(entry["batches"], key=int)
            for j, runtime in enumerate(entry["batches"][batches[0]]):
                ax.plot(
                    [int(b) for b in batches],
                    [entry["batches"][b][runtime]["obs_per_cpu_s"] for b in batches],
                    "o-" if i == 0 else "x--",
                    color=f"C{j}",
                    label=f"{runtime} (run {i + 1})",
                )
        ax.axhline(_floor(data, case, data["runs"][0]["cases"][case][t]), color="grey", ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(f"{case}, {t} thread(s) (grey: compute floor)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("observations / CPU second")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(data: dict, folder: Path) -> None:
    (folder / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    data = json.loads(json.dumps(data))  # thread and batch keys as strings, as in the file
    _plot(data, folder / "throughput.png")
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    method = data["method"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {data['date']} (commit {data['commit']}), Python {data['machine']['python']}; "
        f"{versions}.",
        "",
        f"Command: `.venv/bin/python bench/run.py` (this file: `{data['command']}`). It exports "
        "every case once, then measures the whole suite twice, one full run after the "
        "other, and compares the runs.",
        "",
        "How a figure is measured: one worker process per run and thread count, pinned with "
        "`taskset` to one core (1 thread) or two (2 threads), every runtime's threads set to "
        "match (onnxruntime intra-op threads, TensorFlow intra/inter-op threads; XLA's own "
        "pool is bounded by the pinning). For each case and batch size the runtimes take "
        f"turns in {method['rounds']} interleaved rounds (JAX, onnxruntime `.onnx`, "
        "onnxruntime `.ort`, TensorFlow, then the reverse order, ...); in a round a runtime "
        "makes one untimed call and then a fixed number of timed calls (as many as take about "
        f"{method['round_seconds'] * 1000:.0f} ms, fixed per runtime after a warm-up). A "
        "round's figure is the median of its calls (in CPU time of the whole process, every "
        "thread, and in wall time; the clocks' own cost, about 1 µs, measured on an empty "
        "call and subtracted); a runtime's figure is the median over rounds; its speed vs "
        "JAX is the ratio of the two medians (> 1: faster than JAX), with the quartiles of "
        "the per-round ratios as the spread. Medians leave out the calls another process "
        "interrupted, and CPU time does not count the wait for the core, so the 1-thread "
        "figures hold on a busy machine; the 2-thread figures share the second core with "
        "everything else running and are the noisy ones. JAX runs the policy's own "
        "`__call__` and heads (`value` / `q_values`), vmapped and jitted, on device arrays; "
        "onnxruntime and TensorFlow are called from Python with numpy arrays. Inputs are "
        "masked where the policy reads a mask. The policies are `tests/kinds.py`'s `KINDS` "
        "at its `BENCH` size (27-dim observation, hidden width 64; actor-critic at its "
        "default widths) plus a large actor-critic (widths 256, depth 3).",
        "",
        "## What the machine was doing",
        "",
        *_machine(data),
        "",
        "## Targets, per kind",
        "",
        *_targets(data),
        "",
        "## Agreement between the runs",
        "",
        *_agreement(data),
        "",
        "## Where onnxruntime's time goes at batch 4096",
        "",
        *_profile(data),
        "",
        "## Export",
        "",
        *_export_table(data),
        "",
        "## Latency at batch 1",
        "",
        *_latency_table(data),
        "",
        "## Latency from C++",
        "",
        *_cpp_table(data),
        "",
        "## Throughput",
        "",
        "![throughput vs batch size](throughput.png)",
        "",
        *_throughput_table(data),
        "",
        "## Compute floor",
        "",
        *_floor_table(data),
        "",
    ]
    (folder / "RESULTS.md").write_text("\n".join(lines))

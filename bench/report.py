"""Turn the benchmark's measurements into RESULTS.md, results.json and throughput.png."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE = "jax (jit)"


def _ratio(data: dict, runtime: str, batch: int) -> float:
    """Speed of `runtime` relative to jitted JAX: > 1 means faster than JAX."""
    return data[REFERENCE][str(batch)]["median_us"] / data[runtime][str(batch)]["median_us"]


def _floor(entry: dict, run: dict) -> float:
    """Observations per second if every FLOP ran at the measured matmul rate."""
    return run["matmul_gflops"] * 1e9 / entry["flops_per_obs"]


def _export_table(cases: dict) -> list[str]:
    lines = [
        "| policy | format | wall (s) | TensorFlow imported | size (KiB) |",
        "|---|---|---:|---|---:|",
    ]
    for name, entry in cases.items():
        for fmt, e in entry["exports"].items():
            tf = "yes" if e["tensorflow_imported"] else "no"
            lines.append(f"| {name} | {fmt} | {e['wall_s']:.2f} | {tf} | {e['bytes'] / 1024:.0f} |")
    lines += ["", "| policy | ONNX nodes | by op type |", "|---|---:|---|"]
    for name, entry in cases.items():
        ops = entry["exports"]["onnx"]["ops"]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
        lines.append(f"| {name} | {sum(ops.values())} | {detail} |")
    return lines


def _latency_table(cases: dict) -> list[str]:
    lines = [
        "| policy | threads | runtime | median (µs) | p99 (µs) | speed vs JAX |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, entry in cases.items():
        for threads, run in entry["runs"].items():
            for runtime in (k for k in run if k != "matmul_gflops"):
                r = run[runtime]["1"]
                lines.append(
                    f"| {name} | {threads} | {runtime} | {r['median_us']:.1f} | {r['p99_us']:.1f}"
                    f" | {_ratio(run, runtime, 1):.2f}x |"
                )
    return lines


def _throughput_table(cases: dict) -> list[str]:
    lines = [
        "| policy | threads | runtime | batch 256 (obs/s) | vs JAX | batch 4096 (obs/s) | vs JAX"
        " | of floor |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in cases.items():
        for threads, run in entry["runs"].items():
            floor = _floor(entry, run)
            for runtime in (k for k in run if k != "matmul_gflops"):
                a, b = run[runtime]["256"], run[runtime]["4096"]
                lines.append(
                    f"| {name} | {threads} | {runtime} | {a['obs_per_s']:,.0f} | "
                    f"{_ratio(run, runtime, 256):.2f}x | {b['obs_per_s']:,.0f} | "
                    f"{_ratio(run, runtime, 4096):.2f}x | {b['obs_per_s'] / floor:.0%} |"
                )
    return lines


def _floor_table(cases: dict) -> list[str]:
    lines = [
        "| policy | FLOPs / obs | threads | matmul rate (GFLOP/s) | floor (obs/s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in cases.items():
        for threads, run in entry["runs"].items():
            lines.append(
                f"| {name} | {entry['flops_per_obs']:,} | {threads} | "
                f"{run['matmul_gflops']:.0f} | {_floor(entry, run):,.0f} |"
            )
    return lines


def _targets(cases: dict) -> list[str]:
    entry = cases["discrete-default"]
    lines = []
    for threads, run in entry["runs"].items():
        b1 = _ratio(run, "onnxruntime .onnx", 1)
        big = _ratio(run, "onnxruntime .onnx", 4096)
        lines.append(
            f"- {threads} thread(s), default Discrete policy: onnxruntime vs jitted JAX "
            f"{b1:.2f}x at batch 1 (target >= 1: {'met' if b1 >= 1 else 'missed'}), "
            f"{big:.2f}x at batch 4096 (target >= 1: {'met' if big >= 1 else 'missed'})."
        )
    onnx = entry["exports"]["onnx"]
    lines.append(
        f"- `export-policy --format onnx` on the default policy: {onnx['wall_s']:.2f} s wall "
        f"(target < 5 s: {'met' if onnx['wall_s'] < 5 else 'missed'}), TensorFlow "
        f"{'imported' if onnx['tensorflow_imported'] else 'not imported'}."
    )
    return lines


def _cpp_table(data: dict, cases: dict) -> list[str]:
    cpp = data.get("cpp")
    if not cpp:
        return ["C++ was not measured in this run (examples/cpp did not build)."]
    python = cases["discrete-default"]["runs"]["1"]["onnxruntime .onnx"]["1"]
    lines = [
        "Default Discrete policy, batch 1, one core, one ONNX Runtime thread; `examples/cpp/"
        "build/bench_latency` (ONNX Runtime 1.29 C++ API) on the `.onnx` this run exported.",
        "",
        "| caller | median (µs) | p99 (µs) |",
        "|---|---:|---:|",
        f"| Python `session.run` (onnxruntime 1.32) | {python['median_us']:.1f} | "
        f"{python['p99_us']:.1f} |",
    ]
    for mode in cpp["modes"]:
        lines.append(f"| C++ `{mode['mode']}` | {mode['median_us']:.1f} | {mode['p99_us']:.1f} |")
    return lines


def _plot(cases: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entry = cases["discrete-default"]
    fig, axes = plt.subplots(1, len(entry["runs"]), figsize=(11, 4.2), sharey=True)
    for ax, (threads, run) in zip(axes, entry["runs"].items(), strict=True):
        for runtime in (k for k in run if k != "matmul_gflops"):
            batches = sorted(int(b) for b in run[runtime])
            ax.plot(
                batches, [run[runtime][str(b)]["obs_per_s"] for b in batches], "o-", label=runtime
            )
        ax.axhline(_floor(entry, run), color="grey", linestyle="--", label="compute limit")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(f"default Discrete policy, {threads} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("observations / s")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(data: dict, folder: Path) -> None:
    cases = json.loads(json.dumps(data["cases"]))  # thread and batch keys as strings
    (folder / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    _plot(cases, folder / "throughput.png")
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    machine = data["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {data['date']} on {machine['cpu']} ({machine['cores']} cores), Python "
        f"{machine['python']}; {versions}.",
        "",
        "Command: `.venv/bin/python bench/run.py`. Ratios are against jitted JAX measured in "
        "the same run (> 1: faster than JAX). Each timing ran pinned with `taskset` to one "
        "core (1 thread) or two (2 threads), every runtime's threads set to match "
        "(onnxruntime intra-op threads, TensorFlow intra/inter-op threads; XLA's own pool is "
        "bounded by the pinning). JAX runs the policy's own `__call__` and `value`, vmapped and "
        "jitted, on device arrays; onnxruntime and TensorFlow are called from Python with "
        "numpy arrays. Inputs are masked where the action space is maskable.",
        "",
        "## Targets",
        "",
        *_targets(cases),
        "",
        "## Export",
        "",
        *_export_table(cases),
        "",
        "## Latency at batch 1",
        "",
        *_latency_table(cases),
        "",
        "## Latency from C++",
        "",
        *_cpp_table(data, cases),
        "",
        "## Throughput",
        "",
        "![throughput vs batch size](throughput.png)",
        "",
        *_throughput_table(cases),
        "",
        "## Compute floor",
        "",
        "FLOPs per observation count every linear layer the JAX policy runs for the action "
        "and the value (2 per multiply-add). The matmul rate is numpy's float32 matmul at "
        "the policy's layer shapes and batch 4096 in the same pinned worker (best of many "
        "repeats); the floor is "
        "that rate divided by the FLOPs per observation. (The exported ONNX folds the action "
        "head's last two affine layers, so it does slightly less work than counted here.)",
        "",
        *_floor_table(cases),
        "",
    ]
    (folder / "RESULTS.md").write_text("\n".join(lines))

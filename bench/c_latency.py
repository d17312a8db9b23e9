"""The c format's per-call latency at batch 1 beside onnxruntime from Python, as ratios.

One command, from the repository root (about a minute on two shared cores):

    .venv/bin/python bench/c_latency.py [--rounds N]

Exports each case (policy kinds of `tests/kinds.py` at the bench size, 27-dim observation,
and the large actor-critic of `bench/run.py`) to `.onnx` and `.c`, then re-runs itself
pinned to one core (`taskset`, every runtime at one thread) and times, in interleaved
rounds (`run.interleaved`: same clocks, medians and reverse-order rounds as bench/run.py):

- `c`: `<prefix>_run` compiled at -O2 (the check's flags), called 1000 times per timed call
  from a C loop in another translation unit (so the compiler cannot drop calls); per call.
- `c via ctypes`: one `<prefix>_run` per Python call (what the runtime `c` does).
- `onnxruntime (Python)`: `InferenceSession.run` on the `.onnx`, batch 1, one thread.
- `onnxruntime C++`: `Ort::Session::Run` (onnxruntime 1.29, `bench/ort_loop.cpp`, tensors made
  once over fixed buffers), 1000 runs per timed call, when `$ONNXRUNTIME_ROOT` or
  examples/cpp/prepare_onnxruntime.sh provides the C++ library (else left out, and said).

The reference is onnxruntime measured in the same rounds: each figure is a ratio to it,
per round, and the median of rounds. GFLOP/s: the policy's dense-layer FLOPs per call over
the C time, against numpy's float32 matmul rate at the policy's layer shapes (batch 4096)
measured in the same run. Times are CPU time of this process (see `run.interleaved`).
Prints a table and writes bench/c_latency.json.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import run

CASES = ("actor_critic_discrete", "actor_critic_box", "q", run.LARGE)
LOOP = 1000
REFERENCE = "onnxruntime (Python)"
C, CTYPES, FAST = "c", "c via ctypes", "c -O3 -march=native"
ORT_CPP = "onnxruntime C++"
LOOPED = (C, FAST, ORT_CPP)  # timed as LOOP calls per timed call
# What a user may ship instead of the checked -O2: -O3 for this CPU, float semantics kept.
# Not -ffast-math / -fassociative-math: they vectorise the dot products (measured 7x faster)
# but reassociate the arithmetic mask, `clip(logit) + penalty` with a penalty near -FLT_MAX,
# into sums that lose the logits: 31% of the default policy's actions stayed JAX's.
# `agreement` compares this build's outputs with the checked one's on 4096 rows.
FAST_FLAGS = ("-O3", "-march=native")


def _loop_library(c_path: Path, prefix: str, arguments: int, flags: tuple[str, ...]) -> Path:
    """A shared library of the policy and `bench_loop(n, args)`, compiled separately."""
    from policyport.formats._c_runtime import C_FLAGS, compiler

    folder = c_path.parent / ("fast" if "-O3" in flags else "checked")
    folder.mkdir(exist_ok=True)
    for header in (c_path, c_path.with_suffix(".h")):
        (folder / header.name).write_bytes(header.read_bytes())
    args = ", ".join(f"a[{i}]" for i in range(arguments))
    (folder / "loop.c").write_text(
        f'#include "{prefix}.h"\n'
        "int bench_loop(int n, void *const *a) {\n"
        f"    int i, r = 0;\n    for (i = 0; i < n; ++i) r |= {prefix}_run({args});\n"
        "    return r;\n}\n"
    )
    cc = compiler()
    for name in (c_path.name, "loop.c"):
        subprocess.run(
            [cc, *C_FLAGS, *flags, "-fPIC", "-c", name, "-o", f"{name}.o"], cwd=folder, check=True
        )
    library = folder / "libbench.so"
    subprocess.run(
        [cc, "-shared", f"{c_path.name}.o", "loop.c.o", "-o", str(library), "-lm"],
        cwd=folder,
        check=True,
    )
    return library


@functools.cache
def _library(c_path: Path, arrays: int, flags: tuple[str, ...]) -> ctypes.CDLL:
    """Built once per flags: rebuilding a loaded library in place would corrupt it."""
    return ctypes.CDLL(str(_loop_library(c_path, c_path.stem, arrays, flags)))


def _c_calls(c_path: Path, inputs: dict, outputs: list) -> dict[str, run.Call]:
    prefix = c_path.stem
    arrays = [*(inputs[k] for k in inputs), *outputs]
    pointers = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
    checked, fast = (
        _library(c_path, len(arrays), ("-O2",)),
        _library(c_path, len(arrays), FAST_FLAGS),
    )
    single = getattr(checked, f"{prefix}_run")
    single.argtypes = [ctypes.c_void_p] * len(arrays)
    addresses = [a.ctypes.data for a in arrays]
    return {
        C: lambda: checked.bench_loop(LOOP, pointers),
        FAST: lambda: fast.bench_loop(LOOP, pointers),
        CTYPES: lambda: single(*addresses),
    }


def agreement(c_path: Path, policy: Any) -> dict[str, float]:
    """The fast-flags build against the checked one on 4096 rows: how many actions equal,
    and the largest difference of any float output."""
    import numpy as np

    from policyport.formats._c_runtime import _row_pointers

    inputs = run._inputs(policy, 4096)
    arrays = [np.ascontiguousarray(v) for v in inputs.values()]
    got = {}
    template = _template(c_path, policy)
    for flags in (("-O2",), FAST_FLAGS):
        library = _library(c_path, len(arrays) + len(template), flags)
        function = getattr(library, f"{c_path.stem}_run")
        results = [np.zeros((4096, *a.shape[1:]), a.dtype) for a in template]
        pointers = _row_pointers([*arrays, *results])
        function.argtypes = [ctypes.c_void_p] * len(pointers)
        for row in range(4096):
            function(*[address + row * step for address, step in pointers])
        got[flags] = results
    checked, fast = got[("-O2",)], got[FAST_FLAGS]
    return {
        "actions_equal": float(np.mean(np.all((checked[0] == fast[0]).reshape(4096, -1), 1))),
        "max_abs_diff": max(
            float(np.max(np.abs(a - b))) for a, b in zip(checked, fast, strict=True)
        ),
    }


def _template(c_path: Path, policy: Any) -> list:
    """One row of each output (dtype and per-row shape), from onnxruntime at batch 1."""
    session = run._ort_session(str(c_path.parents[1] / f"{c_path.stem}.onnx"), 1)
    return session.run(None, run._inputs(policy, 1))


def onnxruntime_root() -> Path | None:
    """onnxruntime's C++ release (include/, lib/): $ONNXRUNTIME_ROOT, else the one
    examples/cpp/prepare_onnxruntime.sh prepares (cached after its first run)."""
    import os

    if os.environ.get("ONNXRUNTIME_ROOT"):
        return Path(os.environ["ONNXRUNTIME_ROOT"])
    script = run.ROOT / "examples" / "cpp" / "prepare_onnxruntime.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def _ort_cpp_library(folder: Path) -> Path | None:
    root = onnxruntime_root()
    if root is None:
        return None
    library = folder / "libort_loop.so"
    command = ["g++", "-std=c++17", "-O2", "-shared", "-fPIC", str(run.HERE / "ort_loop.cpp")]
    command += [f"-I{root}/include", f"-L{root}/lib", "-lonnxruntime", f"-Wl,-rpath,{root}/lib"]
    done = subprocess.run([*command, "-o", str(library)], capture_output=True, text=True)
    return library if done.returncode == 0 else None


def _ort_cpp_call(library: Path, onnx_path: Path, inputs: dict, outputs: list) -> run.Call:
    import numpy as np

    buffers = [np.array(a) for a in (*inputs.values(), *outputs)]  # its own copies
    lib = ctypes.CDLL(str(library))
    lib.ort_open.restype = ctypes.c_void_p
    lib.ort_loop.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pointers = (ctypes.c_void_p * len(buffers))(*(b.ctypes.data for b in buffers))
    handle = lib.ort_open(str(onnx_path).encode(), pointers)
    return lambda: (buffers, lib.ort_loop(handle, LOOP))[1]


def measure(case: str, folder: Path, rounds: int) -> dict[str, Any]:
    """One case, in this (pinned) process: per-call times, ratios, GFLOP/s."""
    import numpy as np

    policy = run.make_policy(case)
    inputs = {k: np.ascontiguousarray(v) for k, v in run._inputs(policy, 1).items()}
    session = run._ort_session(str(folder / f"{case}.onnx"), 1)
    results = session.run(None, inputs)
    outputs = [np.zeros_like(r[0]) if r.ndim > 1 else np.zeros(1, r.dtype) for r in results]
    calls = {REFERENCE: lambda: session.run(None, inputs)}
    calls |= _c_calls(folder / case / f"{case}.c", inputs, outputs)
    if (folder / "libort_loop.so").exists():
        library = folder / "libort_loop.so"
        calls[ORT_CPP] = _ort_cpp_call(library, folder / f"{case}.onnx", inputs, outputs)
    timed = run.interleaved(calls, rounds)
    for name in (n for n in LOOPED if n in timed):
        for key in ("cpu_rounds_us", "wall_rounds_us", "cpu_us", "wall_us", "p99_us"):
            value = timed[name][key]
            timed[name][key] = (
                [v / LOOP for v in value] if isinstance(value, list) else value / LOOP
            )
    reference = timed[REFERENCE]["cpu_rounds_us"]
    for figures in timed.values():
        ratios = [r / t for r, t in zip(reference, figures["cpu_rounds_us"], strict=True)]
        figures["speedup_vs_reference"] = run._median(ratios)
    if ORT_CPP in timed:
        cpp = timed[ORT_CPP]["cpu_rounds_us"]
        for name in (C, FAST):
            ratios = [r / t for r, t in zip(cpp, timed[name]["cpu_rounds_us"], strict=True)]
            timed[name]["speedup_vs_onnxruntime_cpp"] = run._median(ratios)
    flops = run.flops_per_observation(policy)
    return {
        "case": case,
        "fast_flags": " ".join(FAST_FLAGS),
        "fast_vs_checked": agreement(folder / case / f"{case}.c", policy),
        "flops_per_call": flops,
        "c_gflops": flops / (timed[C]["cpu_us"] * 1e-6) / 1e9,
        "matmul_peak_gflops": run.matmul_rate(policy),
        "runtimes": timed,
    }


def export(folder: Path) -> None:
    import policyport

    for case in CASES:
        policy = run.make_policy(case)
        policyport.export(policy, "onnx", folder / f"{case}.onnx")
        (folder / case).mkdir()
        policyport.export(policy, "c", folder / case / f"{case}.c")


def table(results: list[dict]) -> str:
    """us a call (CPU time); in brackets, the speedup over onnxruntime from Python, then
    over onnxruntime C++ when it was measured."""
    lines = [
        "| case | onnxruntime Python us | onnxruntime C++ us | c -O2 us | c -O3 -march=native us "
        "| c via ctypes us | c GFLOP/s | matmul rate GFLOP/s | -O3 actions = -O2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(t: dict, name: str) -> str:
        if name not in t:
            return "not measured"
        figures = t[name]
        speed = [f"{figures['speedup_vs_reference']:.1f}x"]
        if "speedup_vs_onnxruntime_cpp" in figures:
            speed.append(f"{figures['speedup_vs_onnxruntime_cpp']:.1f}x")
        return f"{figures['cpu_us']:.2f}" + (f" ({', '.join(speed)})" if name in (C, FAST) else "")

    for r in results:
        t = r["runtimes"]
        lines.append(
            f"| {r['case']} | {t[REFERENCE]['cpu_us']:.2f} | {cell(t, ORT_CPP)} | {cell(t, C)} "
            f"| {cell(t, FAST)} | {t[CTYPES]['cpu_us']:.2f} | {r['c_gflops']:.1f} "
            f"| {r['matmul_peak_gflops']:.1f} | {r['fast_vs_checked']['actions_equal']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=run.ROUNDS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder = Path(args.worker)
        print(json.dumps([measure(case, folder, args.rounds) for case in CASES]))
        return
    with tempfile.TemporaryDirectory(prefix="policyport-bench-c-") as tmp:
        export(Path(tmp))
        if _ort_cpp_library(Path(tmp)) is None:
            print("onnxruntime C++ not available: its column is left out", file=sys.stderr)
        command = [*run._pinned(1), sys.executable, __file__, "--worker", tmp]
        done = subprocess.run(
            [*command, "--rounds", str(args.rounds)],
            env=run._worker_env(1),
            capture_output=True,
            text=True,
        )
        results = run._last_json(done, "the c latency worker")
    (run.HERE / "c_latency.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()

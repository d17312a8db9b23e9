"""LiteRT (.tflite) beside onnxruntime (.onnx) and jitted JAX, as ratios in interleaved rounds.

One command, from the repository root (~3 minutes on two shared cores):

    .venv/bin/python bench/litert.py

Exports the four actor-critic action-space kinds of `tests/kinds.py` at the bench size
(27-dim observation, masked where maskable) to `.onnx` and `.tflite`, then, in one worker
pinned to one core with every runtime at one thread, times batch 1 and 4096 with
`run.interleaved` (JAX, onnxruntime, LiteRT, then the reverse order, ...): the same
rounds, clocks and ratios as `bench/run.py`. LiteRT is timed two ways: through its
signature runner (what users call; it re-sizes and re-allocates the inputs every call)
and through `set_tensor` / `invoke` / `get_tensor` on an interpreter sized once.
Prints a table and writes bench/litert.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import run

CASES = (
    "actor_critic_discrete",
    "actor_critic_box",
    "actor_critic_multidiscrete",
    "actor_critic_multibinary",
)
BATCHES = (1, 4096)
SIGNATURE = "litert signature runner"
INVOKE = "litert invoke"


def _litert_calls(path: str, inputs: dict) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
    fixed = Interpreter(model_path=path, num_threads=1)
    details = fixed.get_signature_runner().get_input_details()
    for name, array in inputs.items():
        fixed.resize_tensor_input(details[name]["index"], array.shape)
    fixed.allocate_tensors()
    outputs = [o["index"] for o in fixed.get_signature_runner().get_output_details().values()]

    def invoke():
        for name, array in inputs.items():
            fixed.set_tensor(details[name]["index"], array)
        fixed.invoke()
        return [fixed.get_tensor(i) for i in outputs]

    return {SIGNATURE: lambda: runner(**inputs), INVOKE: invoke}


def worker(artifacts: dict[str, dict[str, str]], rounds: int) -> dict:
    results = {}
    for case, paths in artifacts.items():
        policy = run.make_policy(case)
        jax_runner = run._runners(policy, {"onnx": paths["onnx"], "ort": paths["onnx"]}, 1)
        results[case] = {}
        for batch in BATCHES:
            inputs = run._inputs(policy, batch)
            calls = {
                run.REFERENCE: jax_runner[run.REFERENCE](inputs),
                "onnxruntime .onnx": jax_runner["onnxruntime .onnx"](inputs),
                **_litert_calls(paths["tflite"], inputs),
            }
            results[case][batch] = run._with_ratios(run.interleaved(calls, rounds), batch)
    return results


def export(folder: Path) -> dict[str, dict[str, str]]:
    import policyport

    artifacts = {}
    for case in CASES:
        policy = run.make_policy(case)
        artifacts[case] = {}
        for format in ("onnx", "tflite"):
            [result] = policyport.export(policy, format, folder / f"{case}.{format}", force=True)
            if not result.report.passed:
                raise RuntimeError(f"{case} {format}: parity failed")
            artifacts[case][format] = str(result.paths[0])
    return artifacts


def table(results: dict) -> str:
    names = [run.REFERENCE, "onnxruntime .onnx", SIGNATURE, INVOKE]
    lines = [
        "| case | batch | " + " | ".join(f"{n} (x JAX, CPU)" for n in names[1:]) + " | JAX us |",
        "|---|---|" + "---|" * (len(names) - 1) + "---|",
    ]
    for case, batches in results.items():
        for batch, entries in batches.items():
            ratios = " | ".join(f"{entries[n]['vs_jax_cpu']:.2f}" for n in names[1:])
            lines.append(f"| {case} | {batch} | {ratios} | {entries[names[0]]['cpu_us']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=run.ROUNDS)
    parser.add_argument("--output", type=Path, default=run.HERE / "litert.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # artifacts JSON, in the pinned run
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.rounds)))
        return
    with tempfile.TemporaryDirectory(prefix="policyport-litert-bench-") as tmp:
        artifacts = export(Path(tmp))
        command = [*run._pinned(1), sys.executable, __file__, "--worker", json.dumps(artifacts)]
        command += ["--rounds", str(args.rounds)]
        done = subprocess.run(
            command, env=run._worker_env(1), capture_output=True, text=True, check=False
        )
        results = run._last_json(done, "the LiteRT bench worker")
    args.output.write_text(
        json.dumps({"machine_load": run.machine_load(), "results": results}, indent=1) + "\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()

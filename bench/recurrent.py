"""A recurrent policy's per-step cost: onnxruntime against a jitted JAX step, one core.

One command, from the repository root (about a minute):

    .venv/bin/python bench/recurrent.py [--rounds N] [--runs N]

Exports two GRU actor-critics (contract 4: `observation`, `state`, `reset` in; `action`,
`value`, `next_state` out) to ONNX, then runs the measurement `--runs` times (default 2),
each in a fresh worker process pinned to one core (`taskset -c 0`, onnxruntime at one
thread, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset as bench/run.py does):

- `example`: the trained policy of examples/recurrent (4-dim observation, GRU of 32);
- `gru128`: the same class on the bench's 27-dim observation with 9 actions and a GRU of
  128 (PureJaxRL's `ppo_rnn.py` width).

Each step computes what the artifact computes: `state = where(reset, initial, state)`, then
the action, the value and the next state. The reference is that step in JAX, the policy
closed over, `jax.jit(jax.vmap(...))`, called on device arrays. Both are timed at batch 1
and 4096 in interleaved rounds (`run.interleaved`: JAX, onnxruntime, then the reverse order;
CPU time of the process, medians over calls and rounds); the ratio is JAX's time over
onnxruntime's (above 1: onnxruntime is faster). The runs must agree within 10%. Prints a
table and writes bench/recurrent.json; bench/RECURRENT.md reports a run.
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

HERE = Path(__file__).resolve().parent
EXAMPLE = run.ROOT / "examples" / "recurrent"
BATCHES = (1, 4096)
CASES = ("example", "gru128")
ONNXRUNTIME = "onnxruntime"
AGREEMENT = 0.10  # the largest relative difference between runs' ratios we accept


def make_policy(case: str) -> Any:
    """The case's policy (the example's class; its weights trained or random)."""
    import jax
    import numpy as np

    sys.path.insert(0, str(EXAMPLE))
    from policies import RecurrentActorCritic, load_recurrent

    from policyport.policy import Box, Discrete

    if case == "example":
        return load_recurrent(EXAMPLE / "policy.eqx", num_bits=2)
    ones = np.ones(27, np.float32)
    return RecurrentActorCritic(Box(-ones, ones), Discrete(9), 128, key=jax.random.key(0))


def inputs(policy: Any, batch: int) -> dict[str, Any]:
    """Observations in the space, states uniform in [-1, 1], a quarter of the rows reset."""
    import numpy as np

    rng = np.random.default_rng(batch)
    observation = policy.observation_space.sample_numpy(rng, batch)
    width = policy.cell.hidden_size
    return {
        "observation": observation.astype(np.float32),
        "state": rng.uniform(-1, 1, (batch, width)).astype(np.float32),
        "reset": rng.random(batch) < 0.25,
    }


def jax_step(policy: Any) -> Any:
    """The contract's step in JAX: reset rows from the initial state; action, value, state."""
    import jax
    import jax.numpy as jnp

    initial = policy.reset(key=jax.random.key(0))

    def row(observation, state, reset):
        state = jnp.where(reset, initial, state)
        next_state, action = policy(state, observation)
        _, value = policy.value(state, observation)
        return action, value, next_state

    return jax.jit(jax.vmap(row))


def worker(folder: Path, rounds: int) -> dict[str, Any]:
    """One run, in this (pinned) process: per case and batch, both times and the ratio."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    results: dict[str, Any] = {}
    for case in CASES:
        policy = make_policy(case)
        step = jax_step(policy)
        session = run._ort_session(str(folder / f"{case}.onnx"), 1)
        for batch in BATCHES:
            feeds = inputs(policy, batch)
            arrays = [jnp.asarray(feeds[name]) for name in ("observation", "state", "reset")]
            want = jax.block_until_ready(step(*arrays))
            got = session.run(["action", "value", "next_state"], feeds)
            if not np.array_equal(np.asarray(want[0]), got[0]):  # the same work is timed
                raise SystemExit(f"{case} at batch {batch}: onnxruntime's actions differ")
            calls = {
                run.REFERENCE: lambda s=step, a=arrays: jax.block_until_ready(s(*a)),
                ONNXRUNTIME: lambda f=feeds, s=session: s.run(None, f),
            }
            timed = run._with_ratios(run.interleaved(calls, rounds), batch)
            results[f"{case}/{batch}"] = {
                "jax_us": timed[run.REFERENCE]["cpu_us"],
                "onnxruntime_us": timed[ONNXRUNTIME]["cpu_us"],
                "ratio": timed[ONNXRUNTIME]["vs_jax_cpu"],
                "ratio_quartiles": timed[ONNXRUNTIME]["vs_jax_cpu_quartiles"],
            }
    return results


def export(folder: Path) -> dict[str, Any]:
    """Each case's ONNX (parity checked by the export, sequence parity included)."""
    import policyport

    out = {}
    for case in CASES:
        [result] = policyport.export(make_policy(case), "onnx", folder / f"{case}.onnx")
        out[case] = {"passed": result.report.passed, "notes": result.report.notes[:1]}
    return out


def table(runs: list[dict[str, Any]]) -> str:
    header = "| case / batch | " + " | ".join(
        f"run {i + 1}: JAX us, ORT us, JAX/ORT" for i in range(len(runs))
    )
    lines = [header + " | runs differ |", "|---" * (len(runs) + 2) + "|"]
    for key in runs[0]:
        ratios = [r[key]["ratio"] for r in runs]
        cells = [
            f"{r[key]['jax_us']:.1f}, {r[key]['onnxruntime_us']:.1f}, **{r[key]['ratio']:.2f}x**"
            for r in runs
        ]
        spread = (max(ratios) - min(ratios)) / min(ratios)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {spread:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=run.ROUNDS)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rounds)))
        return
    folder = Path(tempfile.mkdtemp(prefix="policyport-recurrent-bench-"))
    exported = export(folder)
    runs = []
    for _ in range(args.runs):
        command = [*run._pinned(1), sys.executable, __file__, "--worker", str(folder)]
        done = subprocess.run(
            [*command, "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            env=run._worker_env(1),
        )
        runs.append(run._last_json(done, "the recurrent bench worker"))
    worst = max(
        (max(r[k]["ratio"] for r in runs) - min(r[k]["ratio"] for r in runs))
        / min(r[k]["ratio"] for r in runs)
        for k in runs[0]
    )
    record = {
        "command": "python bench/recurrent.py"
        + (f" --rounds {args.rounds}" * (args.rounds != run.ROUNDS)),
        "when": run._now(),
        "commit": run._commit(),
        "cpu": run._cpu_name(),
        "load": run.machine_load(),
        "versions": run._versions(),
        "exports": exported,
        "runs": runs,
        "worst_run_disagreement": worst,
        "runs_agree": worst <= AGREEMENT,
    }
    (HERE / "recurrent.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table(runs))
    print(f"worst disagreement between runs: {worst:.1%} (limit {AGREEMENT:.0%})")


if __name__ == "__main__":
    main()

"""Running CLI cases that must be refused in a child process: its exit code, message, time
and peak memory per case. A child, because what is tested is that nothing aborts the
process (Orbax's `std::bad_alloc` was a SIGABRT) and nothing allocates gigabytes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Runs each case with the CLI's own `run`, one JSON line per case; the peak RSS is the
# process's so far (it only grows), so a bound on the last bounds every case.
_CHILD = """
import contextlib, io, json, resource, sys, time
from policyport._cli import run


def peak_mb():
    # VmHWM is this process's own peak; ru_maxrss also counts the parent's from before
    # exec (a pytest that has exported models already holds a GB).
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


for name, argv in json.loads(sys.argv[1]):
    print(json.dumps({"started": name}), flush=True)
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = run(argv)
    print(json.dumps({
        "name": name, "code": code, "seconds": time.perf_counter() - start,
        "stderr": err.getvalue()[-3000:],
        "peak_mb": peak_mb(),
    }), flush=True)
"""
# A refusal reads the config and Orbax's metadata, no weights: the process with JAX, Brax
# and Orbax imported peaks near 500 MB; the failures this guards against took gigabytes.
PEAK_MB = 1000


@dataclass(frozen=True)
class Outcome:
    code: int
    seconds: float
    stderr: str
    peak_mb: float


def run_cases(
    cases: dict[str, list[str]], timeout: float = 300, cwd: Path | None = None
) -> dict[str, Outcome]:
    """Each case's outcome; fails naming the case the child died or hung in."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(list(cases.items()))],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
        stdout, returncode = result.stdout, result.returncode
    except subprocess.TimeoutExpired as e:
        stdout, returncode = (e.stdout or b"").decode(), "timeout"
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    outcomes = {
        line["name"]: Outcome(line["code"], line["seconds"], line["stderr"], line["peak_mb"])
        for line in lines
        if "name" in line
    }
    started = [line["started"] for line in lines if "started" in line]
    if len(outcomes) < len(cases):
        raise AssertionError(
            f"the child ended ({returncode}) inside case {started[-1] if started else None!r}"
            f"; finished: {sorted(outcomes)}"
        )
    return outcomes


def assert_refused(
    outcomes: dict[str, Outcome], matches: dict[str, str], advice: str, output: Path
) -> None:
    """Every case exited 2 with its message (`matches[name]`, a regex) and the `advice`
    regex, within PEAK_MB, leaving `output` unwritten; prints each case's time."""
    for name, match in matches.items():
        outcome = outcomes[name]
        assert outcome.code == 2, (name, outcome.stderr)
        assert re.search(match, outcome.stderr), (name, outcome.stderr)
        assert re.search(advice, outcome.stderr, re.IGNORECASE), (name, outcome.stderr)
    peak = max(o.peak_mb for o in outcomes.values())
    assert peak < PEAK_MB, f"the refusals peaked at {peak:.0f} MB"
    assert not output.exists()
    for name, outcome in outcomes.items():  # the first also imports what it needs
        print(f"{name}: {outcome.seconds:.2f} s")
    print(f"{len(matches)} refusals, peak {peak:.0f} MB")

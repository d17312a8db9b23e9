"""Hostile artifacts through every consumer: C++ (AddressSanitizer + UBSan), Node.js, the page.

Every mutant of tests/hostile_artifacts.py is run through
- the C++ wrapper built with AddressSanitizer and UndefinedBehaviorSanitizer
  (`build.sh --sanitize`): `batch_run --sample 1 MODEL OBS MASK`, which loads the file, checks
  it, draws noise and runs it;
- Node.js: `run_policy.mjs batch MODEL ... --sample 1`;
- the web page's reader in headless Chromium (inspect.html: Policy.load with onnxruntime-web,
  then the entries resolved as app.mjs resolves them), all mutants in one page.
Each must give the mutant's verdict (exit 0, or exit 2 with a short message; for the page,
accepted or an error), the same in all three, with no crash, no sanitizer report and no hang.

And the metadata reader itself (read_onnx_metadata + describe_artifact, what Policy uses) is
fuzzed with libFuzzer for a fixed budget, from the real metadata and the corpus.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

import policyport
from conftest import make_policy
from hostile_artifacts import BASE_NAME, MAX_MESSAGE_BYTES, MUTANTS, write_corpus
from test_node import NODE_EXAMPLE, ROOT, npm_ci
from test_web import WEB_EXAMPLE, drive

CPP = ROOT / "examples" / "cpp"
# A refusal is a few checks over a few megabytes at most: far below this even under ASan.
# (Loading 20,000 metadata keys once took 15-19 s; 100,000 never finished.)
SECONDS_PER_RUN = 10
FUZZ_SECONDS = 30
SANITIZER_REPORT = re.compile(r"Sanitizer|runtime error:")


@dataclass(frozen=True)
class Run:
    code: int | None  # None: killed after the time limit (a hang)
    stdout: str
    stderr: str
    seconds: float

    @property
    def accepted(self) -> bool:
        return self.code == 0


def timed(args: list[str], env: dict[str, str] | None = None) -> Run:
    started = time.perf_counter()
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, errors="replace", env=env, timeout=60
        )
    except subprocess.TimeoutExpired as timeout:
        return Run(None, "", str(timeout.stderr or ""), time.perf_counter() - started)
    return Run(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The base sample entry (and its default entry beside it), every mutant, and input files
    for the base's 6 observation values and 9 mask values (2 rows)."""
    folder = tmp_path_factory.mktemp("hostile")
    policy = make_policy("MultiDiscrete", seed=3)
    policyport.export(policy, "onnx", folder / "base.onnx", check=False, force=True, sample=True)
    paths = write_corpus(folder / BASE_NAME, folder / "corpus")
    np.zeros((2, 6), "<f4").tofile(folder / "obs.f32")
    np.ones((2, 9), np.uint8).tofile(folder / "mask.u8")
    return paths


def inputs(corpus: dict[str, Path]) -> tuple[Path, Path]:
    folder = next(iter(corpus.values())).parent.parent
    return folder / "obs.f32", folder / "mask.u8"


# ---- the three consumers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpp_runs(corpus) -> dict[str, Run]:
    done = subprocess.run(
        ["nice", "bash", str(CPP / "build.sh"), "--sanitize"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"build.sh --sanitize failed:\n{done.stderr[-4000:]}"
    # Any report aborts with a non-zero status; leaks are ONNX Runtime's process-lifetime
    # singletons, not the wrapper's.
    env = {
        **os.environ,
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    obs, mask = inputs(corpus)
    program = str(CPP / "build-sanitize" / "batch_run")
    return {
        name: timed([program, "--sample", "1", str(path), str(obs), str(mask)], env)
        for name, path in corpus.items()
    }


@pytest.fixture(scope="module")
def node_runs(corpus, tmp_path_factory) -> dict[str, Run]:
    npm_ci(NODE_EXAMPLE)
    obs, mask = inputs(corpus)
    out = tmp_path_factory.mktemp("hostile_node") / "out.json"
    script = str(NODE_EXAMPLE / "run_policy.mjs")
    return {
        name: timed(
            [
                "node",
                script,
                "batch",
                str(path),
                "--observations",
                str(obs),
                "--masks",
                str(mask),
                "--sample",
                "1",
                "--out",
                str(out),
            ]
        )
        for name, path in corpus.items()
    }


class _CorpusHandler(http.server.SimpleHTTPRequestHandler):
    """examples/web at /, the corpus at /corpus/."""

    folder: Path

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0]
        if name.startswith("/corpus/"):
            return str(self.folder / Path(name[len("/corpus/") :]).name)
        return super().translate_path(path)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture(scope="module")
def web_runs(corpus, tmp_path_factory) -> dict[str, dict]:
    npm_ci(WEB_EXAMPLE)
    folder = next(iter(corpus.values())).parent
    handler = functools.partial(
        type("Handler", (_CorpusHandler,), {"folder": folder}), directory=str(WEB_EXAMPLE)
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            query = "&".join(f"model=/corpus/{path.name}" for path in corpus.values())
            url = f"http://127.0.0.1:{httpd.server_address[1]}/inspect.html?{query}"
            screenshot = tmp_path_factory.mktemp("hostile_web") / "inspect.png"
            result = drive(url, screenshot, "inspectResult")
        finally:
            httpd.shutdown()
            thread.join(timeout=10)
    models = result["inspect"]["models"]
    return {name: model for name, model in zip(corpus, models, strict=True)}


# ---- the corpus -----------------------------------------------------------------------------


def assert_well_behaved(run: Run, verdict: str, consumer: str) -> None:
    """No crash, hang or sanitizer report; the verdict; a refusal's message short."""
    assert run.code is not None, f"{consumer}: no answer within 60 s"
    assert not SANITIZER_REPORT.search(run.stderr), f"{consumer}: {run.stderr[-3000:]}"
    assert run.seconds < SECONDS_PER_RUN, f"{consumer}: {run.seconds:.1f} s"
    if verdict == "accept":
        assert run.code == 0, f"{consumer}: {run.stderr[:2000]}"
        assert json.loads(run.stdout or "{}") is not None
    else:
        assert run.code == 2, f"{consumer}: exit {run.code}: {run.stderr[:2000]}"
        assert run.stdout == ""
        assert 0 < len(run.stderr.encode()) <= MAX_MESSAGE_BYTES, run.stderr[:3000]


@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_consumer_gives_the_mutants_verdict(name, cpp_runs, node_runs, web_runs):
    verdict = MUTANTS[name].verdict
    assert_well_behaved(cpp_runs[name], verdict, "C++ (ASan + UBSan)")
    node = node_runs[name]
    if verdict == "refuse":  # Node's summary goes to stderr on success: only refusals are short
        assert_well_behaved(node, verdict, "Node.js")
    else:
        assert node.code == 0 and node.seconds < SECONDS_PER_RUN, node.stderr[-2000:]
    page = web_runs[name]
    assert page["accepted"] == (verdict == "accept"), page
    if not page["accepted"]:
        assert len(page["error"].encode()) <= MAX_MESSAGE_BYTES, page["error"][:3000]


def test_corpus_counts(cpp_runs, node_runs, web_runs):
    """The note's numbers: cases run, crashes, hangs, wrong exits, per consumer."""
    expected = {name: mutant.verdict == "accept" for name, mutant in MUTANTS.items()}
    counts = {}
    for consumer, runs in (("cpp-asan-ubsan", cpp_runs), ("node", node_runs)):
        counts[consumer] = {
            "cases": len(runs),
            "crashes": sum(
                r.code is not None
                and (r.code < 0 or r.code > 2 or bool(SANITIZER_REPORT.search(r.stderr)))
                for r in runs.values()
            ),
            "hangs": sum(r.code is None or r.seconds >= SECONDS_PER_RUN for r in runs.values()),
            "wrong_exits": sum(r.code not in (0 if expected[n] else 2,) for n, r in runs.items()),
        }
    counts["web"] = {
        "cases": len(web_runs),
        "wrong_verdicts": sum(r["accepted"] != expected[n] for n, r in web_runs.items()),
    }
    print(json.dumps(counts))
    assert all(c.get("crashes", 0) == c.get("hangs", 0) == 0 for c in counts.values())
    assert all(c.get("wrong_exits", 0) == c.get("wrong_verdicts", 0) == 0 for c in counts.values())


# ---- the fuzzer -----------------------------------------------------------------------------


def metadata_only(source: Path, target: Path) -> None:
    """`source` without its graph: the bytes the metadata reader walks, small enough to
    mutate quickly."""
    model = onnx.load(source)
    model.graph.Clear()
    target.write_bytes(model.SerializeToString())


def test_fuzz_the_metadata_reader(corpus, tmp_path):
    """libFuzzer on read_onnx_metadata + describe_artifact for FUZZ_SECONDS, from the real
    metadata of both entries and every corpus file under 64 KiB: no crash, no sanitizer
    report, no hang, no broken invariant (fuzz_metadata.cpp), no over-long message."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    base = next(iter(corpus.values())).parent.parent
    for path in [base / "base.onnx", base / BASE_NAME, *corpus.values()]:
        metadata_only(path, seeds / path.name)
        if (seeds / path.name).stat().st_size > 65536:
            (seeds / path.name).unlink()
    done = subprocess.run(
        ["nice", "bash", str(CPP / "fuzz.sh"), str(seeds), str(FUZZ_SECONDS)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=FUZZ_SECONDS + 600,
    )
    runs = re.search(r"Done (\d+) runs in (\d+) second", done.stderr)
    crashes = re.findall(r"(?:crash|leak|oom|timeout)-[0-9a-f]+", done.stderr)
    peak = re.search(r"peak_rss_mb:\s+(\d+)", done.stderr)
    print(
        f"fuzz: {runs.group(1) if runs else '?'} runs, {len(crashes)} crashes/hangs, "
        f"peak RSS {peak.group(1) if peak else '?'} MB"
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert runs and int(runs.group(1)) > 10_000, done.stderr[-2000:]
    assert not crashes


BALLAST_MB = 1024


def test_fuzzer_memory_is_its_own(tmp_path):
    """fuzz.sh's -rss_limit_mb measures the fuzzer, not whoever started it. Linux keeps a
    process's peak RSS (ru_maxrss, what libFuzzer compares with the limit) across exec, and a
    child started by fork/vfork + exec begins with its parent's: fuzz.sh once exec'd the
    fuzzer, which a 2.3 GB pytest process then saw "out-of-memory (used: 2313Mb)" a second
    after it started, with 25 MB live. Here a parent holding BALLAST_MB runs fuzz.sh briefly:
    the fuzzer's peak must be its own (a few hundred MB under ASan), below the parent's."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    parent = (
        "import subprocess, sys\n"
        f"ballast = b'\\1' * ({BALLAST_MB} << 20)  # written, so resident\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors='replace')\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent, "nice", "bash", str(CPP / "fuzz.sh"), str(seeds), "2"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
    )
    peak = re.search(r"peak_rss_mb:\s+(\d+)", done.stderr)
    assert done.returncode == 0, done.stderr[-4000:]
    assert peak and int(peak.group(1)) < BALLAST_MB, done.stderr[-2000:]

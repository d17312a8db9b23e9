"""The web page (examples/web) in a real browser: headless Debian Chromium via puppeteer-core.

The page and node_modules (onnxruntime-web's WASM) are served by a local http.server on
127.0.0.1, the exported models from the test's temporary folder. Skipped only where `node` or
Chromium is absent.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import policyport
from consumer_artifacts import CASES, Case, assert_matches, contract1, exported
from consumer_recurrent import RECURRENT_CASES, assert_sequence_matches, recurrent_sequence
from sampling_cases import SPACES, assert_samples_match, check_sampled_steps, sample_case
from test_node import (
    CARTPOLE_FAILING_INIT,
    CARTPOLE_INIT,
    NODE_EXAMPLE,
    ROOT,
    cartpole_onnx,
    jax_cartpole_return,
    npm_ci,
    run_node,
)
from test_node_sampling import cartpole_policy

WEB_EXAMPLE = ROOT / "examples" / "web"
GRIDWORLD = ROOT / "examples" / "gridworld"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The farthest corner from the goal: the way round the walls is 12 moves.
GRID_START = (0, 0)
MODELS_URL = "/test-models/"

pytestmark = [
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="node and npm are not installed: the page's browser driver cannot run",
    ),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)",
    ),
]


class _Handler(http.server.SimpleHTTPRequestHandler):
    """examples/web at /, the test's models at /test-models/; nothing else on disk."""

    models: Path

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0]
        if name.startswith(MODELS_URL):
            return str(self.models / Path(name[len(MODELS_URL) :]).name)
        return super().translate_path(path)

    def log_message(self, format, *args) -> None:  # the test's output stays readable
        pass


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[str]:
    handler = functools.partial(
        type("Handler", (_Handler,), {"models": models}), directory=str(WEB_EXAMPLE)
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    from policyport.policy import MLPActorCriticPolicy

    npm_ci(WEB_EXAMPLE)
    cartpole = cartpole_onnx(tmp_path_factory.getbasetemp())
    folder = cartpole.parent
    # The gridworld policy is policyport's self-describing file: no env needed to load it.
    grid = MLPActorCriticPolicy.deserialize(GRIDWORLD / "policy.eqx")
    policyport.export(grid, "onnx", folder / "gridworld.onnx", check=False, force=True)
    # CartPole without --sample: no sample entry to find.
    policyport.export(
        cartpole_policy(), "onnx", folder / "cartpole-plain.onnx", check=False, force=True
    )
    return folder


def drive(url: str, screenshot: Path, wait: str = "cartpoleResult,gridResult") -> dict:
    process = subprocess.run(
        [
            "node",
            str(WEB_EXAMPLE / "drive.mjs"),
            url,
            "--screenshot",
            str(screenshot),
            "--wait",
            wait,
            "--chromium",
            CHROMIUM,
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert process.returncode == 0, process.stderr
    [line] = process.stdout.splitlines()
    return json.loads(line)


def page_url(server: str, **params: str) -> str:
    """The page with the test's models, run unthrottled (fps=0): no waiting between frames."""
    query = {
        "cartpole": f"{MODELS_URL}cartpole.onnx",
        "grid": f"{MODELS_URL}gridworld.onnx",
        "fps": "0",
        "grid_fps": "0",
        **params,
    }
    return f"{server}/index.html?" + "&".join(f"{k}={v}" for k, v in query.items())


@functools.cache
def python_grid_episode(start: tuple[int, int]) -> dict:
    """The gridworld episode from `start` with the JAX policy in examples/gridworld's env."""
    import jax
    import jax.numpy as jnp

    from policyport.policy import MLPActorCriticPolicy

    # examples/gridworld is not a package: load its env from the file (registered in
    # sys.modules first, as dataclasses need to find the module).
    name = "policyport_example_gridworld"
    spec = importlib.util.spec_from_file_location(name, GRIDWORLD / "gridworld.py")
    gridworld = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(gridworld)
    env = gridworld.Gridworld()
    policy = MLPActorCriticPolicy.deserialize(GRIDWORLD / "policy.eqx")
    key = jax.random.key(0)
    position, t = jnp.array(start, jnp.int32), jnp.array(0, jnp.int32)
    state = gridworld.GridworldState(position=position, t=t)
    actions, total = [], 0.0
    while True:
        mask = env.action_mask(state, key=key)
        _, action = policy(None, env.observation(state, key=key), action_mask=mask)
        next_state = env.transition(state, action, key=key)
        total += float(env.reward(state, action, next_state, key=key))
        actions.append(int(action))
        state = next_state
        reached_goal = bool(env.terminal(state, key=key))
        if reached_goal or env.truncate(state):
            return {"actions": actions, "return": total, "reached_goal": reached_goal}


def test_page_runs_both_panels(server, tmp_path_factory):
    screenshot = tmp_path_factory.mktemp("screenshots") / "policyport-web.png"
    result = drive(page_url(server, start=",".join(map(str, GRID_START))), screenshot)
    cartpole = result["cartpole"]
    print(f"screenshot: {screenshot}")
    print(f"page CartPole: return {cartpole.get('return')} in {cartpole.get('steps')} steps")
    assert "error" not in cartpole, result
    assert "error" not in result["grid"], result
    errors = [line for line in result["console"] if line.startswith(("error", "pageerror"))]
    assert not errors
    assert screenshot.stat().st_size > 10_000  # a page was drawn, not a blank or error tab

    # CartPole: the same episode length and return as the JAX rollout.
    assert cartpole["initial_state"] == list(CARTPOLE_INIT)
    expected = jax_cartpole_return(CARTPOLE_INIT)
    assert cartpole["return"] == expected
    assert cartpole["steps"] == expected

    # Gridworld: never a masked move, and the moves the JAX policy makes in gridworld.py.
    grid = result["grid"]
    print(f"page gridworld from {GRID_START}: return {grid['return']:.2f} in {grid['steps']} steps")
    masks = np.array(grid["masks"], dtype=bool)
    actions = np.array(grid["actions"])
    assert grid["masked_moves_chosen"] == 0
    assert masks[np.arange(len(actions)), actions].all()
    assert masks.shape == (grid["steps"], 4) and not masks.all()  # some moves really were masked
    reference = python_grid_episode(GRID_START)
    assert grid["actions"] == reference["actions"]
    assert grid["reached_goal"] == reference["reached_goal"]
    assert grid["return"] == pytest.approx(reference["return"], abs=1e-5)


def test_page_cartpole_failing_start_matches_jax(server, tmp_path):
    init = ",".join(map(str, CARTPOLE_FAILING_INIT))
    result = drive(page_url(server, init=init), tmp_path / "failing.png")
    assert result["cartpole"]["return"] == jax_cartpole_return(CARTPOLE_FAILING_INIT)
    assert result["cartpole"]["terminated"]


@pytest.fixture(scope="module")
def check_cases(models: Path) -> dict[str, Case]:
    """The consumer artifacts (exported once per session) and the contract-1 file."""
    cases = {case: exported(case, models.parent) for case in CASES}
    cases["contract1"] = contract1()  # a file written under contract 1 still runs
    return cases


def test_check_page_reads_inputs_and_outputs_from_the_artifact(
    server, models, check_cases, tmp_path
):
    """check.html on a Q-policy (action, q_values), a Dict observation (observation.pos,
    observation.kind) and a contract-1 file: one browser for all three, outputs by the
    artifact's names, JAX's numbers."""
    cases = check_cases
    urls = []
    for case, artifact in cases.items():
        shutil.copyfile(artifact.path, models / f"check-{case}.onnx")
        inputs = {
            name: {"shape": list(values.shape), "data": values.astype(float).ravel().tolist()}
            for name, values in artifact.inputs.items()
        }
        model_url = f"{MODELS_URL}check-{case}.onnx"
        (models / f"check-{case}.json").write_text(
            json.dumps({"model": model_url, "inputs": inputs})
        )
        urls.append(f"case={MODELS_URL}check-{case}.json")
    result = drive(f"{server}/check.html?" + "&".join(urls), tmp_path / "check.png", "checkResult")
    assert "error" not in result["check"], result
    for (case, artifact), got in zip(cases.items(), result["check"]["cases"], strict=True):
        assert got["inputs"] == list(artifact.inputs), case
        outputs = {name: np.asarray(o["data"]) for name, o in got["outputs"].items()}
        for name, output in got["outputs"].items():
            assert output["shape"] == list(artifact.expected[name].shape), (case, name)
        assert_matches(artifact, outputs)
    assert set(cases["q"].expected) == {"action", "q_values"}  # no value head to fall back on


# ---- Sampling (sample entries, contract 3) -----------------------------------------------------

SAMPLE_SEED = "7"


def test_page_cartpole_samples_with_the_seed(server, models, tmp_path):
    """`?sample=7`: the page finds the sample entry through the default entry's
    policyport.entries and drives CartPole with sampled actions. Its episode is Node's
    `cartpole --sample 7` step for step (the same generator in lib/random.mjs, the same
    noise), each step's action is the traced JAX policy's sample for that observation and
    noise (near-ties excepted), and some steps leave the mode."""
    result = drive(page_url(server, sample=SAMPLE_SEED), tmp_path / "sampled.png")
    page = result["cartpole"]
    assert "error" not in page, result
    assert not [line for line in result["console"] if line.startswith(("error", "pageerror"))]
    assert page["sampled"] and page["sample_seed"] == int(SAMPLE_SEED)
    sample_entry = models / "cartpole.sample.onnx"  # written beside cartpole.onnx
    npm_ci(NODE_EXAMPLE)  # Node's own packages: this file must not rely on test_node running first
    node = json.loads(run_node("cartpole", str(sample_entry), "--sample", SAMPLE_SEED).stdout)
    assert page["noise"] == node["noise"]
    assert page["actions"] == node["actions"]
    assert page["return"] == node["return"]
    off_mode = check_sampled_steps(cartpole_policy(), page)
    print(f"page sampled CartPole: return {page['return']}, {off_mode} steps off the mode")
    assert off_mode > 0


def test_page_sampling_without_a_sample_entry_says_how_to_get_one(server, models, tmp_path):
    """A CartPole model exported without --sample: the panel fails with the export to run."""
    url = page_url(server, cartpole=f"{MODELS_URL}cartpole-plain.onnx", sample="1")
    result = drive(url, tmp_path / "plain.png")
    assert "it cannot sample; export the policy with `export-policy ... --sample`" in result[
        "cartpole"
    ].get("error", ""), result["cartpole"]


@pytest.mark.parametrize("space", SPACES)
def test_check_page_samples_like_jax(server, models, tmp_path, space):
    """check.html on a sample entry fed `policyport.sampling_noise`'s noise for 128 keys:
    onnxruntime-web's sampled actions and log_probs are the JAX policy's for those keys
    (tolerances: sampling_cases.assert_samples_match)."""
    case = sample_case(space, models.parent)
    shutil.copyfile(case.path, models / f"sample-{space}.onnx")
    inputs = {
        name: {"shape": list(values.shape), "data": values.astype(float).ravel().tolist()}
        for name, values in case.inputs.items()
    }
    spec = {"model": f"{MODELS_URL}sample-{space}.onnx", "inputs": inputs}
    (models / f"sample-{space}.json").write_text(json.dumps(spec))
    url = f"{server}/check.html?case={MODELS_URL}sample-{space}.json"
    result = drive(url, tmp_path / "check.png", "checkResult")
    assert "error" not in result["check"], result
    [got] = result["check"]["cases"]
    assert got["inputs"][-1] == "noise"
    outputs = got["outputs"]
    print(
        "page",
        assert_samples_match(case, outputs["sampled_action"]["data"], outputs["log_prob"]["data"]),
    )


# ---- Recurrent policies (contract 4) -----------------------------------------------------------


def test_check_page_carries_the_state_like_onnxruntime(server, models, tmp_path):
    """check.html on a masked GRU (one state leaf) and an LSTM (two leaves, a non-zero initial
    state), 32 steps of 5 rows with random resets, one browser for both: each call's
    next_state fed back, reset per row, onnxruntime-in-Python's outputs."""
    sequences = [recurrent_sequence(case, models.parent) for case in RECURRENT_CASES]
    urls = []
    for sequence in sequences:
        shutil.copyfile(sequence.path, models / f"recurrent-{sequence.name}.onnx")
        inputs = {"observation": sequence.observations}
        if sequence.masks is not None:
            inputs["action_mask"] = sequence.masks
        case = {
            "model": f"{MODELS_URL}recurrent-{sequence.name}.onnx",
            "inputs": {
                name: {"shape": list(v.shape), "data": v.astype(float).ravel().tolist()}
                for name, v in inputs.items()
            },
            "resets": {
                "shape": list(sequence.resets.shape),
                "data": sequence.resets.astype(int).ravel().tolist(),
            },
        }
        (models / f"recurrent-{sequence.name}.json").write_text(json.dumps(case))
        urls.append(f"case={MODELS_URL}recurrent-{sequence.name}.json")
    result = drive(f"{server}/check.html?" + "&".join(urls), tmp_path / "rnn.png", "checkResult")
    assert "error" not in result["check"], result
    for sequence, got in zip(sequences, result["check"]["cases"], strict=True):
        outputs = {
            name: np.asarray(o["data"]).reshape(o["shape"]) for name, o in got["outputs"].items()
        }
        assert_sequence_matches(sequence, outputs)

"""The Node.js consumer (examples/node): metadata, CartPole in closed loop, batch parity.

`npm ci` runs only when examples/node/node_modules is missing or older than the lockfile.
Skipped only where `node` itself is absent.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import policyport
from conftest import make_policy
from consumer_artifacts import CASES, Case, assert_matches, contract1, exported
from consumer_recurrent import RECURRENT_CASES, assert_sequence_matches, recurrent_sequence
from pixel_policies import nature_cnn
from policyport.checks import ATOL, RTOL, reference_outputs, sample_inputs

ROOT = Path(__file__).resolve().parents[1]
NODE_EXAMPLE = ROOT / "examples" / "node"
CARTPOLE_POLICY = ROOT / "examples" / "cartpole" / "policy.eqx"
# The start every consumer of the CartPole example uses unless told otherwise.
CARTPOLE_INIT = (0.01, -0.02, 0.03, 0.04)
# A start the policy cannot save: the episode ends after a few dozen steps, so the return
# depends on the JS dynamics and termination test matching lerax's step for step.
CARTPOLE_FAILING_INIT = (1.0, 1.5, 0.1, 0.5)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not installed: the Node.js and browser consumers cannot run",
)


def npm_ci(folder: Path) -> None:
    """Install `folder`'s packages from its lockfile unless node_modules is already current.

    npm records what it installed in node_modules/.package-lock.json; an install older than
    the committed package-lock.json is stale.
    """
    installed = folder / "node_modules" / ".package-lock.json"
    lock = folder / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    # onnxruntime-node's install script would download optional GPU binaries from a host
    # outside the npm registry; the CPU library it ships in the package is all we need.
    env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=folder,
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )


@functools.cache
def cartpole_onnx(basetemp: Path) -> Path:
    """The bundled CartPole policy exported once per test session (shared with test_web and
    test_node_sampling), with its sample entry `cartpole.sample.onnx` beside it."""
    import lerax.env

    from policyport.policy import MLPActorCriticPolicy

    policy = MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())
    path = basetemp / "consumers" / "cartpole.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    policyport.export(policy, "onnx", path, check=False, force=True, sample=True)
    return path


@functools.cache
def jax_cartpole_return(init: tuple[float, ...], max_steps: int = 500) -> float:
    """The return of the bundled policy on lerax's CartPole with Euler steps, from `init`."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import lerax.env
    from lerax.env.classic_control.cartpole import CartPoleState

    from policyport.policy import MLPActorCriticPolicy

    policy = MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())
    env = lerax.env.CartPole(solver=diffrax.Euler())
    key = jax.random.key(0)

    @jax.jit
    def step(state):
        _, action = policy(None, env.observation(state, key=key))
        next_state = env.transition(state, action, key=key)
        reward = env.reward(state, action, next_state, key=key)
        return next_state, reward, env.terminal(next_state, key=key)

    state = CartPoleState(y=jnp.array(init, jnp.float32), t=jnp.array(0.0))
    total = 0.0
    for _ in range(max_steps):
        state, reward, terminal = step(state)
        total += float(reward)
        if terminal:
            break
    return total


def run_node(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(NODE_EXAMPLE / "run_policy.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def json_line(process: subprocess.CompletedProcess[str]) -> dict:
    [line] = process.stdout.splitlines()
    return json.loads(line)


@pytest.fixture(scope="module")
def node_example() -> Path:
    npm_ci(NODE_EXAMPLE)
    return NODE_EXAMPLE


@pytest.fixture(scope="module")
def cartpole_model(tmp_path_factory, node_example) -> Path:
    return cartpole_onnx(tmp_path_factory.getbasetemp())


def test_info_prints_the_metadata(cartpole_model):
    info = json_line(run_node("info", str(cartpole_model)))
    assert info["contract_version"] == 2
    assert info["action_space"] == {"type": "Discrete", "n": 2}
    assert info["observation_space"]["shape"] == [4]
    assert info["observation_space"]["high"][1] == "inf"  # kept as written, valid JSON
    assert info["mask_size"] == 2
    assert info["heads"] == ["value"]
    assert [i["name"] for i in info["inputs"]] == ["observation", "action_mask"]
    assert [o["name"] for o in info["outputs"]] == ["action", "value"]


def with_contract_version(source: Path, target: Path, version: str) -> Path:
    """`source` with its `policyport.contract_version` metadata set to `version`."""
    import onnx

    model = onnx.load(source)
    for prop in model.metadata_props:
        if prop.key == "policyport.contract_version":
            prop.value = version
    onnx.save(model, target)
    return target


@pytest.mark.parametrize("version", ["6", "0", "2.0"])
def test_refuses_an_unknown_contract_version(cartpole_model, tmp_path, version):
    future = with_contract_version(cartpole_model, tmp_path / "future.onnx", version)
    process = run_node("info", str(future), check=False)
    assert process.returncode == 2
    assert f"unsupported artifact contract version {version} " in process.stderr
    assert "this consumer knows versions 1, 2, 3, 4, 5:" in process.stderr
    assert process.stdout == ""


def test_golden_contract_1_file_still_runs(node_example, tmp_path):
    """A file policyport wrote under contract 1 (tests/data/contract1) gives JAX's outputs."""
    golden = contract1()
    info = json_line(run_node("info", str(golden.path)))
    assert (info["contract_version"], info["heads"]) == (1, ["value"])
    golden.inputs["observation"].astype("<f4").tofile(tmp_path / "obs.f32")
    golden.inputs["action_mask"].astype(np.uint8).tofile(tmp_path / "masks.u8")
    out = tmp_path / "out.json"
    run_node(
        "batch",
        str(golden.path),
        "--observations",
        str(tmp_path / "obs.f32"),
        "--masks",
        str(tmp_path / "masks.u8"),
        "--out",
        str(out),
    )
    assert_matches(golden, json.loads(out.read_text()))


def test_accepts_contract_version_1(cartpole_model, tmp_path):
    """A Box-observation actor-critic is the same graph under contracts 1 and 2."""
    old = with_contract_version(cartpole_model, tmp_path / "v1.onnx", "1")
    episode = json_line(run_node("cartpole", str(old)))
    assert episode["contract_version"] == 1
    assert episode["return"] == jax_cartpole_return(CARTPOLE_INIT)


@pytest.mark.parametrize("init", [None, CARTPOLE_FAILING_INIT], ids=["default", "failing"])
def test_cartpole_return_matches_jax(cartpole_model, init):
    args = ["cartpole", str(cartpole_model)]
    if init is not None:
        args += ["--init", ",".join(map(str, init))]
    episode = json_line(run_node(*args))
    expected = jax_cartpole_return(init or CARTPOLE_INIT)
    start = init or "the default start"
    print(f"node CartPole from {start}: return {episode['return']}, jax {expected}")
    assert episode["initial_state"] == list(init or CARTPOLE_INIT)
    assert episode["return"] == expected
    assert episode["steps"] == expected  # reward 1 per step


@pytest.mark.parametrize("action", ["Discrete", "MultiDiscrete", "MultiBinary", "Box"])
def test_batch_matches_jax(node_example, tmp_path, action):
    policy = make_policy(action)
    model = tmp_path / "policy.onnx"
    policyport.export(policy, "onnx", model, check=False)
    inputs = sample_inputs(policy, seed=0, batch=256)
    expected = reference_outputs(policy, inputs)

    inputs["observation"].astype("<f4").tofile(tmp_path / "observations.f32")
    args = ["batch", str(model), "--observations", str(tmp_path / "observations.f32")]
    if "action_mask" in inputs:
        inputs["action_mask"].astype(np.uint8).tofile(tmp_path / "masks.u8")
        args += ["--masks", str(tmp_path / "masks.u8")]
    run_node(*args, "--out", str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())

    action_out = np.asarray(got["action"])
    value_out = np.asarray(got["value"], dtype=np.float32)
    assert action_out.shape == expected["action"].shape
    assert value_out.shape == expected["value"].shape
    value_diff = np.abs(value_out - expected["value"])
    print(f"node batch {action}: worst value difference {value_diff.max():.3g}", end="")
    assert np.all(value_diff <= ATOL + RTOL * np.abs(expected["value"]))
    if action == "Box":
        action_diff = np.abs(action_out - expected["action"])
        print(f", worst action difference {action_diff.max():.3g}")
        assert np.all(action_diff <= ATOL + RTOL * np.abs(expected["action"]))
    else:
        mismatches = int(np.sum(action_out != expected["action"]))
        print(f", action mismatches {mismatches}/{action_out.size}")
        np.testing.assert_array_equal(action_out, expected["action"])


def test_batch_feeds_uint8_frames(node_example, tmp_path):
    """A uint8 frame input (contract 5) is fed uint8 bytes; actions and values match JAX."""
    policy = nature_cnn((36, 36, 2), actions=4)
    model = tmp_path / "frames.onnx"
    policyport.export(policy, "onnx", model, check=False)
    inputs = sample_inputs(policy, seed=0, batch=64)
    assert inputs["observation"].dtype == np.uint8
    expected = reference_outputs(policy, inputs)
    inputs["observation"].tofile(tmp_path / "frames.u8")
    info = json_line(run_node("info", str(model)))
    assert info["contract_version"] == 5
    args = ["batch", str(model), "--observations", str(tmp_path / "frames.u8")]
    run_node(*args, "--out", str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())
    np.testing.assert_array_equal(np.asarray(got["action"]), expected["action"])
    value = np.asarray(got["value"], dtype=np.float32)
    assert np.all(np.abs(value - expected["value"]) <= ATOL + RTOL * np.abs(expected["value"]))


@pytest.fixture(scope="module")
def consumer_cases(tmp_path_factory, node_example) -> dict[str, Case]:
    folder = tmp_path_factory.getbasetemp()
    return {case: exported(case, folder) for case in CASES}


@pytest.mark.parametrize("form", ["--input", "--observations"])
@pytest.mark.parametrize("case", CASES)
def test_batch_reads_inputs_and_outputs_from_the_artifact(consumer_cases, tmp_path, case, form):
    """A Q-policy (outputs action, q_values) and a Dict observation (two observation
    inputs): the names come from the artifact, the numbers match JAX's."""
    artifact = consumer_cases[case]
    inputs = artifact.inputs
    leaves = [name for name in inputs if name != "action_mask"]
    args = ["batch", str(artifact.path), "--out", str(tmp_path / "out.json")]
    if form == "--input":
        for name, values in inputs.items():
            path = tmp_path / f"{name}.raw"
            dtype = np.uint8 if name == "action_mask" else "<f4"
            values.astype(dtype).tofile(path)
            args += ["--input", f"{name}={path}"]
    else:  # one file: each row the observation's leaves concatenated in input order
        rows = np.concatenate([inputs[n].reshape(len(inputs[n]), -1) for n in leaves], axis=1)
        rows.astype("<f4").tofile(tmp_path / "observations.f32")
        inputs["action_mask"].astype(np.uint8).tofile(tmp_path / "masks.u8")
        args += ["--observations", str(tmp_path / "observations.f32")]
        args += ["--masks", str(tmp_path / "masks.u8")]
    run_node(*args)
    assert_matches(artifact, json.loads((tmp_path / "out.json").read_text()))


def test_batch_names_the_inputs_it_needs(consumer_cases, tmp_path):
    artifact = consumer_cases["dict"]
    artifact.inputs["observation.pos"].astype("<f4").tofile(tmp_path / "pos.f32")
    out = str(tmp_path / "out.json")
    missing = run_node(
        "batch",
        str(artifact.path),
        "--input",
        f"observation.pos={tmp_path / 'pos.f32'}",
        "--out",
        out,
        check=False,
    )
    assert missing.returncode == 2
    assert "--input NAME=FILE for each of observation.pos, observation.kind" in missing.stderr
    unknown = run_node(
        "batch",
        str(artifact.path),
        "--input",
        f"observation.speed={tmp_path / 'pos.f32'}",
        "--out",
        out,
        check=False,
    )
    assert unknown.returncode == 2
    assert 'no input "observation.speed": its inputs are observation.pos' in unknown.stderr
    assert not (tmp_path / "out.json").exists()


def test_refuses_metadata_that_disagrees_with_the_graph(cartpole_model, tmp_path):
    import onnx

    model = onnx.load(cartpole_model)
    listed = [
        {"dtype": "int64", "name": "action", "shape": ["batch"]},
        {"dtype": "float32", "name": "q_values", "shape": ["batch", 2]},
    ]
    for prop in model.metadata_props:
        if prop.key == "policyport.outputs":
            prop.value = json.dumps(listed)
    onnx.save(model, tmp_path / "edited.onnx")
    process = run_node("info", str(tmp_path / "edited.onnx"), check=False)
    assert process.returncode == 2
    assert 'outputs ["action","value"] are not the ones its metadata lists' in process.stderr
    assert process.stdout == ""


def test_floats_that_are_not_the_frames_integers_are_refused(node_example, tmp_path_factory):
    """A uint8 input fed from floats: 0.5 (frames scaled by mistake) or 256 is refused with
    the input's range, never truncated or wrapped as Uint8Array.from would."""
    sequence = recurrent_sequence("gru_frames", tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("bad_frames")
    sequence.resets.astype(np.uint8).tofile(folder / "resets.u8")
    sequence.masks.astype(np.uint8).tofile(folder / "masks.u8")
    for bad in (0.5, 256.0):
        observations = sequence.observations.astype("<f4")
        observations.flat[3] = bad
        observations.tofile(folder / "obs.f32")
        args = ["--observations", str(folder / "obs.f32"), "--resets", str(folder / "resets.u8")]
        args += ["--masks", str(folder / "masks.u8"), "--out", str(folder / "out.json")]
        steps = str(len(sequence.resets))
        process = run_node("sequence", str(sequence.path), "--steps", steps, *args, check=False)
        assert process.returncode != 0 and process.stdout == ""
        assert f"'observation' takes integers from 0 to 255; value 3 is {bad:g}" in process.stderr


@pytest.mark.parametrize("case", RECURRENT_CASES)
def test_sequence_carries_the_state_like_onnxruntime(node_example, tmp_path_factory, case):
    """A recurrent artifact over 32 steps of 5 rows with random resets: Node feeds each call's
    `next_state` back and sets `reset` per row, and gives onnxruntime-in-Python's outputs."""
    sequence = recurrent_sequence(case, tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp(f"sequence_{case}")
    sequence.observations.astype("<f4").tofile(folder / "obs.f32")
    sequence.resets.astype(np.uint8).tofile(folder / "resets.u8")
    args = ["--observations", str(folder / "obs.f32"), "--resets", str(folder / "resets.u8")]
    if sequence.masks is not None:
        sequence.masks.astype(np.uint8).tofile(folder / "masks.u8")
        args += ["--masks", str(folder / "masks.u8")]
    out = folder / "out.json"
    steps = str(len(sequence.resets))
    done = json_line(
        run_node("sequence", str(sequence.path), "--steps", steps, *args, "--out", str(out))
    )
    assert done["contract_version"] == (5 if case == "gru_frames" else 4)  # uint8 frames: 5
    assert [leaf["input"] for leaf in done["state"]] == [s["input"] for s in sequence.state_leaves]
    assert_sequence_matches(sequence, json.loads(out.read_text()))


def test_sequence_refuses_a_stateless_policy(cartpole_model, tmp_path):
    process = run_node("sequence", str(cartpole_model), "--steps", "1", check=False)
    assert process.returncode == 2
    assert "sequence drives a recurrent policy (contract 4" in process.stderr


def test_recurrent_metadata_that_disagrees_is_refused(node_example, tmp_path_factory, tmp_path):
    """policyport.state must list the state inputs it pairs with next_state outputs."""
    import onnx

    model = onnx.load(recurrent_sequence("lstm", tmp_path_factory.getbasetemp()).path)
    for prop in model.metadata_props:
        if prop.key == "policyport.state":
            state = json.loads(prop.value)
            state["leaves"] = state["leaves"][::-1]  # the two leaves swapped
            prop.value = json.dumps(state)
    onnx.save(model, tmp_path / "edited.onnx")
    process = run_node("info", str(tmp_path / "edited.onnx"), check=False)
    assert process.returncode == 2
    assert (
        "state leaf 0: input 'state.0', output 'next_state.0' and policyport.state do not agree"
        in (process.stderr)
    )

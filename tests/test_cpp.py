"""The C++ consumer (examples/cpp): built with build.sh, then run against JAX.

- `batch_run` on every action space, through `.onnx` and `.ort`: actions identical to JAX's,
  values within the runtime checks' tolerances.
- `cartpole` (CartPole in C++, driven by the committed trained policy): the same episode as
  lerax's `CartPole(solver=diffrax.Euler())` driven by the JAX policy.
- A Q-policy (outputs `action`, `q_values`) and a Dict observation (inputs
  `observation.pos`, `observation.kind`): `batch_run` reads the names from the artifact.
- Bad input and unknown contract versions: exit status 2, a message saying what is wrong, no
  crash; contract 1 artifacts still run.

Skipped only where g++ or cmake is missing (the reason is printed by `-ra`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest

import policyport
from conftest import ACTION_SPACES, MASKABLE, make_policy
from consumer_artifacts import CASES, assert_matches, contract1, exported
from consumer_artifacts import make_policy as make_case_policy
from policyport.runtime_checks import ATOL, RTOL, reference_outputs, sample_inputs

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "examples" / "cpp"
CARTPOLE_POLICY = ROOT / "examples" / "cartpole" / "policy.eqx"
DEFAULT_START = (0.01, -0.02, 0.03, 0.04)
BATCH = 1024
ALL_FALSE_ROWS = 4  # rows whose mask allows nothing: the contract says action 0
MISSING_TOOLS = [tool for tool in ("g++", "cmake") if shutil.which(tool) is None]


@pytest.fixture(scope="module")
def build() -> Path:
    """Builds examples/cpp (prepares ONNX Runtime on first use; cached after that)."""
    if MISSING_TOOLS:
        pytest.skip(f"the C++ consumer needs {' and '.join(MISSING_TOOLS)}, not installed here")
    done = subprocess.run(
        ["bash", str(CPP / "build.sh")], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, f"build.sh failed:\n{done.stdout}\n{done.stderr}"
    return CPP / "build"


def run(program: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def assert_refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit status 2 (not a signal), nothing on stdout, `message` on stderr."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    assert message in done.stderr, done.stderr


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """One small exported policy per action space and format ("Discrete.onnx", ...)."""
    folder = tmp_path_factory.mktemp("cpp_artifacts")
    paths = {}
    for action in ACTION_SPACES:
        policy = make_policy(action, seed=3)
        for fmt in ("onnx", "ort"):
            [result] = policyport.export(policy, fmt, folder / f"{action}.{fmt}")
            paths[f"{action}.{fmt}"] = result.paths[0]
    return paths


def write_inputs(folder: Path, inputs: dict[str, np.ndarray]) -> list[Path]:
    """The raw files batch_run reads: float32 observations, then uint8 masks if any."""
    files = [folder / "observation.f32"]
    inputs["observation"].astype("<f4").tofile(files[0])
    if "action_mask" in inputs:
        files.append(folder / "mask.u8")
        inputs["action_mask"].astype(np.uint8).tofile(files[1])
    return files


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
@pytest.mark.parametrize("action", list(ACTION_SPACES))
def test_batch_run_matches_jax(build, artifacts, tmp_path, action, fmt):
    policy = make_policy(action, seed=3)
    inputs = sample_inputs(policy, seed=1, batch=BATCH)
    if action in MASKABLE:
        inputs["action_mask"][:ALL_FALSE_ROWS] = False
    expected = reference_outputs(policy, inputs)

    done = run(build / "batch_run", artifacts[f"{action}.{fmt}"], *write_inputs(tmp_path, inputs))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    action_out = np.asarray(got["action"]).reshape(expected["action"].shape)
    value = np.asarray(got["value"], dtype=np.float32)

    assert value.shape == (BATCH,)
    assert np.all(np.abs(value - expected["value"]) <= ATOL + RTOL * np.abs(expected["value"]))
    if action == "Box":
        reference = expected["action"]
        assert np.all(np.abs(action_out - reference) <= ATOL + RTOL * np.abs(reference))
    else:
        assert action_out.dtype == np.int64
        np.testing.assert_array_equal(action_out, expected["action"])
        assert not action_out[:ALL_FALSE_ROWS].any()  # all-masked rows get action 0


def jax_cartpole(start: tuple[float, ...]) -> dict[str, object]:
    """lerax's CartPole with Euler steps, driven by the JAX policy: the episode's summary."""
    import diffrax
    import jax.numpy as jnp
    import lerax.env
    from lerax.env.classic_control.cartpole import CartPoleState

    from policyport.policy import MLPActorCriticPolicy

    env = lerax.env.CartPole(solver=diffrax.Euler())
    policy = MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())
    key = jax.random.key(0)  # unused by CartPole's transition and terminal

    @jax.jit
    def step(state):
        _, action = policy(None, state.y)
        state = env.transition(state, action, key=key)
        return state, env.terminal(state, key=key)

    state = CartPoleState(y=jnp.array(start, dtype=jnp.float32), t=jnp.array(0.0))
    steps, terminated = 0, False
    while not terminated and steps < 500:
        state, done = step(state)
        steps, terminated = steps + 1, bool(done)
    return {
        "return": float(steps),
        "steps": steps,
        "terminated": terminated,
        "final_state": np.asarray(state.y),
    }


@pytest.fixture(scope="module")
def cartpole_onnx(tmp_path_factory) -> Path:
    import lerax.env

    from policyport.policy import MLPActorCriticPolicy

    policy = MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())
    path = tmp_path_factory.mktemp("cpp_cartpole") / "cartpole.onnx"
    policyport.export(policy, "onnx", path)
    return path


@pytest.mark.parametrize(
    "start",
    [
        None,  # the program's default start
        (0.0, 0.0, 0.15, 1.0),  # too fast to catch: the pole falls after 19 steps
        (-1.5, -1.5, 0.05, -0.5),
    ],
)
def test_cartpole_matches_jax_rollout(build, cartpole_onnx, start):
    args = () if start is None else start
    done = run(build / "cartpole", cartpole_onnx, *args)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    expected = jax_cartpole(start or DEFAULT_START)
    assert (got["return"], got["steps"], got["terminated"]) == (
        expected["return"],
        expected["steps"],
        expected["terminated"],
    )
    if start is None:
        assert got["return"] == 500.0  # the bundled policy balances the pole to the limit
    else:
        # Short episodes: float32 in C++ and in XLA differ by rounding only.
        np.testing.assert_allclose(got["final_state"], expected["final_state"], atol=1e-4)


# Bad input: every case exits 2 with a message that names the problem.


@pytest.fixture
def discrete_files(tmp_path) -> dict[str, Path]:
    """Three observations and masks of the right sizes for the Discrete(5) artifact."""
    policy = make_policy("Discrete", seed=3)
    inputs = sample_inputs(policy, seed=0, batch=3)
    obs, mask = write_inputs(tmp_path, inputs)
    return {"obs": obs, "mask": mask}


def test_wrong_observation_size(build, artifacts, discrete_files, tmp_path):
    short = tmp_path / "short.f32"
    short.write_bytes(discrete_files["obs"].read_bytes()[:-4])
    done = run(build / "batch_run", artifacts["Discrete.onnx"], short, discrete_files["mask"])
    assert_refused(done, "not a positive multiple of 24 (this model's observations are 6")
    empty = tmp_path / "empty.f32"
    empty.write_bytes(b"")
    assert_refused(
        run(build / "batch_run", artifacts["Discrete.onnx"], empty, discrete_files["mask"]),
        "holds 0 bytes",
    )


def test_wrong_mask_size(build, artifacts, discrete_files, tmp_path):
    long = tmp_path / "long.u8"
    long.write_bytes(discrete_files["mask"].read_bytes() + b"\x01")
    done = run(build / "batch_run", artifacts["Discrete.onnx"], discrete_files["obs"], long)
    assert_refused(done, "holds 16 bytes; 3 observations need 15 (5 uint8 0/1 values")


def test_mask_values_must_be_0_or_1(build, artifacts, discrete_files, tmp_path):
    bad = tmp_path / "bad.u8"
    bad.write_bytes(b"\x01\x02" + discrete_files["mask"].read_bytes()[2:])
    done = run(build / "batch_run", artifacts["Discrete.onnx"], discrete_files["obs"], bad)
    assert_refused(done, "holds byte 2 at offset 1; masks are 0 (masked) or 1 (allowed)")


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
def test_missing_mask(build, artifacts, discrete_files, fmt):
    done = run(build / "batch_run", artifacts[f"Discrete.{fmt}"], discrete_files["obs"])
    assert_refused(done, "has an action_mask input (Discrete actions, 5 values per observation)")


def test_mask_for_a_model_without_one(build, artifacts, discrete_files):
    done = run(
        build / "batch_run", artifacts["Box.onnx"], discrete_files["obs"], discrete_files["mask"]
    )
    assert_refused(done, "has no action_mask input (its action space is Box)")


@pytest.mark.parametrize(
    "which", ["text", "policy.eqx", "truncated onnx", "truncated ort", "missing"]
)
def test_not_an_onnx_file(build, artifacts, discrete_files, tmp_path, which):
    model = tmp_path / "model.onnx"
    if which == "text":
        model.write_text("not a model\n")
    elif which == "policy.eqx":
        model = CARTPOLE_POLICY
    elif which.startswith("truncated"):
        fmt = which.split()[1]
        model = tmp_path / f"model.{fmt}"
        model.write_bytes(artifacts[f"Discrete.{fmt}"].read_bytes()[:1000])
    message = "cannot open model file" if which == "missing" else "cannot load"
    done = run(build / "batch_run", model, discrete_files["obs"], discrete_files["mask"])
    assert_refused(done, message)
    assert "export-policy" in done.stderr or "--format ort" in done.stderr  # says what to do


def test_usage(build):
    done = run(build / "batch_run")
    assert done.returncode == 2
    assert "usage: batch_run MODEL OBS_FILE [MASK_FILE]" in done.stderr


def edited_metadata(source: Path, target: Path, key: str, value: str | None) -> Path:
    """`source` with one metadata entry set to `value` (or removed when None)."""
    import onnx

    model = onnx.load(source)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept + ([] if value is None else [(key, value)]):
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, target)
    return target


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "99",
            "uses policyport artifact contract version 99 (written by policyport {version}), "
            "but this policyport.hpp/.cpp understands versions 1 to 2",
        ),
        ("3", "contract version 3"),
        ("0", "contract version 0"),
        ("1.0", "contract version 1.0"),
        (None, "has no 'policyport.contract_version' metadata: it is not a policyport artifact"),
    ],
)
def test_unknown_contract_version_is_refused(
    build, artifacts, discrete_files, tmp_path, value, message
):
    model = edited_metadata(
        artifacts["Discrete.onnx"], tmp_path / "edited.onnx", "policyport.contract_version", value
    )
    message = message.format(version=policyport.__version__)
    done = run(build / "batch_run", model, discrete_files["obs"], discrete_files["mask"])
    assert_refused(done, message)
    cartpole = run(build / "cartpole", model)
    assert cartpole.returncode == 2 and message in cartpole.stderr


def test_cartpole_refuses_another_policy(build, artifacts):
    done = run(build / "cartpole", artifacts["Box.onnx"])
    assert_refused(done, "is not a CartPole policy: it takes 6 observation values")


def test_cartpole_bad_start(build, cartpole_onnx):
    assert_refused(
        run(build / "cartpole", cartpole_onnx, 0, 0, "nan", 0),
        "initial theta 'nan' is not a finite number",
    )
    assert run(build / "cartpole", cartpole_onnx, 0, 0).returncode == 2


@pytest.mark.parametrize("case", CASES)
def test_batch_run_reads_inputs_and_outputs_from_the_artifact(build, tmp_path_factory, case):
    """Each OBS_FILE row is the observation inputs concatenated in input order; the JSON holds
    every output by the artifact's names (q_values, not value, for the Q-policy)."""
    artifact = exported(case, tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp(f"cpp_{case}")
    leaves = [n for n in artifact.inputs if n != "action_mask"]
    batch = len(artifact.inputs["action_mask"])
    rows = np.concatenate([artifact.inputs[n].reshape(batch, -1) for n in leaves], axis=1)
    rows.astype("<f4").tofile(folder / "obs.f32")
    artifact.inputs["action_mask"].astype(np.uint8).tofile(folder / "mask.u8")
    done = run(build / "batch_run", artifact.path, folder / "obs.f32", folder / "mask.u8")
    assert done.returncode == 0, done.stderr
    assert_matches(artifact, json.loads(done.stdout))


def test_dict_observation_size_names_its_inputs(build, tmp_path_factory, tmp_path):
    artifact = exported("dict", tmp_path_factory.getbasetemp())
    (tmp_path / "short.f32").write_bytes(b"\0" * 12)  # 3 floats: observation.kind left out
    artifact.inputs["action_mask"][:1].astype(np.uint8).tofile(tmp_path / "mask.u8")
    done = run(build / "batch_run", artifact.path, tmp_path / "short.f32", tmp_path / "mask.u8")
    assert_refused(done, "observations are 4 float32 values each: observation.pos [3] + obs")


def test_golden_contract_1_file_still_runs(build, tmp_path):
    """A file policyport wrote under contract 1 (tests/data/contract1) gives JAX's outputs."""
    golden = contract1()
    obs, mask = write_inputs(tmp_path, dict(golden.inputs))
    done = run(build / "batch_run", golden.path, obs, mask)
    assert done.returncode == 0, done.stderr
    assert_matches(golden, json.loads(done.stdout))


def test_contract_version_1_still_runs(build, cartpole_onnx, tmp_path):
    """A Box-observation actor-critic is the same graph under contracts 1 and 2."""
    old = edited_metadata(cartpole_onnx, tmp_path / "v1.onnx", "policyport.contract_version", "1")
    done = run(build / "cartpole", old)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["return"] == 500.0


def test_metadata_that_lists_other_outputs_is_refused(build, cartpole_onnx, tmp_path):
    listed = json.dumps(
        [
            {"dtype": "int64", "name": "action", "shape": ["batch"]},
            {"dtype": "float32", "name": "q_values", "shape": ["batch", 2]},
        ]
    )
    edited = edited_metadata(cartpole_onnx, tmp_path / "edited.onnx", "policyport.outputs", listed)
    assert_refused(
        run(build / "cartpole", edited),
        "outputs (action, value) are not the ones its policyport.inputs / policyport.outputs",
    )


@pytest.mark.parametrize("case", CASES)
def test_policy_info_discovers_inputs_and_outputs(build, tmp_path_factory, case):
    """policy_info reports the artifact's own tables, and act()/value()/q_values() on one
    observation (all actions allowed) give JAX's action and heads."""
    import onnx

    artifact = exported(case, tmp_path_factory.getbasetemp())
    metadata = {p.key: p.value for p in onnx.load(artifact.path).metadata_props}
    leaves = [n for n in artifact.inputs if n != "action_mask"]
    row = {n: artifact.inputs[n][:1] for n in leaves}
    row["action_mask"] = np.ones_like(artifact.inputs["action_mask"][:1])
    observation = np.concatenate([row[n].reshape(-1) for n in leaves])

    done = run(build / "policy_info", artifact.path, *(f"{x:.9g}" for x in observation))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["inputs"] == json.loads(metadata["policyport.inputs"])
    assert info["outputs"] == json.loads(metadata["policyport.outputs"])
    assert info["heads"] == json.loads(metadata["policyport.heads"])
    assert (info["observation_size"], info["mask_size"]) == (observation.size, 3)

    expected = reference_outputs(make_case_policy(case), row)
    acted = {name: np.asarray(values)[None] for name, values in info["act"].items()}
    assert_matches(replace(artifact, expected=expected), acted)
    [head] = info["heads"]  # value or q_values: the call of that name gives the same numbers
    np.testing.assert_array_equal(np.ravel(info[head]), np.ravel(info["act"][head]))

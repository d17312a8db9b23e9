"""The C++ consumer (examples/cpp): built with build.sh, then run against JAX.

- `batch_run` on every action space, through `.onnx` and `.ort`: actions identical to JAX's,
  values within the runtime checks' tolerances.
- `cartpole` (CartPole in C++, driven by the committed trained policy): the same episode as
  lerax's `CartPole(solver=diffrax.Euler())` driven by the JAX policy.
- A Q-policy (outputs `action`, `q_values`) and a Dict observation (inputs
  `observation.pos`, `observation.kind`): `batch_run` reads the names from the artifact.
- Bad input and unknown contract versions: exit status 2, a message saying what is wrong, no
  crash; contract 1 artifacts still run.
- Sampling (contract 3, the sample entry `--sample` writes): `batch_run --noise` fed the noise
  of JAX keys (`policyport.sampling_noise`) gives JAX's sampled action and log-prob, on every
  action space, `.onnx` and `.ort`; `batch_run --sample SEED` (noise drawn in C++ with
  std::mt19937_64) is distributed as the policy says; `cartpole --noise` replays a sampled JAX
  rollout; sampling on a default entry is refused, naming the sample entry.
- Recurrent policies (contract 4): `sequence_run` steps a masked GRU and a two-leaf LSTM
  with a `policyport::State` per agent over 32 steps with resets, like onnxruntime in Python;
  the stateless calls refuse a recurrent artifact.

Skipped only where g++ or cmake is missing (the reason is printed by `-ra`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest

import policyport
from conftest import ACTION_SPACES, MASKABLE, make_policy
from consumer_artifacts import CASES, assert_matches, contract1, exported
from consumer_artifacts import make_policy as make_case_policy
from consumer_recurrent import RECURRENT_CASES, assert_sequence_matches, recurrent_sequence
from pixel_policies import nature_cnn
from policyport.checks import ATOL, NEAR_TIE, RTOL, reference_outputs, sample_inputs
from policyport.tracing import trace

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


def test_batch_run_feeds_uint8_frames(build, tmp_path):
    """A uint8 frame input (contract 5): the wrapper converts the caller's floats (0..255,
    exact) and the artifact's actions and values match JAX's."""
    policy = nature_cnn((36, 36, 2), actions=4)
    [result] = policyport.export(policy, "onnx", tmp_path / "frames.onnx", check=False)
    inputs = sample_inputs(policy, seed=1, batch=BATCH)
    assert inputs["observation"].dtype == np.uint8
    expected = reference_outputs(policy, inputs)
    done = run(build / "batch_run", result.paths[0], *write_inputs(tmp_path, inputs))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    np.testing.assert_array_equal(np.asarray(got["action"]), expected["action"])
    value = np.asarray(got["value"], dtype=np.float32)
    assert np.all(np.abs(value - expected["value"]) <= ATOL + RTOL * np.abs(expected["value"]))
    # Not an integer of the input's type: refused, never truncated or wrapped.
    for bad, shown in ((0.5, "0.5"), (256.0, "256"), (-1.0, "-1"), (np.nan, "nan")):
        frames = inputs["observation"].astype(np.float32)
        frames.flat[7] = bad
        files = write_inputs(tmp_path, {"observation": frames})
        done = run(build / "batch_run", result.paths[0], *files)
        assert_refused(done, f"'observation' takes integers from 0 to 255; value 7 is {shown}")


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
    assert "usage: batch_run [--noise NOISE_FILE | --sample SEED] MODEL OBS_FILE [MASK_FILE]" in (
        done.stderr
    )


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
            "but this policyport.hpp/.cpp understands versions 1 to 5",
        ),
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


# Sampling: the sample entry (contract 3) through Policy::run_sample / sample / draw_noise.

SAMPLE_KEY = 5  # the JAX keys of the exact-parity rows: jax.random.split(key(5), BATCH)


@pytest.fixture(scope="module")
def sample_artifacts(tmp_path_factory) -> dict[str, Path]:
    """Per action space and format, both entries of one `sample=True` export: "Discrete.onnx"
    (default entry) and "Discrete.sample.onnx" (sample entry), ... Not parity-checked here:
    tests/test_sampling.py checks the artifacts; these tests check the C++ consumer of them."""
    folder = tmp_path_factory.mktemp("cpp_sample_artifacts")
    paths = {}
    for action in ACTION_SPACES:
        policy = make_policy(action, seed=3)
        for fmt in ("onnx", "ort"):
            results = policyport.export(
                policy, fmt, folder / f"{action}.{fmt}", check=False, sample=True
            )
            for result in results:
                suffix = ".sample" if result.entry == "sample" else ""
                paths[f"{action}{suffix}.{fmt}"] = result.paths[0]
    return paths


def jax_sample(action: str, policy, observation, mask, key):
    """What the JAX policy does with `key`: its sampled action (flat) and log-probability."""
    if mask is not None and action == "MultiBinary":
        mask = mask.reshape(policy.action_space.shape)
    _, sampled = policy(None, observation, key=key, action_mask=mask)
    _, _, log_prob, _ = policy.evaluate_action(None, observation, sampled, action_mask=mask)
    return sampled.reshape(-1), log_prob


def run_json(*args: object) -> dict[str, np.ndarray]:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    return {name: np.asarray(values) for name, values in json.loads(done.stdout).items()}


SAMPLE_ROWS = 256  # policyport.sampling_noise runs eagerly, ~25 ms a key


@pytest.fixture(scope="module")
def sample_rows() -> Callable[[str], dict[str, np.ndarray]]:
    """Per action space (cached): inputs (observation, mask, noise: the noise of key i from
    policyport.sampling_noise, row by row), the keys' JAX samples and the sampled decisions'
    margins."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def rows(action: str) -> dict[str, np.ndarray]:
        if action in cache:
            return cache[action]
        policy = make_policy(action, seed=3)
        traced = trace(policy, sample=True)
        inputs = sample_inputs(policy, seed=1, batch=SAMPLE_ROWS)
        if action in MASKABLE:
            inputs["action_mask"][:ALL_FALSE_ROWS] = False
        keys = jax.random.split(jax.random.key(SAMPLE_KEY), SAMPLE_ROWS)
        inputs["noise"] = np.stack([policyport.sampling_noise(traced, key) for key in keys])
        masks = inputs.get("action_mask")
        want_action, want_log_prob = jax.vmap(
            lambda o, m, k: jax_sample(action, policy, o, m, k),
            in_axes=(0, None if masks is None else 0, 0),
        )(inputs["observation"], masks, keys)
        margins = None
        if traced.sampling.margins is not None:
            args = [inputs[name] for name in traced.input_names]
            margins = np.asarray(jax.vmap(traced.sampling.margins)(*args))
        cache[action] = {
            **inputs,
            "want_action": np.asarray(want_action),
            "want_log_prob": np.asarray(want_log_prob),
            "margins": margins,
        }
        return cache[action]

    return rows


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
@pytest.mark.parametrize("action", list(ACTION_SPACES))
def test_sample_with_noise_is_the_jax_sample(
    build, sample_artifacts, sample_rows, tmp_path, action, fmt
):
    """`batch_run --noise`, row i the noise of JAX key i (`policyport.sampling_noise`), gives
    what `policy(None, obs, key=key_i, action_mask=mask)` gives: discrete samples identical
    except where the contract allows (the two best legal `logits + noise` within NEAR_TIE,
    counted, rare), Box samples and log_prob within 1e-5 + 1e-5 * |jax| (the parity check's
    rule; float32 in ONNX Runtime and XLA differ by rounding only). Masked actions never
    sampled; all-masked rows sample 0 (Discrete, MultiDiscrete: with log_prob NaN), as in
    JAX; `action` stays the mode."""
    policy = make_policy(action, seed=3)
    rows = sample_rows(action)
    inputs = {k: rows[k] for k in ("observation", "action_mask") if k in rows}
    masks = inputs.get("action_mask")
    want_action, want_log_prob = rows["want_action"], rows["want_log_prob"]
    (tmp_path / "noise.f32").write_bytes(rows["noise"].astype("<f4").tobytes())

    files = write_inputs(tmp_path, inputs)
    got = run_json(
        build / "batch_run",
        "--noise",
        tmp_path / "noise.f32",
        sample_artifacts[f"{action}.sample.{fmt}"],
        *files,
    )
    sampled = got["sampled_action"].reshape(want_action.shape)
    if action == "Box":
        assert np.all(np.abs(sampled - want_action) <= ATOL + RTOL * np.abs(want_action))
    else:
        assert sampled.dtype == np.int64
        margins = rows["margins"].reshape(sampled.shape)
        differs = sampled != want_action
        assert not np.any(differs & (margins > NEAR_TIE)), "sampled actions differ off near-ties"
        assert int(differs.any(axis=1).sum()) <= SAMPLE_ROWS // 50  # near-ties are rare
        assert not policy.action_space.illegal_rows(sampled, masks).any()
        assert not sampled[:ALL_FALSE_ROWS].any()
    log_prob = got["log_prob"].astype(np.float32)
    assert log_prob.shape == (SAMPLE_ROWS,)
    np.testing.assert_array_equal(np.isnan(log_prob), np.isnan(want_log_prob))
    if action in ("Discrete", "MultiDiscrete"):  # MultiBinary: masked bits are 0, surely
        assert np.isnan(log_prob[:ALL_FALSE_ROWS]).all()
    finite = ~np.isnan(want_log_prob)
    assert np.all(
        np.abs(log_prob[finite] - want_log_prob[finite])
        <= ATOL + RTOL * np.abs(want_log_prob[finite])
    )
    expected = reference_outputs(policy, inputs)  # the mode and the value, unchanged by noise
    mode = got["action"].reshape(expected["action"].shape)
    if action == "Box":
        assert np.all(np.abs(mode - expected["action"]) <= ATOL + RTOL * np.abs(expected["action"]))
    else:
        np.testing.assert_array_equal(mode, expected["action"])


DRAWS = 20_000
# The distribution tests' significance: each test below must give p > P_MIN, with fixed seeds
# (so the outcome is fixed too). Measured 2026-12-02 with these seeds: the C++ draws give p
# from 0.048 (Discrete) to 0.80; wrong noise fed to the same artifacts gives p < 1e-13
# (Box: normal noise x 1.05, variance test), p = 0 (Discrete, MultiDiscrete: uniform where
# Gumbel belongs), 4e-65 (MultiBinary: u ** 1.1 instead of u).
P_MIN = 1e-3


def all_actions(action: str, space) -> np.ndarray:
    """Every action of a discrete space, one per row (joint actions for Multi* spaces)."""
    if action == "Discrete":
        return np.arange(space.n)[:, None]
    if action == "MultiDiscrete":
        return np.array(list(np.ndindex(*space.nvec)))
    return np.array(list(np.ndindex(*([2] * int(np.prod(space.shape))))))


@pytest.mark.parametrize("action", list(ACTION_SPACES))
def test_sample_draws_the_policy_distribution(build, sample_artifacts, tmp_path, action):
    """`batch_run --sample 2026`: DRAWS samples of one observation, the noise drawn in C++
    (Policy::draw_noise, std::mt19937_64(2026)), one mask entry forbidden (index 1).

    Discrete, MultiDiscrete, MultiBinary: Pearson's chi-square goodness of fit of the counts
    of every (joint) action against the JAX policy's probabilities, exp(evaluate_action's
    log_prob), over the legal actions (every expected count >= 5); masked actions never
    drawn. Box: per component, a z-test of the sample mean against the policy's mean (the
    mode) and a chi-square test of the sample variance against exp(log_std)^2, both
    two-sided. Each test must give p > P_MIN (1e-3). Every row's log_prob is also the
    policy's log-probability of its action (1e-5 + 1e-5 * |jax|)."""
    from scipy import stats

    policy = make_policy(action, seed=3)
    rng = np.random.default_rng(2026)
    observation = trace(policy).observation_space.sample_numpy(rng, 1)
    inputs = {"observation": np.repeat(observation, DRAWS, axis=0)}
    mask = None
    if action in MASKABLE:
        mask = np.ones(policy.action_space.mask_size, bool)
        mask[1] = False
        inputs["action_mask"] = np.repeat(mask[None], DRAWS, axis=0)
    model = sample_artifacts[f"{action}.sample.onnx"]
    files = write_inputs(tmp_path, inputs)
    got = run_json(build / "batch_run", "--sample", 2026, model, *files)
    again = run_json(build / "batch_run", "--sample", 2026, model, *files)
    np.testing.assert_array_equal(again["sampled_action"], got["sampled_action"])  # seeded
    other = run_json(build / "batch_run", "--sample", 2027, model, *files)
    assert not np.array_equal(other["sampled_action"], got["sampled_action"])
    log_prob = got["log_prob"].astype(np.float32)
    obs = jax.numpy.asarray(observation[0])
    jax_mask = None if mask is None else jax.numpy.asarray(mask)
    if action == "MultiBinary":
        jax_mask = jax_mask.reshape(policy.action_space.shape)

    def jax_log_prob(actions: np.ndarray) -> np.ndarray:
        shape = (len(actions), *policy.action_space.shape)
        one = lambda a: policy.evaluate_action(None, obs, a, action_mask=jax_mask)[2]  # noqa: E731
        return np.asarray(jax.vmap(one)(jax.numpy.asarray(actions.reshape(shape))))

    if action == "Box":
        sampled = got["sampled_action"].reshape(DRAWS, -1)
        mean = got["action"].reshape(DRAWS, -1)[0]
        std = np.exp(np.asarray(policy.action_head.action_dist.log_std))
        for i in range(sampled.shape[1]):
            z = (sampled[:, i].mean() - mean[i]) / (std[i] / np.sqrt(DRAWS))
            p_mean = 2 * stats.norm.sf(abs(z))
            chi2 = (DRAWS - 1) * sampled[:, i].var(ddof=1) / std[i] ** 2
            cdf = stats.chi2.cdf(chi2, DRAWS - 1)
            p_var = 2 * min(cdf, 1 - cdf)
            assert p_mean > P_MIN and p_var > P_MIN, (i, p_mean, p_var)
        want = jax_log_prob(sampled[:500])
    else:
        sampled = got["sampled_action"].reshape(DRAWS, -1)
        assert not policy.action_space.illegal_rows(sampled, inputs["action_mask"]).any()
        cells = all_actions(action, policy.action_space)
        probability = np.exp(jax_log_prob(cells).astype(np.float64))
        legal = probability > 0
        assert np.isclose(probability.sum(), 1.0, atol=1e-5)
        index = {tuple(cell): i for i, cell in enumerate(cells)}
        counts = np.bincount([index[tuple(row)] for row in sampled], minlength=len(cells))
        assert not counts[~legal].any()  # masked (joint) actions never drawn
        expected = DRAWS * probability[legal] / probability[legal].sum()
        assert expected.min() >= 5  # the chi-square approximation holds
        p = stats.chisquare(counts[legal], expected).pvalue
        assert p > P_MIN, f"chi-square p = {p:.2e}"
        want = jax_log_prob(sampled[:500])
    assert np.all(np.abs(log_prob[:500] - want) <= ATOL + RTOL * np.abs(want))


@pytest.mark.parametrize("option", [("--noise", "noise.f32"), ("--sample", "7")])
def test_sampling_a_default_entry_names_the_sample_entry(
    build, sample_artifacts, artifacts, discrete_files, tmp_path, option
):
    """A contract-2 file has no noise input: sampling it is refused (exit 2) before any file is
    read, naming the file to load: the sample entry from policyport.entries, or, for a file
    exported without --sample, the export to run."""
    flag, value = option
    default = sample_artifacts["Discrete.onnx"]
    done = run(
        build / "batch_run", flag, value, default, discrete_files["obs"], discrete_files["mask"]
    )
    assert_refused(
        done,
        f"'{default}' is the default entry of its policy (contract 2: no noise input, no "
        f"sampled_action). Load its sample entry '{default.parent / 'Discrete.sample.onnx'}' "
        "(policyport.entries) instead",
    )
    plain = artifacts["Discrete.onnx"]
    done = run(
        build / "batch_run", flag, value, plain, discrete_files["obs"], discrete_files["mask"]
    )
    assert_refused(
        done,
        "has no sampling path (contract 2: no noise input, no sampled_action): it was exported "
        f"without --sample. Re-export with `export-policy ... --sample` (Python: export(..., "
        f"sample=True)), which writes '{plain.parent / 'Discrete.sample.onnx'}' beside it",
    )


def test_noise_file_of_the_wrong_size(build, sample_artifacts, discrete_files, tmp_path):
    (tmp_path / "noise.f32").write_bytes(b"\0" * 4 * 14)  # 3 rows of 5 need 15 floats
    done = run(
        build / "batch_run",
        "--noise",
        tmp_path / "noise.f32",
        sample_artifacts["Discrete.sample.onnx"],
        discrete_files["obs"],
        discrete_files["mask"],
    )
    assert_refused(
        done, "holds 56 bytes; 3 observations need 60 (5 float32 values per observation)"
    )
    assert_refused(
        run(
            build / "batch_run",
            "--sample",
            "-1",
            sample_artifacts["Discrete.sample.onnx"],
            *discrete_files.values(),
        ),
        "--sample takes a seed, a non-negative integer; got '-1'",
    )


@pytest.mark.parametrize(
    ("entry", "version", "message"),
    [
        ("Discrete.onnx", "3", "declares contract version 3 and has no 'noise' input, no"),
        ("Discrete.sample.onnx", "2", "declares contract version 2 and has a 'noise' input, a"),
    ],
)
def test_sampling_path_and_version_must_agree(
    build, sample_artifacts, discrete_files, tmp_path, entry, version, message
):
    edited = edited_metadata(
        sample_artifacts[entry], tmp_path / "edited.onnx", "policyport.contract_version", version
    )
    assert_refused(run(build / "batch_run", edited, *discrete_files.values()), message)


def test_noise_metadata_must_match_the_noise_input(
    build, sample_artifacts, discrete_files, tmp_path
):
    blocks = json.dumps([{"distribution": "gumbel", "offset": 0, "shape": [4]}])
    edited = edited_metadata(
        sample_artifacts["Discrete.sample.onnx"], tmp_path / "e.onnx", "policyport.noise", blocks
    )
    assert_refused(
        run(build / "batch_run", edited, *discrete_files.values()),
        "its policyport.noise blocks hold 4 values but the noise input holds 5 per row",
    )


def test_a_distribution_the_wrapper_cannot_draw(build, sample_artifacts, discrete_files, tmp_path):
    """`other` noise (a distribution the exporter could not name): --sample is refused with
    what to do instead; --noise (the caller's own noise) still runs."""
    blocks = json.dumps([{"distribution": "other", "offset": 0, "shape": [5]}])
    edited = edited_metadata(
        sample_artifacts["Discrete.sample.onnx"], tmp_path / "e.onnx", "policyport.noise", blocks
    )
    assert_refused(
        run(build / "batch_run", "--sample", 1, edited, *discrete_files.values()),
        "offset 0 drawn from 'other', which this wrapper cannot draw",
    )
    (tmp_path / "noise.f32").write_bytes(np.zeros((3, 5), "<f4").tobytes())
    assert (
        run(
            build / "batch_run", "--noise", tmp_path / "noise.f32", edited, *discrete_files.values()
        ).returncode
        == 0
    )


@pytest.mark.parametrize("action", list(ACTION_SPACES))
def test_policy_info_prints_the_entry_and_noise(build, sample_artifacts, action):
    """The sample entry's noise blocks and entries are its metadata's; act() on the sample
    entry (zero noise) is the default entry's act()."""
    import onnx

    model = sample_artifacts[f"{action}.sample.onnx"]
    metadata = {p.key: p.value for p in onnx.load(model).metadata_props}
    observation = ["0.1", "0", "-0.05", "0.3", "1", "0.5"]
    info = json.loads(run(build / "policy_info", model, *observation).stdout)
    assert info["contract_version"] == 3 and info["entry"] == "sample"
    assert info["entries"] == json.loads(metadata["policyport.entries"])
    assert info["noise"] == json.loads(metadata["policyport.noise"])
    assert info["noise_size"] == sum(int(np.prod(b["shape"])) for b in info["noise"])
    default = json.loads(
        run(build / "policy_info", sample_artifacts[f"{action}.onnx"], *observation).stdout
    )
    assert (default["entry"], default["noise_size"], default["noise"]) == ("default", 0, [])
    assert info["act"] == default["act"]


@pytest.fixture(scope="module")
def cartpole_entries(tmp_path_factory) -> tuple[object, Path]:
    """The committed CartPole policy and its sample entry."""
    import lerax.env

    from policyport.policy import MLPActorCriticPolicy

    policy = MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())
    folder = tmp_path_factory.mktemp("cpp_cartpole_sample")
    results = policyport.export(policy, "onnx", folder / "cartpole.onnx", sample=True)
    [sample] = [r.paths[0] for r in results if r.entry == "sample"]
    return policy, sample


def jax_sampled_cartpole(policy, start, keys) -> dict[str, object]:
    """lerax's CartPole (Euler) driven by the JAX policy sampling with keys[t] at step t."""
    import diffrax
    import jax.numpy as jnp
    import lerax.env
    from lerax.env.classic_control.cartpole import CartPoleState

    env = lerax.env.CartPole(solver=diffrax.Euler())
    env_key = jax.random.key(0)  # unused by CartPole's transition and terminal

    @jax.jit
    def step(state, key):
        _, action = policy(None, state.y, key=key)
        state = env.transition(state, action, key=env_key)
        return state, env.terminal(state, key=env_key)

    state = CartPoleState(y=jnp.array(start, dtype=jnp.float32), t=jnp.array(0.0))
    steps, terminated = 0, False
    while not terminated and steps < 500:
        state, done = step(state, keys[steps])
        steps, terminated = steps + 1, bool(done)
    return {"steps": steps, "terminated": terminated, "final_state": np.asarray(state.y)}


@pytest.mark.parametrize("start", [DEFAULT_START, (0.0, 0.0, 0.15, 1.0)])
def test_cartpole_sampled_replays_the_jax_rollout(build, cartpole_entries, tmp_path, start):
    """`cartpole --noise` (row t: the noise of JAX key t) takes JAX's sampled action at every
    step: the same step count and termination; final states within 1e-4 when the episode is
    short (over hundreds of steps float32 rounding in libm and XLA drifts apart, as in
    test_cartpole_matches_jax_rollout). `--sample SEED` runs the same loop with the wrapper's
    own draws: the same seed gives the same episode."""
    policy, model = cartpole_entries
    keys = jax.random.split(jax.random.key(3), 500)
    noise = trace(policy, sample=True).sampling.noise_batch(keys)
    (tmp_path / "noise.f32").write_bytes(noise.astype("<f4").tobytes())
    got = run_json(build / "cartpole", "--noise", tmp_path / "noise.f32", model, *start)
    want = jax_sampled_cartpole(policy, start, keys)
    assert (int(got["steps"]), bool(got["terminated"])) == (want["steps"], want["terminated"])
    if want["steps"] < 100:
        np.testing.assert_allclose(got["final_state"], want["final_state"], atol=1e-4)
    seeded = run(build / "cartpole", "--sample", 11, model, *start)
    assert seeded.returncode == 0, seeded.stderr
    assert run(build / "cartpole", "--sample", 11, model, *start).stdout == seeded.stdout


def test_cartpole_sampling_needs_the_sample_entry(build, cartpole_entries, cartpole_onnx, tmp_path):
    _, model = cartpole_entries
    default = model.parent / "cartpole.onnx"
    assert_refused(
        run(build / "cartpole", "--sample", 1, default), f"Load its sample entry '{model}'"
    )
    assert_refused(
        run(build / "cartpole", "--sample", 1, cartpole_onnx), "exported without --sample"
    )
    (tmp_path / "short.f32").write_bytes(np.zeros((3, 2), "<f4").tobytes())
    assert_refused(
        run(build / "cartpole", "--noise", tmp_path / "short.f32", model, 0, 0, 0, 0),
        "holds 3 rows; the episode reached step 4",
    )


# ---- Recurrent policies (contract 4) -----------------------------------------------------------


@pytest.mark.parametrize("case", RECURRENT_CASES)
def test_sequence_run_carries_the_state_like_onnxruntime(build, tmp_path_factory, case):
    """Policy::step with a State per agent (5 agents, 32 steps, random resets): the outputs
    of every step, next states included, are onnxruntime-in-Python's driven the same way."""
    sequence = recurrent_sequence(case, tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp(f"sequence_{case}")
    sequence.observations.astype("<f4").tofile(folder / "obs.f32")
    sequence.resets.astype(np.uint8).tofile(folder / "resets.u8")
    files = [folder / "obs.f32", folder / "resets.u8"]
    if sequence.masks is not None:
        sequence.masks.astype(np.uint8).tofile(folder / "masks.u8")
        files.append(folder / "masks.u8")
    steps = len(sequence.resets)
    done = run(build / "sequence_run", sequence.path, steps, *files)
    assert done.returncode == 0, done.stderr
    got = {
        name: np.asarray(values).reshape(sequence.expected[name].shape)
        for name, values in json.loads(done.stdout).items()
    }
    assert_sequence_matches(sequence, got)


def test_stateless_calls_refuse_a_recurrent_policy(build, tmp_path_factory, tmp_path):
    sequence = recurrent_sequence("gru", tmp_path_factory.getbasetemp())
    sequence.observations[0].astype("<f4").tofile(tmp_path / "obs.f32")
    sequence.masks[0].astype(np.uint8).tofile(tmp_path / "mask.u8")
    done = run(build / "batch_run", sequence.path, tmp_path / "obs.f32", tmp_path / "mask.u8")
    assert_refused(done, "is a recurrent policy (contract 4): each call takes its state")


def test_recurrent_metadata_that_disagrees_is_refused(build, tmp_path_factory, tmp_path):
    """policyport.state must list the state inputs it pairs with next_state outputs."""
    sequence = recurrent_sequence("gru", tmp_path_factory.getbasetemp())
    model = edited_metadata(
        sequence.path,
        tmp_path / "edited.onnx",
        "policyport.state",
        '{"leaves": [], "reset": "reset"}',
    )
    sequence.observations[0].astype("<f4").tofile(tmp_path / "obs.f32")
    sequence.resets[:1].astype(np.uint8).tofile(tmp_path / "resets.u8")
    sequence.masks[0].astype(np.uint8).tofile(tmp_path / "mask.u8")
    files = [tmp_path / "obs.f32", tmp_path / "resets.u8", tmp_path / "mask.u8"]
    done = run(build / "sequence_run", model, 1, *files)
    assert_refused(done, "its policyport.state metadata does not list the 1 state leaves")

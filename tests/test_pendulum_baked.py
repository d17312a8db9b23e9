"""examples/pendulum, baked and sampled: the README's export command end to end, the
artifact's returns (driven by drive_numpy.py's NumPy Pendulum) against the lerax policy's
in the wrapped env, and drive_numpy.py without JAX."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("lerax.env", reason="the test install includes lerax")

from lerax.env import Pendulum
from lerax.wrapper import ClipAction

from policyport._cli import run
from policyport.policy import MLPActorCriticPolicy
from test_examples import NO_JAX

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pendulum"
# The README's command, minus `-o` (the test writes to a temporary folder).
EXPORT_ARGS = [
    "examples/pendulum/policy.eqx",
    "--format",
    "onnx",
    "--env",
    "examples.pendulum.envs:trained_env",
    "--bake-wrappers",
    "--clip-actions",
    "--sample",
]
EPISODES = 8
# Returns over 200 steps, the artifact in drive_numpy's float64 RK4 Pendulum vs the lerax
# policy in lerax's float32 Pendulum (Tsit5, adaptive to rtol = atol = 1e-5). Each step's
# action agrees to the parity rule (1e-5 + 1e-5 * |a|) and each step's state to about the
# integrator tolerance; the closed loop damps both. Measured over 100 episodes of each kind
# (README): returns beyond 1 in magnitude agree to 1.3e-6 relative; episodes that start
# upright return about -0.01 and differ by up to 7.5e-7 (float32 rounding of JAX's sum),
# hence an absolute floor. The worst used 13% of this budget.
RETURN_RTOL, RETURN_ATOL = 1e-5, 1e-4


def _example_module(name: str):
    """examples/pendulum/NAME.py, importable without the repository root on sys.path."""
    spec = importlib.util.spec_from_file_location(f"pendulum_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # equinox resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


compare = _example_module("compare_jax")
drive = compare.drive


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """The README's export, through the CLI, from the repository root."""
    path = tmp_path_factory.mktemp("pendulum") / "pendulum.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        assert run([*EXPORT_ARGS, "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def jax_episodes():
    """The lerax policy (lerax's own class) in the wrapped env: the policy, start states,
    each step's key, and the deterministic and sampled returns."""
    policy = compare.load_policy()
    return policy, *compare.jax_episodes(policy, EPISODES, seed=1)


def test_readme_gives_the_command():
    command = " ".join(["export-policy", *EXPORT_ARGS])
    assert command in (EXAMPLE / "README.md").read_text()


def test_artifact_bakes_clip_action_and_names_the_time_limit(artifact):
    meta = {p.key: p.value for p in onnx.load(artifact).metadata_props}
    assert json.loads(meta["policyport.wrappers"]) == [
        {
            "wrapper": "ClipAction",
            "side": "action",
            "space": json.loads(meta["policyport.action_space"]),
        },
        {"wrapper": "TimeLimit", "side": "outside"},
    ]
    assert json.loads(meta["policyport.action_clip"]) == {"low": [-2.0], "high": [2.0]}
    assert json.loads(meta["policyport.parity"])["passed"]
    # --sample wrote the sample entry beside it, named in both entries' metadata.
    entries = {"default": "pendulum.onnx", "sample": "pendulum.sample.onnx"}
    assert json.loads(meta["policyport.entries"]) == entries
    sample = {p.key: p.value for p in onnx.load(artifact.parent / entries["sample"]).metadata_props}
    assert json.loads(sample["policyport.entries"]) == entries
    assert sample["policyport.wrappers"] == meta["policyport.wrappers"]


def test_deterministic_returns_equal_jax(artifact, jax_episodes):
    _, starts, _, deterministic, _ = jax_episodes
    default, _ = drive.open_entries(artifact)
    got = drive.run_episodes(default, starts)
    np.testing.assert_allclose(got, deterministic, rtol=RETURN_RTOL, atol=RETURN_ATOL)
    assert deterministic.mean() > -250  # the policy does swing up (training.json: -165)


def test_sampled_returns_equal_jax_for_the_same_keys(artifact, jax_episodes):
    policy, starts, step_keys, deterministic, sampled = jax_episodes
    noise = compare.noise_for(policy, step_keys)  # policyport.sampling_noise per step key
    assert noise.shape == (drive.EPISODE_STEPS, EPISODES, 1)
    _, sample = drive.open_entries(artifact)
    got = drive.run_episodes(sample, starts, noise)
    np.testing.assert_allclose(got, sampled, rtol=RETURN_RTOL, atol=RETURN_ATOL)
    assert not np.allclose(sampled, deterministic, rtol=1e-2)  # the noise does act


def test_drive_numpy_runs_without_jax(artifact):
    args = [str(EXAMPLE / "drive_numpy.py"), str(artifact), "--episodes", "20"]
    done = subprocess.run(
        [sys.executable, "-c", NO_JAX, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    returns = re.findall(r"^(deterministic|sampled) +mean return +(-?[\d.]+)", done.stdout, re.M)
    assert [kind for kind, _ in returns] == ["deterministic", "sampled"], done.stdout
    assert all(float(value) > -250 for _, value in returns), done.stdout


def weaker_pendulum():
    """A chain whose spaces fit policy.eqx neither wrapped (unbounded) nor at its base."""
    return ClipAction(compare.envs.TimeLimit(Pendulum(max_torque=1.0), 200))


def test_a_policy_built_against_the_base_env_loads_only_when_baking(tmp_path, capsys):
    out = ["--format", "onnx", "-o", str(tmp_path / "p.onnx")]
    wrapped = "examples.pendulum.envs:trained_env"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        # Without --bake-wrappers the env must be the one the policy carries.
        assert run([EXPORT_ARGS[0], "--env", wrapped, "--rollouts", "1", *out]) == 2
        assert "action_space Box(low=-2.0, high=2.0)" in capsys.readouterr().err
        weaker = "test_pendulum_baked:weaker_pendulum"
        assert run([EXPORT_ARGS[0], "--env", weaker, "--bake-wrappers", *out]) == 2
        assert "but the env given has Box(low=-inf, high=inf)" in capsys.readouterr().err
        assert not (tmp_path / "p.onnx").exists()
        # A self-describing file built against the base env agrees with the chain too.
        own = tmp_path / "own.eqx"
        MLPActorCriticPolicy.deserialize(EXAMPLE / "policy.eqx", Pendulum()).serialize(own)
        assert run([str(own), "--env", wrapped, "--bake-wrappers", "--no-check", *out]) == 0
    assert (tmp_path / "p.onnx").is_file()

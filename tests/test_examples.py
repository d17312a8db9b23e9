"""The bundled trained examples: their returns, closed-loop parity, and JAX-free deployment."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

lerax_env = pytest.importorskip("lerax.env", reason="the test install includes lerax")
from lerax.env.classic_control.cartpole import CartPoleState  # noqa: E402

import policyport  # noqa: E402
from policyport._export import compare_rollouts  # noqa: E402
from policyport.checks import ATOL, RTOL, reference_outputs  # noqa: E402
from policyport.policy import MLPActorCriticPolicy  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Runs a script with `import jax` made impossible, then checks nothing imported it.
NO_JAX = """
import runpy, sys
class _NoJax:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith(("jax.", "jaxlib")):
            raise ImportError("jax is blocked: deployment must not need it")
sys.meta_path.insert(0, _NoJax())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules)
"""


def _gridworld_env():
    spec = importlib.util.spec_from_file_location(
        "examples_gridworld_env", EXAMPLES / "gridworld" / "gridworld.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module.Gridworld()


def _load(name: str) -> tuple[MLPActorCriticPolicy, object]:
    """The bundled policy and its env (CartPole's file is lerax's own, without a header)."""
    if name == "Gridworld":
        return MLPActorCriticPolicy.deserialize(EXAMPLES / "gridworld" / "policy.eqx"), (
            _gridworld_env()
        )
    env = getattr(lerax_env, name)()
    return MLPActorCriticPolicy.deserialize(EXAMPLES / name.lower() / "policy.eqx", env), env


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The bundled policies exported once per format the tests use."""
    folder = tmp_path_factory.mktemp("examples")
    cache: dict = {}

    def get(name: str, format: str) -> Path:
        if (name, format) not in cache:
            policy, _ = _load(name)
            [result] = policyport.export(policy, format, source=folder / f"{name}.eqx")
            cache[name, format] = result.paths[0]
        return cache[name, format]

    return get


def _mean_return(policy, env, *, episodes: int, max_steps: int, seed: int) -> float:
    """Mean deterministic return over `episodes` (vmapped), each cut at `max_steps`."""

    def episode(key):
        init_key, key = jax.random.split(key)
        state = env.initial(key=init_key)

        def step(carry, step_key):
            state, done, total = carry
            keys = jax.random.split(step_key, 4)
            action = policy(None, env.observation(state, key=keys[0]))[1]
            next_state = env.transition(state, action, key=keys[1])
            reward = env.reward(state, action, next_state, key=keys[2])
            total = total + jnp.where(done, 0.0, reward)
            done = done | env.terminal(next_state, key=keys[3])
            return (next_state, done, total), None

        (_, _, total), _ = jax.lax.scan(
            step, (state, jnp.array(False), jnp.array(0.0)), jax.random.split(key, max_steps)
        )
        return total

    keys = jax.random.split(jax.random.key(seed), episodes)
    return float(jnp.mean(eqx.filter_jit(jax.vmap(episode))(keys)))


def test_committed_cartpole_reaches_its_return():
    policy, env = _load("CartPole")
    stated = json.loads((EXAMPLES / "cartpole" / "training.json").read_text())
    mean = _mean_return(policy, env, episodes=100, max_steps=500, seed=123)
    assert mean >= 475.0, mean
    assert stated["mean_return"] >= 475.0


def test_committed_pendulum_reaches_its_return():
    policy, env = _load("Pendulum")
    mean = _mean_return(policy, env, episodes=100, max_steps=200, seed=123)
    assert mean > -250.0, mean


@pytest.mark.parametrize(
    ("name", "format", "max_steps"),
    [
        ("CartPole", "onnx", 500),
        ("CartPole", "ort", 500),
        ("CartPole", "savedmodel", 500),
        ("Pendulum", "onnx", 200),
        ("Gridworld", "onnx", 50),
    ],
)
def test_closed_loop_parity(artifacts, name, format, max_steps):
    policy, env = _load(name)
    report = compare_rollouts(
        policy, artifacts(name, format), env, format=format, episodes=3, max_steps=max_steps
    )
    assert report.passed, report.to_table()
    if name == "CartPole":
        assert all(e.return_artifact == 500.0 for e in report.episodes)
    if name == "Gridworld":  # every start reaches the goal, masked moves never taken
        assert all(e.return_artifact > 0.8 for e in report.episodes)


def _jax_euler_cartpole(initial: tuple[float, ...], max_steps: int) -> list[int]:
    """The JAX policy driving lerax's CartPole with Euler steps (Gymnasium's dynamics)."""
    policy, _ = _load("CartPole")
    env = lerax_env.CartPole(solver=diffrax.Euler())
    key = jax.random.key(0)

    @eqx.filter_jit
    def step(state):
        action = policy(None, env.observation(state, key=key))[1]
        next_state = env.transition(state, action, key=key)
        return next_state, action, env.terminal(next_state, key=key)

    state = CartPoleState(y=jnp.array(initial, dtype=jnp.float32), t=jnp.array(0.0))
    actions = []
    for _ in range(max_steps):
        state, action, done = step(state)
        actions.append(int(action))
        if bool(done):
            break
    return actions


def _run_without_jax(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", NO_JAX, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("initial", [(0.01, -0.02, 0.03, 0.04), (-0.04, 0.03, -0.02, 0.01)])
def test_deploy_onnx_without_jax_matches_the_jax_rollout(artifacts, initial):
    model = artifacts("CartPole", "onnx")
    script = str(EXAMPLES / "cartpole" / "deploy_onnx.py")
    out = json.loads(_run_without_jax(script, str(model), "--initial", *map(str, initial)))
    expected = _jax_euler_cartpole(initial, 500)
    assert out["return"] == float(len(expected)) == 500.0
    # numpy's float64 dynamics and XLA's float32 ones differ in the last bits from the first
    # step; a bang-bang controller amplifies that until, after ~140 steps, some action
    # flips. Before that the two must agree exactly; the return must agree throughout.
    assert out["actions"][:100] == expected[:100]


def test_serve_savedmodel_without_jax_matches_jax(artifacts, tmp_path):
    policy, _ = _load("Pendulum")
    model = artifacts("Pendulum", "savedmodel")
    rng = np.random.default_rng(0)
    theta = rng.uniform(-np.pi, np.pi, 64)
    observations = np.stack([np.cos(theta), np.sin(theta), rng.uniform(-8, 8, 64)], axis=1).astype(
        np.float32
    )
    observations.tofile(tmp_path / "obs.f32")
    script = str(EXAMPLES / "pendulum" / "serve_savedmodel.py")
    out = json.loads(
        _run_without_jax(script, str(model), "--observations", str(tmp_path / "obs.f32"))
    )
    want = reference_outputs(policy, {"observation": observations})
    np.testing.assert_allclose(np.array(out["action"]), want["action"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.array(out["value"]), want["value"], rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- the recurrent example

RECURRENT = EXAMPLES / "recurrent"
# The example's modules import each other by these names, as other examples' do (flax's
# `export`, ...): loaded with the names cleared, and the names given back afterwards.
_RECURRENT_MODULES = ("policies", "run_artifact", "train", "export")


@pytest.fixture(scope="module")
def recurrent_export():
    saved = {name: sys.modules.pop(name) for name in _RECURRENT_MODULES if name in sys.modules}
    sys.path.insert(0, str(RECURRENT))
    try:
        module = importlib.import_module("export")
    finally:
        sys.path.remove(str(RECURRENT))
        for name in _RECURRENT_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return module


def test_recurrent_artifact_plays_memory_chain_like_jax_without_jax(recurrent_export, tmp_path):
    """The GRU policy's ONNX artifact, driven from NumPy with its state carried and `reset`
    set on each agent's episode starts (at different steps per row), plays the same episodes
    as the JAX policy with the same actions, and solves them (the committed weights do)."""
    model = tmp_path / "policy.onnx"
    [result] = recurrent_export.export("onnx", model)
    assert result.report.passed, result.report.to_table()
    agents, episodes, seed = 12, 3, 7  # 12 rows: every step offset of an 11-step episode
    out = json.loads(
        _run_without_jax(
            str(RECURRENT / "run_artifact.py"),
            str(model),
            *("--agents", str(agents), "--episodes", str(episodes), "--seed", str(seed)),
        )
    )
    returns, actions = recurrent_export.jax_play(
        recurrent_export.load_recurrent(recurrent_export.POLICY_PATH, 2),
        jnp.asarray(out["context"]).reshape(-1, 2),
        jnp.asarray(out["query"]).reshape(-1),
    )
    assert out["actions"] == np.asarray(actions).reshape(agents, episodes, -1).tolist()
    assert out["returns"] == np.asarray(returns).reshape(agents, episodes).tolist()
    assert out["mean_return"] == 1.0  # training.json: 1,000 of 1,000 episodes solved


def test_pixel_example_trains_exports_and_drives_catch_from_uint8_frames(tmp_path):
    """examples/pixel: the CNN learns the teacher, exports with a uint8 frame input, and
    the artifact in onnxruntime catches every ball the JAX policy catches, action for
    action."""
    import onnx
    import onnxruntime as ort

    folder = str(EXAMPLES / "pixel")
    sys.path.insert(0, folder)
    try:
        import catch
        import train
    finally:
        sys.path.remove(folder)
    model, params, accuracy = train.train(steps=300)
    assert accuracy == 1.0
    [result] = train.export(model, params, tmp_path / "catch.onnx")
    assert result.report.passed
    graph = onnx.load(result.paths[0]).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    session = ort.InferenceSession(str(result.paths[0]), providers=["CPUExecutionProvider"])
    jitted = jax.jit(lambda frame: jnp.argmax(model.apply(params, frame)))
    for seed in range(3):
        by_jax = catch.episode(lambda frame: int(jitted(frame)), seed)
        by_onnx = catch.episode(
            lambda frame: int(session.run(["action"], {"observation": frame[None]})[0][0]), seed
        )
        assert by_onnx.actions == by_jax.actions
        assert by_onnx.total_return == by_jax.total_return == catch.BALLS

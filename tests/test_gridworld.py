"""The masked gridworld example: its env matches its README spec, and the committed policy
beats the random legal-move baseline, needs its masks, and runs the same exported to ONNX."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("lerax.env", reason="the test install includes lerax")
ort = pytest.importorskip("onnxruntime")

import policyport  # noqa: E402
from policyport.policy import MLPActorCriticPolicy  # noqa: E402

FOLDER = Path(__file__).resolve().parent.parent / "examples" / "gridworld"


def _load_example(module_name: str, file_name: str) -> ModuleType:
    """Import a script of the example under a name that cannot clash with other modules."""
    spec = importlib.util.spec_from_file_location(module_name, FOLDER / file_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# evaluate.py puts its folder on sys.path and imports `gridworld` from there.
gw_eval = _load_example("gridworld_example_evaluate", "evaluate.py")
gw = sys.modules["gridworld"]

KEY = jax.random.key(0)  # the env ignores keys


@pytest.fixture(scope="module")
def env() -> gw.Gridworld:
    return gw.Gridworld()


@pytest.fixture(scope="module")
def policy() -> MLPActorCriticPolicy:
    return MLPActorCriticPolicy.deserialize(FOLDER / "policy.eqx")


def _state(row: int, col: int, t: int = 0) -> gw.GridworldState:
    return gw.GridworldState(position=jnp.array([row, col], jnp.int32), t=jnp.array(t))


def test_readme_states_the_layout_the_code_uses():
    readme = (FOLDER / "README.md").read_text()
    walls_line = readme.split("**Walls**")[1].split("- **Goal**")[0]
    walls = {(int(r), int(c)) for r, c in re.findall(r"\((\d),(\d)\)", walls_line)}
    assert walls == set(gw.WALLS) and len(gw.WALLS) == 17
    drawn = [line.split()[-1] for line in readme.splitlines() if line.strip().startswith("row ")]
    assert "\n".join(drawn) == gw.ascii_map()
    assert f"**Goal**: `({gw.GOAL[0]},{gw.GOAL[1]})`" in readme
    assert f"truncated after {gw.MAX_STEPS} steps" in readme
    assert f"among the {len(gw.start_cells())} free cells" in readme


def test_every_start_reaches_the_goal_and_has_a_legal_move():
    distances = gw.shortest_distances()
    for row, col in gw.start_cells().tolist():
        assert (row, col) in distances
        assert gw.legal_moves(row, col)
    assert max(distances.values()) == 16


def test_mask_observation_and_moves_follow_the_spec(env):
    for row, col in gw.start_cells().tolist():
        state = _state(row, col)
        mask = np.asarray(env.action_mask(state, key=KEY))
        assert mask.dtype == bool and mask.tolist() == [
            a in gw.legal_moves(row, col) for a in range(4)
        ]
        obs = np.asarray(env.observation(state, key=KEY))
        assert obs.dtype == np.float32 and obs.shape == (49,)
        assert obs.sum() == 1.0 and obs[row * 7 + col] == 1.0
        for action in range(4):
            moved = env.transition(state, jnp.array(action), key=KEY)
            d_row, d_col = gw.MOVES[action] if mask[action] else (0, 0)  # illegal: stay put
            assert np.asarray(moved.position).tolist() == [row + d_row, col + d_col]
            assert int(moved.t) == 1


def test_reward_and_episode_end(env):
    before, at_goal, elsewhere = _state(6, 5), _state(6, 6), _state(6, 4, t=gw.MAX_STEPS)
    assert float(env.reward(before, jnp.array(1), at_goal, key=KEY)) == 1.0
    assert float(env.reward(before, jnp.array(1), elsewhere, key=KEY)) == pytest.approx(-0.01)
    assert bool(env.terminal(at_goal, key=KEY)) and not bool(env.terminal(elsewhere, key=KEY))
    assert bool(env.truncate(elsewhere)) and not bool(env.truncate(_state(6, 4, t=49)))


def test_committed_policy_scores_what_training_json_states(env, policy):
    stated = json.loads((FOLDER / "training.json").read_text())
    figures = gw_eval.evaluate(env, policy, key=jax.random.split(jax.random.key(0))[1])
    assert figures == stated["figures"]


def test_committed_policy_beats_the_random_baseline_and_needs_its_masks(env, policy):
    states = gw_eval.random_starts(env, 500, key=jax.random.key(123))
    key = jax.random.key(7)
    masked = gw_eval.play(env, gw_eval.masked_player(policy), states, key=key)
    baseline = gw_eval.play(env, gw_eval.random_legal_player, states, key=key)
    unmasked = gw_eval.play(env, gw_eval.unmasked_player(policy), states, key=key)
    assert float(jnp.mean(masked.successes)) == 1.0
    assert float(jnp.mean(masked.returns)) > 0.9 > 0.0 > float(jnp.mean(baseline.returns))
    assert float(jnp.mean(unmasked.returns)) < float(jnp.mean(baseline.returns))
    every = gw_eval.exhaustive(env, policy)
    assert every["masked_solved"] == every["masked_shortest_path"] == every["start_cells"]


def _numpy_episode(session: ort.InferenceSession, start: tuple[int, int]) -> list[int]:
    """The README's env in plain numpy, driven by the ONNX artifact; returns the actions."""
    walls = gw.wall_grid()
    row, col = start
    actions: list[int] = []
    while (row, col) != gw.GOAL and len(actions) < gw.MAX_STEPS:
        obs = np.zeros((1, 49), np.float32)
        obs[0, row * 7 + col] = 1.0
        mask = np.zeros((1, 4), bool)
        for a, (d_row, d_col) in enumerate(gw.MOVES):
            r, c = row + d_row, col + d_col
            mask[0, a] = 0 <= r < 7 and 0 <= c < 7 and not walls[r, c]
        [action] = session.run(["action"], {"observation": obs, "action_mask": mask})[0].tolist()
        assert mask[0, action]
        row, col = row + gw.MOVES[action][0], col + gw.MOVES[action][1]
        actions.append(action)
    return actions


@eqx.filter_jit
def _jax_step(
    env: gw.Gridworld, policy: MLPActorCriticPolicy, state: gw.GridworldState
) -> tuple[gw.GridworldState, jax.Array]:
    mask = env.action_mask(state, key=KEY)
    action = policy(None, env.observation(state, key=KEY), action_mask=mask)[1]
    return env.transition(state, action, key=KEY), action


def _jax_episode(env: gw.Gridworld, policy: MLPActorCriticPolicy, start: list[int]) -> list[int]:
    state, actions = _state(*start), []
    while not bool(env.terminal(state, key=KEY)) and not bool(env.truncate(state)):
        state, action = _jax_step(env, policy, state)
        actions.append(int(action))
    return actions


def test_onnx_artifact_drives_a_numpy_env_like_jax_from_every_start(env, policy, tmp_path):
    [result] = policyport.export(policy, "onnx", tmp_path / "gridworld.onnx")
    session = ort.InferenceSession(str(result.paths[0]), providers=["CPUExecutionProvider"])
    distances = gw.shortest_distances()
    for start in gw.start_cells().tolist():
        actions = _numpy_episode(session, tuple(start))
        assert actions == _jax_episode(env, policy, start)
        assert len(actions) == distances[tuple(start)]

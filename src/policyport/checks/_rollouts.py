"""Closed-loop parity: drive the same environment with the JAX policy and with an artifact.

Both rollouts start from the same seeds and use the same per-step keys, so any difference
comes from the policy's outputs alone. A trace with the sampling path (the sample entry)
is compared on its sampled actions: both sides get, per step, the noise of the same policy
key (`Sampling.noise_batch`, `jax.random` as the policy draws it), from a key stream apart
from the env's, so the env's keys are those of the deterministic comparison. Discrete
tasks must produce identical action sequences and returns; continuous tasks report the
largest state divergence and return difference, bounded by the tolerances below.

The environment is anything with lerax's functional API: `initial`, `observation`,
`action_mask`, `transition`, `reward`, `terminal`, `truncate` (lerax's envs and wrappers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._backend import on_reference_backend
from ..formats import Runner
from ..tracing import ACTION, MASK, NOISE, RESET, SAMPLED_ACTION, TracedPolicy

# Continuous tasks: per-step action differences of ~1e-7 (float32 sums reordered) feed
# back through the dynamics. On the bundled Pendulum policy (200 steps, onnxruntime) they
# grow to at most 5e-5 in the state and 1e-4 in the return (measured 2026-11-25); these
# bounds leave 20x and 100x room and still catch a real divergence, which reaches 1e-1
# and more within tens of steps.
STATE_ATOL = 1e-3
RETURN_ATOL = 1e-2


@dataclass(frozen=True)
class EpisodeComparison:
    seed: int
    steps_jax: int
    steps_artifact: int
    return_jax: float
    return_artifact: float
    first_action_mismatch: int | None
    max_state_divergence: float


@dataclass(frozen=True)
class RolloutReport:
    """How an artifact behaved in closed loop, episode by episode."""

    format: str
    artifact: str
    discrete: bool
    max_steps: int
    episodes: list[EpisodeComparison]
    tolerances: dict[str, float]
    passed: bool
    sampled: bool = False  # compared on sampled actions (the sample entry)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The short form embedded in the artifact's metadata."""
        return {
            "passed": self.passed,
            "episodes": len(self.episodes),
            "max_steps": self.max_steps,
            "mean_return": float(np.mean([e.return_artifact for e in self.episodes])),
            "max_return_diff": max(abs(e.return_jax - e.return_artifact) for e in self.episodes),
            "max_state_divergence": max(e.max_state_divergence for e in self.episodes),
        }

    def to_table(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        worst_state = max(e.max_state_divergence for e in self.episodes)
        worst_return = max(abs(e.return_jax - e.return_artifact) for e in self.episodes)
        mismatched = sum(e.first_action_mismatch is not None for e in self.episodes)
        mean = np.mean([e.return_artifact for e in self.episodes])
        mean_jax = np.mean([e.return_jax for e in self.episodes])
        actions = "sampled actions, " if self.sampled else ""
        lines = [
            f"Closed loop {status}: {self.format} artifact {self.artifact}, {actions}"
            f"{len(self.episodes)} episodes of at most {self.max_steps} steps",
            f"  mean return {mean:.3f} (jax {mean_jax:.3f}); worst return difference "
            f"{worst_return:.3g}; worst state divergence {worst_state:.3g}; "
            f"episodes whose actions differ: {mismatched}",
        ]
        if self.discrete:
            lines.append("  tolerance: identical action sequences and returns")
        else:
            lines.append(
                f"  tolerance: state divergence <= {STATE_ATOL:g}, return difference <= "
                f"{RETURN_ATOL:g}"
            )
        return "\n".join(lines)


def _flat_state(state: Any) -> np.ndarray:
    leaves = [np.ravel(np.asarray(x, dtype=np.float64)) for x in jax.tree.leaves(state)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


class _Stepper(eqx.Module):
    """The environment's functional API, jitted once per env."""

    env: Any

    @eqx.filter_jit
    def reset(self, key):
        state_key, obs_key, mask_key = jax.random.split(key, 3)
        state = self.env.initial(key=state_key)
        return state, *self._look(state, obs_key, mask_key)

    def _look(self, state, obs_key, mask_key):
        observation = self.env.observation(state, key=obs_key)
        mask = self.env.action_mask(state, key=mask_key)
        return observation, mask

    @eqx.filter_jit
    def step(self, state, action, key):
        transition_key, reward_key, terminal_key, obs_key, mask_key = jax.random.split(key, 5)
        next_state = self.env.transition(state, action, key=transition_key)
        reward = self.env.reward(state, action, next_state, key=reward_key)
        done = self.env.terminal(next_state, key=terminal_key) | self.env.truncate(next_state)
        return next_state, reward, done, *self._look(next_state, obs_key, mask_key)


# (observation, mask, noise, first) -> action; the noise is None for deterministic actions;
# `first` is True on an episode's first step (a recurrent policy's `reset` row).
Act = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None, bool], np.ndarray]


def _step_noise(traced: TracedPolicy, seed: int, max_steps: int) -> np.ndarray | list[None]:
    """Per step, the noise of that step's policy key (None without a sampling path)."""
    if traced.sampling is None:
        return [None] * max_steps
    policy_key = jax.random.fold_in(jax.random.key(seed), 1)  # apart from the env's keys
    return traced.sampling.noise_batch(jax.random.split(policy_key, max_steps))


def _episode(stepper: _Stepper, act: Act, seed: int, noise: Any, max_steps: int):
    key = jax.random.key(seed)
    reset_key, key = jax.random.split(key)
    state, observation, mask = stepper.reset(reset_key)
    actions, states, total = [], [_flat_state(state)], 0.0
    for step in range(max_steps):
        action = act(
            jax.tree.map(np.asarray, observation),
            None if mask is None else np.asarray(mask),
            noise[step],
            step == 0,
        )
        step_key, key = jax.random.split(key)
        state, reward, done, observation, mask = stepper.step(state, jnp.asarray(action), step_key)
        actions.append(action)
        states.append(_flat_state(state))
        total += float(reward)
        if bool(done):
            break
    return actions, np.stack(states), total


def _chosen(traced: TracedPolicy) -> str:
    """The output compared: the sampled action when the trace has the sampling path."""
    return ACTION if traced.sampling is None else SAMPLED_ACTION


class _Carried:
    """A recurrent policy's state between steps, named as the artifact's inputs: fed with
    `reset` True on an episode's first step (any state then: zeros), else the last
    `next_state`. Empty for a stateless policy."""

    def __init__(self, traced: TracedPolicy):
        state = traced.state
        self.names = () if state is None else tuple(s.name for s in state.inputs)
        self.next = () if state is None else tuple(s.name for s in state.outputs)
        self.zeros = (
            {} if state is None else {s.name: np.zeros(s.shape, np.float32) for s in state.inputs}
        )
        self.values = dict(self.zeros)

    def inputs(self, first: bool) -> dict[str, np.ndarray]:
        if not self.names:
            return {}
        return {**(self.zeros if first else self.values), RESET: np.asarray(first)}

    def keep(self, outputs: dict[str, Any]) -> None:
        self.values = {
            i: np.asarray(outputs[o]) for i, o in zip(self.names, self.next, strict=True)
        }


def _jax_actor(traced: TracedPolicy, shape: tuple[int, ...]) -> Act:
    forward = jax.jit(traced.forward)
    chosen = _chosen(traced)
    carried = _Carried(traced)

    def act(observation, mask, noise, first):
        arrays = {**traced.observation_arrays(observation), **carried.inputs(first)}
        if traced.description.mask_input:
            arrays[MASK] = _full_mask(traced, mask)
        if noise is not None:
            arrays[NOISE] = noise
        outputs = forward(*(arrays[name] for name in traced.input_names))
        named = dict(zip(traced.output_names, outputs, strict=True))
        carried.keep(named)
        return np.asarray(named[chosen]).reshape(shape)

    return act


def _full_mask(traced: TracedPolicy, mask: np.ndarray | None) -> np.ndarray:
    size = traced.action_space.mask_size
    assert size is not None  # called only when the trace reads a mask
    return np.ones(size, bool) if mask is None else np.asarray(mask, bool).reshape(size)


def _artifact_actor(traced: TracedPolicy, run: Runner, shape: tuple[int, ...]) -> Act:
    chosen = _chosen(traced)
    carried = _Carried(traced)

    def act(observation, mask, noise, first):
        inputs = {k: v[None] for k, v in traced.observation_arrays(observation).items()}
        inputs.update({k: np.asarray(v)[None] for k, v in carried.inputs(first).items()})
        if traced.description.mask_input:
            inputs[MASK] = _full_mask(traced, mask)[None]
        if noise is not None:
            inputs[NOISE] = np.asarray(noise, np.float32)[None]
        outputs = run(inputs)
        carried.keep({k: v[0] for k, v in outputs.items() if k in carried.next})
        action = outputs[chosen][0]
        if traced.discrete:
            action = action.astype(np.int32)
        return action.reshape(shape)

    return act


@on_reference_backend
def compare_rollouts(
    traced: TracedPolicy,
    run: Runner,
    env: Any,
    *,
    format: str,
    artifact: str,
    episodes: int = 5,
    max_steps: int = 500,
    seed: int = 0,
) -> RolloutReport:
    """Run `episodes` closed-loop episodes with JAX and with the artifact; compare them."""
    shape = tuple(traced.action_space.shape)
    stepper = _Stepper(env)
    jax_act, artifact_act = _jax_actor(traced, shape), _artifact_actor(traced, run, shape)
    discrete = traced.discrete
    results = []
    for episode in range(episodes):
        seed_i = seed + episode
        noise = _step_noise(traced, seed_i, max_steps)
        ja, js, jr = _episode(stepper, jax_act, seed_i, noise, max_steps)
        aa, as_, ar = _episode(stepper, artifact_act, seed_i, noise, max_steps)
        n = min(len(js), len(as_))
        mismatch = next(
            (i for i, (a, b) in enumerate(zip(ja, aa, strict=False)) if not np.array_equal(a, b)),
            None if len(ja) == len(aa) else min(len(ja), len(aa)),
        )
        results.append(
            EpisodeComparison(
                seed=seed_i,
                steps_jax=len(ja),
                steps_artifact=len(aa),
                return_jax=jr,
                return_artifact=ar,
                first_action_mismatch=mismatch,
                max_state_divergence=float(np.max(np.abs(js[:n] - as_[:n]), initial=0.0)),
            )
        )
    if discrete:
        passed = all(
            e.first_action_mismatch is None and e.return_jax == e.return_artifact for e in results
        )
    else:
        passed = all(
            e.steps_jax == e.steps_artifact
            and e.max_state_divergence <= STATE_ATOL
            and abs(e.return_jax - e.return_artifact) <= RETURN_ATOL
            for e in results
        )
    return RolloutReport(
        format=format,
        artifact=str(artifact),
        discrete=discrete,
        max_steps=max_steps,
        episodes=results,
        tolerances={} if discrete else {"state_atol": STATE_ATOL, "return_atol": RETURN_ATOL},
        passed=passed,
        sampled=traced.sampling is not None,
    )

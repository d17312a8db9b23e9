"""Sample entries (`sample=True`, contract 3) for the JavaScript consumer tests (Node, browser).

One small actor-critic per action space, exported once per session; rows of observations,
masks and JAX keys, the noise `policyport.sampling_noise` gives for each key, and what the
policy itself samples with that key. Node (tests/test_node_sampling.py) and the page's
check.html (tests/test_web.py) feed the noise and must give the same samples.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

import policyport
from conftest import ACTION_SPACES, make_policy
from policyport.checks import ATOL, NEAR_TIE, RTOL
from policyport.tracing import trace
from test_sampling import SMALL, jax_samples

SPACES = tuple(ACTION_SPACES)


@dataclass(frozen=True)
class SampleCase:
    """A sample entry, rows to feed it, and JAX's samples for them."""

    space: str
    policy: Any
    path: Path  # <stem>.sample.onnx
    default_path: Path  # <stem>.onnx, the default entry (contract 2)
    inputs: dict[str, np.ndarray]  # observation, [action_mask,] noise
    action: np.ndarray  # JAX's sampled actions, [rows, -1]
    log_prob: np.ndarray
    margins: np.ndarray | None  # the sampled decisions' margins (discrete spaces)


@functools.cache
def sample_case(space: str, folder: Path, rows: int = 128) -> SampleCase:
    """`space`'s policy exported with sample=True to `folder`, and `rows` keyed rows."""
    policy = make_policy(space, **SMALL)
    folder = folder / "sampling_cases"
    folder.mkdir(parents=True, exist_ok=True)
    results = policyport.export(
        policy, "onnx", folder / f"{space}.onnx", check=False, sample=True, force=True
    )
    paths = {r.entry: r.paths[0] for r in results}
    traced = trace(policy, sample=True)
    rng = np.random.default_rng(5)
    observations = traced.observation_space.sample_numpy(rng, rows)
    masks = traced.action_space.random_masks(rng, rows) if traced.description.mask_input else None
    keys = jax.random.split(jax.random.key(17), rows)
    noise = traced.sampling.noise_batch(keys)
    action, log_prob = jax_samples(space, policy, observations, masks, keys)
    inputs = {"observation": observations}
    if masks is not None:
        inputs["action_mask"] = masks
    inputs["noise"] = noise
    margins = None
    if traced.sampling.margins is not None:
        args = [inputs[n] for n in traced.input_names]
        margins = np.asarray(jax.vmap(traced.sampling.margins)(*args))
    return SampleCase(
        space, policy, paths["sample"], paths["default"], inputs, action, log_prob, margins
    )


def assert_samples_match(case: SampleCase, sampled: Any, log_prob: Any) -> str:
    """A consumer's `sampled_action` and `log_prob` on `case.inputs` are JAX's.

    Box: within the parity check's 1e-5 + 1e-5 * |jax|; discrete: identical, except where
    the sampled decision's two best `logits + noise` are within NEAR_TIE (the parity check's
    rule: float32 rounding may break such a tie either way), which must be rare. Masked
    actions never chosen; log_prob within 1e-5 + 1e-5 * |jax|. Returns a summary line.
    """
    rows = len(case.log_prob)
    got = np.asarray(sampled).reshape(rows, -1)
    got_log_prob = np.asarray(log_prob, dtype=np.float32)
    log_diff = np.abs(got_log_prob - case.log_prob)
    assert np.all(log_diff <= ATOL + RTOL * np.abs(case.log_prob)), log_diff.max()
    if case.space == "Box":
        diff = np.abs(got - case.action)
        assert np.all(diff <= ATOL + RTOL * np.abs(case.action)), diff.max()
        return f"{case.space}: worst action diff {diff.max():.3g}, log_prob {log_diff.max():.3g}"
    differs = got != case.action
    tie = case.margins.reshape(differs.shape) <= NEAR_TIE
    assert not np.any(differs & ~tie), f"{int((differs & ~tie).sum())} sampled mismatches"
    assert int(tie.any(axis=1).sum()) <= rows // 50  # near-ties are rare
    masks = case.inputs.get("action_mask")
    if masks is not None:
        assert not case.policy.action_space.illegal_rows(got, masks).any()
    return (
        f"{case.space}: {int(differs.sum())} mismatches ({int(tie.sum())} near-ties), "
        f"log_prob {log_diff.max():.3g}"
    )


def check_sampled_steps(policy: Any, record: dict[str, Any]) -> int:
    """Each recorded step's sampled action is what the traced JAX policy samples with that
    step's observation and noise (mask: all legal), except near-ties; log_probs within
    1e-5 + 1e-5 * |jax|. Returns how many steps sampled other than the mode."""
    traced = trace(policy, sample=True)
    observations = np.asarray(record["observations"], np.float32)
    inputs = {
        "observation": observations,
        "action_mask": np.ones((len(observations), traced.action_space.mask_size), bool),
        "noise": np.asarray(record["noise"], np.float32),
    }
    args = [inputs[n] for n in traced.input_names]
    outputs = dict(zip(traced.output_names, traced.batched(*args), strict=True))
    want = np.asarray(outputs["sampled_action"])
    got = np.asarray(record["actions"])
    margins = np.asarray(jax.vmap(traced.sampling.margins)(*args)).reshape(got.shape)
    assert not np.any((got != want) & (margins > NEAR_TIE)), np.flatnonzero(got != want)
    want_log_prob = np.asarray(outputs["log_prob"])
    log_diff = np.abs(np.asarray(record["log_probs"], np.float32) - want_log_prob)
    assert np.all(log_diff <= ATOL + RTOL * np.abs(want_log_prob)), log_diff.max()
    np.testing.assert_array_equal(record["modes"], np.asarray(outputs["action"]))
    return int(np.sum(got != np.asarray(record["modes"])))

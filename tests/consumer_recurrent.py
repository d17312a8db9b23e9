"""Recurrent artifacts (contract 4) and sequences for the consumer tests.

A consumer carries the state itself: it feeds `next_state` back as `state` and sets `reset`
where a row starts over. The reference is onnxruntime in Python driven the same way over the
same sequence (B rows x T steps, random resets, the first step all reset), so a consumer
that drops the state, feeds the wrong leaf or ignores `reset` differs from it.

- `gru`: an equinox GRU cell that reads masks (inputs `observation`, `action_mask`, `state`
  [batch, 12], `reset`; outputs `action`, `value`, `next_state`).
- `lstm`: an equinox LSTM cell with Box actions and a two-leaf state whose initial `c` is
  0.5, not zeros (inputs `state.0`, `state.1`; outputs `next_state.0`, `next_state.1`).
- `gru_frames`: the GRU over a uint8 observation: contracts 4 and 5 at once (it declares 5,
  and a consumer must still find its state).

Each is exported once per test session (`check=False`: the export's own sequence parity is
tested in tests/test_recurrent*.py; here the consumer is compared with onnxruntime).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

import policyport
from policyport.checks import ATOL, RTOL

RECURRENT_CASES = ("gru", "lstm", "gru_frames")
ROWS, STEPS = 5, 32


@dataclass(frozen=True)
class Sequence:
    """An exported recurrent artifact, a sequence of inputs and onnxruntime's outputs on it."""

    name: str
    path: Path
    observations: np.ndarray  # float32 [T, B, obs]
    masks: np.ndarray | None  # bool [T, B, n]
    resets: np.ndarray  # bool [T, B]
    expected: dict[str, np.ndarray]  # output name -> [T, B, ...]
    state_leaves: list[dict]  # policyport.state's leaves


def _policy(case: str):
    from recurrent_policies import GRUPolicy, LSTMPolicy, box_env, discrete_env, frames_env

    if case == "gru":
        return GRUPolicy(discrete_env(), key=jax.random.key(3))
    if case == "gru_frames":
        return GRUPolicy(frames_env(), key=jax.random.key(5))
    return LSTMPolicy(box_env(), key=jax.random.key(4))


def run_onnxruntime(
    path: Path,
    observations: np.ndarray,
    masks: np.ndarray | None,
    resets: np.ndarray,
    leaves: list[dict],
) -> dict[str, np.ndarray]:
    """Every output of every step, the state carried from step to step (zeros at first)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rows = observations.shape[1]
    state = {leaf["input"]: np.zeros((rows, *leaf["shape"]), np.float32) for leaf in leaves}
    steps: list[dict[str, np.ndarray]] = []
    for t in range(observations.shape[0]):
        feeds = {"observation": observations[t], **state, "reset": resets[t]}
        if masks is not None:
            feeds["action_mask"] = masks[t]
        out = dict(zip(names, session.run(names, feeds), strict=True))
        state = {leaf["input"]: out[leaf["output"]] for leaf in leaves}
        steps.append(out)
    return {name: np.stack([s[name] for s in steps]) for name in names}


@functools.cache
def recurrent_sequence(case: str, basetemp: Path) -> Sequence:
    """`case` exported once per session, a sequence for it and onnxruntime's outputs."""
    import onnxruntime as ort

    policy = _policy(case)
    path = basetemp / "consumers" / f"recurrent_{case}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    policyport.export(policy, "onnx", path, check=False, force=True)
    leaves = json.loads(
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        .get_modelmeta()
        .custom_metadata_map["policyport.state"]
    )["leaves"]
    rng = np.random.default_rng(11)
    space = policy.observation_space
    observations = np.stack([space.sample_numpy(rng, ROWS) for _ in range(STEPS)])
    masks = None
    if case.startswith("gru"):
        masks = np.stack([policy.action_space.random_masks(rng, ROWS) for _ in range(STEPS)])
    resets = rng.random((STEPS, ROWS)) < 0.15
    resets[0] = True  # episodes start
    expected = run_onnxruntime(path, observations, masks, resets, leaves)
    return Sequence(case, path, observations, masks, resets, expected, leaves)


def assert_sequence_matches(sequence: Sequence, got: dict) -> None:
    """A consumer's outputs ([T, B, ...] by name) against onnxruntime's: discrete actions
    equal, floats within the parity tolerances (the consumers' onnxruntime builds differ
    from Python's in version, and may round a kernel differently)."""
    assert set(got) == set(sequence.expected), (sorted(got), sorted(sequence.expected))
    for name, want in sequence.expected.items():
        values = np.asarray(got[name], dtype=want.dtype)
        assert values.shape == want.shape, (name, values.shape, want.shape)
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(values, want, err_msg=name)
        else:
            np.testing.assert_allclose(values, want, rtol=RTOL, atol=ATOL, err_msg=name)

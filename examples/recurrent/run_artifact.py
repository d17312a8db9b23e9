"""Play MemoryChain with the exported recurrent policy: NumPy and onnxruntime only, no JAX.

Many agents, one call per step: row `i` of every input is agent `i`. The script keeps each
agent's state between calls (it feeds back `next_state`) and sets `reset` on the row of an
agent whose episode starts, so the artifact starts that row from the policy's initial state
(the script never needs to know it: it allocates zeros of the shapes `policyport.state`
declares). Agents start their first episode at different steps, so resets fall on
different rows at different times, as in a real fleet of agents.

MemoryChain is reimplemented below from gymnax 1.0.1's `MemoryChain` (bsuite), observation
lag included: `step` returns the observation of the state before the step.

Usage, from the repository root:

    .venv/bin/python examples/recurrent/export.py         # writes examples/recurrent/policy.onnx
    .venv/bin/python examples/recurrent/run_artifact.py examples/recurrent/policy.onnx

Prints one JSON object: the mean return, each agent's episodes (context, query, actions,
return).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

NUM_BITS, MEMORY_LENGTH = 2, 10
EPISODE_STEPS = MEMORY_LENGTH + 1
# Contract 4 (2026-12-05): state inputs, `reset`, `next_state` outputs, metadata `state`.
SUPPORTED_CONTRACT_VERSIONS = ("4",)


def observation(time: int, context: np.ndarray, query: int) -> np.ndarray:
    """gymnax's `get_obs`: time left, the query on the last step before the decision, the
    context bits (as -1/+1) on the first."""
    obs = np.zeros(NUM_BITS + 2, dtype=np.float32)
    obs[0] = 1 - time / MEMORY_LENGTH
    obs[1] = query if time == MEMORY_LENGTH - 1 else 0
    obs[2:] = 2 * context - 1 if time == 0 else 0
    return obs


def reward(time: int, context: np.ndarray, query: int, action: int) -> float:
    """+1 for naming the queried bit at the decision step, -1 for the other, else 0."""
    if time < MEMORY_LENGTH:
        return 0.0
    return 1.0 if action == context[query] else -1.0


def episode_observations(context: np.ndarray, query: int) -> list[np.ndarray]:
    """What the agent sees before each of its `EPISODE_STEPS` actions (gymnax's order: the
    first observation twice, then the one of the state before each step)."""
    return [observation(max(t - 1, 0), context, query) for t in range(EPISODE_STEPS)]


@dataclass(frozen=True)
class Episodes:
    """Every agent's episodes: `context[agent, episode, bit]`, `query[agent, episode]`, and
    the step at which each agent starts its first one."""

    context: np.ndarray
    query: np.ndarray
    offset: np.ndarray

    @staticmethod
    def draw(agents: int, episodes: int, seed: int) -> Episodes:
        rng = np.random.default_rng(seed)
        return Episodes(
            context=rng.integers(0, 2, size=(agents, episodes, NUM_BITS)),
            query=rng.integers(0, NUM_BITS, size=(agents, episodes)),
            offset=np.arange(agents) % EPISODE_STEPS,
        )


def open_policy(path: str) -> tuple[ort.InferenceSession, list[dict]]:
    """The session and the state leaves it declares; refuse what this script cannot drive."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    version = metadata.get("policyport.contract_version")
    if version not in SUPPORTED_CONTRACT_VERSIONS:
        sys.exit(f"{path}: policyport contract version {version!r}: this script reads 4.")
    if "policyport.state" not in metadata:
        sys.exit(f"{path}: no `policyport.state` metadata: not a recurrent policy.")
    spec = json.loads(metadata["policyport.state"])
    names = {i.name for i in session.get_inputs()}
    if "action_mask" in names or spec["reset"] not in names:
        sys.exit(f"{path}: expected inputs observation, the state leaves and reset.")
    return session, spec["leaves"]


def play(session: ort.InferenceSession, leaves: list[dict], episodes: Episodes) -> dict:
    """Run every agent through its episodes, one batched call per step."""
    agents, count = episodes.query.shape
    state = {leaf["input"]: np.zeros((agents, *leaf["shape"]), np.float32) for leaf in leaves}
    outputs = ["action", *(leaf["output"] for leaf in leaves)]
    actions = np.full((agents, count, EPISODE_STEPS), -1, dtype=np.int64)
    observations = {
        (a, e): episode_observations(episodes.context[a, e], int(episodes.query[a, e]))
        for a in range(agents)
        for e in range(count)
    }
    for t in range(int(episodes.offset.max()) + count * EPISODE_STEPS):
        local = t - episodes.offset  # each agent's own step count; < 0: not started
        episode, step = np.divmod(np.maximum(local, 0), EPISODE_STEPS)
        active = (local >= 0) & (episode < count)
        obs = np.stack(
            [
                observations[a, int(episode[a])][int(step[a])]
                if active[a]
                else np.zeros(NUM_BITS + 2, np.float32)
                for a in range(agents)
            ]
        )
        reset = (step == 0) | ~active  # an episode starts: from the initial state
        action, *next_state = session.run(outputs, {"observation": obs, **state, "reset": reset})
        state = {leaf["input"]: s for leaf, s in zip(leaves, next_state, strict=True)}
        for a in np.flatnonzero(active):
            actions[a, episode[a], step[a]] = action[a]
    returns = np.array(
        [
            [
                sum(
                    reward(t, episodes.context[a, e], int(episodes.query[a, e]), actions[a, e, t])
                    for t in range(EPISODE_STEPS)
                )
                for e in range(count)
            ]
            for a in range(agents)
        ]
    )
    return {"mean_return": float(returns.mean()), "returns": returns.tolist(), "actions": actions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the exported .onnx (or .ort)")
    parser.add_argument("--agents", type=int, default=32, help="rows of one call")
    parser.add_argument("--episodes", type=int, default=32, help="episodes per agent")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    session, leaves = open_policy(args.model)
    episodes = Episodes.draw(args.agents, args.episodes, args.seed)
    result = play(session, leaves, episodes)
    print(
        json.dumps(
            {
                "mean_return": result["mean_return"],
                "episodes": args.agents * args.episodes,
                "returns": result["returns"],
                "context": episodes.context.tolist(),
                "query": episodes.query.tolist(),
                "offset": episodes.offset.tolist(),
                "actions": result["actions"].tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()

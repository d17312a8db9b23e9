"""Score a gridworld policy against a random legal-move baseline, with and without masks.

`train.py` calls `evaluate` on the policy it trained; run this file to score the committed
`policy.eqx` without training: `.venv/bin/python examples/gridworld/evaluate.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jax import numpy as jnp
from jax import random as jr
from jaxtyping import Array, Bool, Float, Int, Key

from policyport.policy import MLPActorCriticPolicy

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # run as a script: import the env next to this file

from gridworld import (  # noqa: E402
    MAX_STEPS,
    NUM_ACTIONS,
    Gridworld,
    GridworldState,
    shortest_distances,
)

EVAL_EPISODES = 1000

# Picks an action from (observation, mask, key): the players being compared.
Chooser = Callable[[Float[Array, " 49"], Bool[Array, " 4"], Key[Array, ""]], Int[Array, ""]]
# (env state, return so far, episode over, steps taken): the scan carry of one episode.
Carry = tuple[GridworldState, Float[Array, ""], Bool[Array, ""], Int[Array, ""]]


class Episodes(eqx.Module):
    """Per-episode results of one player."""

    returns: Float[Array, " n"]
    successes: Bool[Array, " n"]
    lengths: Int[Array, " n"]

    def summary(self) -> dict[str, float]:
        """Mean return, success rate and mean length, as plain floats for JSON."""
        return {
            "mean_return": round(float(jnp.mean(self.returns)), 4),
            "success_rate": round(float(jnp.mean(self.successes)), 4),
            "mean_length": round(float(jnp.mean(self.lengths)), 2),
        }


def masked_player(policy: Any) -> Chooser:
    """The deterministic policy with the env's mask: what gets exported and deployed."""
    return lambda obs, mask, key: policy(None, obs, action_mask=mask)[1]


def unmasked_player(policy: Any) -> Chooser:
    """The same policy given an all-True mask: shows what the masks contribute."""
    return lambda obs, mask, key: policy(None, obs, action_mask=jnp.ones_like(mask))[1]


def random_legal_player(
    obs: Float[Array, " 49"], mask: Bool[Array, " 4"], key: Key[Array, ""]
) -> Int[Array, ""]:
    """The baseline: a uniformly random legal move."""
    return jr.choice(key, NUM_ACTIONS, p=mask / jnp.sum(mask))


def play_episode(
    env: Gridworld, choose: Chooser, state: GridworldState, key: Key[Array, ""]
) -> tuple[Float[Array, ""], Bool[Array, ""], Int[Array, ""]]:
    """Return, success and length of one episode from `state`, cut at the step limit."""

    def step(carry: Carry, key: Key[Array, ""]) -> tuple[Carry, None]:
        state, total, done, length = carry
        obs = env.observation(state, key=key)
        action = choose(obs, env.action_mask(state, key=key), key)
        next_state = env.transition(state, action, key=key)
        reward = env.reward(state, action, next_state, key=key)
        # Once the episode is over the state is frozen and nothing more is counted.
        next_state = jax.tree.map(lambda old, new: jnp.where(done, old, new), state, next_state)
        total = total + jnp.where(done, 0.0, reward)
        length = length + jnp.where(done, 0, 1)
        done = done | env.terminal(next_state, key=key) | env.truncate(next_state)
        return (next_state, total, done, length), None

    carry = (state, jnp.array(0.0), jnp.array(False), jnp.array(0))
    (state, total, _, length), _ = jax.lax.scan(step, carry, jr.split(key, MAX_STEPS))
    return total, env.at_goal(state), length


def play(
    env: Gridworld, choose: Chooser, states: GridworldState, *, key: Key[Array, ""]
) -> Episodes:
    """One episode from each of the stacked `states`."""
    keys = jr.split(key, states.t.shape[0])
    returns, successes, lengths = jax.vmap(play_episode, in_axes=(None, None, 0, 0))(
        env, choose, states, keys
    )
    return Episodes(returns, successes, lengths)


def random_starts(env: Gridworld, episodes: int, *, key: Key[Array, ""]) -> GridworldState:
    """`episodes` initial states drawn by the env's own start rule."""
    return jax.vmap(lambda k: env.initial(key=k))(jr.split(key, episodes))


def every_start(env: Gridworld) -> GridworldState:
    """One initial state per start cell, so a deterministic player is scored exhaustively."""
    return GridworldState(position=env.starts, t=jnp.zeros(env.starts.shape[0], jnp.int32))


def illegal_choices(env: Gridworld, policy: Any) -> int:
    """Start cells where the unmasked policy's argmax is an illegal move (it would stand still)."""

    def illegal(state: GridworldState) -> Bool[Array, ""]:
        key = jr.key(0)  # the env ignores keys
        mask = env.action_mask(state, key=key)
        return ~mask[unmasked_player(policy)(env.observation(state, key=key), mask, key)]

    return int(jnp.sum(jax.vmap(illegal)(every_start(env))))


def exhaustive(env: Gridworld, policy: Any) -> dict[str, int]:
    """Every start cell once: how many the masked policy solves, and in the fewest moves."""
    states = every_start(env)
    shortest = jnp.asarray([shortest_distances()[tuple(cell)] for cell in env.starts.tolist()])
    masked = play(env, masked_player(policy), states, key=jr.key(0))
    unmasked = play(env, unmasked_player(policy), states, key=jr.key(0))
    return {
        "start_cells": int(states.t.shape[0]),
        "masked_solved": int(jnp.sum(masked.successes)),
        "masked_shortest_path": int(jnp.sum(masked.successes & (masked.lengths == shortest))),
        "unmasked_solved": int(jnp.sum(unmasked.successes)),
        "unmasked_illegal_first_choice": illegal_choices(env, policy),
    }


def evaluate(env: Gridworld, policy: Any, *, key: Key[Array, ""]) -> dict[str, Any]:
    """The three players over the same `EVAL_EPISODES` random starts, plus `exhaustive`."""
    start_key, play_key = jr.split(key)
    states = random_starts(env, EVAL_EPISODES, key=start_key)
    players = {
        "policy_masked": masked_player(policy),
        "policy_unmasked": unmasked_player(policy),
        "random_legal": random_legal_player,
    }
    figures: dict[str, Any] = {
        name: play(env, choose, states, key=play_key).summary() for name, choose in players.items()
    }
    figures["every_start"] = exhaustive(env, policy)
    return figures


def report(figures: dict[str, Any]) -> None:
    """Print the figures: one line per player, then the exhaustive check."""
    print(f"{EVAL_EPISODES} episodes from the same random starts:")
    for name in ("policy_masked", "random_legal", "policy_unmasked"):
        summary = figures[name]
        print(
            f"  {name:16s} mean return {summary['mean_return']:7.4f}  "
            f"success {summary['success_rate']:6.1%}  mean length {summary['mean_length']:5.2f}"
        )
    every = figures["every_start"]
    print(
        f"every start cell ({every['start_cells']}): masked solves {every['masked_solved']}, "
        f"{every['masked_shortest_path']} by a shortest path; unmasked solves "
        f"{every['unmasked_solved']} and picks an illegal move first at "
        f"{every['unmasked_illegal_first_choice']}"
    )


def main() -> None:
    """Score a policy file (default: the committed `policy.eqx`) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", type=Path, default=HERE / "policy.eqx")
    parser.add_argument("--seed", type=int, default=0, help="as train.py's --seed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    _, eval_key = jr.split(jr.key(args.seed))  # the key train.py evaluates with
    figures = evaluate(Gridworld(), MLPActorCriticPolicy.deserialize(args.policy), key=eval_key)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)


if __name__ == "__main__":
    main()

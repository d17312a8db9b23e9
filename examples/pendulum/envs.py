"""The env `policy.eqx` was trained in, for `export-policy --env ... --bake-wrappers`.

train.py trains on `ClipAction(ScaleReward(TimeLimit(Pendulum(), 200), 0.1))`. The
reward scale never touches what the policy sees, so it is left out here (the exporter
would leave it out and name it anyway); `TimeLimit` is kept and named as left out;
`ClipAction` is baked, so the artifact returns torques in Pendulum's [-2, 2].
Use from the repository root: `--env examples.pendulum.envs:trained_env`.
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Array, Key
from lerax.env import Pendulum
from lerax.wrapper import ClipAction
from lerax.wrapper import TimeLimit as _LeraxTimeLimit
from lerax.wrapper.misc import TimeLimitState

MAX_EPISODE_STEPS = 200


class TimeLimit(_LeraxTimeLimit):
    """lerax's `TimeLimit` plus the `action_mask` it leaves abstract (lerax 0.0.5)."""

    def action_mask(self, state: TimeLimitState, *, key: Key[Array, ""]) -> Any:
        return self.env.action_mask(state.env_state, key=key)


def trained_env() -> ClipAction:
    """Pendulum as the policy saw it in training, minus the reward scale."""
    return ClipAction(TimeLimit(Pendulum(), MAX_EPISODE_STEPS))

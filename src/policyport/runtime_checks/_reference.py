"""What the JAX policy computes for a batch: the expected outputs and decision margins."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..exporters._traced import deterministic_forward
from ..policy import Box, Discrete, MLPActorCriticPolicy, MultiBinary


def reference_outputs(
    policy: MLPActorCriticPolicy, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The JAX policy's `action` and `value`, in the contract's dtypes."""
    return reference_and_margins(policy, inputs)[0]


def _margin(policy: MLPActorCriticPolicy, observation: Array, mask: Array | None) -> Array:
    """How far one row is from changing its discrete action (inf when it cannot change).

    Categorical: the gap between the two largest legal logits (the smallest gap over the
    blocks of a MultiDiscrete). MultiBinary: the smallest |logit| of an unmasked bit.
    """
    features = policy.encoder(policy.observation_space.flatten_sample(observation))
    logits = policy.action_head.action_dist.mapping(policy.action_head.mlp(features))
    logits = logits.reshape(-1)
    legal = jnp.ones_like(logits, dtype=bool) if mask is None else mask.reshape(-1)
    space = policy.action_space
    if isinstance(space, MultiBinary):
        return jnp.min(jnp.where(legal, jnp.abs(logits), jnp.inf))
    bounds = [space.n] if isinstance(space, Discrete) else list(space.nvec)
    gaps, start = [], 0
    for n in bounds:
        block = jnp.where(legal[start : start + n], logits[start : start + n], -jnp.inf)
        top2 = jax.lax.top_k(block, 2)[0] if n > 1 else jnp.array([block[0], -jnp.inf])
        gaps.append(jnp.where(jnp.isfinite(top2[1]), top2[0] - top2[1], jnp.inf))
        start += n
    return jnp.min(jnp.stack(gaps))


@eqx.filter_jit
def _batched(policy: MLPActorCriticPolicy, observation: Array, mask: Array | None):
    """Outputs and margins in one compiled function: checks compile it once, not twice."""

    def row(o, m):
        action, value = deterministic_forward(policy, o, m)
        if isinstance(policy.action_space, Box):
            return action, value, jnp.array(jnp.inf)
        return action, value, _margin(policy, o, m)

    if mask is None:
        return jax.vmap(lambda o: row(o, None))(observation)
    return jax.vmap(row)(observation, mask)


def reference_and_margins(
    policy: MLPActorCriticPolicy, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The JAX policy's outputs (contract dtypes) and, for discrete actions, row margins."""
    mask = inputs.get("action_mask")
    action, value, margins = _batched(
        policy, jnp.asarray(inputs["observation"]), None if mask is None else jnp.asarray(mask)
    )
    action = np.asarray(action)
    discrete = not isinstance(policy.action_space, Box)
    if discrete:
        action = action.astype(np.int64)
    outputs = {"action": action, "value": np.asarray(value)}
    return outputs, np.asarray(margins) if discrete else None


def decision_margins(
    policy: MLPActorCriticPolicy, inputs: dict[str, np.ndarray]
) -> np.ndarray | None:
    """Per-row margins for a discrete action space, None for Box."""
    return reference_and_margins(policy, inputs)[1]

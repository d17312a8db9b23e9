"""One traced representation of a policy, made once and read by every format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun
from jaxtyping import Array

from ..policy import Box, MLPActorCriticPolicy
from ._contract import TensorSpec, input_specs, output_specs


def deterministic_forward(
    policy: MLPActorCriticPolicy, observation: Array, action_mask: Array | None = None
) -> tuple[Array, Array]:
    """The exported computation for one observation: the action's mode and the value.

    The same as `policy(None, observation, action_mask=...)` and `policy.value(None,
    observation)`, with the encoder run once for both, and the action laid out as the
    contract says (a Box action in the space's shape, MultiBinary bits flattened). The
    integer action stays int32 here; each format widens it to int64.
    """
    features = policy.encoder(policy.observation_space.flatten_sample(observation))
    action = policy.action_head(features, action_mask=action_mask).mode()
    value = policy.value_head(features)
    if isinstance(policy.action_space, Box):
        action = action.reshape(policy.action_space.shape)
    elif action.ndim > 1:
        action = action.reshape(-1)
    return action, value


@dataclass(frozen=True)
class TracedPolicy:
    """The per-sample jaxpr of `deterministic_forward`, with its contract.

    `jaxpr` closes over the weights as constants. `batched` is that jaxpr vmapped over a
    leading batch axis: the function every format lowers.
    """

    policy: MLPActorCriticPolicy
    jaxpr: ClosedJaxpr
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> Callable[..., tuple[Array, Array]]:
        return jax.vmap(jaxpr_as_fun(self.jaxpr))

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    def symbolic_inputs(self, batch: str = "batch") -> list[jax.ShapeDtypeStruct]:
        """Input avals with a symbolic batch dimension named `batch`."""
        return [jax.ShapeDtypeStruct((batch, *s.shape), jnp.dtype(s.dtype)) for s in self.inputs]


def trace(policy: MLPActorCriticPolicy) -> TracedPolicy:
    """Trace `deterministic_forward` for one observation (and mask) into a jaxpr."""
    specs = input_specs(policy)
    avals = [jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for s in specs]

    def forward(*inputs: Array) -> tuple[Array, Array]:
        return deterministic_forward(policy, *inputs)

    jaxpr = jax.make_jaxpr(forward)(*avals)
    return TracedPolicy(policy, jaxpr, specs, output_specs(policy))

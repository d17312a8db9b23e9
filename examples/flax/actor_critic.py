"""The actor-critic of this example: the shape PureJaxRL's `ActorCritic` has.

Two separate tanh MLPs of width 64 (an actor and a critic), orthogonal initialisation
(scale sqrt(2) for hidden layers, 0.01 for the logits, 1 for the value), a categorical
head given as logits. Returns `(logits, value)` for one observation or a batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal
from jaxtyping import Array, Float


class ActorCritic(nn.Module):
    action_dim: int
    width: int = 64

    @nn.compact
    def __call__(
        self, observation: Float[Array, "... obs"]
    ) -> tuple[Float[Array, "... action"], Float[Array, "..."]]:
        def hidden(x: Array) -> Array:
            for _ in range(2):
                x = nn.Dense(
                    self.width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0)
                )(x)
                x = jnp.tanh(x)
            return x

        logits = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(
            hidden(observation)
        )
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(
            hidden(observation)
        )
        return logits, jnp.squeeze(value, axis=-1)

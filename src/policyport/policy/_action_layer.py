"""Heads that map features to an action distribution, one per action space.

Fields mirror lerax 0.0.5's `lerax.policy.actor` classes in name and order, so that
the leaves of a lerax-written file land in the same places here.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Key

from .._errors import InputError
from ._distributions import (
    AbstractDistribution,
    Bernoulli,
    Categorical,
    MultiCategorical,
    MultivariateNormalDiag,
    Normal,
)
from ._spaces import AbstractSpace, Box, Discrete, MultiBinary, MultiDiscrete

# Distributions an action mask applies to; like lerax, a mask given to others is ignored.
MASKABLE_DISTRIBUTIONS = (Categorical, MultiCategorical, Bernoulli)


class AbstractActionDistribution(eqx.Module):
    """Maps the action head's features to a distribution over one action space.

    Declaring `mapping` here, as lerax does, puts it first in every subclass's leaves.
    """

    mapping: eqx.AbstractVar[eqx.nn.Linear]

    def __call__(self, inputs: Float[Array, " latent"]) -> AbstractDistribution:
        raise NotImplementedError


class BoxAction(AbstractActionDistribution):
    """A diagonal normal with state-independent log standard deviations."""

    scalar: bool
    mapping: eqx.nn.Linear
    log_std: Float[Array, "..."]

    def __init__(
        self, latent_dim: int, space: Box, *, key: Key[Array, ""], log_std_init: float = 0.0
    ):
        if space.shape:
            self.scalar = False
            self.mapping = eqx.nn.Linear(latent_dim, space.flat_size, key=key)
            self.log_std = jnp.full(space.flat_size, log_std_init)
        else:
            self.scalar = True
            self.mapping = eqx.nn.Linear(latent_dim, "scalar", key=key)
            self.log_std = jnp.array(log_std_init)

    def __call__(self, inputs: Float[Array, " latent"]) -> Normal | MultivariateNormalDiag:
        if self.scalar:
            return Normal(self.mapping(inputs), jnp.exp(self.log_std))
        return MultivariateNormalDiag(self.mapping(inputs), jnp.exp(self.log_std))


class DiscreteAction(AbstractActionDistribution):
    mapping: eqx.nn.Linear

    def __init__(self, latent_dim: int, space: Discrete, *, key: Key[Array, ""]):
        self.mapping = eqx.nn.Linear(latent_dim, space.n, key=key)

    def __call__(self, inputs: Float[Array, " latent"]) -> Categorical:
        return Categorical(self.mapping(inputs))


class MultiBinaryAction(AbstractActionDistribution):
    mapping: eqx.nn.Linear
    shape: tuple[int, ...]

    def __init__(self, latent_dim: int, space: MultiBinary, *, key: Key[Array, ""]):
        self.mapping = eqx.nn.Linear(latent_dim, space.flat_size, key=key)
        self.shape = space.shape

    def __call__(self, inputs: Float[Array, " latent"]) -> Bernoulli:
        return Bernoulli(self.mapping(inputs).reshape(self.shape))


class MultiDiscreteAction(AbstractActionDistribution):
    """lerax 0.0.5 names the layer `mappings` and fails to build; we name it `mapping`."""

    ns: tuple[int, ...]
    mapping: eqx.nn.Linear
    shape: tuple[int, ...]

    def __init__(self, latent_dim: int, space: MultiDiscrete, *, key: Key[Array, ""]):
        self.ns = space.nvec
        self.mapping = eqx.nn.Linear(latent_dim, sum(space.nvec), key=key)
        self.shape = space.shape

    def __call__(self, inputs: Float[Array, " latent"]) -> MultiCategorical:
        return MultiCategorical(self.mapping(inputs), action_dims=self.ns)


def make_action_distribution(
    latent_dim: int, space: AbstractSpace, *, key: Key[Array, ""], log_std_init: float = 0.0
) -> AbstractActionDistribution:
    """The head for `space`."""
    if isinstance(space, Box):
        return BoxAction(latent_dim, space, key=key, log_std_init=log_std_init)
    if isinstance(space, Discrete):
        return DiscreteAction(latent_dim, space, key=key)
    if isinstance(space, MultiBinary):
        return MultiBinaryAction(latent_dim, space, key=key)
    if isinstance(space, MultiDiscrete):
        return MultiDiscreteAction(latent_dim, space, key=key)
    raise InputError(f"No action head for {type(space).__name__}.")


class ActionLayer(eqx.Module):
    """An MLP over the features, then the space's distribution head.

    Like lerax, `depth` counts the distribution head as one layer: `depth=2` gives an
    MLP of depth 1 (one hidden layer of `width_size`), `depth <= 1` an MLP of depth 0.
    """

    mlp: eqx.nn.MLP
    action_dist: AbstractActionDistribution

    def __init__(
        self,
        action_space: AbstractSpace,
        latent_dim: int,
        width_size: int,
        depth: int,
        *,
        key: Key[Array, ""],
        log_std_init: float = 0.0,
    ):
        mlp_key, action_key = jr.split(key, 2)
        self.mlp = eqx.nn.MLP(
            in_size=latent_dim,
            out_size=latent_dim,
            width_size=width_size,
            depth=max(0, depth - 1),
            key=mlp_key,
        )
        self.action_dist = make_action_distribution(
            latent_dim, action_space, key=action_key, log_std_init=log_std_init
        )

    def __call__(
        self, features: Float[Array, " latent"], action_mask: ArrayLike | None = None
    ) -> AbstractDistribution:
        dist = self.action_dist(self.mlp(features))
        if action_mask is not None and isinstance(dist, MASKABLE_DISTRIBUTIONS):
            return dist.mask(action_mask)
        return dist

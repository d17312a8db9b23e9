"""Action distributions with lerax 0.0.5's maths (which it takes from distreqx).

Masking sets a logit to `-inf`. The mode is an argmax taken before lerax's final
log-softmax: the same action, but a row whose mask is all False gets action 0 instead of
an argmax over NaNs, and every runtime agrees on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@jax.custom_jvp
def _multiply_no_nan(x: Array, y: Array) -> Array:
    """`x * y`, but 0 where `y == 0` even if `x` is infinite (masked logits are)."""
    return jnp.where(y == 0, jnp.zeros((), dtype=jnp.result_type(x, y)), x * y)


@_multiply_no_nan.defjvp
def _multiply_no_nan_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    (x, y), (x_dot, y_dot) = primals, tangents
    return _multiply_no_nan(x, y), y * x_dot + x * y_dot


def _mul_exp(x: Array, logp: Array) -> Array:
    """`x * exp(logp)`, 0 where `exp(logp) == 0`."""
    p = jnp.exp(logp)
    return jnp.where(p == 0, 0.0, x) * p


class AbstractDistribution(eqx.Module):
    """What every action distribution offers."""

    def mode(self) -> Array:
        raise NotImplementedError

    def sample(self, key: Key[Array, ""]) -> Array:
        raise NotImplementedError

    def log_prob(self, value: ArrayLike) -> Array:
        raise NotImplementedError

    def entropy(self) -> Array:
        raise NotImplementedError

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        value = self.sample(key)
        return value, self.log_prob(value)


class Categorical(AbstractDistribution):
    """One choice among `n`, from logits of shape `(n,)`, optionally masked.

    `raw` holds the logits as given and `legal` the mask (None: everything legal). The
    normalised `logits` follow lerax: a log-softmax, then, when masked, the illegal ones
    set to `-inf` and a second log-softmax, so log-probs and entropies match it bit for
    bit. The mode is the argmax of the legal raw logits: the same choice without a
    log-softmax in front, and 0 when the mask leaves nothing (lerax argmaxes NaNs there).
    """

    raw: Float[Array, " n"]
    legal: Bool[Array, " n"] | None

    def __init__(self, logits: ArrayLike, legal: Bool[ArrayLike, " n"] | None = None):
        self.raw = jnp.asarray(logits)
        self.legal = None if legal is None else jnp.asarray(legal, dtype=bool)

    @property
    def logits(self) -> Float[Array, " n"]:
        """Normalised log-probabilities (`-inf` where illegal)."""
        normalized = jax.nn.log_softmax(self.raw, axis=-1)
        if self.legal is None:
            return normalized
        return jax.nn.log_softmax(jnp.where(self.legal, normalized, -jnp.inf), axis=-1)

    @property
    def probs(self) -> Float[Array, " n"]:
        return jax.nn.softmax(self.logits, axis=-1)

    def mask(self, mask: Bool[ArrayLike, " n"]) -> Categorical:
        mask = jnp.asarray(mask, dtype=bool)
        return Categorical(self.raw, mask if self.legal is None else self.legal & mask)

    def mode(self) -> Int[Array, ""]:
        scores = self.raw if self.legal is None else jnp.where(self.legal, self.raw, -jnp.inf)
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)

    def sample(self, key: Key[Array, ""]) -> Int[Array, ""]:
        probs = self.probs
        valid = jnp.all(jnp.isfinite(probs), axis=-1) & jnp.all(probs >= 0, axis=-1)
        draw = jr.categorical(key, self.logits, axis=-1).astype(jnp.int32)
        # lerax returns -1 when nothing is legal; we return 0, as the mode does.
        return jnp.where(valid, draw, 0)

    def log_prob(self, value: ArrayLike) -> Float[Array, ""]:
        value = jnp.asarray(value)
        n = self.raw.shape[-1]
        logits = self.logits
        one_hot = jax.nn.one_hot(value, n, dtype=logits.dtype)
        outside = (value < 0) | (value > n - 1)
        return jnp.where(outside, -jnp.inf, jnp.sum(_multiply_no_nan(logits, one_hot), axis=-1))

    def entropy(self) -> Float[Array, ""]:
        log_probs = jax.nn.log_softmax(self.logits)
        return -jnp.sum(_mul_exp(log_probs, log_probs), axis=-1)


class MultiCategorical(AbstractDistribution):
    """Independent categoricals, one per sub-action, from concatenated logits."""

    components: tuple[Categorical, ...]
    action_dims: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, logits: ArrayLike, action_dims: Sequence[int]):
        self.action_dims = tuple(int(d) for d in action_dims)
        self.components = tuple(Categorical(p) for p in self._blocks(logits))

    def _blocks(self, x: ArrayLike) -> list[Array]:
        return jnp.split(jnp.asarray(x), np.cumsum(self.action_dims)[:-1].tolist(), axis=-1)

    def mask(self, mask: Bool[ArrayLike, " total"]) -> MultiCategorical:
        """Mask with one block of `action_dims[i]` bools per sub-action."""
        masked = [c.mask(m) for c, m in zip(self.components, self._blocks(mask), strict=True)]
        return eqx.tree_at(lambda d: d.components, self, tuple(masked))

    def mode(self) -> Int[Array, " k"]:
        return jnp.stack([c.mode() for c in self.components], axis=-1)

    def sample(self, key: Key[Array, ""]) -> Int[Array, " k"]:
        keys = jr.split(key, len(self.components))
        return jnp.stack([c.sample(k) for c, k in zip(self.components, keys, strict=True)], axis=-1)

    def log_prob(self, value: ArrayLike) -> Float[Array, ""]:
        value = jnp.asarray(value)
        parts = [c.log_prob(value[..., i]) for i, c in enumerate(self.components)]
        return jnp.sum(jnp.stack(parts, axis=-1), axis=-1)

    def entropy(self) -> Float[Array, ""]:
        return jnp.sum(jnp.stack([c.entropy() for c in self.components], axis=-1), axis=-1)

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        keys = jr.split(key, len(self.components))
        draws = [c.sample(k) for c, k in zip(self.components, keys, strict=True)]
        logps = [c.log_prob(d) for c, d in zip(self.components, draws, strict=True)]
        return jnp.stack(draws, axis=-1), jnp.sum(jnp.stack(logps, axis=-1), axis=-1)


class Bernoulli(AbstractDistribution):
    """Independent bits from per-bit logits; a masked bit has logit `-inf`, so it is 0."""

    logits: Float[Array, "..."]

    def __init__(self, logits: ArrayLike):
        self.logits = jnp.asarray(logits)

    @property
    def probs(self) -> Float[Array, "..."]:
        return jax.nn.sigmoid(self.logits)

    def mask(self, mask: Bool[ArrayLike, "..."]) -> Bernoulli:
        mask = jnp.asarray(mask).reshape(self.logits.shape)
        return Bernoulli(jnp.where(mask, self.logits, -jnp.inf))

    def mode(self) -> Int[Array, "..."]:
        return (self.probs > 0.5).astype(jnp.int32)

    def sample(self, key: Key[Array, ""]) -> Int[Array, "..."]:
        return jr.bernoulli(key, p=self.probs).astype(jnp.int32)

    def log_prob(self, value: ArrayLike) -> Float[Array, "..."]:
        value = jnp.asarray(value)
        log_p0, log_p1 = -jax.nn.softplus(self.logits), -jax.nn.softplus(-1.0 * self.logits)
        return _multiply_no_nan(log_p0, 1 - value) + _multiply_no_nan(log_p1, value)

    def entropy(self) -> Float[Array, "..."]:
        p0, p1 = jax.nn.sigmoid(-1.0 * self.logits), jax.nn.sigmoid(self.logits)
        log_p0, log_p1 = -jax.nn.softplus(self.logits), -jax.nn.softplus(-1.0 * self.logits)
        return -1.0 * (_multiply_no_nan(log_p0, p0) + _multiply_no_nan(log_p1, p1))


class Normal(AbstractDistribution):
    """A scalar normal (for a Box action space of shape `()`)."""

    loc: Float[Array, ""]
    scale: Float[Array, ""]

    def __init__(self, loc: ArrayLike, scale: ArrayLike):
        self.loc, self.scale = jnp.asarray(loc), jnp.asarray(scale)

    def mode(self) -> Float[Array, ""]:
        return self.loc

    def _standard_draw(self, key: Key[Array, ""]) -> Array:
        dtype = jnp.result_type(self.loc, self.scale)
        return jr.normal(key, shape=self.loc.shape, dtype=dtype)

    def sample(self, key: Key[Array, ""]) -> Float[Array, ""]:
        return self.scale * self._standard_draw(key) + self.loc

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        rnd = self._standard_draw(key)
        log_prob = -0.5 * jnp.square(rnd) - _HALF_LOG_2PI - jnp.log(self.scale)
        return self.scale * rnd + self.loc, log_prob

    def log_prob(self, value: ArrayLike) -> Float[Array, ""]:
        z = (jnp.asarray(value) - self.loc) / self.scale
        return -0.5 * jnp.square(z) - (_HALF_LOG_2PI + jnp.log(self.scale))

    def entropy(self) -> Float[Array, ""]:
        return 0.5 + (_HALF_LOG_2PI + jnp.log(self.scale))


class MultivariateNormalDiag(AbstractDistribution):
    """A normal with diagonal covariance over a vector action."""

    loc: Float[Array, " d"]
    scale_diag: Float[Array, " d"]

    def __init__(self, loc: ArrayLike, scale_diag: ArrayLike):
        self.loc, self.scale_diag = jnp.asarray(loc), jnp.asarray(scale_diag)

    def mode(self) -> Float[Array, " d"]:
        return self.loc

    def sample(self, key: Key[Array, ""]) -> Float[Array, " d"]:
        rnd = jr.normal(key, shape=self.loc.shape, dtype=self.loc.dtype)
        return self.scale_diag * rnd + self.loc

    def _log_det(self) -> Float[Array, ""]:
        return jnp.sum(jnp.log(jnp.abs(self.scale_diag)))

    def sample_and_log_prob(self, key: Key[Array, ""]) -> tuple[Array, Array]:
        rnd = jr.normal(key, shape=self.loc.shape, dtype=self.loc.dtype)
        base = jnp.sum(-0.5 * jnp.square(rnd) - _HALF_LOG_2PI)
        return self.scale_diag * rnd + self.loc, base - self._log_det()

    # distreqx builds this distribution as a standard normal pushed through an affine
    # bijector; the operations below follow its order so that results agree to the bit.
    def log_prob(self, value: ArrayLike) -> Float[Array, ""]:
        z = (1.0 / self.scale_diag) * (jnp.asarray(value) - self.loc)
        return jnp.sum(-0.5 * jnp.square(z) - _HALF_LOG_2PI) + jnp.sum(
            -jnp.log(jnp.abs(self.scale_diag))
        )

    def entropy(self) -> Float[Array, ""]:
        unit = jnp.ones_like(self.loc)
        return jnp.sum(0.5 + (_HALF_LOG_2PI + jnp.log(unit))) + self._log_det()

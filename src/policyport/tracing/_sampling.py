"""Stochastic sampling with the randomness as an input: a policy's sample, split at its noise.

Tracing `policy(None, observation, key=k, action_mask=m)` (and `evaluate_action` on the
action it draws, for the log-probability) with the key and the policy's weights as
explicit inputs, every value of the jaxpr depends on the key only, or on the observation,
mask or weights too. Values of the first kind are *noise*: `jax.random` computing from
the key alone. Where noise first meets the rest (the standard normal multiplied by the
scale, the Gumbel draw added to the logits, the uniform compared with a probability) is
the frontier. An artifact computes everything past the frontier with the frontier values
as one flat float32 input `noise`; `sampling_noise` computes everything before it, with
`jax.random`, exactly as the policy draws it. Nothing is re-implemented per distribution,
so the split is exact for any policy (lerax's classes, their key splitting, your own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Var, jaxpr_as_fun
from jaxtyping import Array

from .._errors import InputError, UnsupportedError
from ..policy import AbstractSpace, Box, MultiBinary
from ._contract import TensorSpec
from ._decisions import decision_margins
from ._simplify import simplify
from ._state import State

NOISE = "noise"
SAMPLED_ACTION = "sampled_action"
LOG_PROB = "log_prob"
# The key every trace is made with: threefry, jax's default (its raw data is uint32[2]).
_KEY_DATA = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)

_NO_LOG_PROB = (
    "{name} has neither `evaluate_action(state, observation, action, *, action_mask=None)` "
    "nor `sample_and_log_prob(state, observation, *, key, action_mask=None)`, so the "
    "log-probability of a sampled action is unknown; `--sample` (sample=True) exports "
    "policies whose distribution gives one (lerax's and policyport's actor-critic policies, "
    "`from_function(..., sample=...)`)."
)


@dataclass(frozen=True)
class NoiseBlock:
    """One frontier value: where it sits in `noise`, its shape, and what draws it.

    `distribution` is read from the primitives that compute it: `standard_normal`
    (`erf_inv` of a uniform), `gumbel` (`-log(-log(u))`), `uniform` (on [0, 1)), or
    `other`; `sampling_noise` is exact whatever it is.
    """

    offset: int
    shape: tuple[int, ...]
    distribution: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "shape": list(self.shape),
            "distribution": self.distribution,
        }


@dataclass(frozen=True, eq=False)
class Sampling:
    """A policy's stochastic path split at its noise.

    `draw` maps raw key data (uint32 `[2]`) to the flat noise; `sample` maps the
    artifact's inputs (observation leaves, mask if any, noise) to `(sampled_action,
    log_prob)`; `margins` gives the sampled decisions' margins from the same inputs.
    """

    draw: ClosedJaxpr
    sample: ClosedJaxpr
    blocks: tuple[NoiseBlock, ...]
    margins: Callable[..., Array] | None

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)

    @property
    def noise_spec(self) -> TensorSpec:
        return TensorSpec(NOISE, (self.size,), "float32")

    def noise(self, key: Array) -> np.ndarray:
        """The flat noise for one key (typed or raw uint32 data)."""
        return np.asarray(jaxpr_as_fun(self.draw)(_key_data(key))[0])

    def noise_batch(self, keys: Array) -> np.ndarray:
        """The flat noise for a batch of keys (typed or raw uint32 data), `[batch, size]`."""
        draw = jax.jit(jax.vmap(lambda k: jaxpr_as_fun(self.draw)(k)[0]))
        return np.asarray(draw(_key_data(keys)))


def _key_data(key: Array) -> Array:
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key.astype(jnp.uint32)


def _var_inputs(eqn: Any) -> list[Var]:
    return [v for v in eqn.invars if isinstance(v, Var)]


def _noise_vars(jaxpr: Jaxpr, key: Var) -> set[Var]:
    """Every variable computed from the key alone (literals and jax.random's own
    constants are neutral; the observation, mask and weights are inputs, so not)."""
    noise = {key}
    consts = set(jaxpr.constvars)
    for eqn in jaxpr.eqns:
        read = [v for v in _var_inputs(eqn) if v not in consts]
        if read and all(v in noise for v in read):
            noise.update(eqn.outvars)
    return noise


def _frontier(jaxpr: Jaxpr, noise: set[Var]) -> list[Var]:
    """Noise variables read by an equation that also reads non-noise, or returned."""
    consts = set(jaxpr.constvars)
    found: list[Var] = []
    for eqn in jaxpr.eqns:
        read = [v for v in _var_inputs(eqn) if v not in consts]
        if any(v not in noise for v in read):
            found.extend(v for v in read if v in noise and v not in found)
    found.extend(v for v in jaxpr.outvars if isinstance(v, Var) and v in noise and v not in found)
    return found


def _distribution(jaxpr: Jaxpr, var: Var) -> str:
    """What draws `var`, from the primitives on its path back to the key."""
    makers = {out: eqn for eqn in jaxpr.eqns for out in eqn.outvars}
    names: list[str] = []
    todo, seen = [var], set()
    while todo:
        v = todo.pop()
        if v in seen or v not in makers:
            continue
        seen.add(v)
        eqn = makers[v]
        names.append(eqn.primitive.name)
        todo.extend(_var_inputs(eqn))
    if "erf_inv" in names:
        return "standard_normal"
    if names.count("log") >= 2:
        return "gumbel"
    if "random_bits" in names and not {"log", "exp", "sqrt"} & set(names):
        return "uniform"
    return "other"


def _sub_jaxpr(
    closed: ClosedJaxpr, invars: list[Var], outvars: list[Var], keep: Callable[[Any], bool]
) -> ClosedJaxpr:
    jaxpr = closed.jaxpr
    eqns = [e for e in jaxpr.eqns if keep(e)]
    sub = jaxpr.replace(
        invars=invars,
        outvars=outvars,
        eqns=eqns,
        effects=frozenset().union(*(e.effects for e in eqns)),
        debug_info=jaxpr.debug_info._replace(arg_names=None, result_paths=None),
    )
    return ClosedJaxpr(sub, list(closed.consts))


def _policy_parts(policy: Any) -> tuple[Any, Any]:
    """The policy's array leaves (traced as inputs, so weights are never noise) and the rest."""
    if isinstance(policy, eqx.Module):
        return eqx.partition(policy, eqx.is_array)
    return None, policy


def trace_sampling(
    policy: Any,
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    observations: tuple[TensorSpec, ...],
    mask: TensorSpec | None,
    prepare: Callable[[Any], Any],
    layout: Callable[[Any], Array],
    mask_argument: Callable[[Array], Array],
    state: State | None = None,
) -> Sampling:
    """Split the policy's sampled action and its log-probability at the noise frontier.

    `prepare` maps the input observation to the policy's (baked observation wrappers);
    `layout` maps the policy's action to the contract's layout (baked action wrappers,
    clipping); the log-probability is the policy's, of its own action. `mask_argument`
    shapes the mask as the policy takes it. `mask` is None when there is no mask input.
    With a recurrent policy's `state`, its leaves and `reset` follow (the step starts from
    the state `reset` selects, as the deterministic outputs do).
    """
    evaluates = callable(getattr(policy, "evaluate_action", None))
    if not evaluates and not callable(getattr(policy, "sample_and_log_prob", None)):
        raise UnsupportedError(_NO_LOG_PROB.format(name=type(policy).__name__))
    params, static = _policy_parts(policy)
    leaf_count = len(observations)
    state_at = leaf_count + (mask is not None)

    def stochastic(params: Any, *arrays: Array) -> tuple[Array, Array]:
        module = static if params is None else eqx.combine(params, static)
        observation = prepare(observation_space.unflatten(list(arrays[:leaf_count])))
        action_mask = mask_argument(arrays[leaf_count]) if mask is not None else None
        key = jax.random.wrap_key_data(arrays[-1])
        current = None
        if state is not None:
            count = len(state.inputs)
            current = state.select(arrays[state_at + count], list(arrays[state_at:][:count]))
        if evaluates:  # lerax's protocol: the action, then its log-probability
            _, action = module(current, observation, key=key, action_mask=action_mask)
            _, _, log_prob, *_ = module.evaluate_action(
                current, observation, action, action_mask=action_mask
            )
        else:  # both from one call (`from_function(..., sample=...)`)
            _, action, log_prob = module.sample_and_log_prob(
                current, observation, key=key, action_mask=action_mask
            )
        return layout(action), jnp.asarray(log_prob, jnp.float32).reshape(())

    state_specs = () if state is None else (*state.inputs, state.reset)
    specs = (*observations, *([mask] if mask is not None else []), *state_specs)
    avals = [jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for s in specs]
    try:
        raw = jax.make_jaxpr(stochastic)(params, *avals, _KEY_DATA)
    except (InputError, UnsupportedError):
        raise
    except Exception as e:  # the user's code: any failure means the same to them
        how = "`__call__` with a key, then `evaluate_action`"
        how = how if evaluates else "`sample_and_log_prob`"
        raise InputError(
            f"Tracing {type(policy).__name__}'s sampled action ({how}) failed: "
            f"{type(e).__name__}: {str(e)[:400]}."
        ) from e
    closed = simplify(raw)
    jaxpr = closed.jaxpr
    weight_count = len(jaxpr.invars) - len(specs) - 1
    weights, data, key = (
        jaxpr.invars[:weight_count],
        jaxpr.invars[weight_count:-1],
        jaxpr.invars[-1],
    )
    noise = _noise_vars(jaxpr, key)
    frontier = _frontier(jaxpr, noise)
    for v in frontier:
        if v.aval.dtype != jnp.float32:
            raise UnsupportedError(
                f"{type(policy).__name__}'s sampling uses {v.aval.dtype} noise (shape "
                f"{v.aval.shape}) where its draws meet the observation; policyport's noise "
                "input is float32 (normal, Gumbel and uniform draws)."
            )
    draw = _sub_jaxpr(closed, [key], frontier, lambda e: all(o in noise for o in e.outvars))
    blocks, offset = [], 0
    for v in frontier:
        blocks.append(NoiseBlock(offset, tuple(v.aval.shape), _distribution(jaxpr, v)))
        offset += blocks[-1].size
    split = _sub_jaxpr(
        closed,
        [*weights, *data, *frontier],
        list(jaxpr.outvars),
        lambda e: not all(o in noise for o in e.outvars),
    )
    draw = _flat_draw(draw)
    sample = _closed_sample(split, params, avals, tuple(blocks))
    margins = None
    if not isinstance(action_space, Box):
        kind = "compare" if isinstance(action_space, MultiBinary) else "argmax"
        shape = tuple(sample.out_avals[0].shape)
        margins = decision_margins(_action_only(sample), shape, kind)
    return Sampling(draw, sample, tuple(blocks), margins)


def _flat_draw(draw: ClosedJaxpr) -> ClosedJaxpr:
    def flat(key: Array) -> Array:
        parts = jaxpr_as_fun(draw)(key)
        return jnp.concatenate([jnp.ravel(p) for p in parts]).astype(jnp.float32)

    return simplify(jax.make_jaxpr(flat)(_KEY_DATA))


def _closed_sample(
    split: ClosedJaxpr,
    params: Any,
    avals: list[jax.ShapeDtypeStruct],
    blocks: tuple[NoiseBlock, ...],
) -> ClosedJaxpr:
    """The artifact's sampling function: weights closed over, noise one flat input."""
    weights = jax.tree.leaves(params)
    size = sum(b.size for b in blocks)

    def sample(*arrays: Array) -> tuple[Array, ...]:
        noise = arrays[-1]
        pieces = [noise[b.offset : b.offset + b.size].reshape(b.shape) for b in blocks]
        return tuple(jaxpr_as_fun(split)(*weights, *arrays[:-1], *pieces))

    noise_aval = jax.ShapeDtypeStruct((size,), jnp.float32)
    return simplify(jax.make_jaxpr(sample)(*avals, noise_aval))


def _action_only(sample: ClosedJaxpr) -> ClosedJaxpr:
    """The sampled action alone (its decisions are what the margins read)."""
    jaxpr = sample.jaxpr.replace(
        outvars=sample.jaxpr.outvars[:1],
        debug_info=sample.jaxpr.debug_info._replace(result_paths=None),
    )
    return simplify(ClosedJaxpr(jaxpr, list(sample.consts)))

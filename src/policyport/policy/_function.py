"""Any pure JAX function of one observation, as a protocol policy (`from_function`).

A Flax, Haiku or plain-JAX policy is a function with its parameters closed over; wrapping
it in the protocol (`observation_space`, `action_space`, `__call__(state, observation, *,
key=None, action_mask=None) -> (state, action)`, `value`, `q_values`) lets every format,
check and consumer use it unchanged. The functions are checked once, abstractly (shapes
and dtypes only, no FLOPs), when the policy is made, so a wrong one fails here with its
own name rather than deep inside an export.

Whether `act` reads the action mask is decided from its signature (see `takes_mask`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Var
from jaxtyping import Array

from .._errors import InputError, UnsupportedError
from ._spaces import AbstractSpace, Box, Dict, Discrete, MultiBinary, Tuple, as_space

_MASK_NAMES = ("action_mask", "mask")

_NOT_CALLABLE = (
    "from_function: `{name}` must be a function of one observation (a JAX function with the "
    "parameters closed over), found {found}. For a Flax module: "
    "`lambda obs: model.apply(params, obs)`."
)
_MASK_ON_UNMASKABLE = (
    "from_function: `act` takes an action mask (its signature has a second argument, "
    "{param!r}), but the action space {space!r} has no masks. Write `act(observation)`."
)
_MASK_IGNORED = (
    "from_function: `act` takes an action mask (its second argument, {param!r}) but never "
    "reads it, so the artifact would accept masks and ignore them. Apply the mask (e.g. "
    "`jnp.where(action_mask, logits, -jnp.inf)` before the argmax), or write "
    "`act(observation)` to export a policy without a mask input."
)


def takes_mask(
    act: Callable[..., Any], action_space: AbstractSpace, *, after_state: bool = False
) -> bool:
    """Whether `act` is called as `act(observation, action_mask)` (with `after_state`:
    `act(state, observation, action_mask)`; the state's parameter is then left out below).

    The rule: `act` takes the mask when it has two required positional parameters, or one
    required positional parameter followed by an optional one named `action_mask` or `mask`.
    With one required parameter it is called as `act(observation)`. When the signature
    cannot be read (or is only `*args`), the action space decides: maskable spaces
    (Discrete, MultiDiscrete, MultiBinary) pass the mask.
    """
    try:
        parameters = list(inspect.signature(act).parameters.values())
    except (TypeError, ValueError):
        return action_space.mask_size is not None
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if after_state and positional:
        positional = positional[1:]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if len(required) >= 2:
        return True
    if len(required) == 1:
        return len(positional) >= 2 and positional[1].name in _MASK_NAMES
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return action_space.mask_size is not None
    return False


def _mask_parameter(act: Callable[..., Any]) -> str:
    try:
        positional = list(inspect.signature(act).parameters)
    except (TypeError, ValueError):
        return "action_mask"
    return positional[1] if len(positional) >= 2 else "action_mask"


class FunctionPolicy:
    """A protocol policy made of pure JAX functions of one observation.

    Made by `from_function`, which checks the functions; not an equinox module, so the
    weights an artifact records the hash of are the constants its trace closes over.
    With a `key`, the action is `sample`'s when one was given; otherwise `key` is ignored
    and the action is `act`'s, the deterministic one.
    """

    def __init__(
        self,
        act: Callable[..., Any],
        observation_space: AbstractSpace,
        action_space: AbstractSpace,
        *,
        with_mask: bool,
        value: Callable[..., Any] | None,
        q_values: Callable[..., Any] | None,
        name: str,
        sample: Callable[..., tuple[Any, Any]] | None = None,
        initial_state: Any = None,
    ):
        self.act = act
        # A recurrent function's carry: `act(state, observation[, mask]) -> (state, action)`
        # and `value(state, observation)`; None for a stateless one.
        self.initial_state = initial_state
        self.observation_space = observation_space
        self.action_space = action_space
        self.with_mask = with_mask
        self.name = name
        # The protocol's optional heads exist only when given (`trace` looks them up).
        recurrent = initial_state is not None
        if value is not None:
            self.value = lambda state, observation: (
                state,
                value(self._state(state), observation) if recurrent else value(observation),
            )
        if q_values is not None:
            self.q_values = lambda state, observation: (
                state,
                q_values(self._state(state), observation) if recurrent else q_values(observation),
            )
        self._sample = sample
        if sample is not None:  # what `trace(..., sample=True)` reads for the log-probability
            self.sample_and_log_prob = self._sample_and_log_prob

    def __call__(
        self,
        state: None,
        observation: Any,
        *,
        key: Array | None = None,
        action_mask: Array | None = None,
    ) -> tuple[None, Array]:
        if key is not None and self._sample is not None:
            _, action, _ = self._sample_and_log_prob(
                state, observation, key=key, action_mask=action_mask
            )
            return state, action
        if self.initial_state is not None:
            arguments = (self._mask(action_mask),) if self.with_mask else ()
            return self.act(self._state(state), observation, *arguments)
        if not self.with_mask:
            return state, self.act(observation)
        return state, self.act(observation, self._mask(action_mask))

    def _state(self, state: Any) -> Any:
        """The carry to step from: the given one, or the initial one for None (the
        protocol's callers that know no state, as a stateless policy's do)."""
        return self.initial_state if state is None else state

    def _mask(self, action_mask: Array | None) -> Array:
        if action_mask is None:  # the policy run without masks: every action allowed
            return jnp.ones(_mask_shape(self.action_space), dtype=bool)
        return action_mask

    def _sample_and_log_prob(
        self, state: None, observation: Any, *, key: Array, action_mask: Array | None = None
    ) -> tuple[None, Array, Array]:
        """The sampled action and its log-probability, from one call of `sample` (how
        Brax's inference function returns them: no `evaluate_action` to call after)."""
        assert self._sample is not None
        if self.with_mask:
            action, log_prob = self._sample(observation, self._mask(action_mask), key)
        else:
            action, log_prob = self._sample(observation, key)
        return state, action, log_prob

    def reset(self, *, key: Array) -> Any:
        """The initial state given to `from_function` (None: stateless)."""
        return self.initial_state

    def __repr__(self) -> str:
        return (
            f"FunctionPolicy({self.name!r}, observation_space={self.observation_space!r}, "
            f"action_space={self.action_space!r})"
        )


def _mask_shape(space: AbstractSpace) -> tuple[int, ...]:
    """The mask `act` receives: the space's shape for MultiBinary, else flat (as traced)."""
    if isinstance(space, MultiBinary):
        return tuple(space.shape)
    return (int(space.mask_size or 0),)


def _action_shape(space: AbstractSpace) -> tuple[int, ...]:
    if isinstance(space, Discrete):
        return ()
    return tuple(space.shape)


def _abstract_observation(space: AbstractSpace) -> Any:
    leaves = [jax.ShapeDtypeStruct(tuple(s.shape), jnp.float32) for _, s in space.leaves()]
    return space.unflatten(leaves)


def _reads_mask(
    act: Callable[..., Any], observation: Any, space: AbstractSpace, state: Any = None
) -> bool:
    mask = jax.ShapeDtypeStruct(_mask_shape(space), jnp.bool_)
    if state is None:
        closed = jax.make_jaxpr(lambda o, m: act(o, m))(observation, mask)
    else:
        closed = jax.make_jaxpr(lambda o, m: act(state, o, m))(observation, mask)
    leaf_count = len(jax.tree.leaves(observation))
    mask_var = closed.jaxpr.invars[leaf_count]
    used = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
    return mask_var in used or mask_var in closed.jaxpr.outvars


def _abstract_output(name: str, fn: Callable[..., Any], *args: Any) -> jax.ShapeDtypeStruct:
    try:
        out = jax.eval_shape(fn, *args)
    except Exception as e:  # the user's code: any failure means the same to them
        raise InputError(
            f"from_function: calling `{name}` on one abstract observation failed: "
            f"{type(e).__name__}: {str(e)[:400]}. It must be a pure JAX function of one "
            "unbatched observation (no batch axis: policyport vmaps it)."
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise InputError(
            f"from_function: `{name}` must return one array, found "
            f"{jax.tree.structure(out)} (a tuple or dict of outputs?)."
        )
    return out


def _check_action(out: jax.ShapeDtypeStruct, space: AbstractSpace, name: str = "act") -> None:
    want = _action_shape(space)
    if tuple(out.shape) != want:
        raise InputError(
            f"from_function: `{name}` returns shape {tuple(out.shape)} for one observation, but "
            f"the action space {space!r} needs {want or 'a scalar ()'}. Return one action per "
            "observation, without a batch axis."
        )
    integer = jnp.issubdtype(out.dtype, jnp.integer) or out.dtype == jnp.bool_
    if isinstance(space, Box) and not jnp.issubdtype(out.dtype, jnp.floating):
        raise InputError(
            f"from_function: `{name}` returns {out.dtype} for the Box action space {space!r}; "
            "a continuous action must be floating point."
        )
    if not isinstance(space, Box) and not integer:
        raise InputError(
            f"from_function: `{name}` returns {out.dtype} for the action space {space!r}; a "
            "discrete action must be an integer (e.g. `jnp.argmax(logits)`), not logits or "
            "probabilities."
        )


def _check_head(name: str, out: jax.ShapeDtypeStruct, space: AbstractSpace) -> None:
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise InputError(f"from_function: `{name}` returns {out.dtype}; it must be floating.")
    if name == "value" and tuple(out.shape) not in ((), (1,)):
        raise InputError(
            f"from_function: `value` returns shape {tuple(out.shape)} for one observation; "
            "it must be a scalar () (or (1,))."
        )
    if name == "q_values":
        want = (space.n,) if isinstance(space, Discrete) else None
        if out.ndim != 1 or (want is not None and tuple(out.shape) != want):
            raise InputError(
                f"from_function: `q_values` returns shape {tuple(out.shape)} for one "
                f"observation; it must be one vector{f' of shape {want}' if want else ''}."
            )


def _check_sample(
    sample: Callable[..., Any], observation: Any, space: AbstractSpace, with_mask: bool
) -> None:
    key = jax.eval_shape(lambda: jax.random.key(0))
    mask = jax.ShapeDtypeStruct(_mask_shape(space), jnp.bool_)
    args = (observation, mask) if with_mask else (observation,)
    try:
        out = jax.eval_shape(sample, *args, key)
    except Exception as e:  # the user's code: any failure means the same to them
        raise InputError(
            f"from_function: calling `sample` on one abstract observation"
            f"{', mask' if with_mask else ''} and key failed: {type(e).__name__}: "
            f"{str(e)[:400]}. It must be `sample(observation{', action_mask' if with_mask else ''}"
            ", key) -> (action, log_prob)` for one unbatched observation."
        ) from e
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise InputError(
            f"from_function: `sample` must return the pair (action, log_prob), found "
            f"{jax.tree.structure(out)}."
        )
    action, log_prob = out
    _check_action(action, space, "sample")
    if log_prob.size != 1 or not jnp.issubdtype(log_prob.dtype, jnp.floating):
        raise InputError(
            f"from_function: `sample`'s log_prob is {log_prob.dtype}{list(log_prob.shape)} for "
            "one observation; it must be one floating scalar (summed over the action's parts)."
        )


def from_function(
    act: Callable[..., Any],
    *,
    observation_space: Any,
    action_space: Any,
    value: Callable[[Any], Any] | None = None,
    q_values: Callable[[Any], Any] | None = None,
    sample: Callable[..., tuple[Any, Any]] | None = None,
    name: str | None = None,
    initial_state: Any = None,
) -> FunctionPolicy:
    """A protocol policy from pure JAX functions of one observation.

    **Arguments:**

    - `act`: `act(observation) -> action`, or `act(observation, action_mask) -> action` to
      read masks (the rule is `takes_mask`'s). `observation` is one unbatched sample as
      the space gives it (an array of `observation_space.shape`, or a dict / tuple of them);
      `action_mask` is bool, `(n,)` for Discrete, `(sum(nvec),)` for MultiDiscrete, the
      space's shape for MultiBinary, True where allowed. The action is the deterministic
      one: shape `()` int for Discrete, `(len(nvec),)` int for MultiDiscrete, the space's
      shape (int or bool) for MultiBinary, the space's shape float for Box.
    - `observation_space`, `action_space`: policyport spaces (`policyport.policy.Box`...;
      lerax's spaces are converted by `as_space`).
    - `value`: optional `value(observation) -> scalar`, exported as the `value` output.
    - `q_values`: optional `q_values(observation) -> (n,)`, exported as `q_values`.
    - `sample`: optional `sample(observation, key) -> (action, log_prob)` (with the mask
      between them, `sample(observation, action_mask, key)`, when `act` takes one): the
      stochastic action, as `act` returns actions, and its log-probability. The policy
      called with a key returns this action, and `--sample` exports it.
    - `name`: recorded as the policy's class in artifact metadata (default: `act`'s name).
    - `initial_state`: a recurrent policy's initial carry (an array or a pytree of float32
      arrays, e.g. a Flax `GRUCell`'s `initialize_carry` for one observation). Then
      `act(state, observation[, action_mask]) -> (state, action)` and `value(state,
      observation)` / `q_values(state, observation)` take the carry first; the export has
      state inputs, `reset` and `next_state` outputs (contract 4, docs/artifact.md).

    **Returns:** a `FunctionPolicy` that `policyport.export` / `check` take as they are.
    """
    for arg, fn in (("act", act), ("value", value), ("q_values", q_values), ("sample", sample)):
        if fn is None and arg != "act":
            continue
        if not callable(fn):
            raise InputError(
                _NOT_CALLABLE.format(name=arg, found=f"{type(fn).__name__} {fn!r:.60}")
            )
    observation_space, action_space = as_space(observation_space), as_space(action_space)
    if isinstance(action_space, Dict | Tuple):
        raise UnsupportedError(
            f"from_function: composite action spaces ({action_space!r}) are not supported: "
            "policyport exports Box, Discrete, MultiDiscrete and MultiBinary actions."
        )
    if initial_state is not None:
        return _recurrent(
            act, observation_space, action_space, value, q_values, sample, name, initial_state
        )
    with_mask = takes_mask(act, action_space)
    if with_mask and action_space.mask_size is None:
        raise InputError(_MASK_ON_UNMASKABLE.format(param=_mask_parameter(act), space=action_space))
    observation = _abstract_observation(observation_space)
    if with_mask:
        mask = jax.ShapeDtypeStruct(_mask_shape(action_space), jnp.bool_)
        _check_action(_abstract_output("act", act, observation, mask), action_space)
        if not _reads_mask(act, observation, action_space):
            raise InputError(_MASK_IGNORED.format(param=_mask_parameter(act)))
    else:
        _check_action(_abstract_output("act", act, observation), action_space)
    if value is not None:
        _check_head("value", _abstract_output("value", value, observation), action_space)
    if q_values is not None:
        _check_head("q_values", _abstract_output("q_values", q_values, observation), action_space)
    if sample is not None:
        _check_sample(sample, observation, action_space, with_mask)
    return FunctionPolicy(
        act,
        observation_space,
        action_space,
        with_mask=with_mask,
        value=value,
        q_values=q_values,
        name=_function_name(act, name),
        sample=sample,
    )


def _function_name(act: Callable[..., Any], name: str | None) -> str:
    if name is None:
        name = getattr(act, "__name__", None) or type(act).__name__
        name = "function" if name == "<lambda>" else str(name)
    return str(name)


def _recurrent(
    act: Callable[..., Any],
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    value: Callable[..., Any] | None,
    q_values: Callable[..., Any] | None,
    sample: Callable[..., Any] | None,
    name: str | None,
    initial_state: Any,
) -> FunctionPolicy:
    """`from_function` with a carry: the same checks, each function taking the state first."""
    if sample is not None:
        raise UnsupportedError(
            "from_function: `sample` with an `initial_state` (a recurrent policy's stochastic "
            "path) is not supported yet: export the deterministic `act` alone."
        )
    try:
        state = jax.tree.map(jnp.asarray, initial_state)
    except (TypeError, ValueError) as e:
        raise InputError(
            f"from_function: `initial_state` must be an array or a pytree of arrays: {e}."
        ) from None
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    with_mask = takes_mask(act, action_space, after_state=True)
    if with_mask and action_space.mask_size is None:
        raise InputError(_MASK_ON_UNMASKABLE.format(param=_mask_parameter(act), space=action_space))
    observation = _abstract_observation(observation_space)
    arguments = (jax.ShapeDtypeStruct(_mask_shape(action_space), jnp.bool_),) if with_mask else ()
    try:
        out = jax.eval_shape(act, abstract, observation, *arguments)
    except Exception as e:  # the user's code: any failure means the same to them
        raise InputError(
            f"from_function: calling `act(state, observation"
            f"{', action_mask' if with_mask else ''})` on the initial state and one abstract "
            f"observation failed: {type(e).__name__}: {str(e)[:400]}."
        ) from e
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise InputError(
            "from_function: with an `initial_state`, `act` must return the pair (state, "
            f"action), found {jax.tree.structure(out)}."
        )
    returned: Any = jax.tree.structure(out[0])  # PyTreeDef's stub has no __eq__
    same_structure = returned == jax.tree.structure(abstract)
    if not same_structure or any(
        (a.shape, a.dtype) != (b.shape, b.dtype)
        for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(abstract), strict=True)
    ):
        raise InputError(
            "from_function: `act` returns a state unlike `initial_state` (structure, shapes or "
            f"dtypes): {out[0]} vs {abstract}. The carry must keep its form from step to step."
        )
    _check_action(out[1], action_space)
    if with_mask and not _reads_mask(act, observation, action_space, abstract):
        raise InputError(_MASK_IGNORED.format(param=_mask_parameter(act)))
    for head, fn in (("value", value), ("q_values", q_values)):
        if fn is not None:
            _check_head(head, _abstract_output(head, fn, abstract, observation), action_space)
    return FunctionPolicy(
        act,
        observation_space,
        action_space,
        with_mask=with_mask,
        value=value,
        q_values=q_values,
        name=_function_name(act, name),
        initial_state=state,
    )

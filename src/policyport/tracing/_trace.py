"""Trace once: any policy that follows lerax's protocol, as one jaxpr every format reads.

The protocol (what "a policy" means here): an object with `observation_space`,
`action_space` and `__call__(state, observation, *, key=None, action_mask=None) ->
(state, action)`, deterministic when `key` is None, and `reset(*, key) -> state`: None for a
stateless policy, a pytree for a recurrent one (its leaves become inputs and outputs,
`_state.py`). The extra heads `value(state, observation)` and `q_values(state,
observation)` are exported when the policy has them. Only these public methods are
called: nothing reaches into fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Var, jaxpr_as_fun
from jaxtyping import Array

from .._backend import to_reference_device
from .._errors import InputError, UnsupportedError
from ..policy import AbstractSpace, Box, Dict, Discrete, MultiBinary, Tuple, as_space
from ..policy._function import FunctionPolicy
from ..policy._serialization import weights_sha256
from ._clip import action_clipper, clip_bounds
from ._contract import ACTION, HEADS, MASK, RESET, PolicyDescription, TensorSpec
from ._decisions import decision_margins
from ._legal import with_legal_actions
from ._sampling import LOG_PROB, NOISE, SAMPLED_ACTION, Sampling, trace_sampling
from ._simplify import simplify
from ._state import State, check_reset_seed, initial_state
from ._streamline import streamline
from ._wrappers import BakedWrappers

_NOT_A_POLICY = (
    "{found} policyport exports objects that follow lerax's policy protocol: "
    "`observation_space`, `action_space` and `__call__(state, observation, *, key=None, "
    "action_mask=None) -> (state, action)`; for a plain function, wrap it in such an object."
)


@dataclass(frozen=True, eq=False)  # identity: a trace is made once and passed around
class TracedPolicy:
    """The per-sample jaxpr of a policy's deterministic outputs, with its contract.

    `jaxpr` takes the inputs `inputs` names (one per observation leaf, then the mask when
    the policy uses it) and returns `outputs` (`action`, then each head), closing over the
    weights as constants. `batched` is that jaxpr vmapped over a leading batch axis: the
    function every format lowers. `margins` gives, per component of a discrete action,
    how far the decision is from flipping (relative to the logits' scale).
    """

    jaxpr: ClosedJaxpr
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    observation_space: AbstractSpace
    action_space: AbstractSpace
    description: PolicyDescription
    margins: Callable[..., Array] | None
    # Where the policy's weights first hold NaN or inf (before dead code is dropped), if so.
    nonfinite_weights: str | None = None
    # With `sample=True`: the stochastic path split at its noise (`_sampling.py`); then the
    # last input is `noise` and the last outputs `sampled_action` and `log_prob`.
    sampling: Sampling | None = None
    # With `sample=True`: the same trace without the sampling path (see `deterministic`).
    plain: TracedPolicy | None = None
    # What formats lower when it differs from `jaxpr` (the reference the checks run): with
    # `sample=True`, `jaxpr` without the work its distributions repeat (`_streamline.py`).
    lowered: ClosedJaxpr | None = None
    # A recurrent policy's state (`_state.py`): its leaves are inputs after the mask, then
    # `reset`; `next_state` leaves are outputs after the heads.
    state: State | None = None

    @property
    def artifact_jaxpr(self) -> ClosedJaxpr:
        """The jaxpr every format lowers: `lowered`, else `jaxpr`."""
        return self.jaxpr if self.lowered is None else self.lowered

    @property
    def deterministic(self) -> TracedPolicy:
        """This trace without the sampling path: what the default entry of a `sample=True`
        export computes. Its own entry because runtimes compute every output of a graph
        (onnxruntime ran a sampling graph's `action` alone at 1.9-2.0x the plain graph's
        cost at batch 1, docs/artifact.md)."""
        return self if self.plain is None else self.plain

    @property
    def forward(self) -> Callable[..., list[Array]]:
        return jaxpr_as_fun(self.jaxpr)

    @property
    def batched(self) -> Callable[..., list[Array]]:
        """The artifact's function (`artifact_jaxpr`) vmapped over a leading batch axis."""
        return jax.vmap(jaxpr_as_fun(self.artifact_jaxpr))

    @property
    def legal_forward(self) -> Callable[..., list[Array]]:
        """`forward`, with a masked action (and sampled action) replaced by a legal one
        where the policy chose one (only rows whose legal logits are all -inf or NaN): what
        formats traced from JAX lower, so they keep the contract's mask promise (see
        `_legal.py`)."""
        actions = tuple(i for i, n in enumerate(self.output_names) if n in _ACTIONS)
        return with_legal_actions(
            jaxpr_as_fun(self.artifact_jaxpr),
            self.action_space,
            self.input_names.index(MASK) if self.description.mask_input else None,
            actions,
            self.output_names.index(LOG_PROB) if LOG_PROB in self.output_names else None,
        )

    @property
    def legal_batched(self) -> Callable[..., list[Array]]:
        """`legal_forward` vmapped over a leading batch axis."""
        return jax.vmap(self.legal_forward)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    @property
    def observation_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(s for s in self.inputs if s.name not in (MASK, NOISE, *self.state_names))

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state leaves' input names and `reset` (empty for a stateless policy)."""
        if self.state is None:
            return ()
        return (*(s.name for s in self.state.inputs), RESET)

    @property
    def discrete(self) -> bool:
        return not isinstance(self.action_space, Box)

    def symbolic_inputs(self, batch: str = "batch") -> list[jax.ShapeDtypeStruct]:
        """Input avals with a symbolic batch dimension named `batch`."""
        return [jax.ShapeDtypeStruct((batch, *s.shape), jnp.dtype(s.dtype)) for s in self.inputs]

    def observation_arrays(self, observation: Any) -> dict[str, np.ndarray]:
        """One env observation (any structure) as the artifact's named float32 inputs."""
        leaves = self.observation_space.sample_leaves(observation)
        return {
            spec.name: np.asarray(leaf, np.float32).reshape(spec.shape)
            for spec, leaf in zip(self.observation_inputs, leaves, strict=True)
        }


_ACTIONS = (ACTION, SAMPLED_ACTION)


def _spaces(policy: Any) -> tuple[AbstractSpace, AbstractSpace]:
    try:
        observation_space, action_space = policy.observation_space, policy.action_space
    except AttributeError as e:
        found = f"{type(policy).__name__} has no {e.name}."
        raise InputError(_NOT_A_POLICY.format(found=found)) from None
    if not callable(policy):
        raise InputError(_NOT_A_POLICY.format(found=f"{type(policy).__name__} is not callable."))
    action_space = as_space(action_space)
    if isinstance(action_space, Dict | Tuple):
        raise UnsupportedError(
            f"Composite action spaces ({action_space!r}) are not supported yet: policyport "
            "exports Box, Discrete, MultiDiscrete and MultiBinary actions."
        )
    return as_space(observation_space), action_space


def _action_spec(space: AbstractSpace) -> TensorSpec:
    if isinstance(space, Box):
        return TensorSpec(ACTION, tuple(space.shape), "float32")
    if isinstance(space, Discrete):
        return TensorSpec(ACTION, (), "int64")
    return TensorSpec(ACTION, (space.flat_size,), "int64")


def _action_layout(action: Any, space: AbstractSpace, spec: TensorSpec) -> Array:
    """The action as the contract lays it out; integer actions stay int32 until a format
    widens them (x64 is off while tracing)."""
    action = jnp.asarray(action)
    if action.size != max(1, int(np.prod(spec.shape))):
        raise UnsupportedError(
            f"The policy's action has shape {action.shape}, but its action space {space!r} "
            f"needs {spec.shape or 'a scalar'}."
        )
    if isinstance(space, Box):
        return action.reshape(spec.shape).astype(jnp.float32)
    return action.reshape(spec.shape).astype(jnp.int32)


def _head_layout(name: str, output: Any) -> Array:
    output = jnp.asarray(output, jnp.float32)
    if HEADS[name] == 0:
        if output.size != 1:
            raise UnsupportedError(
                f"`{name}` must return a scalar per observation, found {output.shape}."
            )
        return output.reshape(())
    return output.reshape(-1)


def _mask_argument(space: AbstractSpace, mask: Array) -> Array:
    return mask.reshape(space.shape) if isinstance(space, MultiBinary) else mask


def _heads(policy: Any) -> tuple[str, ...]:
    return tuple(name for name in HEADS if callable(getattr(policy, name, None)))


def _forward(
    policy: Any,
    observation_space: AbstractSpace,
    action_space: AbstractSpace,
    heads: tuple[str, ...],
    with_mask: bool,
    prepare: Callable[[Any], Any],
    finish: Callable[[Any], Array],
    state: State | None = None,
) -> Callable[..., tuple[Array, ...]]:
    """The deterministic outputs; `prepare` maps the input observation to the policy's,
    `finish` the policy's action to the contract's layout (baked wrappers, clipping). With
    a `state`, the arrays go on with its leaves and `reset`, and the outputs with the
    next state's leaves."""
    leaf_count = len(observation_space.leaves())
    state_at = leaf_count + with_mask

    def forward(*arrays: Array) -> tuple[Array, ...]:
        observation = prepare(observation_space.unflatten(list(arrays[:leaf_count])))
        mask = _mask_argument(action_space, arrays[leaf_count]) if with_mask else None
        current = None
        if state is not None:
            count = len(state.inputs)
            current = state.select(arrays[state_at + count], list(arrays[state_at:][:count]))
        next_state, chosen = policy(current, observation, action_mask=mask)
        outputs = [finish(chosen)]
        for name in heads:
            _, out = getattr(policy, name)(current, observation)
            outputs.append(_head_layout(name, out))
        if state is not None:
            outputs.extend(state.flatten_next(policy, next_state))
        return tuple(outputs)

    return forward


def _uses_input(closed: ClosedJaxpr, index: int) -> bool:
    """Whether the jaxpr reads its input `index` (the mask) at all."""
    mask = closed.jaxpr.invars[index]
    used = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
    return mask in used or mask in closed.jaxpr.outvars


def _first_nonfinite(policy: Any, closed: ClosedJaxpr) -> str | None:
    """Where the weights the trace reads first hold NaN or inf, by leaf path when known.

    Read before dead code is dropped: a diverged training run is worth refusing even when
    the broken weights (say a log-std) do not reach the deterministic outputs.
    """
    names = {id(leaf): jax.tree_util.keystr(path) for path, leaf in _leaves_with_path(policy)}
    for i, const in enumerate(closed.consts):
        value = np.asarray(const)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            return names.get(id(const), f"constant {i} of the trace")
    return None


def _leaves_with_path(policy: Any) -> list[tuple[Any, Any]]:
    try:
        return jax.tree_util.tree_leaves_with_path(policy)
    except Exception:  # not a pytree: constants are then named by position
        return []


def _weights_hash(policy: Any, closed: ClosedJaxpr) -> str:
    if isinstance(policy, eqx.Module):
        return weights_sha256(policy)
    digest = hashlib.sha256()
    for const in closed.consts:
        digest.update(np.ascontiguousarray(np.asarray(const)).tobytes())
    return digest.hexdigest()


def _trace_failure(policy: Any, e: Exception) -> InputError:
    return InputError(
        f"Tracing {type(policy).__name__} for one observation failed: {type(e).__name__}: "
        f"{str(e)[:400]}. The policy's __call__ (and value / q_values) must be pure JAX "
        "functions of one unbatched observation."
    )


def trace(
    policy: Any,
    *,
    sample: bool = False,
    clip_actions: bool = False,
    wrappers: BakedWrappers | None = None,
    reset_seed: int | None = None,
) -> TracedPolicy:
    """Trace the policy's deterministic action and its heads for one observation.

    With `sample=True`, also its sampled action and that action's log-probability, with
    the randomness as the input `noise` (`_sampling.py`). With `clip_actions=True`, Box
    actions (sampled ones too) are clipped to the action space's finite bounds (`_clip.py`).
    With `wrappers` (`_wrappers.unwrap(env)`), the artifact takes the base env's observation
    and returns the base env's action, the wrappers' pure transforms inside. A recurrent
    policy's initial state is `reset(key=...)`'s; one drawn from the key needs `reset_seed`.
    """
    if isinstance(policy, TracedPolicy):
        if sample and policy.sampling is None:
            raise InputError("This trace was made without sample=True: trace the policy again.")
        if clip_actions and policy.description.action_clip is None:
            raise InputError("This trace was made without clip_actions=True: trace again.")
        return policy
    # The trace's constants (the weights) on the CPU, where the reference runs and the
    # lowerings read them: a policy trained on a GPU exports unchanged.
    policy = to_reference_device(policy)
    observation_space, action_space = _spaces(policy)
    check_reset_seed(reset_seed)
    state = initial_state(policy, reset_seed)
    state_specs = () if state is None else (*state.inputs, state.reset)
    heads = _heads(policy)
    prepare, transform = (lambda o: o), (lambda a: a)
    if wrappers is not None:
        observation_space, action_space = wrappers.observation_space, wrappers.action_space
        prepare, transform = wrappers.prepare, wrappers.finish
    clip = action_clipper(action_space) if clip_actions else (lambda a: a)
    action_spec = _action_spec(action_space)

    def finish(chosen: Any) -> Array:
        return clip(_action_layout(transform(chosen), action_space, action_spec))

    observations = tuple(
        TensorSpec(name, tuple(space.shape), "float32")
        for name, space in observation_space.leaves()
    )
    mask = (
        None
        if action_space.mask_size is None
        else TensorSpec(MASK, (action_space.mask_size,), "bool")
    )
    raw: ClosedJaxpr | None = None
    closed: ClosedJaxpr | None = None
    inputs = observations
    if mask is not None:
        specs = (*observations, mask, *state_specs)
        forward = _forward(
            policy, observation_space, action_space, heads, True, prepare, finish, state
        )
        try:
            raw = jax.make_jaxpr(forward)(*_avals(specs))
            closed = simplify(raw)
        except (TypeError, ValueError):
            raw = None  # a policy that refuses masks: traced without one below
        if raw is not None and _uses_input(closed, len(observations)):
            inputs = specs
        else:
            raw = closed = None  # the mask is never read: no mask input
    if raw is None:
        inputs = (*observations, *state_specs)
        forward = _forward(
            policy, observation_space, action_space, heads, False, prepare, finish, state
        )
        try:
            raw = jax.make_jaxpr(forward)(*_avals(inputs))
        except (InputError, UnsupportedError):
            raise
        except Exception as e:  # the user's code: any failure means the same to them
            raise _trace_failure(policy, e) from e
        closed = simplify(raw)
    assert closed is not None  # traced above, with the mask or without
    nonfinite = _first_nonfinite(policy, raw)
    outputs = (
        _action_spec(action_space),
        *(
            TensorSpec(
                name, () if HEADS[name] == 0 else tuple(closed.out_avals[i + 1].shape), "float32"
            )
            for i, name in enumerate(heads)
        ),
        *(() if state is None else state.outputs),
    )
    margins = None
    if not isinstance(action_space, Box):
        kind = "compare" if isinstance(action_space, MultiBinary) else "argmax"
        margins = decision_margins(closed, outputs[0].shape, kind)
    kwargs = getattr(policy, "constructor_kwargs", None)
    description = PolicyDescription(
        # A wrapped function is described by its name (e.g. "brax.ppo"), not its wrapper.
        policy_class=policy.name if isinstance(policy, FunctionPolicy) else type(policy).__name__,
        observation_space=observation_space.to_json(),
        action_space=action_space.to_json(),
        policy_kwargs=kwargs() if callable(kwargs) else None,
        weights_sha256=_weights_hash(policy, closed),
        mask_input=any(s.name == MASK for s in inputs),
        heads=heads,
        noise=None,
        action_clip=_clip_json(action_space)
        if isinstance(action_space, Box) and clip_actions
        else None,
        wrappers=None if wrappers is None else wrappers.inside,
        state=None if state is None else state.to_json(),
    )
    plain = TracedPolicy(
        closed,
        inputs,
        outputs,
        observation_space,
        action_space,
        description,
        margins,
        nonfinite,
        state=state,
    )
    if not sample:
        return plain
    sampling = trace_sampling(
        policy,
        observation_space,
        action_space,
        observations,
        next((s for s in inputs if s.name == MASK), None),
        prepare,
        finish,
        lambda m: _mask_argument(action_space, m),
        state,
    )
    full = _with_sampling(closed, sampling, inputs)
    # Both entries name the same weights, the sampling path's (say a log-std) included.
    description = dataclasses.replace(description, weights_sha256=_weights_hash(policy, full))
    plain = dataclasses.replace(plain, description=description)
    sampled = TensorSpec(SAMPLED_ACTION, outputs[0].shape, outputs[0].dtype)
    # The reference and the artifact both give the contract's answer on rows with nothing legal.
    mask_index = next((i for i, s in enumerate(inputs) if s.name == MASK), None)
    full = _nothing_legal_as_contracted(full, action_space, mask_index)
    return dataclasses.replace(
        plain,
        jaxpr=full,
        lowered=streamline(full),
        inputs=(*inputs, sampling.noise_spec),
        outputs=(*outputs, sampled, TensorSpec(LOG_PROB, (), "float32")),
        description=dataclasses.replace(
            description, noise=tuple(b.to_json() for b in sampling.blocks)
        ),
        # The deterministic jaxpr does not take the noise.
        margins=None if margins is None else _without_noise(margins, len(inputs)),
        sampling=sampling,
        plain=plain,
    )


def _nothing_legal_as_contracted(
    full: ClosedJaxpr, action_space: AbstractSpace, mask_index: int | None
) -> ClosedJaxpr:
    """`full` with the contract's sample for a block with nothing legal (action 0, log_prob
    NaN, `_legal.py`) where the policy's own differs: lerax's classes sample -1 with
    log_prob -inf there. Probed on one all-False row, so a policy that already answers as
    the contract does (policyport's) keeps its graph as it is."""
    if mask_index is None:
        return full
    forward = jaxpr_as_fun(full)
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in full.jaxpr.invars]
    outputs = len(full.jaxpr.outvars)
    legal = with_legal_actions(forward, action_space, mask_index, (outputs - 2,), outputs - 1)
    probe = [np.zeros(a.shape, a.dtype) for a in avals]  # the mask all False
    own, contracted = forward(*probe)[-2:], legal(*probe)[-2:]
    if all(np.array_equal(a, b, equal_nan=True) for a, b in zip(own, contracted, strict=True)):
        return full
    return simplify(jax.make_jaxpr(legal)(*avals))


def _clip_json(space: Box) -> dict[str, Any]:
    low, high = clip_bounds(space)
    as_json = lambda x: [v if np.isfinite(v) else None for v in x.reshape(-1).tolist()]  # noqa: E731
    return {"low": as_json(low), "high": as_json(high)}


def _with_sampling(
    closed: ClosedJaxpr, sampling: Sampling, inputs: tuple[TensorSpec, ...]
) -> ClosedJaxpr:
    """One jaxpr: the deterministic outputs, then the sampled action and its log-prob."""

    def both(*arrays: Array) -> tuple[Array, ...]:
        return (*jaxpr_as_fun(closed)(*arrays[:-1]), *jaxpr_as_fun(sampling.sample)(*arrays))

    return simplify(jax.make_jaxpr(both)(*_avals((*inputs, sampling.noise_spec))))


def _without_noise(margins: Callable[..., Array], count: int) -> Callable[..., Array]:
    return lambda *args: margins(*args[:count])


def _avals(specs: tuple[TensorSpec, ...]) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for s in specs]

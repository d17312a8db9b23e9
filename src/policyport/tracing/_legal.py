"""The mask promise, enforced after the policy: no masked action while a legal one exists.

In JAX, `argmax(where(mask, logits, -inf))` picks index 0 when every legal logit is -inf
(observations near 1e38 overflow them), and index 0 may be masked. policyport's ONNX
graph clips the logits before masking, so it never does; the formats traced from JAX
(StableHLO, SavedModel, tflite) lower `legal_batched`, which replaces such a masked choice
with the first legal index (what the clipped ONNX graph picks). A row whose chosen action is
legal, e.g. every row whose legal logits are finite, is left exactly as it was.

A block with no legal action (an all-False mask block, outside the contract) gets action 0
and the row's log-probability NaN, JAX's own answer, written out: TFLite's fused
log-softmax of all -inf logits is uniform, not NaN, and would sample any index.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from ..policy import AbstractSpace, Discrete, MultiBinary, MultiDiscrete


def legal_action(
    space: AbstractSpace, action: Int[Array, "..."], mask: Bool[Array, " mask_size"]
) -> Int[Array, "..."]:
    """`action` (one sample, the contract's layout) with any masked choice made legal.

    Categorical blocks: a masked choice becomes the block's first legal index; an all-False
    block's action is 0 (by contract; `argmax` of all-False is 0). MultiBinary: a masked
    bit is 0.
    """
    mask = jnp.asarray(mask, bool).reshape(-1)
    if isinstance(space, MultiBinary):
        return jnp.where(mask.reshape(action.shape), action, jnp.zeros_like(action))
    if not isinstance(space, Discrete | MultiDiscrete):
        return action
    chosen = action.reshape(-1)
    fixed = []
    for i, (start, stop) in enumerate(space.mask_blocks()):
        block, choice = mask[start:stop], chosen[i]
        # A comparison, not `block[choice]`: a gather over a dynamic batch is what
        # TFLite's converter cannot legalize; a choice outside the block matches nothing.
        legal = jnp.any(block & (jnp.arange(stop - start, dtype=choice.dtype) == choice))
        # Of int32, not bool: ONNX's ArgMax takes no bool (the ONNX sample entry lowers it).
        first = jnp.argmax(block.astype(jnp.int32)).astype(choice.dtype)
        fixed.append(jnp.where(legal, choice, first))
    return jnp.stack(fixed).reshape(action.shape)


def no_legal_choice(space: AbstractSpace, mask: Bool[Array, " mask_size"]) -> Bool[Array, ""]:
    """Whether some categorical block of `mask` (one sample) has no legal action."""
    if not isinstance(space, Discrete | MultiDiscrete):
        return jnp.asarray(False)
    mask = jnp.asarray(mask, bool).reshape(-1)
    return jnp.any(jnp.stack([~jnp.any(mask[a:b]) for a, b in space.mask_blocks()]))


def with_legal_actions(
    forward: Callable[..., list[Array]],
    space: AbstractSpace,
    mask_index: int | None,
    actions: tuple[int, ...],
    log_prob: int | None,
) -> Callable[..., list[Array]]:
    """`forward` (per sample: inputs -> outputs) with `legal_action` applied to the outputs
    at `actions` (the action, and the sampled action when there is one) and the output at
    `log_prob` (if any) NaN without a legal choice; the mask is the input at `mask_index`
    (None: the policy takes no mask, nothing to do). All are named by the caller: with
    sampling, the mask is not the last input (`noise` is)."""
    if mask_index is None:
        return forward

    def legal(*inputs: Array) -> list[Array]:
        outputs = list(forward(*inputs))
        mask = inputs[mask_index]
        for i in actions:
            outputs[i] = legal_action(space, outputs[i], mask)
        if log_prob is not None:
            nan = jnp.full_like(outputs[log_prob], jnp.nan)
            outputs[log_prob] = jnp.where(no_legal_choice(space, mask), nan, outputs[log_prob])
        return outputs

    return legal

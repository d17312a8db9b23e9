"""Rewriting a simplified jaxpr: pattern rules that replace an equation's outputs.

A rule looks at one equation (with an index of who produced each variable and the
constants' values) and may return a `Rewrite`: a function of some earlier atoms that
computes that equation's outputs another way. The jaxpr is then re-traced with each
rewritten equation replaced by its function, equal equations computed once (a policy's
`__call__` and `evaluate_action` trace the same network twice), and `simplify` folds
what became known and drops what became dead. Passes repeat until no rule fires, so a
rule may build on another's result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, JaxprEqn, Literal, Var

from ._interpret import bind, interpret
from ._simplify import simplify

Atom: TypeAlias = Var | Literal

# Enough for every rule to fire once per block of a large MultiDiscrete; each pass only
# removes work, so the bound is never reached in practice (a test counts the passes).
_MAX_PASSES = 32


@dataclass(frozen=True, eq=False)
class Rewrite:
    """`compute(*values of inputs)` gives `eqn`'s outputs; `matched` holds the variables
    the rule read to decide (two rewrites reading a common one wait for separate passes)."""

    eqn: JaxprEqn
    inputs: tuple[Atom, ...]
    compute: Callable[..., list[Any]]
    matched: frozenset[Var]


class Index:
    """Who produced each variable of a jaxpr, and the values of its constants."""

    def __init__(self, closed: ClosedJaxpr):
        self.jaxpr = closed.jaxpr
        self.producer: dict[Var, JaxprEqn] = {
            out: eqn for eqn in closed.jaxpr.eqns for out in eqn.outvars
        }
        self.consts: dict[Var, Any] = dict(zip(closed.jaxpr.constvars, closed.consts, strict=True))
        self.users: dict[Var, list[JaxprEqn | None]] = {}  # None: an output of the jaxpr
        for eqn in closed.jaxpr.eqns:
            for v in eqn.invars:
                if isinstance(v, Var):
                    self.users.setdefault(v, []).append(eqn)
        for v in closed.jaxpr.outvars:
            if isinstance(v, Var):
                self.users.setdefault(v, []).append(None)

    def eqn(self, atom: Any, *primitives: str) -> JaxprEqn | None:
        """The equation producing `atom`, if it is one of `primitives`."""
        if not isinstance(atom, Var):
            return None
        found = self.producer.get(atom)
        return found if found is not None and found.primitive.name in primitives else None

    def value(self, atom: Any) -> np.ndarray | None:
        """The value of a literal or constant, else None."""
        if isinstance(atom, Literal):
            return np.asarray(atom.val)
        if isinstance(atom, Var) and atom in self.consts:
            return np.asarray(self.consts[atom])
        return None

    def uniform(self, atom: Any) -> float | bool | None:
        """The single value every entry of a constant holds, else None."""
        value = self.value(atom)
        if value is None or value.size == 0:
            return None
        first = value.reshape(-1)[0]
        same = value == first
        if np.issubdtype(value.dtype, np.floating):
            same |= np.isnan(value) & np.isnan(first)
        return first.item() if np.all(same) else None


Rule = Callable[[Index, JaxprEqn], Rewrite | None]


def _params_key(eqn: JaxprEqn) -> tuple | None:
    try:
        key = tuple(sorted(eqn.params.items()))
        hash(key)
    except TypeError:
        return None
    return key


# Constants up to this many bytes are compared by value (a policy traces its `-inf` fills
# and index ranges as separate but equal constants); larger ones (weights) by identity.
_COMPARED_BYTES = 4096


def _input_key(value: Any, atom: Any) -> tuple:
    if isinstance(atom, Literal):
        return ("literal", str(np.asarray(atom.val).dtype), repr(atom.val))
    if not isinstance(value, jax.core.Tracer):
        array = np.asarray(value)
        if array.nbytes <= _COMPARED_BYTES:
            return ("constant", str(array.dtype), array.shape, array.tobytes())
    return ("value", id(value))


def _retrace(closed: ClosedJaxpr, rewrites: Sequence[Rewrite]) -> ClosedJaxpr:
    """`closed` re-traced with the rewrites applied and equal equations merged."""
    jaxpr = closed.jaxpr
    replaced = {id(r.eqn): r for r in rewrites}
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in jaxpr.invars]

    seen: dict[tuple, list[Any]] = {}
    kept: list[Any] = []  # the values keyed by id() stay alive while `seen` is used
    values: dict[Var, Any] = {}  # a rewrite reads earlier atoms, not only its equation's

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, Literal) else values[atom]

    def computed(eqn: JaxprEqn, inputs: list[Any]) -> list[Any]:
        rewrite = replaced.get(id(eqn))
        if rewrite is not None:
            return list(rewrite.compute(*map(read, rewrite.inputs)))
        params = _params_key(eqn)
        if params is None or eqn.effects:
            return bind(eqn, inputs)
        key = (eqn.primitive, params, *map(_input_key, inputs, eqn.invars))
        if key not in seen:  # equal equations computed once
            seen[key] = bind(eqn, inputs)
            kept.append(inputs)
        return seen[key]

    def apply(eqn: JaxprEqn, inputs: list[Any]) -> list[Any]:
        outputs = computed(eqn, inputs)
        values.update(zip(eqn.outvars, outputs, strict=True))
        return outputs

    def run(*args: Any) -> list[Any]:
        values.update(zip(jaxpr.constvars, closed.consts, strict=True))
        values.update(zip(jaxpr.invars, args, strict=True))
        return interpret(jaxpr, closed.consts, args, apply, calls={})

    return simplify(jax.make_jaxpr(run)(*avals))


def rewrite(closed: ClosedJaxpr, rules: Sequence[Rule]) -> tuple[ClosedJaxpr, int]:
    """Apply `rules` until none fires; the result and how many passes rewrote something."""
    closed = _retrace(closed, [])  # merge equal equations first: the rules see one copy
    for passes in range(_MAX_PASSES):
        index = Index(closed)
        chosen: list[Rewrite] = []
        read: set[Var] = set()
        for eqn in closed.jaxpr.eqns:
            for rule in rules:
                found = rule(index, eqn)
                if found is None:
                    continue
                matched = found.matched | set(eqn.outvars)
                if not matched & read:
                    chosen.append(found)
                    read |= matched
                break
        if not chosen:
            # The rewrites' own equations are merged with equal ones by one more retrace.
            return (_retrace(closed, []) if passes else closed), passes
        closed = _retrace(closed, chosen)
    raise AssertionError(f"jaxpr rewrites still firing after {_MAX_PASSES} passes")

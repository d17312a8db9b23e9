"""The model-file loader: lerax's calling patterns, bounded headers, honest round trips."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from conftest import ACTION_SPACES, OBSERVATION, make_policy
from policyport import InputError, ModelFileError
from policyport.policy import (
    Box,
    Dict,
    Discrete,
    MLPActorCriticPolicy,
    MLPQPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
    Tuple,
    _architecture,
    _serialization,
    weights_sha256,
)
from policyport.policy._serialization import _LENGTH, MAGIC
from policyport.policy._structure import structure_sha256

LERAX_CARTPOLE = Path(__file__).parent.parent / "examples" / "cartpole" / "policy.eqx"


def split_file(data: bytes) -> tuple[dict, bytes]:
    """A self-describing file's header (as JSON) and its leaf bytes."""
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack(data[len(MAGIC) : start])
    return json.loads(data[start : start + length]), data[start + length :]


def join_file(header: dict, leaves: bytes) -> bytes:
    """A self-describing file from a header and leaves, its hash recomputed."""
    header["leaves_sha256"] = hashlib.sha256(leaves).hexdigest()
    encoded = json.dumps(header).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded + leaves


def _same_leaves(a: object, b: object) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all((x is y) if callable(x) else np.array_equal(x, y) for x, y in pairs)


@pytest.fixture
def saved(tmp_path):
    """A self-describing file of a Discrete(5) policy, and the policy."""
    policy = make_policy("Discrete", feature_width=24)
    policy.serialize(tmp_path / "policy.eqx")
    return policy, tmp_path / "policy.eqx"


# 1. lerax's save-then-load pattern: deserialize(path, env, key=...) or (path, env=env, key=...).


def test_self_describing_file_takes_lerax_arguments_by_keyword(saved):
    policy, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    loaded = MLPActorCriticPolicy.deserialize(str(path), env=env, key=jr.key(1))
    assert _same_leaves(policy, loaded)


def test_self_describing_file_takes_lerax_arguments_by_position(saved):
    policy, path = saved
    loaded = MLPActorCriticPolicy.deserialize(path, SpacesEnv(OBSERVATION, Discrete(5)), key=1)
    assert _same_leaves(policy, loaded)


def test_self_describing_file_takes_kwargs_that_agree(saved):
    policy, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    loaded = MLPActorCriticPolicy.deserialize(path, env, feature_width=24, log_std_init=-1.0)
    assert _same_leaves(policy, loaded)


def test_self_describing_file_refuses_another_env(saved):
    _, path = saved
    with pytest.raises(
        ModelFileError, match=r"saved with action_space Discrete\(5\).*Discrete\(4\)"
    ):
        MLPActorCriticPolicy.deserialize(path, env=SpacesEnv(OBSERVATION, Discrete(4)))


def test_self_describing_file_refuses_kwargs_that_disagree(saved):
    _, path = saved
    with pytest.raises(ModelFileError, match=r"feature_width=64 \(file: 24\)"):
        MLPActorCriticPolicy.deserialize(path, feature_width=64)


def test_self_describing_file_refuses_an_env_without_spaces(saved):
    _, path = saved
    with pytest.raises(ModelFileError, match="has no observation_space"):
        MLPActorCriticPolicy.deserialize(path, env=object())


def test_env_given_twice_is_refused(saved):
    _, path = saved
    env = SpacesEnv(OBSERVATION, Discrete(5))
    with pytest.raises(ModelFileError, match=r"takes the env once.*1 positional.*and env="):
        MLPActorCriticPolicy.deserialize(path, env, env=env)


# 2. A header's numbers are bounded and the size of its weights is known before building.

ARCHITECTURES = [
    ({}, "Discrete", OBSERVATION),
    ({"feature_depth": 0, "value_depth": 0, "action_depth": 0}, "Box", OBSERVATION),
    ({"feature_width": 0, "action_depth": 1, "value_width": 3}, "MultiDiscrete", OBSERVATION),
    ({"feature_size": 1, "action_depth": 4, "action_width": 5}, "MultiBinary", OBSERVATION),
    ({"feature_depth": 3}, "Discrete", Dict({"a": Discrete(3), "b": MultiBinary((2, 2))})),
    ({"value_depth": 5}, "Box", Tuple([Box(np.zeros(()), np.ones(())), MultiDiscrete((2, 3))])),
    ({}, Box(np.zeros(()), np.ones(())), Box(np.zeros((2, 0)), np.ones((2, 0)))),
]


Q_ARCHITECTURES = [
    ({}, OBSERVATION),
    ({"depth": 0, "width_size": 3}, OBSERVATION),
    ({"depth": 5, "epsilon": 0}, Dict({"a": Discrete(3), "b": MultiBinary((2, 2))})),
    ({"width_size": 0, "epsilon": 0.5}, Box(np.zeros((2, 0)), np.ones((2, 0)))),
]
CASES = [
    *[(MLPActorCriticPolicy, sizes, action, obs) for sizes, action, obs in ARCHITECTURES],
    *[(MLPQPolicy, kwargs, "Discrete", obs) for kwargs, obs in Q_ARCHITECTURES],
]


@pytest.mark.parametrize(("cls", "sizes", "action", "observation"), CASES)
@pytest.mark.parametrize("written_by_lerax", [False, True])
def test_closed_form_size_is_what_equinox_writes(cls, sizes, action, observation, written_by_lerax):
    action_space = ACTION_SPACES[action]() if isinstance(action, str) else action
    env = SpacesEnv(observation, action_space)
    built = eqx.filter_eval_shape(lambda: cls(env, key=jr.key(0), **sizes))
    all_sizes = {**_serialization.default_kwargs(cls), **sizes}
    problem = _architecture.architecture_problem(cls.name, observation, action_space, all_sizes)
    assert problem is None
    closed_form = _architecture.expected_leaf_bytes(
        cls.name, observation, action_space, all_sizes, written_by_lerax=written_by_lerax
    )
    assert closed_form == _architecture.expected_bytes(built, written_by_lerax)
    if not written_by_lerax:
        real = cls(env, key=jr.key(0), **sizes)
        assert closed_form == len(_serialization.leaves_bytes(real))


def test_every_class_a_file_can_hold_has_a_closed_form():
    assert set(_architecture.ARCHITECTURES) == set(_serialization.CLASSES)


def _edit_header(path, edit) -> None:
    """Rewrite a self-describing file's header with `edit(header)`, hashes kept valid."""
    header, leaves = split_file(path.read_bytes())
    edit(header)
    path.write_bytes(join_file(header, leaves))


@pytest.fixture
def nothing_is_built(monkeypatch):
    """Fail the test if the loader builds (even as shapes) the policy a header describes."""

    def build(*args, **kwargs):
        raise AssertionError("the loader built a policy before checking the header's numbers")

    monkeypatch.setattr(_serialization, "_template", build)


@pytest.mark.parametrize("depth", [65, 100_000, 2**24])
def test_a_deep_header_is_refused_at_once(saved, nothing_is_built, depth):
    _, path = saved
    _edit_header(path, lambda h: h["kwargs"].update(feature_depth=depth))
    start = time.perf_counter()
    with pytest.raises(
        ModelFileError, match=r"feature_depth must be an integer in 0\.\.64.*limits"
    ):
        MLPActorCriticPolicy.deserialize(path)
    assert time.perf_counter() - start < 1.0  # it took 107 s for depth 100000


@pytest.fixture
def saved_q(tmp_path):
    """A self-describing file of an MLPQPolicy for Discrete(5), and the policy."""
    policy = MLPQPolicy(SpacesEnv(OBSERVATION, Discrete(5)), key=jr.key(0), width_size=24)
    policy.serialize(tmp_path / "q.eqx")
    return policy, tmp_path / "q.eqx"


@pytest.mark.parametrize("depth", [65, 100_000, 2**24])
def test_a_deep_q_policy_header_is_refused_at_once(saved_q, nothing_is_built, depth):
    _, path = saved_q
    _edit_header(path, lambda h: h["kwargs"].update(depth=depth))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"depth must be an integer in 0\.\.64.*limits"):
        MLPQPolicy.deserialize(path)
    assert time.perf_counter() - start < 1.0  # building 100000 layers, even as shapes, is not


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"width_size": 2**16 + 1}, r"width_size must be an integer in 0\.\.65536"),
        ({"width_size": 60_000, "depth": 64}, r"\d+ weights in all; the limit is 268435456"),
        ({"width_size": 25}, r"holds \d+ bytes of weights, but .* needs \d+"),
        ({"epsilon": 0.25, "width_size": 23}, r"holds \d+ bytes of weights, but .* needs \d+"),
    ],
)
def test_q_policy_header_numbers_are_checked_before_building(
    saved_q, nothing_is_built, edit, problem
):
    _, path = saved_q
    _edit_header(path, lambda h: h["kwargs"].update(edit))
    with pytest.raises(ModelFileError, match=problem):
        MLPQPolicy.deserialize(path)


def test_a_q_policy_header_with_a_box_action_space_is_refused(saved_q, nothing_is_built):
    _, path = saved_q
    box = {"type": "Box", "shape": [1], "low": [0.0], "high": [1.0]}
    _edit_header(path, lambda h: h.update(action_space=box))
    with pytest.raises(ModelFileError, match="MLPQPolicy needs a Discrete action space"):
        MLPQPolicy.deserialize(path)


def test_lerax_q_file_kwargs_are_bounded_too(tmp_path, nothing_is_built):
    env = SpacesEnv(OBSERVATION, Discrete(5))
    path = tmp_path / "lerax.eqx"
    path.write_bytes(_serialization.leaves_bytes(MLPQPolicy(env, key=jr.key(0))))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"beyond policyport's limits: depth"):
        MLPQPolicy.deserialize(path, env, depth=100_000)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("feature_width", 2**16 + 1, r"feature_width must be an integer in 0\.\.65536"),
        ("feature_size", 2**20, r"feature_size must be an integer in 0\.\.65536"),
        ("action_depth", 66, r"action_depth must be an integer in 0\.\.65"),
        ("value_width", 60_000, r"\d+ weights in all; the limit is 268435456"),
    ],
)
def test_header_numbers_beyond_the_limits_are_refused(
    saved, nothing_is_built, field, value, problem
):
    _, path = saved
    _edit_header(path, lambda h: h["kwargs"].update({field: value}))
    with pytest.raises(ModelFileError, match=problem):
        MLPActorCriticPolicy.deserialize(path)


def test_a_header_that_does_not_fit_its_weights_is_refused_before_building(saved, nothing_is_built):
    _, path = saved
    _edit_header(path, lambda h: h["kwargs"].update(feature_width=25))
    with pytest.raises(ModelFileError, match=r"holds \d+ bytes of weights, but .* needs \d+"):
        MLPActorCriticPolicy.deserialize(path)


def test_a_huge_discrete_action_space_is_refused(saved, nothing_is_built):
    _, path = saved
    _edit_header(path, lambda h: h["action_space"].update(n=2**24))
    with pytest.raises(ModelFileError, match=r"weights in all; the limit is 268435456"):
        MLPActorCriticPolicy.deserialize(path)


def test_lerax_file_kwargs_are_bounded_too(nothing_is_built):
    cartpole = SpacesEnv(Box(-np.ones(4), np.ones(4)), Discrete(2))
    with pytest.raises(ModelFileError, match=r"beyond policyport's limits: feature_depth"):
        MLPActorCriticPolicy.deserialize(LERAX_CARTPOLE, cartpole, feature_depth=100_000)


# 3. A file reloads into the policy that was saved, or is not written.


def _refused_to_save(policy, folder: Path, match: str) -> None:
    with pytest.raises(InputError, match=match):
        policy.serialize(folder / "policy.eqx")
    assert list(folder.iterdir()) == [], "a refused save left a file behind"


def test_a_swapped_activation_is_not_saved(tmp_path):
    policy = eqx.tree_at(lambda p: p.encoder.activation, make_policy("Discrete"), jax.nn.tanh)
    _refused_to_save(
        policy,
        tmp_path,
        r"reload as something else: '\.encoder\.activation: callable tanh' where the "
        r"constructor builds '\.encoder\.activation: callable relu'",
    )


def test_a_same_named_function_is_not_mistaken_for_the_original(tmp_path):
    def relu(x):
        return jax.nn.relu(x) * 2.0

    relu.__qualname__ = "relu"  # the name jax.nn.relu describes itself with
    policy = eqx.tree_at(lambda p: p.value_head.activation, make_policy("Box"), relu)
    _refused_to_save(policy, tmp_path, r"the function .*relu.* where the constructor uses")


def test_a_replaced_layer_is_not_saved(tmp_path):
    policy = make_policy("MultiDiscrete")
    layer = eqx.nn.Linear(16, 64, use_bias=False, key=jr.key(1))
    policy = eqx.tree_at(lambda p: p.value_head.layers[0], policy, layer)
    _refused_to_save(policy, tmp_path, r"reload as something else: .*value_head\.layers\[0\]")


def test_weights_that_are_not_float32_are_not_saved(tmp_path):
    policy = make_policy("Discrete")
    weight = policy.encoder.layers[1].weight
    policy = eqx.tree_at(lambda p: p.encoder.layers[1].weight, policy, weight.astype(jnp.float16))
    _refused_to_save(
        policy, tmp_path, r"weight \.encoder\.layers\[1\]\.weight is float16.*float32 only"
    )


def test_a_subclass_is_not_saved_as_its_base(tmp_path):
    class Tweaked(MLPActorCriticPolicy):
        pass

    policy = Tweaked(SpacesEnv(OBSERVATION, Discrete(5)), key=jr.key(0))
    _refused_to_save(policy, tmp_path, r"Tweaked would reload as MLPActorCriticPolicy")


def test_the_structure_hash_tells_policies_with_equal_weights_apart():
    policy = make_policy("Discrete")
    tanh = eqx.tree_at(lambda p: p.encoder.activation, policy, jax.nn.tanh)
    assert weights_sha256(policy) == weights_sha256(tanh)  # the leaves alone cannot
    assert structure_sha256(policy) != structure_sha256(tanh)


@pytest.mark.parametrize("epsilon", [0.1, 0.0, 0, 1])
def test_a_q_policy_round_trips_with_its_structure_hash(tmp_path, epsilon):
    env = SpacesEnv(OBSERVATION, Discrete(5))
    policy = MLPQPolicy(env, key=jr.key(0), epsilon=epsilon, width_size=24, depth=1)
    policy.serialize(tmp_path / "q.eqx")
    header, _ = split_file((tmp_path / "q.eqx").read_bytes())
    assert header["class"] == "MLPQPolicy" and header["format_version"] == 2
    assert header["structure_sha256"] == structure_sha256(policy)
    loaded = MLPQPolicy.deserialize(tmp_path / "q.eqx")
    assert _same_leaves(policy, loaded) and type(loaded.epsilon) is type(epsilon)
    assert structure_sha256(loaded) == structure_sha256(policy)
    # lerax's calling pattern works on a Q-policy file too, its kwargs checked.
    again = MLPQPolicy.deserialize(tmp_path / "q.eqx", env=env, key=jr.key(1), width_size=24)
    assert _same_leaves(policy, again)


def test_a_q_policy_with_a_swapped_activation_is_not_saved(tmp_path):
    policy = MLPQPolicy(SpacesEnv(OBSERVATION, Discrete(5)), key=jr.key(0))
    policy = eqx.tree_at(lambda p: p.q_network.activation, policy, jax.nn.tanh)
    _refused_to_save(
        policy,
        tmp_path,
        r"reload as something else: '\.q_network\.activation: callable tanh' where the "
        r"constructor builds '\.q_network\.activation: callable relu'",
    )


def test_an_edited_q_policy_structure_hash_is_refused(saved_q):
    _, path = saved_q
    _edit_header(path, lambda h: h.update(structure_sha256="0" * 64))
    with pytest.raises(ModelFileError, match="differs in structure"):
        MLPQPolicy.deserialize(path)


def test_q_policy_kwargs_are_checked_against_its_own_constructor(saved_q):
    _, path = saved_q
    with pytest.raises(
        ModelFileError,
        match=r"Unknown policy kwargs \['feature_width'\]; MLPQPolicy takes "
        r"\['epsilon', 'width_size', 'depth'\]",
    ):
        MLPQPolicy.deserialize(path, feature_width=24)
    with pytest.raises(ModelFileError, match=r"width_size=64 \(file: 24\)"):
        MLPQPolicy.deserialize(path, width_size=64)


@pytest.mark.parametrize(
    ("version", "problem"), [(1, "read back differently"), (2, "differs in structure")]
)
def test_a_header_epsilon_that_disagrees_with_the_stored_one_is_refused(saved_q, version, problem):
    _, path = saved_q  # epsilon 0.1 is stored; an int header would read it as int(0.1) == 0

    def edit(header):
        header["kwargs"]["epsilon"] = 0
        header["format_version"] = version
        if version == 1:
            del header["structure_sha256"]

    _edit_header(path, edit)
    with pytest.raises(ModelFileError, match=problem):
        MLPQPolicy.deserialize(path)


def test_a_file_is_refused_by_the_other_class(saved, saved_q):
    with pytest.raises(ModelFileError, match="holds an MLPQPolicy, not an MLPActorCriticPolicy"):
        MLPActorCriticPolicy.deserialize(saved_q[1])
    with pytest.raises(ModelFileError, match="holds an MLPActorCriticPolicy, not an MLPQPolicy"):
        MLPQPolicy.deserialize(saved[1], feature_width=24)


def test_a_file_is_refused_where_the_constructor_now_builds_another_structure(saved, monkeypatch):
    _, path = saved
    header, _ = split_file(path.read_bytes())
    assert header["format_version"] == 2 and len(header["structure_sha256"]) == 64
    # As if a library upgrade changed what the constructor builds from the same header.
    monkeypatch.setattr(eqx.nn, "MLP", functools.partial(eqx.nn.MLP, activation=jax.nn.tanh))
    with pytest.raises(ModelFileError, match=r"differs in structure .*from the one policyport"):
        MLPActorCriticPolicy.deserialize(path)


def test_an_edited_structure_hash_is_refused(saved):
    _, path = saved
    _edit_header(path, lambda h: h.update(structure_sha256="0" * 64))
    with pytest.raises(ModelFileError, match="differs in structure"):
        MLPActorCriticPolicy.deserialize(path)


def test_version_1_files_still_load():
    path = Path(__file__).parent.parent / "examples" / "gridworld" / "policy.eqx"
    header, _ = split_file(path.read_bytes())
    assert header["format_version"] == 1 and "structure_sha256" not in header
    assert MLPActorCriticPolicy.deserialize(path).action_space == Discrete(4)


def test_a_version_1_header_with_a_structure_hash_is_refused(saved):
    _, path = saved
    _edit_header(path, lambda h: h.update(format_version=1))
    with pytest.raises(ModelFileError, match=r"unknown \['structure_sha256'\]"):
        MLPActorCriticPolicy.deserialize(path)


@pytest.mark.parametrize(
    "observation",
    [
        Dict({"z": Box(np.zeros(1), np.ones(1)), "a": Discrete(3)}),
        Tuple([MultiBinary(2), Dict({"q": MultiDiscrete((2, 3)), "b": Box(-1.0, 1.0)})]),
    ],
    ids=["Dict", "Tuple"],
)
def test_composite_observations_reload_in_their_order(tmp_path, observation):
    policy = MLPActorCriticPolicy(SpacesEnv(observation, Discrete(2)), key=jr.key(0))
    assert jax.tree.map(lambda x: x, policy).observation_space == observation  # no reordering
    policy.serialize(tmp_path / "policy.eqx")
    loaded = MLPActorCriticPolicy.deserialize(tmp_path / "policy.eqx")
    assert loaded.observation_space == observation
    assert _same_leaves(policy, loaded)
    sample = observation.sample(key=jr.key(3))
    assert np.array_equal(policy(None, sample)[1], loaded(None, sample)[1])


@pytest.mark.parametrize("bound", [1e39, float("nan"), 10**400, "nan"])
def test_a_bound_float32_cannot_hold_is_refused(tmp_path, bound):
    path = tmp_path / "policy.eqx"
    make_policy("Discrete").serialize(path)
    _edit_header(path, lambda h: h["observation_space"]["high"].__setitem__(0, bound))
    with pytest.raises(ModelFileError, match=r"Box high must hold numbers float32 can hold"):
        MLPActorCriticPolicy.deserialize(path)

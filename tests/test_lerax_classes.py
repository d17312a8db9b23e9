"""Every lerax 0.0.5 policy class exports: lerax's own objects, and files lerax wrote in
either of its layouts (0.0.5: leaves only; 0.0.6: a structure fingerprint, then leaves)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

lerax_env = pytest.importorskip("lerax.env", reason="the test install includes lerax")
import lerax.space as lerax_space  # noqa: E402
from lerax.policy import MLPActorCriticPolicy as LeraxACPolicy  # noqa: E402
from lerax.policy import MLPQPolicy as LeraxQPolicy  # noqa: E402

import policyport  # noqa: E402
from policyport import ModelFileError  # noqa: E402
from policyport._cli import run  # noqa: E402
from policyport._loading import load_policy  # noqa: E402
from policyport.formats import FORMATS  # noqa: E402
from policyport.policy import (  # noqa: E402
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MLPQPolicy,
    SpacesEnv,
    _serialization,
)
from policyport.policy._lerax_files import structure_fingerprint  # noqa: E402

# --- lerax's objects straight into export, every registered format -------------------

POLICIES = {
    # name: (builder, masked, heads)
    "lerax-actor-critic-cartpole": (
        lambda: LeraxACPolicy(lerax_env.CartPole(), key=jax.random.key(0)),
        True,
        ("value",),
    ),
    "lerax-actor-critic-pendulum": (
        lambda: LeraxACPolicy(lerax_env.Pendulum(), key=jax.random.key(1), feature_size=8),
        False,
        ("value",),
    ),
    "lerax-q-cartpole": (
        lambda: LeraxQPolicy(lerax_env.CartPole(), key=jax.random.key(2), width_size=32),
        True,
        ("q_values",),
    ),
    # Ours, on our spaces (infinite observation bounds: the checks sample finite stand-ins).
    "policyport-q-spaces": (
        lambda: MLPQPolicy(
            SpacesEnv(
                Box(np.array([-1.0, -np.inf, 0.0]), np.array([1.0, np.inf, np.inf])), Discrete(5)
            ),
            key=jax.random.key(3),
            depth=1,
        ),
        True,
        ("q_values",),
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict[str, policyport._export.ExportResult]]:
    """Each policy exported once to every format (`all`), shared by the matrix below."""
    results = {}
    for name, (build, _, _) in POLICIES.items():
        folder = tmp_path_factory.mktemp(name)
        done = policyport.export(build(), "all", folder / "policy")
        results[name] = {r.format: r for r in done}
    return results


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", list(POLICIES))
def test_lerax_objects_export_with_parity(exported, name, fmt):
    build, masked, heads = POLICIES[name]
    result = exported[name][fmt]
    assert all(p.exists() for p in result.paths)
    report = result.report
    assert report.passed, report.to_table()
    assert [o.name for o in report.outputs] == ["action", *heads]
    assert all(o.rows > 0 and o.passed for o in report.outputs)
    assert report.outputs[0].illegal_actions == 0
    traced = policyport.trace(build())
    assert traced.input_names == (("observation", "action_mask") if masked else ("observation",))
    assert traced.output_names == ("action", *heads)


def test_every_registered_format_is_in_the_matrix(exported):
    assert all(set(by_format) == set(FORMATS) for by_format in exported.values())


def test_q_artifact_outputs_are_the_policys_q_values_and_greedy_action(exported):
    import onnxruntime as ort

    policy = POLICIES["lerax-q-cartpole"][0]()
    [onnx_path] = exported["lerax-q-cartpole"]["onnx"].paths
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["action", "q_values"]
    rng = np.random.default_rng(0)
    observations = rng.uniform(-0.2, 0.2, (16, 4)).astype(np.float32)
    masks = rng.random((16, 2)) < 0.5
    masks[:, 0] |= ~masks[:, 1]  # at least one legal action a row
    action, q_values = session.run(None, {"observation": observations, "action_mask": masks})
    want_q = jax.vmap(lambda o: policy.q_values(None, o)[1])(observations)
    want_action = jax.vmap(lambda o, m: policy(None, o, action_mask=m)[1])(observations, masks)
    # float32 matmuls summed in another order: a few ulps apart (ATOL/RTOL of the checks).
    np.testing.assert_allclose(q_values, want_q, rtol=1e-5, atol=1e-5)
    assert np.array_equal(action, want_action)


# --- lerax-written files: both layouts ----------------------------------------------------


def _lerax_file(path: Path, policy: eqx.Module, layout: str) -> Path:
    """`policy` written as lerax 0.0.5 (`serialize`) or 0.0.6 (fingerprint + leaves) does."""
    if layout == "0.0.5":
        policy.serialize(path)
        jax.effects_barrier()  # lerax 0.0.5 writes from a jax.debug.callback
        return path
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, policy)  # 0.0.6 writes from plain Python
    path.write_bytes(structure_fingerprint(policy) + leaves.getvalue())
    return path


def _same_leaves(a, b) -> bool:
    return all(
        (x is y) if callable(x) else np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


FILES = {
    # name: (lerax class, our class, env, kwargs)
    "actor-critic": (LeraxACPolicy, MLPActorCriticPolicy, "CartPole", {"feature_width": 32}),
    "q": (LeraxQPolicy, MLPQPolicy, "Acrobot", {"width_size": 16, "epsilon": 0.3}),
}


@pytest.mark.parametrize("layout", ["0.0.5", "0.0.6"])
@pytest.mark.parametrize("kind", list(FILES))
def test_lerax_files_load_into_both_classes(tmp_path, kind, layout):
    lerax_cls, our_cls, env_name, kwargs = FILES[kind]
    env = getattr(lerax_env, env_name)()
    theirs = lerax_cls(env, key=jax.random.key(5), **kwargs)
    path = _lerax_file(tmp_path / "p.eqx", theirs, layout)
    ours = our_cls.deserialize(path, env, **kwargs)
    spec = f"lerax.env:{env_name}"
    as_lerax = load_policy(path, spec, kwargs, f"lerax.policy:{lerax_cls.__name__}")
    assert type(as_lerax) is lerax_cls
    assert _same_leaves(ours, as_lerax)
    if layout == "0.0.6":  # written from Python: floats keep their float64 value
        assert _same_leaves(ours, theirs)
    else:  # through jax.debug.callback: epsilon went through float32, like lerax reloads it
        reloaded = lerax_cls.deserialize(path, env, key=jax.random.key(0), **kwargs)
        assert _same_leaves(ours, reloaded)
    observation = env.observation_space.sample(key=jax.random.key(0))
    assert np.array_equal(ours(None, observation)[1], theirs(None, observation)[1])


def test_fingerprint_mismatch_names_the_likely_class(tmp_path):
    env = lerax_env.CartPole()
    path = _lerax_file(tmp_path / "q.eqx", LeraxQPolicy(env, key=jax.random.key(0)), "0.0.6")
    with pytest.raises(
        ModelFileError,
        match=r"structure fingerprint, and it does not match the MLPActorCriticPolicy .*"
        r"It matches the MLPQPolicy this env builds with default kwargs",
    ):
        MLPActorCriticPolicy.deserialize(path, env)


def test_fingerprint_mismatch_names_the_kwargs(tmp_path):
    env = lerax_env.CartPole()
    policy = LeraxQPolicy(env, key=jax.random.key(0), width_size=16)
    path = _lerax_file(tmp_path / "q.eqx", policy, "0.0.6")
    with pytest.raises(
        ModelFileError,
        match=r"does not match the MLPQPolicy built for this env with kwargs \{'depth': 1\}: "
        r"the file was saved from another policy class or with other constructor kwargs",
    ) as info:
        MLPQPolicy.deserialize(path, env, depth=1)
    assert "It matches" not in str(info.value)  # no default-kwargs class fits: no guess
    assert MLPQPolicy.deserialize(path, env, width_size=16).q_network.width_size == 16


def test_fingerprinted_file_cut_short_is_refused(tmp_path):
    env = lerax_env.CartPole()
    path = _lerax_file(tmp_path / "q.eqx", LeraxQPolicy(env, key=jax.random.key(0)), "0.0.6")
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(ModelFileError, match=r"holds \d+ bytes of weights, .* truncated"):
        MLPQPolicy.deserialize(path, env)


def test_lerax_q_file_size_is_checked_in_closed_form_before_building(tmp_path, monkeypatch):
    env = lerax_env.CartPole()
    path = _lerax_file(tmp_path / "q.eqx", LeraxQPolicy(env, key=jax.random.key(0)), "0.0.5")
    built = []
    template = _serialization._template
    monkeypatch.setattr(
        _serialization, "_template", lambda *a, **k: built.append(a) or template(*a, **k)
    )
    with pytest.raises(ModelFileError, match=r"holds \d+ bytes of weights, but .* needs \d+"):
        MLPQPolicy.deserialize(path, env, width_size=63)
    assert built == []  # policyport's own class: refused from the numbers alone
    # lerax's own class has no closed form here: the policy it builds (as shapes) is checked.
    with pytest.raises(ModelFileError, match=r"holds \d+ bytes of weights, but .* needs \d+"):
        load_policy(path, "lerax.env:CartPole", {"width_size": 63}, "lerax.policy:MLPQPolicy")
    assert len(built) == 1
    theirs = LeraxQPolicy.deserialize(path, env, key=jax.random.key(0))
    assert _same_leaves(MLPQPolicy.deserialize(path, env), theirs)


def test_neither_layout_is_refused(tmp_path):
    path = tmp_path / "x.eqx"
    path.write_bytes(b"\x00" * 40 + b"\x93NUMPY")
    with pytest.raises(ModelFileError, match=r"not a policy file: .*lerax 0\.0\.6's 32-byte"):
        MLPQPolicy.deserialize(path, lerax_env.CartPole())


# --- the command line ---------------------------------------------------------------------


def _cli_error(capsys, argv: list[str]) -> str:
    assert run(argv) == 2
    return capsys.readouterr().err


@pytest.fixture
def lerax_q_file(tmp_path) -> Path:
    policy = LeraxQPolicy(lerax_env.CartPole(), key=jax.random.key(9), width_size=32)
    return _lerax_file(tmp_path / "q.eqx", policy, "0.0.5")


@pytest.mark.parametrize("cls", ["lerax.policy:MLPQPolicy", "policyport.policy:MLPQPolicy"])
@pytest.mark.parametrize("layout", ["0.0.5", "0.0.6"])
def test_cli_exports_a_lerax_q_file_with_policy_class(tmp_path, capsys, layout, cls):
    policy = LeraxQPolicy(lerax_env.CartPole(), key=jax.random.key(9), width_size=32)
    path = _lerax_file(tmp_path / "q.eqx", policy, layout)
    report = tmp_path / "report.json"
    argv = [str(path), "--format", "onnx", "--env", "lerax.env:CartPole", "--policy-class", cls]
    argv += ["--policy-kwargs", '{"width_size": 32}', "--report", str(report)]
    argv += ["--rollouts", "1", "--rollout-steps", "20"]  # closed loop in the env too
    assert run(argv) == 0, capsys.readouterr().err
    [entry] = json.loads(report.read_text())
    assert entry["parity"]["passed"] and entry["closed_loop"]["passed"]
    assert [o["name"] for o in entry["parity"]["outputs"]] == ["action", "q_values"]
    assert (tmp_path / "q.onnx").is_file()


def test_cli_default_class_does_not_fit_a_q_file(tmp_path, capsys, lerax_q_file):
    argv = [str(lerax_q_file), "--format", "onnx", "--env", "lerax.env:CartPole"]
    err = _cli_error(capsys, argv)
    assert re.search(r"holds \d+ bytes of weights, but a policy built as MLPActorCriticPolicy", err)
    fingerprinted = _lerax_file(
        tmp_path / "f.eqx", LeraxQPolicy(lerax_env.CartPole(), key=jax.random.key(0)), "0.0.6"
    )
    err = _cli_error(capsys, [str(fingerprinted), *argv[1:]])
    assert "--policy-class policyport.policy:MLPQPolicy, or lerax.policy:MLPQPolicy" in err
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--policy-kwargs", '{"feature_width": 32}'],
            r"unknown key\(s\) \['feature_width'\]; MLPQPolicy takes "
            r"\['epsilon', 'width_size', 'depth'\]",
        ),
        (["--policy-kwargs", '{"epsilon": "high"}'], "epsilon must be a number, found 'high'"),
        (["--policy-kwargs", '{"depth": -1}'], "depth must be a non-negative integer, found -1"),
    ],
)
def test_cli_policy_kwargs_are_checked_against_the_class(capsys, lerax_q_file, extra, message):
    argv = [str(lerax_q_file), "--format", "onnx", "--env", "lerax.env:CartPole"]
    err = _cli_error(capsys, [*argv, "--policy-class", "lerax.policy:MLPQPolicy", *extra])
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("json:loads", r"--policy-class json:loads gives .* not an equinox Module class"),
        ("nosuchmodule:Q", "--policy-class nosuchmodule:Q: cannot import module 'nosuchmodule'"),
        ("lerax.policy:NoSuch", "module 'lerax.policy' has no attribute 'NoSuch'"),
        ("MLPQPolicy", r"--policy-class must look like MODULE:ATTR"),
    ],
)
def test_cli_bad_policy_class(capsys, lerax_q_file, spec, message):
    argv = [str(lerax_q_file), "--format", "onnx", "--env", "lerax.env:CartPole"]
    err = _cli_error(capsys, [*argv, "--policy-class", spec])
    assert re.search(message, err), err


def test_cli_self_describing_q_file(tmp_path, capsys):
    path = tmp_path / "ours.eqx"
    MLPQPolicy(
        SpacesEnv(Box(-jnp.ones(4), jnp.ones(4)), Discrete(3)), key=jax.random.key(0)
    ).serialize(path)
    assert run([str(path), "--format", "stablehlo"]) == 0
    assert (tmp_path / f"ours{FORMATS['stablehlo'].suffix}").exists()
    err = _cli_error(
        capsys,
        [str(path), "--format", "onnx", "--policy-class", "lerax.policy:MLPActorCriticPolicy"],
    )
    assert "holds MLPQPolicy (its header says so), but --policy-class" in err


def test_lerax_spaces_are_required_by_lerax_classes():
    # lerax's constructors check isinstance against lerax's own spaces: build lerax's
    # classes on lerax's spaces (ours convert the other way with as_space).
    env = SpacesEnv(lerax_space.Box(-jnp.ones(3), jnp.ones(3)), lerax_space.Discrete(4))
    assert policyport.trace(LeraxQPolicy(env, key=jax.random.key(0))).output_names == (
        "action",
        "q_values",
    )
    with pytest.raises(ValueError, match="only supports Discrete action spaces"):
        LeraxQPolicy(SpacesEnv(Box(-np.ones(3), np.ones(3)), Discrete(4)), key=jax.random.key(0))


def test_cli_kwargs_of_a_self_describing_file_are_checked_against_its_class(tmp_path, capsys):
    path = tmp_path / "ours.eqx"
    MLPQPolicy(
        SpacesEnv(Box(-jnp.ones(4), jnp.ones(4)), Discrete(3)), key=jax.random.key(0), depth=1
    ).serialize(path)
    assert isinstance(load_policy(path, None, {"depth": 1}), MLPQPolicy)
    with pytest.raises(policyport.InputError, match=r"--policy-kwargs disagrees on \['depth'\]"):
        load_policy(path, None, {"depth": 2})
    with pytest.raises(policyport.InputError, match=r"unknown key\(s\) \['feature_width'\]"):
        load_policy(path, None, {"feature_width": 2})


def _lerax_box(n: int):
    return lerax_space.Box(-jnp.ones(n), jnp.ones(n))


# More of lerax's spaces, each through one format (the matrix above covers every format).
MORE_SPACES = {
    "actor-critic-multibinary": (
        lambda: LeraxACPolicy(
            SpacesEnv(_lerax_box(4), lerax_space.MultiBinary(3)), key=jax.random.key(0)
        ),
        ("observation", "action_mask"),
    ),
    "actor-critic-scalar-box": (
        lambda: LeraxACPolicy(
            SpacesEnv(_lerax_box(4), lerax_space.Box(-2.0, 2.0)), key=jax.random.key(0)
        ),
        ("observation",),
    ),
    "actor-critic-dict-observation": (
        lambda: LeraxACPolicy(
            SpacesEnv(
                lerax_space.Dict({"a": _lerax_box(2), "b": lerax_space.Discrete(3)}),
                lerax_space.Discrete(4),
            ),
            key=jax.random.key(0),
        ),
        ("observation.a", "observation.b", "action_mask"),
    ),
    "q-tuple-observation": (
        lambda: LeraxQPolicy(
            SpacesEnv(
                lerax_space.Tuple((_lerax_box(2), lerax_space.MultiBinary(3))),
                lerax_space.Discrete(4),
            ),
            key=jax.random.key(0),
        ),
        ("observation.0", "observation.1", "action_mask"),
    ),
}


@pytest.mark.parametrize("name", list(MORE_SPACES))
def test_more_lerax_spaces_export_to_onnx(tmp_path, name):
    build, inputs = MORE_SPACES[name]
    [result] = policyport.export(build(), "onnx", tmp_path / "p.onnx")
    assert result.report.passed, result.report.to_table()
    assert result.report.outputs[0].illegal_actions == 0
    assert policyport.trace(build()).input_names == inputs

"""Brax PPO and SAC policies: saved with Brax's own checkpoint code, read back by
`policyport.brax`, exported to every format with parity; the reference is Brax's own
inference function (`make_inference_fn(networks)(params, deterministic=True)`)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.io import model as brax_model
from brax.training.acme import running_statistics
from brax.training.agents.ppo import checkpoint as ppo_checkpoint
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.sac import checkpoint as sac_checkpoint
from brax.training.agents.sac import networks as sac_networks

import policyport
from policyport import ModelFileError
from policyport._cli import run
from policyport.brax import from_ppo, from_ppo_params, from_sac
from policyport.formats import FORMATS
from refusals import assert_refused, run_cases

OBSERVATION_SIZE, ACTION_SIZE, STEP = 6, 3, 1234


@pytest.fixture(autouse=True, scope="module")
def _brax_broadcasts():
    """Brax's own code normalises a batch `[b, n]` by per-entry stats `[n]` (rank
    promotion, which conftest makes an error for policyport's code); allowed here only."""
    with jax.numpy_rank_promotion("allow"):
        yield


def _normalizer(sizes, seed: int):
    """Running statistics with means far from 0 and stds far from 1, per entry: a
    normaliser that is forgotten or applied twice changes every action."""
    spec = jax.tree.map(lambda n: jax.ShapeDtypeStruct((n,), jnp.float32), sizes)
    state = running_statistics.init_state(spec)
    leaves, tree = jax.tree.flatten(sizes)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    batch = [
        (3.0 + jnp.arange(n))[None] + (0.5 + jnp.arange(n))[None] * jax.random.normal(k, (512, n))
        for k, n in zip(keys, leaves, strict=True)
    ]
    return running_statistics.update(state, jax.tree.unflatten(tree, batch))


PPO_FACTORY = functools.partial(
    ppo_networks.make_ppo_networks,
    policy_hidden_layer_sizes=(16, 16),
    value_hidden_layer_sizes=(16, 16),
)
# SAC with layer norm and relu (Brax's SAC default activation), Brax's PPO with swish.
SAC_FACTORY = functools.partial(
    sac_networks.make_sac_networks, hidden_layer_sizes=(16, 16), policy_network_layer_norm=True
)


def _ppo(observation_size, factory=PPO_FACTORY, seed: int = 0):
    networks = factory(
        observation_size, ACTION_SIZE, preprocess_observations_fn=running_statistics.normalize
    )
    policy_key, value_key = jax.random.split(jax.random.key(seed))
    params = (
        _normalizer(observation_size, seed),
        networks.policy_network.init(policy_key),
        networks.value_network.init(value_key),
    )
    return networks, params


def _save(folder: Path, checkpoint, observation_size, factory, params) -> Path:
    config = checkpoint.network_config(observation_size, ACTION_SIZE, True, factory)
    checkpoint.save(folder, STEP, params, config)
    return folder / f"{STEP:012d}"


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    networks, params = _ppo(OBSERVATION_SIZE)
    folder = _save(
        tmp_path_factory.mktemp("ppo"), ppo_checkpoint, OBSERVATION_SIZE, PPO_FACTORY, params
    )
    return networks, params, folder


@pytest.fixture(scope="module")
def sac(tmp_path_factory):
    networks = SAC_FACTORY(
        OBSERVATION_SIZE, ACTION_SIZE, preprocess_observations_fn=running_statistics.normalize
    )
    params = (_normalizer(OBSERVATION_SIZE, 1), networks.policy_network.init(jax.random.key(1)))
    folder = _save(
        tmp_path_factory.mktemp("sac"), sac_checkpoint, OBSERVATION_SIZE, SAC_FACTORY, params
    )
    return networks, params, folder


def _observations(params, rows: int = 64) -> np.ndarray:
    """Observations where training saw them: around the normaliser's mean."""
    mean, std = np.asarray(params[0].mean), np.asarray(params[0].std)
    rng = np.random.default_rng(0)
    return (mean[None] + std[None] * rng.normal(size=(rows, mean.size))).astype(np.float32)


# The loaded policy runs Brax's own functions on the same weights, once per row (vmapped)
# where Brax ran the whole batch: only float summation order may differ.
SAME_FUNCTION = {"rtol": 1e-6, "atol": 1e-6}


def test_ppo_checkpoint_computes_what_brax_computes(ppo):
    networks, params, folder = ppo
    policy = from_ppo(folder)
    observations = _observations(params)
    brax_policy = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    expected, _ = brax_policy(jnp.asarray(observations), jax.random.key(0))
    actions = jax.vmap(lambda o: policy(None, o)[1])(observations)
    np.testing.assert_allclose(actions, expected, **SAME_FUNCTION)
    # Brax's deterministic action is tanh of the normal's mean: inside (-1, 1), not all equal.
    assert np.all(np.abs(actions) < 1) and np.ptp(actions) > 0.1
    expected_value = networks.value_network.apply(params[0], params[2], observations)
    values = jax.vmap(lambda o: policy.value(None, o)[1])(observations)
    np.testing.assert_allclose(values, expected_value, **SAME_FUNCTION)


def test_sac_checkpoint_computes_what_brax_computes(sac):
    networks, params, folder = sac
    policy = from_sac(folder)
    observations = _observations(params)
    brax_policy = sac_networks.make_inference_fn(networks)(params, deterministic=True)
    expected, _ = brax_policy(jnp.asarray(observations), jax.random.key(0))
    actions = jax.vmap(lambda o: policy(None, o)[1])(observations)
    np.testing.assert_allclose(actions, expected, **SAME_FUNCTION)
    assert not hasattr(policy, "value")


def test_a_normal_distribution_exports_its_unsquashed_mean():
    """Brax's `distribution_type="normal"`: the mode is the mean itself, unbounded."""
    factory = functools.partial(PPO_FACTORY, distribution_type="normal", noise_std_type="log")
    networks, params = _ppo(OBSERVATION_SIZE, factory, seed=4)
    policy = from_ppo_params(networks, params)
    assert np.all(np.isinf(np.asarray(policy.action_space.high)))
    observations = _observations(params)
    expected, _ = ppo_networks.make_inference_fn(networks)(params, deterministic=True)(
        jnp.asarray(observations), jax.random.key(0)
    )
    actions = jax.vmap(lambda o: policy(None, o)[1])(observations)
    np.testing.assert_allclose(actions, expected, **SAME_FUNCTION)


def test_the_normaliser_is_baked_in(ppo):
    """Without it the actions differ: the statistics are far from (0, 1)."""
    networks, params, _ = ppo
    unnormalized = ppo_networks.make_inference_fn(PPO_FACTORY(OBSERVATION_SIZE, ACTION_SIZE))(
        params, deterministic=True
    )
    observations = _observations(params)
    plain, _ = unnormalized(jnp.asarray(observations), jax.random.key(0))
    ours = jax.vmap(lambda o: from_ppo_params(networks, params)(None, o)[1])(observations)
    assert np.max(np.abs(np.asarray(plain) - np.asarray(ours))) > 0.1


@pytest.fixture(scope="module")
def loaded(ppo, sac):
    """Each checkpoint read once by policyport (the format tests share them)."""
    return {"ppo": from_ppo(ppo[2]), "sac": from_sac(sac[2])}


@pytest.mark.parametrize("format", list(FORMATS))
@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_checkpoints_export_to_every_format_with_parity(loaded, tmp_path, algorithm, format):
    policy = loaded[algorithm]
    [result] = policyport.export(policy, format, tmp_path / f"policy{FORMATS[format].suffix}")
    assert result.report.passed, result.report.to_table()
    outputs = ["action", "value"] if algorithm == "ppo" else ["action"]
    assert [o.name for o in result.report.outputs] == outputs
    assert policyport.trace(policy).description.policy_class == f"brax.{algorithm}:{STEP:012d}"


PLAYGROUND_SIZES = {"state": 5, "privileged_state": 7}


@pytest.mark.parametrize(
    ("value_key", "value", "inputs", "outputs"),
    [
        # MuJoCo Playground's asymmetric critic reads the simulator-only privileged state:
        # by default it is left out, so the artifact needs only what the robot observes.
        ("privileged_state", None, ["observation.state"], ["action"]),
        (
            "privileged_state",
            True,
            ["observation.privileged_state", "observation.state"],
            ["action", "value"],
        ),
        ("state", None, ["observation.state"], ["action", "value"]),
        ("state", False, ["observation.state"], ["action"]),
    ],
)
def test_dict_observations_become_only_the_keys_read(value_key, value, inputs, outputs):
    factory = functools.partial(PPO_FACTORY, value_obs_key=value_key)
    networks, params = _ppo(PLAYGROUND_SIZES, factory, seed=2)
    policy = from_ppo_params(networks, params, value=value)
    traced = policyport.trace(policy)
    assert list(traced.input_names) == inputs
    assert list(traced.output_names) == outputs
    observation = {k: jnp.asarray(params[0].mean[k] + params[0].std[k]) for k in PLAYGROUND_SIZES}
    expected, _ = ppo_networks.make_inference_fn(networks)(params, deterministic=True)(
        observation, jax.random.key(0)
    )
    np.testing.assert_allclose(policy(None, observation)[1], expected, **SAME_FUNCTION)


def test_dict_observation_checkpoint_exports_with_parity(tmp_path):
    factory = functools.partial(PPO_FACTORY, value_obs_key="privileged_state")
    _, params = _ppo(PLAYGROUND_SIZES, factory, seed=3)
    sizes = {k: (n,) for k, n in PLAYGROUND_SIZES.items()}
    folder = _save(tmp_path / "ckpt", ppo_checkpoint, sizes, factory, params)
    _set_observation_size(folder, {k: _training_spec(n) for k, n in PLAYGROUND_SIZES.items()})
    policy = from_ppo(folder.parent)  # the save_checkpoint_path: the latest step is read
    [result] = policyport.export(policy, "onnx", tmp_path / "policy.onnx")
    assert result.report.passed, result.report.to_table()
    assert policyport.trace(policy).input_names == ("observation.state",)


def test_brax_own_load_policy_fails_where_we_read(ppo):
    """Why the config is read here: Brax 0.14.2 cannot read what its own `save` wrote."""
    _, _, folder = ppo
    config = json.loads((folder / "ppo_network_config.json").read_text())
    assert config["network_factory_kwargs"]["mean_kernel_init_fn"] is None
    with pytest.raises(KeyError):
        ppo_checkpoint.load_policy(folder)
    assert from_ppo(folder).action_space.shape == (ACTION_SIZE,)


def test_pickles_are_refused_unread(ppo, tmp_path, monkeypatch):
    _, params, _ = ppo
    path = tmp_path / "params.pkl"
    brax_model.save_params(str(path), params)
    monkeypatch.setattr("pickle.loads", _never)
    monkeypatch.setattr("pickle.load", _never)
    with pytest.raises(ModelFileError, match=r"is a pickle .* never unpickles.*checkpoint\.save"):
        from_ppo(path)
    with pytest.raises(ModelFileError, match=r"has no ppo_network_config.json.*params.pkl"):
        from_ppo(tmp_path)


def _never(*args, **kwargs):
    raise AssertionError("policyport unpickled something")


def _copy(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy


def _edit_config(folder: Path, **kwargs) -> None:
    path = folder / "ppo_network_config.json"
    config = json.loads(path.read_text())
    config["network_factory_kwargs"].update(kwargs)
    path.write_text(json.dumps(config))


# What Brax's PPO training (`save_checkpoint_path=`) writes as `observation_size`: its
# `specs.Array`s, serialised best-effort (seen in a real run, Brax 0.14.2).
def _training_spec(n: int) -> dict:
    return {"shape": [n], "dtype": "unserializable object: float32"}


def _set_observation_size(folder: Path, size) -> None:
    path = folder / "ppo_network_config.json"
    config = json.loads(path.read_text())
    config["observation_size"] = size
    path.write_text(json.dumps(config))


def test_configs_written_by_brax_training_are_read(ppo, tmp_path):
    folder = _copy(ppo[2], tmp_path)
    _set_observation_size(folder, _training_spec(OBSERVATION_SIZE))
    assert policyport.trace(from_ppo(folder)).inputs[0].shape == (OBSERVATION_SIZE,)
    _set_observation_size(folder, _training_spec(OBSERVATION_SIZE + 1))
    with pytest.raises(ModelFileError, match=r"normaliser's observation shapes \(6,\) do not"):
        from_ppo(folder)


def test_a_folder_without_config_is_refused(ppo, tmp_path):
    folder = _copy(ppo[2], tmp_path)
    (folder / "ppo_network_config.json").unlink()
    with pytest.raises(ModelFileError, match=r"has no ppo_network_config.json, so it is not"):
        from_ppo(folder)


def test_an_unknown_activation_is_refused(ppo, tmp_path):
    folder = _copy(ppo[2], tmp_path)
    _edit_config(folder, activation="my_custom_gelu")
    with pytest.raises(
        ModelFileError, match=r"the activation is 'my_custom_gelu', which is not a name .*swish"
    ):
        from_ppo(folder)


def test_params_that_do_not_fit_the_config_are_refused(ppo, tmp_path):
    folder = _copy(ppo[2], tmp_path)
    _edit_config(folder, policy_hidden_layer_sizes=[16, 32])
    with pytest.raises(ModelFileError, match=r"policy params do not fit .*shape \(16, 16\)"):
        from_ppo(folder)


def test_a_ppo_checkpoint_read_as_sac_names_the_right_flag(ppo):
    with pytest.raises(ModelFileError, match=r"is a Brax PPO checkpoint .* --from brax-ppo"):
        from_sac(ppo[2])


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_cli_exports_a_checkpoint_with_one_command(request, algorithm, tmp_path, capsys):
    folder = request.getfixturevalue(algorithm)[2]
    out = tmp_path / "policy.onnx"
    code = run([str(folder), "--from", f"brax-{algorithm}", "--format", "onnx", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()
    assert "Parity PASS" in capsys.readouterr().out


def test_cli_refuses_bad_checkpoint_input(ppo, tmp_path, capsys):
    out = tmp_path / "policy.onnx"
    assert run([str(ppo[2]), "--from", "brax-sac", "--format", "onnx", "-o", str(out)]) == 2
    assert "--from brax-ppo" in capsys.readouterr().err
    args = [str(ppo[2]), "--from", "brax-ppo", "--env", "x:y", "--format", "onnx", "-o", str(out)]
    assert run(args) == 2
    assert "--env only apply to policy files" in capsys.readouterr().err
    assert not out.exists()


def test_core_and_the_onnx_path_import_neither_brax_nor_flax(tmp_path):
    script = f"""
import sys
import jax.numpy as jnp
import policyport
from policyport.policy import Box
policy = policyport.from_function(
    lambda obs: jnp.tanh(obs[:2]),
    observation_space=Box(-jnp.ones(3), jnp.ones(3)),
    action_space=Box(-jnp.ones(2), jnp.ones(2)),
)
policyport.export(policy, "onnx", {str(tmp_path / "p.onnx")!r})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("brax", "flax"))
assert not leaked, leaked
print("clean")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("clean")


# The committed example: Brax's own PPO on examples/brax/pendulum.py, saved by Brax.
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "brax"
# Runs a script with `import jax` made impossible (deployment must not need it).
NO_JAX = """
import runpy, sys
class _NoJax:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith(("jax.", "jaxlib", "brax", "flax")):
            raise ImportError(f"{name} is blocked: deployment must not need it")
sys.meta_path.insert(0, _NoJax())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def example_modules():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLE))
        import closed_loop
        import dynamics

        with warnings.catch_warnings():
            # brax.envs imports every Brax env, and so jaxopt, which warns that it is
            # unmaintained; nothing here uses it.
            warnings.simplefilter("ignore", DeprecationWarning)
            import pendulum

        yield pendulum, dynamics, closed_loop


@pytest.fixture(scope="module")
def example_onnx(tmp_path_factory):
    """The committed checkpoint exported with the one command the example's README gives."""
    out = tmp_path_factory.mktemp("example") / "checkpoint.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(EXAMPLE.parent.parent)  # the README's relative path (orbax wants absolute)
        args = ["examples/brax/checkpoint", "--from", "brax-ppo", "--format", "onnx"]
        assert run([*args, "-o", str(out)]) == 0
    return out


def test_example_closed_loop_from_the_artifact_matches_brax(example_modules, example_onnx):
    """onnxruntime drives the NumPy pendulum (no JAX in the loop) and earns, episode by
    episode, the returns Brax's own inference function earns in the Brax env."""
    from policyport.brax._checkpoint import PPO, load

    pendulum, dynamics, closed_loop = example_modules
    networks, params, _ = load(EXAMPLE / "checkpoint", PPO)
    brax_policy = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    keys = jax.random.split(jax.random.key(2026), 32)
    brax_returns, starts = pendulum.episode_returns_jax(brax_policy, keys)
    ort_returns = dynamics.episode_returns_numpy(closed_loop.onnx_policy(example_onnx), starts)
    # Float32 physics in NumPy vs XLA and the artifact's 1e-6-level action differences
    # add up over 200 steps of a stabilising controller; measured: 8e-7 relative at worst
    # over 100 episodes, so 1e-4 leaves two orders of magnitude for other CPUs.
    np.testing.assert_allclose(ort_returns, brax_returns, rtol=1e-4, atol=1e-3)
    assert brax_returns.mean() > -400  # trained: the untrained policy scored -1341
    recorded = json.loads((EXAMPLE / "training.json").read_text())
    assert recorded["eval_mean_return"] > -400


def test_example_closed_loop_script_runs_without_jax(example_onnx):
    result = subprocess.run(
        [sys.executable, "-c", NO_JAX, str(EXAMPLE / "closed_loop.py"), str(example_onnx)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    mean = float(result.stdout.split("mean return ")[1].split()[0])
    assert mean > -400


# Hostile checkpoints (issue 25): every one is refused with exit 2 and a message, before
# anything the file describes is allocated, in a child process that must not abort.


def _claim_shape(step: Path, array: str, shape: list[int]) -> None:
    """Make orbax's stored metadata of `array` (e.g. "0.mean") claim `shape`: the zarr
    metadata inside the OCDBT database, which orbax allocates by when it restores."""
    import tensorstore as ts

    kvstore = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{step}/"}).result()
    key = f"{array}/.zarray".encode()
    metadata = json.loads(kvstore.read(key).result().value)
    metadata.update(shape=shape, chunks=[min(n, 1 << 20) for n in shape])
    kvstore.write(key, json.dumps(metadata).encode()).result()


def _config_text(folder: Path, edit) -> None:
    path = folder / "ppo_network_config.json"
    path.write_text(edit(path.read_text()))


def _hostile_checkpoints(folder: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (step folder, what the refusal must say)."""
    cases = {}

    def case(name: str, match: str, *edits) -> None:
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        for edit in edits:
            edit(copy)
        cases[name] = (copy, match)

    huge = 10**12
    case(
        "claims 1e12 (normaliser)",
        r"observation shapes \(1000000000000,\) do not match",
        lambda f: _claim_shape(f, "0.mean", [huge]),
    )
    case(
        "claims 1e12 (kernel)",
        r"policy params do not fit .*\(6, 166666666666\)",
        lambda f: _claim_shape(f, "1.params.hidden_0.kernel", [6, huge // 6]),
    )
    case(
        "observation_size 1e9",
        r"observation_size holds 1000000000; expected",
        lambda f: _set_observation_size(f, 10**9),
    )
    case(
        "observation shape 1e5 x 1e5",
        r"observation_size holds \[100000, 100000\]",
        lambda f: _set_observation_size(f, [10**5, 10**5]),
    )
    for layers in (10**4, 10**5):
        case(
            f"{layers} hidden layers",
            rf"policy_hidden_layer_sizes is {layers} layers; expected",
            lambda f, n=layers: _edit_config(f, policy_hidden_layer_sizes=[16] * n),
        )
    for bad in ("16", -16, 16.5, None):
        case(
            f"hidden size {bad!r}",
            rf"holds {re.escape(repr(bad))}; every width is an integer",
            lambda f, b=bad: _edit_config(f, value_hidden_layer_sizes=[16, b]),
        )
    case(
        "hidden sizes a string",
        r"value_hidden_layer_sizes is '16'; expected a list",
        lambda f: _edit_config(f, value_hidden_layer_sizes="16"),
    )
    case(
        "weights beyond 2^28",
        r"hold up to \d+ weights .*<= 268435456 weights",
        lambda f: _edit_config(f, policy_hidden_layer_sizes=[65536] * 3),
    )
    case(
        "dict observation without state",
        r"has keys \['pixels'\], but the network reads 'state'",
        lambda f: _set_observation_size(f, {"pixels": [6]}),
    )
    case(
        "100k-deep JSON",
        r"nests deeper than Python can parse",
        lambda f: _config_text(f, lambda t: "[" * 100_000 + "]" * 100_000),
    )
    case(
        "5000-digit integer",
        r"holds an integer of 5000 digits",
        lambda f: _config_text(
            f, lambda t: t.replace('"action_size": 3', '"action_size": ' + "9" * 5000)
        ),
    )
    case(
        "action_size a string",
        r"action_size is '3'; expected 1\.\.",
        lambda f: _config_text(f, lambda t: t.replace('"action_size": 3', '"action_size": "3"')),
    )
    case(
        "unknown factory kwarg",
        r"has 'policy_hidden_layer_size', which Brax 0.14.2",
        lambda f: _edit_config(f, policy_hidden_layer_size=[16]),
    )
    case(
        "num_quantiles a string",
        r"num_quantiles is 'many'; Brax expects an integer",
        lambda f: _edit_config(f, num_quantiles="many"),
    )
    # Sparse: 4 GiB on disk cost nothing; read whole they cost 4 GiB and more.
    case(
        "4 GiB config",
        r"the network config is 4294967296 bytes; the limit is 1048576",
        lambda f: os.truncate(f / "ppo_network_config.json", 1 << 32),
    )
    case(
        "10 MB orbax _METADATA",
        r"orbax's metadata is 10000000 bytes; the limit is",
        lambda f: os.truncate(f / "_METADATA", 10**7),
    )
    return cases


def test_hostile_checkpoints_are_refused_before_anything_is_allocated(ppo, tmp_path):
    cases = _hostile_checkpoints(ppo[2], tmp_path)
    out = str(tmp_path / "never.onnx")
    argv = {
        name: [str(step), "--from", "brax-ppo", "--format", "onnx", "-o", out]
        for name, (step, _) in cases.items()
    }
    outcomes = run_cases(argv)
    matches = {name: match for name, (_, match) in cases.items()}
    assert_refused(outcomes, matches, r"re-save|set ", Path(out))


def test_the_hidden_size_table_is_brax_own():
    """`_config` reads the hidden-layer defaults without importing Brax: they must be
    Brax's."""
    import inspect

    from policyport.brax._config import HIDDEN_DEFAULTS

    factories = {"ppo": ppo_networks.make_ppo_networks, "sac": sac_networks.make_sac_networks}
    for algorithm, defaults in HIDDEN_DEFAULTS.items():
        parameters = inspect.signature(factories[algorithm]).parameters
        assert {k: parameters[k].default for k in defaults} == defaults

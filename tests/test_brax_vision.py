"""Brax vision PPO checkpoints (`networks_vision.make_ppo_networks_vision`, the networks
MuJoCo Playground's vision PPO trains) saved with Brax's own checkpoint code, read back by
`--from brax-ppo`, exported with parity; the reference is Brax's own
`make_inference_fn(networks)(params, deterministic=True)` on the same observations."""

from __future__ import annotations

import functools
import inspect
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from brax.training import networks as brax_networks
from brax.training.acme import running_statistics
from brax.training.agents.ppo import checkpoint as ppo_checkpoint
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import networks_vision

import policyport
from policyport._cli import run
from policyport.brax import _vision, from_ppo
from policyport.formats import FORMATS
from refusals import assert_refused, run_cases

ACTION_SIZE, STEP, STATE = 2, 77, 5
FRAME = (16, 16, 3)
PIXELS = "pixels/view_0"
TINY = {
    "policy_hidden_layer_sizes": (8,),
    "value_hidden_layer_sizes": (8,),
    "cnn_output_channels": (4, 6),
    "cnn_kernel_size": (3, 3),
    "cnn_stride": (2, 1),
}
# Each global pooling Brax allows, per-channel layer norm on and off, the 2x2 max-pool and
# both paddings; "playground" is MuJoCo Playground's CartpoleBalance vision config (frames
# only, VALID, no global pool, orthogonal initialisers, no normaliser), its config written
# as Brax's PPO training writes it: only each frame's last dimension.
VARIANTS = {
    "softmax-ln-pool": {
        "normalise_channels": True,
        "cnn_max_pool": True,
        "cnn_global_pool": "spatial_softmax",
    },
    "avg": {"cnn_global_pool": "avg"},
    "max-ln": {"normalise_channels": True, "cnn_global_pool": "max"},
    "playground": {
        "cnn_kernel_size": (4, 3),
        "cnn_padding": "valid",
        "cnn_activation": "relu",
        "cnn_global_pool": "none",
        "cnn_kernel_init_fn": "orthogonal",
        "cnn_kernel_init_kwargs": {"scale": 1.41421356},
        "output_kernel_init_fn": "orthogonal",
        "output_kernel_init_kwargs": {"scale": 0.01},
    },
}
WITH_STATE = {"policy_obs_key": "state", "value_obs_key": "state"}


@pytest.fixture(autouse=True, scope="module")
def _brax_broadcasts():
    """Brax's normaliser broadcasts per-entry stats over a batch (rank promotion)."""
    with jax.numpy_rank_promotion("allow"):
        yield


def _shapes(variant: str) -> dict[str, tuple[int, ...]]:
    return {PIXELS: FRAME} if variant == "playground" else {PIXELS: FRAME, "state": (STATE,)}


def _factory(variant: str):
    state = {} if variant == "playground" else WITH_STATE
    return functools.partial(
        networks_vision.make_ppo_networks_vision, **{**TINY, **state, **VARIANTS[variant]}
    )


def _normalizer(variant: str):
    """Statistics of the state only (Brax's training keeps none of frames), far from (0, 1)."""
    if variant == "playground":
        return running_statistics.init_state({})
    spec = {"state": jax.ShapeDtypeStruct((STATE,), jnp.float32)}
    batch = {"state": 3.0 + 2.0 * jax.random.normal(jax.random.key(9), (256, STATE))}
    return running_statistics.update(running_statistics.init_state(spec), batch)


def _save(folder: Path, variant: str):
    normalize = variant != "playground"
    networks = _factory(variant)(
        _shapes(variant),
        ACTION_SIZE,
        preprocess_observations_fn=running_statistics.normalize if normalize else (lambda x, _: x),
    )
    keys = jax.random.split(jax.random.key(len(variant)))
    params = (
        _normalizer(variant),
        networks.policy_network.init(keys[0]),
        networks.value_network.init(keys[1]),
    )
    recorded = _shapes(variant)
    if variant == "playground":  # Brax's training: `specs.Array(x.shape[-1:])` per key
        recorded = {k: {"shape": [v[-1]], "dtype": "float32"} for k, v in recorded.items()}
    config = ppo_checkpoint.network_config(recorded, ACTION_SIZE, normalize, _factory(variant))
    ppo_checkpoint.save(folder, STEP, params, config)
    return networks, params, folder / f"{STEP:012d}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return {variant: _save(root / variant, variant) for variant in VARIANTS}


def _load(variant: str, folder: Path):
    frames = {PIXELS: FRAME} if variant == "playground" else None
    return from_ppo(folder, frame_shapes=frames)


@pytest.fixture(scope="module")
def loaded(checkpoints):
    return {v: _load(v, folder) for v, (_, _, folder) in checkpoints.items()}


def _observations(variant: str, rows: int = 16) -> dict[str, jax.Array]:
    """Frames in [0, 1] (as Playground renders them) and states around the normaliser's
    mean."""
    keys = jax.random.split(jax.random.key(3), 2)
    observation = {PIXELS: jax.random.uniform(keys[0], (rows, *FRAME))}
    if variant != "playground":
        observation["state"] = 3.0 + 2.0 * jax.random.normal(keys[1], (rows, STATE))
    return observation


# The loaded policy runs Brax's own functions on the same weights, once per row (vmapped)
# where Brax ran the whole batch: only float summation order may differ.
SAME_FUNCTION = {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vision_checkpoints_compute_what_brax_computes(checkpoints, loaded, variant):
    networks, params, _ = checkpoints[variant]
    policy = loaded[variant]
    observations = _observations(variant)
    brax_policy = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    expected, _ = brax_policy(observations, jax.random.key(0))
    actions = jax.jit(jax.vmap(lambda o: policy(None, o)[1]))(observations)
    np.testing.assert_allclose(actions, expected, **SAME_FUNCTION)
    assert np.ptp(np.asarray(actions)) > 1e-3  # the frames change the actions
    expected_value = networks.value_network.apply(params[0], params[2], observations)
    values = jax.jit(jax.vmap(lambda o: policy.value(None, o)[1]))(observations)
    np.testing.assert_allclose(values, expected_value, **SAME_FUNCTION)
    names = policyport.trace(policy).input_names
    state = () if variant == "playground" else ("observation.state",)
    assert names == (f"observation.{PIXELS}", *state)
    frames = policy.observation_space.spaces[PIXELS]
    assert frames.shape == FRAME and float(frames.low.min()) == 0 and frames.high.max() == 1


# Every format for the variant with every vision op (layer norm, max-pool, spatial
# softmax); ONNX for each other pooling.
EXPORTS = [("softmax-ln-pool", f) for f in FORMATS] + [
    (v, "onnx") for v in VARIANTS if v != "softmax-ln-pool"
]


@pytest.mark.parametrize(("variant", "format"), EXPORTS)
def test_vision_checkpoints_export_with_parity(loaded, tmp_path, variant, format):
    policy = loaded[variant]
    [result] = policyport.export(policy, format, tmp_path / f"policy{FORMATS[format].suffix}")
    assert result.report.passed, result.report.to_table()
    assert [o.name for o in result.report.outputs] == ["action", "value"]


def test_cli_exports_a_training_written_checkpoint_taking_uint8_frames(
    checkpoints, tmp_path, capsys
):
    """Playground's CartpoleBalance frames are gray - 0.5: given their shape (the config
    has only the channels) and range, the artifact takes a camera's bytes b as
    -0.5 + b / 255 and computes what Brax computes on those floats."""
    networks, params, folder = checkpoints["playground"]
    out = tmp_path / "policy.onnx"
    args = [str(folder.parent), "--from", "brax-ppo", "--format", "onnx", "-o", str(out)]
    frames = ["--frame-shape", f"{PIXELS}=16x16x3", "--frame-range=-0.5:0.5", "--uint8-frames"]
    assert run([*args, *frames]) == 0, capsys.readouterr().err
    assert "Parity PASS" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        (f"observation.{PIXELS}", "tensor(uint8)")
    ]
    pixels = np.random.default_rng(0).integers(0, 256, (16, *FRAME), dtype=np.uint8)
    [action] = session.run(["action"], {f"observation.{PIXELS}": pixels})
    floats = np.float32(-0.5) + pixels.astype(np.float32) / np.float32(255)
    expected, _ = ppo_networks.make_inference_fn(networks)(params, deterministic=True)(
        {PIXELS: jnp.asarray(floats)}, jax.random.key(0)
    )
    # onnxruntime against XLA, and b / 255 against b * (1 / 255) (1 ulp of the frame):
    # the tolerance of the parity check itself.
    np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-5)


def test_function_dumps_map_to_the_functions_they_name(checkpoints):
    """Brax's `network_config` writes the default `cnn_activation` as a dump of the
    function object; it is read as the function of that name in policyport's table."""
    config = json.loads((checkpoints["avg"][2] / "ppo_network_config.json").read_text())
    dump = config["network_factory_kwargs"]["cnn_activation"]
    assert dump["__module__"] == "jax._src.nn.functions" and dump["__name__"] == "relu"
    assert _vision.activation(dump, "cnn_activation", Path("x")) is jax.nn.relu
    for name, function in _vision.ACTIVATIONS.items():
        assert brax_networks.ACTIVATION[name] is function, name


def test_the_vision_tables_are_brax_own():
    parameters = inspect.signature(networks_vision.make_ppo_networks_vision).parameters
    defaults = {**_vision.VISION_HIDDEN_DEFAULTS, **_vision.CNN_DEFAULTS}
    assert {k: parameters[k].default for k in defaults} == defaults
    assert set(_vision.CHECKED_HERE) <= set(parameters)
    assert parameters["cnn_global_pool"].default in _vision.GLOBAL_POOLS
    assert set(networks_vision._PADDING_MAP) <= set(_vision.PADDINGS)


def _edit(folder: Path, kwargs=None, **config) -> None:
    path = folder / "ppo_network_config.json"
    data = json.loads(path.read_text())
    data["network_factory_kwargs"].update(kwargs or {})
    data.update(config)
    path.write_text(json.dumps(data))


def test_bad_vision_checkpoints_are_refused(checkpoints, tmp_path):
    source = checkpoints["softmax-ln-pool"][2]
    dump = {"__module__": "jax._src.nn.functions", "__name__": "relu", "__doc__": "..."}
    edits = {
        "dump of an unknown function": (
            {"cnn_activation": {**dump, "__name__": "my_activation"}},
            r"names the function 'my_activation', which is not one of policyport's",
        ),
        "dump from another module": (
            {"cnn_activation": {**dump, "__module__": "os"}},
            r"cnn_activation is a dump of the function 'relu' from module 'os'",
        ),
        "unknown global pool": (
            {"cnn_global_pool": "attention"},
            r"cnn_global_pool is 'attention'; expected one of 'avg', 'max', 'none', 'spatial_",
        ),
        "unknown padding": (
            {"cnn_padding": "reflect"},
            r"cnn_padding is 'reflect'; expected 'zeros' or 'valid'",
        ),
        "layers that do not zip": (
            {"cnn_stride": [2]},
            r"have 2, 2 and 1 entries; Brax zips them",
        ),
        "kernels larger than the frames": (
            {"cnn_padding": "valid", "cnn_kernel_size": [3, 9]},
            r"leave nothing of the 16x16 frames of 'pixels/view_0'",
        ),
        "missing state key": (
            {"policy_obs_key": "proprio"},
            r"policy_obs_key is 'proprio', but observation_size has no such state key",
        ),
    }
    cases: dict[str, Path] = {}
    for name, (kwargs, _) in edits.items():
        cases[name] = tmp_path / name
        shutil.copytree(source, cases[name])
        _edit(cases[name], kwargs)
    cases["no pixels key"] = tmp_path / "no pixels"
    shutil.copytree(source, cases["no pixels key"])
    _edit(cases["no pixels key"], observation_size={"state": [STATE]})
    out = tmp_path / "never.onnx"
    argv = {
        name: [str(f), "--from", "brax-ppo", "--format", "onnx", "-o", str(out)]
        for name, f in cases.items()
    }
    # A training-written config without --frame-shape, and with one that disagrees.
    playground = str(checkpoints["playground"][2])
    argv["frames unknown"] = [playground, "--from", "brax-ppo", "--format", "onnx", "-o", str(out)]
    argv["frames disagree"] = [*argv["frames unknown"], "--frame-shape", f"{PIXELS}=16x16x4"]
    # Frame options for networks that read no frames (the committed MLP example).
    mlp = str(Path(__file__).resolve().parent.parent / "examples" / "brax" / "checkpoint")
    argv["uint8 frames of no frames"] = [mlp, "--from", "brax-ppo", "--uint8-frames"]
    argv["uint8 frames of no frames"] += ["--format", "onnx", "-o", str(out)]
    matches = {name: match for name, (_, match) in edits.items()}
    matches["uint8 frames of no frames"] = r"uint8 frames were asked for, but these networks"
    matches["no pixels key"] = r"has vision options but observation_size has no 'pixels/' key"
    matches["frames unknown"] = (
        r"'pixels/view_0' has shape \[3\]; .* records only a frame's last dimension"
    )
    matches["frames disagree"] = r"records 'pixels/view_0' with shape \[3\], but its frame"
    assert_refused(
        run_cases(argv), matches, r"re-save|set |--frame-shape|frame shape|drop them", out
    )

"""`policyport.from_function`: a plain JAX function of one observation, exported to every
format with parity against the function itself, and clear errors for functions that do not
fit their spaces."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import policyport
from policyport import InputError, UnsupportedError
from policyport.formats import FORMATS
from policyport.policy import Box, Dict, Discrete, MultiBinary, MultiDiscrete, from_function

OBSERVATION = Box(-np.ones(4, np.float32), np.ones(4, np.float32))
ACTION_BOX = Box(np.array([-2.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32))


def _mlp(seed: int, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    return [
        (jax.random.normal(k, (m, n)) / np.sqrt(m), 0.1 * jax.random.normal(k, (n,)))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _apply(params: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    return x


ACTOR, CRITIC = _mlp(0, (4, 16, 5)), _mlp(1, (4, 16, 1))


def masked_act(observation, action_mask):
    return jnp.argmax(jnp.where(action_mask, _apply(ACTOR, observation), -jnp.inf))


def unmasked_act(observation):
    return jnp.argmax(_apply(ACTOR, observation))


def box_act(observation):
    mean = _apply(_mlp(2, (4, 16, 2)), observation)
    return ACTION_BOX.low + (ACTION_BOX.high - ACTION_BOX.low) * jax.nn.sigmoid(mean)


def value(observation):
    return _apply(CRITIC, observation)[0]


def q_values(observation):
    return _apply(ACTOR, observation)


# Name -> (policy, expected outputs, whether the artifact takes a mask).
CASES = {
    "masked": (
        lambda: from_function(
            masked_act,
            observation_space=OBSERVATION,
            action_space=Discrete(5),
            value=value,
            q_values=q_values,
            name="my-policy",
        ),
        ("action", "value", "q_values"),
        True,
    ),
    "unmasked": (
        lambda: from_function(
            unmasked_act, observation_space=OBSERVATION, action_space=Discrete(5), value=value
        ),
        ("action", "value"),
        False,
    ),
    "box": (
        lambda: from_function(box_act, observation_space=OBSERVATION, action_space=ACTION_BOX),
        ("action",),
        False,
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    make, outputs, masked = CASES[request.param]
    return make(), outputs, masked


@pytest.mark.parametrize("format", list(FORMATS))
def test_plain_functions_export_to_every_format_with_parity(tmp_path, case, format):
    policy, outputs, masked = case
    path = tmp_path / f"policy{FORMATS[format].suffix}"
    [result] = policyport.export(policy, format, path)
    assert result.report.passed, result.report.to_table()
    assert [o.name for o in result.report.outputs] == list(outputs)
    traced = policyport.trace(policy)
    assert ("action_mask" in traced.input_names) is masked
    if format == "onnx":
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert json.loads(meta["policyport.mask_input"]) is masked


def test_the_protocol_calls_the_function():
    policy = CASES["masked"][0]()
    observation = jnp.array([0.3, -0.2, 0.9, -0.7], jnp.float32)
    mask = jnp.array([False, True, False, True, False])
    state, action = policy(None, observation, action_mask=mask)
    assert state is None
    assert int(action) == int(masked_act(observation, mask))
    assert bool(mask[action])
    _, without_mask = policy(None, observation)  # no mask given: every action allowed
    assert int(without_mask) == int(unmasked_act(observation))
    assert float(policy.value(None, observation)[1]) == float(value(observation))


def test_name_goes_into_the_metadata():
    assert policyport.trace(CASES["masked"][0]()).description.policy_class == "my-policy"
    assert policyport.trace(CASES["box"][0]()).description.policy_class == "box_act"


def test_dict_observations_and_multi_discrete_masks(tmp_path):
    space = Dict({"position": OBSERVATION, "goal": Box(-np.ones(2), np.ones(2))})
    nvec = (3, 2)

    def act(observation, action_mask):
        x = jnp.concatenate([observation["position"], observation["goal"]])
        logits = jnp.tanh(x[:5])
        first = jnp.argmax(jnp.where(action_mask[:3], logits[:3], -jnp.inf))
        second = jnp.argmax(jnp.where(action_mask[3:], logits[3:], -jnp.inf))
        return jnp.stack([first, second])

    policy = from_function(act, observation_space=space, action_space=MultiDiscrete(nvec))
    traced = policyport.trace(policy)
    assert traced.input_names == ("observation.position", "observation.goal", "action_mask")
    [result] = policyport.export(policy, "onnx", tmp_path / "policy.onnx")
    assert result.report.passed, result.report.to_table()


def test_multibinary_masks_arrive_in_the_space_shape():
    def act(observation, action_mask):
        assert action_mask.shape == (2, 2)
        return (observation.reshape(2, 2) > 0) & action_mask

    policy = from_function(act, observation_space=OBSERVATION, action_space=MultiBinary((2, 2)))
    assert policyport.trace(policy).description.mask_input is True


@pytest.mark.parametrize(
    ("act", "mask_in"),
    [
        (lambda obs: 0, False),
        (lambda obs, action_mask: 0, True),
        (lambda obs, action_mask=None: 0, True),
        (lambda obs, temperature=1.0: 0, False),
        (lambda obs, mask=None: 0, True),
    ],
)
def test_the_mask_rule_reads_the_signature(act, mask_in):
    from policyport.policy._function import takes_mask

    assert takes_mask(act, Discrete(3)) is mask_in


def test_args_only_signatures_follow_the_space():
    from policyport.policy._function import takes_mask

    assert takes_mask(lambda *a: 0, Discrete(3)) is True
    assert takes_mask(lambda *a: 0, ACTION_BOX) is False


def _make(act, action_space=None, **kwargs):
    return from_function(
        act,
        observation_space=OBSERVATION,
        action_space=Discrete(5) if action_space is None else action_space,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _make("not a function"), r"`act` must be a function of one observation"),
        (lambda: _make(unmasked_act, value=3.0), r"`value` must be a function"),
        (lambda: _make(lambda obs: _apply(ACTOR, obs)), r"returns shape \(5,\).*needs a scalar"),
        (
            lambda: _make(lambda obs: jnp.argmax(obs).astype(jnp.float32)),
            r"returns float32 .* a discrete action must be an integer",
        ),
        (
            lambda: _make(lambda obs: jnp.argmax(obs).astype(jnp.int32), action_space=ACTION_BOX),
            r"returns shape \(\) for one observation, but the action space Box",
        ),
        (
            lambda: _make(lambda obs: jnp.zeros(2, jnp.int32), action_space=ACTION_BOX),
            r"returns int32 for the Box action space.*must be floating point",
        ),
        (
            lambda: _make(lambda obs, action_mask: jnp.argmax(obs)),
            r"takes an action mask \(its second argument, 'action_mask'\) but never reads it",
        ),
        (
            lambda: _make(lambda obs, m: jnp.zeros(2), action_space=ACTION_BOX),
            r"takes an action mask .*'m'.*has no masks. Write `act\(observation\)`",
        ),
        (
            lambda: _make(unmasked_act, value=lambda obs: _apply(CRITIC, obs).repeat(2)),
            r"`value` returns shape \(2,\).*must be a scalar",
        ),
        (
            lambda: _make(unmasked_act, q_values=lambda obs: obs),
            r"`q_values` returns shape \(4,\).*one vector of shape \(5,\)",
        ),
        (
            lambda: _make(lambda obs: jnp.argmax(obs[None, :] @ jnp.ones((3, 5)))),
            r"calling `act` on one abstract observation failed: TypeError.*unbatched",
        ),
        (
            lambda: _make(lambda obs: (jnp.argmax(obs), obs)),
            r"`act` must return one array",
        ),
        (
            lambda: _make(unmasked_act, action_space=Dict({"a": Discrete(2)})),
            r"composite action spaces",
        ),
    ],
)
def test_functions_that_do_not_fit_are_refused(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_composite_action_spaces_are_unsupported_not_bad_input():
    with pytest.raises(UnsupportedError):
        _make(unmasked_act, action_space=Dict({"a": Discrete(2)}))


# ---------------------------------------------------------------- sample=


def masked_sample(observation, action_mask, key):
    """A Gumbel-max draw from the masked softmax, and its log-probability."""
    logits = jnp.where(action_mask, _apply(ACTOR, observation), -jnp.inf)
    action = jax.random.categorical(key, logits)
    return action, jax.nn.log_softmax(logits)[action]


def box_sample(observation, key):
    """A diagonal Gaussian around `box_act`'s mean, and its log-density."""
    mean, scale = box_act(observation), jnp.array([0.3, 0.5], jnp.float32)
    action = mean + scale * jax.random.normal(key, (2,))
    log_prob = jax.scipy.stats.norm.logpdf(action, mean, scale).sum()
    return action, log_prob


SAMPLE_CASES = {
    "masked": lambda: _make(masked_act, sample=masked_sample),
    "box": lambda: _make(box_act, action_space=ACTION_BOX, sample=box_sample),
}


@pytest.mark.parametrize("name", list(SAMPLE_CASES))
def test_a_sample_function_exports_the_stochastic_path(name, tmp_path):
    """`sample` gives the policy's keyed action and the sample entry, checked for parity
    (identical discrete samples, Gaussian samples and log-probs within 1e-5 + 1e-5|x|)."""
    policy = SAMPLE_CASES[name]()
    results = policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True)
    assert [r.entry for r in results] == ["default", "sample"]
    assert all(r.report.passed for r in results), results[1].report.to_table()
    key = jax.random.key(5)
    observation = jnp.array([0.2, -0.4, 0.9, 0.1], jnp.float32)
    mask = jnp.array([False, True, True, False, True])
    kwargs = {"action_mask": mask} if name == "masked" else {}
    _, want = policy(None, observation, key=key, **kwargs)
    if name == "masked":
        assert want == masked_sample(observation, mask, key)[0] and bool(mask[want])
    else:
        np.testing.assert_array_equal(want, box_sample(observation, key)[0])
    import onnxruntime

    session = onnxruntime.InferenceSession(results[1].paths[0])
    feeds = {"observation": np.asarray(observation)[None]}
    if name == "masked":
        feeds["action_mask"] = np.asarray(mask)[None]
    feeds["noise"] = policyport.sampling_noise(policy, key)[None]
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    np.testing.assert_allclose(got["sampled_action"][0], want, rtol=1e-5, atol=1e-5)


def test_without_sample_the_key_is_ignored_and_sampling_is_refused(tmp_path):
    policy = _make(masked_act)
    observation = jnp.zeros(4, jnp.float32)
    assert policy(None, observation, key=jax.random.key(0))[1] == masked_act(
        observation, jnp.ones(5, bool)
    )
    with pytest.raises(UnsupportedError, match=r"sample_and_log_prob.*from_function"):
        policyport.export(policy, "onnx", tmp_path / "p.onnx", sample=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("sample", "match"),
    [
        (lambda obs, mask, key: masked_act(obs, mask), r"`sample` must return the pair"),
        (
            lambda obs, mask, key: (jnp.argmax(obs).astype(jnp.float32), jnp.float32(0)),
            r"`sample` returns float32 .* a discrete action must be an integer",
        ),
        (
            lambda obs, mask, key: (masked_act(obs, mask), jnp.zeros(5)),
            r"`sample`'s log_prob is float32\[5\]",
        ),
        (lambda obs, key: (masked_act(obs, None), 0.0), r"calling `sample` .* mask and key"),
    ],
)
def test_sample_functions_that_do_not_fit_are_refused(sample, match):
    with pytest.raises(InputError, match=match):
        _make(masked_act, sample=sample)

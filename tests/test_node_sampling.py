"""Sampling from Node.js (examples/node, examples/web/lib): a sample entry (`sample=True`,
contract 3) fed JAX's noise gives JAX's samples; fed the noise Node draws itself
(xoshiro128**, lib/random.mjs), its samples follow the JAX policy's distribution.

Skipped only where `node` itself is absent (as tests/test_node.py).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

from consumer_artifacts import contract1
from policyport.policy import MultiBinary
from policyport.tracing import trace
from sampling_cases import SPACES, assert_samples_match, check_sampled_steps, sample_case
from test_node import NODE_EXAMPLE, ROOT, cartpole_onnx, json_line, npm_ci, run_node
from test_node import pytestmark as pytestmark  # the same skip when node is absent

LIB = ROOT / "examples" / "web" / "lib"


@pytest.fixture(scope="module")
def node_example() -> Path:
    npm_ci(NODE_EXAMPLE)
    return NODE_EXAMPLE


def node_eval(script: str) -> object:
    """Runs an ES module `script` (lib/ importable as `lib`) and returns what it prints, as JSON."""
    source = script.replace("from 'lib/", f"from '{LIB.as_uri()}/")
    process = subprocess.run(
        ["node", "--input-type=module", "-e", source],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(process.stdout)


# ---- The generator --------------------------------------------------------------------------


def test_generator_matches_the_published_outputs():
    """SplitMix64 from seed 1234567 gives the reference splitmix64.c outputs (as listed on
    Rosetta Code, "Pseudo-random numbers/Splitmix64"); xoshiro128** from the state
    (0x964d4a0c, 0xd40ab895, 0xad7fdecb, 0x3006f0f0) gives the reference
    xoshiro128starstar.c's outputs and states (test data of edorfaus/xoshiro-6502, made
    with the C reference)."""
    got = node_eval(
        """
        import { Xoshiro128, splitMix64 } from 'lib/random.mjs';
        const mix = splitMix64(1234567n);
        const split = [0, 1, 2].map(() => mix.next().value.toString());
        const rng = new Xoshiro128([0x964d4a0c, 0xd40ab895, 0xad7fdecb, 0x3006f0f0]);
        const outputs = [0, 1, 2, 3].map(() => rng.nextUint32());
        console.log(JSON.stringify({ split, outputs, state: Array.from(rng.s) }));
        """
    )
    assert got["split"] == ["6457827717110365317", "3203168211198807973", "9817491932198370423"]
    assert got["outputs"] == [0xF1391922, 0x6FE53806, 0xA5BE2840, 0xF510EE70]
    assert got["state"] == [0xFC65379C, 0x52006D70, 0x87487639, 0xF1908343]


def test_draws_stay_in_their_domain_at_the_extreme_words():
    """The smallest and largest 32-bit words: uniform stays below 1 after float32
    rounding (2^32 - 1 over 2^32 would round to 1.0), Gumbel and normal draws stay finite
    (u = 0 or 1 would give infinities, and -inf logit + inf noise is NaN)."""
    got = node_eval(
        """
        import { Xoshiro128, drawNoise } from 'lib/random.mjs';
        const blocks = [
          { offset: 0, size: 1, distribution: 'uniform' },
          { offset: 1, size: 1, distribution: 'gumbel' },
          { offset: 2, size: 1, distribution: 'standard_normal' },
        ];
        const out = {};
        for (const word of [0, 0xffffffff]) {
          const rng = Object.create(Xoshiro128.prototype);  // a generator stuck at `word`
          rng.nextUint32 = () => word;
          out[word] = Array.from(drawNoise(blocks, 3, rng, 1));
        }
        console.log(JSON.stringify(out));
        """
    )
    low, high = got["0"], got[str(0xFFFFFFFF)]
    assert low[0] == 0.0 and 0.0 <= high[0] < 1.0
    assert np.isfinite(low + high).all()
    assert -3.7 < low[1] < -3.5 and 36.5 < high[1] < 37.0  # -log(-log(u)), u = 2^-53, 1 - 2^-53


def test_seeds_are_refused_unless_integers():
    got = node_eval(
        """
        import { Xoshiro128 } from 'lib/random.mjs';
        const errors = [-1, 1.5, 2 ** 64].map((seed) => {
          try { Xoshiro128.fromSeed(seed); return null; } catch (e) { return e.message; }
        });
        console.log(JSON.stringify(errors));
        """
    )
    assert got == [
        f"a seed is an integer in [0, 2^64), got {s}" for s in ("-1", "1.5", "18446744073709552000")
    ]


# ---- Exact parity with JAX's noise ----------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory, node_example) -> Path:
    return tmp_path_factory.getbasetemp()


def write_inputs(case, tmp_path: Path) -> list[str]:
    """`--input NAME=FILE` for each of the case's inputs (noise included)."""
    args = []
    for name, values in case.inputs.items():
        path = tmp_path / f"{name}.raw"
        values.astype(np.uint8 if name == "action_mask" else "<f4").tofile(path)
        args += ["--input", f"{name}={path}"]
    return args


@pytest.mark.parametrize("space", SPACES)
def test_jax_noise_gives_jax_samples(folder, tmp_path, space):
    """Noise from `policyport.sampling_noise` for 128 keys, through `--input noise=FILE`:
    each row's sampled action and log_prob are what the JAX policy samples with that key
    (tolerances: sampling_cases.assert_samples_match)."""
    case = sample_case(space, folder)
    out = tmp_path / "out.json"
    run_node("batch", str(case.path), *write_inputs(case, tmp_path), "--out", str(out))
    got = json.loads(out.read_text())
    assert "noise" not in got  # given, not drawn
    print("node", assert_samples_match(case, got["sampled_action"], got["log_prob"]))


def test_info_lists_the_noise_and_the_entries(folder):
    case = sample_case("MultiDiscrete", folder)
    info = json_line(run_node("info", str(case.path)))
    assert (info["contract_version"], info["entry"]) == (3, "sample")
    assert info["entries"] == {
        "default": "MultiDiscrete.onnx",
        "sample": "MultiDiscrete.sample.onnx",
    }
    assert info["noise"] == [
        {"offset": 0, "shape": [3], "distribution": "gumbel"},
        {"offset": 3, "shape": [4], "distribution": "gumbel"},
        {"offset": 7, "shape": [2], "distribution": "gumbel"},
    ]
    assert info["heads"] == ["value"]  # sampled_action and log_prob are not heads
    default = json_line(run_node("info", str(case.default_path)))
    assert (default["contract_version"], default["entry"], default["noise"]) == (2, "default", None)


# ---- Refusals -------------------------------------------------------------------------------


def test_default_entry_refuses_to_sample_and_names_the_sample_entry(folder, tmp_path):
    case = sample_case("Discrete", folder)
    case.inputs["observation"].astype("<f4").tofile(tmp_path / "obs.f32")
    refusal = (
        "this artifact is the default entry (contract 2, no `noise` input): it cannot "
        'sample; load its sample entry "Discrete.sample.onnx" (policyport.entries; same folder)'
    )
    for args in (
        ["batch", "--observations", str(tmp_path / "obs.f32"), "--sample", "1"],
        [
            "batch",
            "--observations",
            str(tmp_path / "obs.f32"),
            "--input",
            f"noise={tmp_path / 'obs.f32'}",
        ],
    ):
        process = run_node(
            args[0],
            str(case.default_path),
            *args[1:],
            "--out",
            str(tmp_path / "o.json"),
            check=False,
        )
        assert process.returncode == 2
        assert refusal in process.stderr, process.stderr
        assert process.stdout == ""
    assert not (tmp_path / "o.json").exists()


def test_plain_export_refuses_to_sample_and_says_how_to_export(node_example, tmp_path):
    """A file without entries (here the contract-1 golden file) has no sample entry to name."""
    golden = contract1()
    golden.inputs["observation"].astype("<f4").tofile(tmp_path / "obs.f32")
    args = [
        "--observations",
        str(tmp_path / "obs.f32"),
        "--sample",
        "1",
        "--out",
        str(tmp_path / "o.json"),
    ]
    process = run_node("batch", str(golden.path), *args, check=False)
    assert process.returncode == 2
    assert (
        "this artifact is the default entry (contract 1, no `noise` input): it cannot sample; "
        "export the policy with `export-policy ... --sample`"
    ) in process.stderr


def test_sample_entry_needs_exactly_one_source_of_noise(folder, tmp_path):
    case = sample_case("Box", folder)
    args = write_inputs(case, tmp_path)
    out = str(tmp_path / "o.json")
    both = run_node("batch", str(case.path), *args, "--sample", "3", "--out", out, check=False)
    without = args[: args.index(f"noise={tmp_path / 'noise.raw'}") - 1]
    neither = run_node("batch", str(case.path), *without, "--out", out, check=False)
    bad_seed = run_node(
        "batch", str(case.path), *without, "--sample", "x", "--out", out, check=False
    )
    for process in (both, neither):
        assert process.returncode == 2
        assert (
            "takes its noise (2 float32 a row) from exactly one of --sample SEED" in process.stderr
        )
    assert bad_seed.returncode == 2
    assert '--sample takes a non-negative integer seed, got "x"' in bad_seed.stderr


# ---- Node's own noise: the policy's distribution --------------------------------------------

DRAWS = 20_000
SEED = 2026
# Each p-value below is one test at significance 1e-3: p > P_MIN passes. The seeds (SEED
# for Node's generator, 2026 for the observation) are fixed, so the outcome is too. A wrong
# distribution fails by far: drawing uniform noise where Gumbel is expected gave p = 0
# (the noise's KS test; tried by editing lib/random.mjs).
P_MIN = 1e-3
# Chi-square cells expected to hold fewer than this many draws are pooled into one cell
# (the chi-square approximation needs about 5 per cell).
MIN_EXPECTED = 5.0
SCIPY = {"standard_normal": "norm", "gumbel": "gumbel_r", "uniform": "uniform"}


def _mask(space: str, policy) -> np.ndarray | None:
    """One masked entry (the first block's second), as in tests/test_sampling.py."""
    if space == "Box":
        return None
    mask = np.ones(trace(policy, sample=True).action_space.mask_size, bool)
    mask[1] = False
    return mask


def _log_probs(policy, observation, actions, mask) -> np.ndarray:
    """The JAX policy's log-probability of each action for one observation (a MultiBinary
    policy takes its mask in the action's shape, as tests/test_sampling.py passes it)."""
    if mask is not None and isinstance(policy.action_space, MultiBinary):
        mask = mask.reshape(policy.action_space.shape)

    def one(action):
        return policy.evaluate_action(None, observation, action, action_mask=mask)[2]

    return np.asarray(jax.jit(jax.vmap(one))(actions), np.float64)


def _joint_actions(space: str, action_space) -> np.ndarray:
    """Every action of a discrete space, [count, *shape]."""
    if space == "Discrete":
        return np.arange(action_space.n)
    if space == "MultiDiscrete":
        return np.asarray(list(itertools.product(*(range(n) for n in action_space.nvec))))
    return np.asarray(list(itertools.product((0, 1), repeat=action_space.flat_size)))


def _noise_p_values(blocks, noise: np.ndarray) -> dict[str, float]:
    """KS test of each block's drawn values against its distribution."""
    return {
        f"noise[{b.offset}:] {b.distribution}": stats.kstest(
            noise[:, b.offset : b.offset + b.size].ravel(), SCIPY[b.distribution]
        ).pvalue
        for b in blocks
    }


def _box_p_values(policy, observation, sampled: np.ndarray) -> dict[str, float]:
    """Per component: z-test of the mean against the policy's mean (its mode), chi-square
    test of the variance against exp(log_std)^2; both two-sided."""
    mean = np.asarray(policy(None, observation)[1], np.float64)
    std = np.exp(np.asarray(policy.action_head.action_dist.log_std, np.float64))
    p = {}
    for i in range(sampled.shape[1]):
        x = sampled[:, i].astype(np.float64)
        z = (x.mean() - mean[i]) / (std[i] / np.sqrt(len(x)))
        p[f"component {i} mean"] = 2 * stats.norm.sf(abs(z))
        chi = (len(x) - 1) * x.var(ddof=1) / std[i] ** 2
        tail = min(stats.chi2.cdf(chi, len(x) - 1), stats.chi2.sf(chi, len(x) - 1))
        p[f"component {i} std"] = 2 * tail
    return p


def _discrete_p_value(space: str, policy, observation, mask, sampled: np.ndarray) -> float:
    """Chi-square goodness of fit of the joint action counts to the JAX policy's
    probabilities; asserts that actions of probability 0 (masked) were never drawn."""
    actions = _joint_actions(space, policy.action_space)
    probabilities = np.exp(_log_probs(policy, observation, actions, mask))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    index = {tuple(np.ravel(a)): i for i, a in enumerate(actions)}
    counts = np.bincount([index[tuple(row)] for row in sampled], minlength=len(actions))
    assert counts[probabilities == 0].sum() == 0
    expected = len(sampled) * probabilities
    keep = expected >= MIN_EXPECTED
    observed_cells, expected_cells = list(counts[keep]), list(expected[keep])
    if expected[~keep].sum() > 0:
        observed_cells.append(counts[~keep].sum())
        expected_cells.append(expected[~keep].sum())
    expected_cells = np.asarray(expected_cells) * sum(observed_cells) / sum(expected_cells)
    return stats.chisquare(observed_cells, expected_cells).pvalue


@pytest.mark.parametrize("space", SPACES)
def test_own_noise_samples_the_policy_distribution(folder, tmp_path, space):
    """20,000 draws for one observation with `--sample 2026` (one action masked):

    - the drawn noise follows each block's distribution (KS test);
    - discrete spaces: the joint action counts follow the JAX policy's probabilities (exp
      of `evaluate_action`'s log_prob for every joint action; chi-square goodness of fit,
      cells expected below 5 pooled); masked actions never sampled;
    - Box: per component, the mean is the policy's mean (z-test) and the standard deviation
      its exp(log_std) (chi-square test of the variance), two-sided;
    - every draw's log_prob is the JAX policy's for that action (1e-5 + 1e-5 * |jax|).

    Every p-value must exceed P_MIN = 1e-3.
    """
    case = sample_case(space, folder)
    policy, traced = case.policy, trace(case.policy, sample=True)
    observation = traced.observation_space.sample_numpy(np.random.default_rng(2026), 1)
    np.repeat(observation, DRAWS, axis=0).astype("<f4").tofile(tmp_path / "obs.f32")
    args = ["--observations", str(tmp_path / "obs.f32"), "--sample", str(SEED)]
    mask = _mask(space, policy)
    if mask is not None:
        np.repeat(mask[None], DRAWS, axis=0).astype(np.uint8).tofile(tmp_path / "masks.u8")
        args += ["--masks", str(tmp_path / "masks.u8")]
    run_node("batch", str(case.path), *args, "--out", str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())
    sampled = np.asarray(got["sampled_action"]).reshape(DRAWS, -1)

    obs = observation[0]
    p = _noise_p_values(traced.sampling.blocks, np.asarray(got["noise"], np.float32))
    if space == "Box":
        p |= _box_p_values(policy, obs, sampled)
    else:
        p["joint actions chi-square"] = _discrete_p_value(space, policy, obs, mask, sampled)
        assert not policy.action_space.illegal_rows(sampled, np.repeat(mask[None], DRAWS, 0)).any()
    summary = ", ".join(f"{name} p={value:.3g}" for name, value in p.items())
    print(f"node own noise {space}: {summary}")
    assert all(value > P_MIN for value in p.values()), summary

    actions = sampled.reshape(DRAWS, *policy.action_space.shape)
    want = _log_probs(policy, obs, actions, mask).astype(np.float32)
    diff = np.abs(np.asarray(got["log_prob"], np.float32) - want)
    assert np.all(diff <= 1e-5 + 1e-5 * np.abs(want)), diff.max()


# ---- Sampled CartPole -----------------------------------------------------------------------


def test_sampled_cartpole_steps_are_jax_samples(folder):
    """`cartpole --sample 7` on the bundled policy's sample entry: each step's action is what
    the traced JAX policy samples with that step's observation and Node's noise (near-ties
    excepted), log_probs match, and the episode really samples (some step leaves the mode);
    the same seed gives the same episode."""
    sample_entry = cartpole_onnx(folder).with_suffix(".sample.onnx")
    episode = json_line(run_node("cartpole", str(sample_entry), "--sample", "7"))
    assert episode["sample_seed"] == "7" and episode["contract_version"] == 3
    assert len(episode["noise"]) == episode["steps"] == len(episode["actions"])
    off_mode = check_sampled_steps(cartpole_policy(), episode)
    steps = episode["steps"]
    print(
        f"node sampled CartPole: return {episode['return']}, {off_mode}/{steps} steps off the mode"
    )
    assert off_mode > 0
    again = json_line(run_node("cartpole", str(sample_entry), "--sample", "7"))
    assert (again["actions"], again["noise"]) == (episode["actions"], episode["noise"])


def cartpole_policy():
    import lerax.env

    from policyport.policy import MLPActorCriticPolicy
    from test_node import CARTPOLE_POLICY

    return MLPActorCriticPolicy.deserialize(CARTPOLE_POLICY, lerax.env.CartPole())

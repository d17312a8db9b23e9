"""Shared fixtures: one small policy per action space, built from our own spaces; and the
markers of the test tiers."""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Callable

import jax
import numpy as np
import pytest

from policyport.policy import (
    Box,
    Discrete,
    MLPActorCriticPolicy,
    MultiBinary,
    MultiDiscrete,
    SpacesEnv,
)

jax.config.update("jax_numpy_rank_promotion", "raise")

# One observation space with infinite bounds (the checks must sample finite stand-ins).
OBSERVATION = Box(
    np.array([-4.8, -np.inf, -0.42, -np.inf, 0.0, -1.0], dtype=np.float32),
    np.array([4.8, np.inf, 0.42, np.inf, np.inf, 1.0], dtype=np.float32),
)
ACTION_SPACES: dict[str, Callable[[], object]] = {
    "Box": lambda: Box(-np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float32)),
    "Discrete": lambda: Discrete(5),
    "MultiDiscrete": lambda: MultiDiscrete((3, 4, 2)),
    "MultiBinary": lambda: MultiBinary(4),
}
MASKABLE = ("Discrete", "MultiDiscrete", "MultiBinary")


def make_policy(action: str, seed: int = 0, **kwargs) -> MLPActorCriticPolicy:
    env = SpacesEnv(OBSERVATION, ACTION_SPACES[action]())
    return MLPActorCriticPolicy(env, key=jax.random.key(seed), **kwargs)


@pytest.fixture
def getkey() -> Callable[[], jax.Array]:
    counter = itertools.count()
    return lambda: jax.random.key(next(counter))


@pytest.fixture(params=list(ACTION_SPACES))
def any_policy(request) -> MLPActorCriticPolicy:
    return make_policy(request.param)


# The tiers. `-m "not consumer and not slow"` is the fast tier (README, Development); CI
# runs everything. Chosen from `--durations=0` of the whole suite (2026-12-04): a test is
# slow when it takes more than about 10 s, or belongs to a matrix (every format, kind or
# runtime) whose one-per-format cover the fast tier already has (tests/test_exporters.py).
# Files that build or drive a consumer outside Python: the C++ wrapper, Node.js, Chromium.
# The hostile-artifact corpus runs through all three (and libFuzzer); the MCU firmware
# runs under QEMU.
CONSUMER_FILES = frozenset(
    {
        "test_cpp.py",
        "test_node.py",
        "test_node_sampling.py",
        "test_web.py",
        "test_hostile_artifacts.py",
        "test_mcu.py",
    }
)
# Files whose tests are slow throughout: training, closed loops, property searches.
SLOW_FILES = frozenset(
    {
        "test_entries.py",
        "test_examples.py",
        "test_flax.py",
        "test_fuzz.py",
        "test_lerax_equality.py",
        "test_onnx_rules.py",  # every kind lowered, and the jax2onnx fallback
        "test_properties.py",
        "test_recurrent_formats.py",
    }
)
# Slow tests (every parameter of each; `*` as in fnmatch) in files that are otherwise fast.
SLOW_TESTS: dict[str, tuple[str, ...]] = {
    "test_brax.py": ("test_checkpoints_export_to_every_format_with_parity",),
    "test_brax_vision.py": ("test_vision_checkpoints_export_with_parity",),
    "test_cli.py": (
        "test_lerax_files_with_non_default_architectures",
        "test_random_argument_vectors",
    ),
    "test_c.py": (
        # Each compiles C (gcc) for its own export; test_c's other tests keep the format in
        # the fast tier.
        "test_a_driver_compiled_against_the_headers_runs_both_policies",
        "test_the_sample_entry_takes_noise_and_documents_it",
        "test_kinds_heads_and_dict_observations",
    ),
    "test_clip_actions.py": ("test_actions_are_clipped_and_log_prob_is_the_unclipped_sample",),
    "test_environment.py": ("test_every_format_exports_the_bundled_policy_*",),
    "test_function.py": (
        "test_plain_functions_export_to_every_format_with_parity",
        "test_a_sample_function_exports_the_stochastic_path",
    ),
    "test_graph_shape.py": ("test_primitives_outside_our_lowering_go_through_jax2onnx",),
    "test_gridworld.py": ("test_committed_policy_*",),
    "test_lerax_classes.py": (
        # These three share a fixture exporting every lerax class to every format.
        "test_lerax_objects_export_with_parity",
        "test_every_registered_format_is_in_the_matrix",
        "test_q_artifact_outputs_are_the_policys_q_values_and_greedy_action",
        "test_more_lerax_spaces_export_to_onnx",
    ),
    "test_loader.py": ("test_composite_observations_reload_in_their_order",),
    "test_lowering.py": (
        "test_head_shaped_policies_lower_natively_and_export_with_parity",
        "test_every_case_runs_at_the_oldest_and_newest_opset",
    ),
    "test_lowering_libraries.py": ("test_brax_policy_lowers_natively_with_parity",),
    "test_pixel.py": (
        "test_a_nature_cnn_exports_to_every_format_with_parity",  # 84x84x4 frames, 6 formats
        "test_an_equinox_conv_and_max_pool_policy_exports_to_every_format",
        "test_an_export_prints_no_library_lines",  # imports jax2onnx (~10 s)
    ),
    "test_protocol.py": (
        "test_every_kind_exports_with_parity",
        "test_bench_size_keeps_the_contract_and_grows_the_network",
        "test_every_runtime_checks_every_format_it_reads",
    ),
    "test_publish.py": (
        "test_a_later_format_failing_publishes_none_of_the_formats",
        "test_two_exports_to_one_path_at_once_one_wins_the_other_is_told",
        "test_published_bytes_are_the_bytes_the_runtime_ran",
        "test_a_file_size_limit_mid_write_is_a_clear_error_and_leaves_nothing",
    ),
    "test_q_policy.py": ("test_same_leaves_and_outputs_as_lerax",),
    "test_reliability.py": (
        "test_sigkill_*",  # kill an export mid-way, then recover
        "test_unsupported_primitive_names_it_and_suggests_another_format",  # imports jax2onnx
    ),
    "test_runtimes.py": ("test_every_runtime_samples_as_jax_for_every_action_space",),
    "test_sampling.py": (
        "test_noise_blocks_are_the_documented_distributions",  # ~7 s of export per space
        "test_artifact_sample_is_the_policy_sample",
        "test_distribution_with_numpy_noise",
        "test_metadata_and_check",
    ),
    "test_streamline.py": ("test_every_rule_fires",),
    "test_stress.py": (
        "test_the_legal_rewrite_changes_no_row_whose_logits_are_finite",
        "test_no_format_chooses_a_masked_action_when_every_legal_logit_is_minus_inf",
    ),
    "test_sweep.py": (
        "test_reference_compiled_per_architecture_is_bit_identical",
        "test_two_local_workers",
        "test_dask_local_cluster_with_two_workers",
    ),
    "test_tiers.py": ("test_the_fast_tier_*",),  # collects the suite in a subprocess
    "test_wrappers.py": ("test_artifact_takes_and_returns_the_base_envs",),
}


def tier_markers(file: str, test: str) -> list[str]:
    """The tier markers of test function `test` of `file` (a file name, no folder)."""
    slow = file in SLOW_FILES or any(fnmatch.fnmatch(test, p) for p in SLOW_TESTS.get(file, ()))
    return [*(["consumer"] if file in CONSUMER_FILES else []), *(["slow"] if slow else [])]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "originalname", item.name)
        for marker in tier_markers(item.path.name, test):
            item.add_marker(marker)

"""Issue 13, item 9: artifacts of an earlier contract version still load and check, and
versions this release does not understand are refused with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import policyport
from policyport import InputError
from policyport.checks import ATOL, RTOL, reference_outputs
from policyport.formats import FORMATS, RUNTIMES
from policyport.policy import MLPActorCriticPolicy
from policyport.tracing import SUPPORTED_CONTRACT_VERSIONS

GOLDEN = Path(__file__).parent / "golden" / "contract_v1"
# The formats released while contract 1 was current (4642b6f); a format added later (tflite)
# never wrote contract 1, so it has no golden artifact of that version.
CONTRACT_1_FORMATS = ("onnx", "ort", "savedmodel", "stablehlo")
ARTIFACTS = {name: GOLDEN / f"policy{FORMATS[name].suffix}" for name in CONTRACT_1_FORMATS}


def _io() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    stored = np.load(GOLDEN / "io.npz")
    inputs = {k: stored[k] for k in ("observation", "action_mask")}
    expected = {k.removeprefix("expected."): stored[k] for k in stored if k.startswith("exp")}
    return inputs, expected


def _policy() -> MLPActorCriticPolicy:
    return MLPActorCriticPolicy.deserialize(GOLDEN / "policy.eqx")


def test_every_format_has_a_golden_artifact():
    assert 1 in SUPPORTED_CONTRACT_VERSIONS
    assert set(CONTRACT_1_FORMATS) <= set(FORMATS)
    for name, path in ARTIFACTS.items():
        assert path.exists(), f"no contract-1 golden artifact for format {name}"
        meta = FORMATS[name].read_metadata(path)
        assert meta["policyport.contract_version"] == "1", name


@pytest.mark.parametrize("format", CONTRACT_1_FORMATS)
def test_contract_1_artifacts_still_compute_what_they_computed(format):
    inputs, expected = _io()
    run = RUNTIMES[FORMATS[format].runtime].load(ARTIFACTS[format])
    outputs = run(inputs)
    assert set(outputs) == set(expected)
    np.testing.assert_array_equal(outputs["action"], expected["action"])
    # The tolerances every parity check uses (docs/artifact.md).
    np.testing.assert_allclose(outputs["value"], expected["value"], atol=ATOL, rtol=RTOL)


def test_todays_policy_code_computes_the_stored_outputs():
    inputs, expected = _io()
    today = reference_outputs(_policy(), inputs)
    np.testing.assert_array_equal(today["action"], expected["action"])
    np.testing.assert_allclose(today["value"], expected["value"], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("format", CONTRACT_1_FORMATS)
def test_contract_1_artifacts_pass_todays_check(format):
    report = policyport.check(_policy(), ARTIFACTS[format], batch_sizes=(1, 256))
    assert report.passed, report.to_table()


def _with_version(format: str, folder: Path, version: str | None) -> Path:
    """A copy of the golden `format` artifact whose contract version says `version`."""
    source = ARTIFACTS[format]
    target = folder / source.name
    if format == "onnx":
        model = onnx.load_model(source)
        props = [p for p in model.metadata_props if p.key != "policyport.contract_version"]
        del model.metadata_props[:]
        model.metadata_props.extend(props)
        if version is not None:
            model.metadata_props.add(key="policyport.contract_version", value=version)
        onnx.save_model(model, target)
        return target
    shutil.copytree(source, target)
    path = target / "policyport.json"
    meta = json.loads(path.read_text())
    meta.pop("policyport.contract_version")
    if version is not None:
        meta["policyport.contract_version"] = version
    path.write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "99",
            r"contract version '99' \(written by policyport 0\.1\.0\), but this release .* "
            r"understands versions 1, 2, 3, 4, 5\. Upgrade policyport",
        ),
        (
            "0",
            r"contract version '0' .*understands versions 1, 2, 3, 4, 5\. Export the policy again",
        ),
        ("two", r"contract version 'two' .*understands versions 1, 2, 3, 4, 5"),
        (None, r"has no 'policyport.contract_version' metadata: it is not a policyport artifact"),
    ],
    ids=["newer", "older", "not-a-number", "missing"],
)
@pytest.mark.parametrize("format", ["onnx", "stablehlo"])
def test_unsupported_contract_versions_are_refused(tmp_path, format, version, message):
    artifact = _with_version(format, tmp_path, version)
    with pytest.raises(InputError, match=message):
        policyport.check(_policy(), artifact, batch_sizes=(1,))

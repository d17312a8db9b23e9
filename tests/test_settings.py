"""`ExportSettings`: one object for every export option, its validation, and the flags
generated from its fields (so an option is one field plus its use)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import policyport
from conftest import make_policy
from policyport import ExportSettings, InputError
from policyport._cli import build_parser, settings_of

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": -1}, "--seed must be a non-negative integer, found -1"),
        ({"opset": 12}, r"--opset 12 is out of range: choose 13..26"),
        ({"format": "pdf"}, "Unknown format 'pdf'"),
        ({"rollouts": -2}, "--rollouts must be >= 0"),
        ({"rollout_steps": 0}, "--rollout-steps > 0"),
        ({"check": False, "check_in": ("tract",)}, "drop --no-check"),
        ({"target": "unity"}, "Unknown target 'unity'"),
    ],
)
def test_an_invalid_setting_is_refused_where_it_is_made(changes, message):
    with pytest.raises(InputError, match=message):
        ExportSettings(**changes)


def test_check_in_is_one_tuple_however_it_is_given():
    assert ExportSettings(check_in=["openvino", "tract"]).check_in == ("openvino", "tract")
    assert ExportSettings(check_in="openvino, tract").check_in == ("openvino", "tract")
    assert ExportSettings().formats == ["onnx"]
    assert ExportSettings(format="all").formats[:2] == ["onnx", "ort"]


def test_every_field_is_a_flag_with_its_help():
    """A new field gets its `export-policy` flag by itself: parsed back, the flags give the
    settings they were written from."""
    flags = {a.dest: a for a in build_parser()._actions}
    usage = README.read_text().split("## Command line", 1)[1].split("```")[1]
    for field in dataclasses.fields(ExportSettings):
        assert field.name in flags, field.name
        assert flags[field.name].help == field.metadata["help"]
        [flag] = flags[field.name].option_strings
        assert f"[{flag}" in usage or f" {flag} " in usage, f"README's usage lacks {flag}"
    args = build_parser().parse_args(
        ["m.eqx", "--format", "ort", "--no-check", "--seed", "4", "--sample", "--opset", "17"]
    )
    assert settings_of(args) == ExportSettings(
        format="ort", check=False, seed=4, sample=True, opset=17
    )
    args = build_parser().parse_args(["m.eqx", "--format", "onnx", "--check-in", "tract,openvino"])
    assert settings_of(args).check_in == ("tract", "openvino")


def test_export_takes_settings_or_keywords_alike(tmp_path):
    """`export(policy, format, output, **keywords)` is `export(..., settings=...)`; the
    keywords and `format` replace the settings' values."""
    policy = make_policy("Discrete")
    settings = ExportSettings(format="ort", check=False)
    [by_settings] = policyport.export(policy, output=tmp_path / "a.ort", settings=settings)
    [by_keywords] = policyport.export(policy, "ort", tmp_path / "b.ort", check=False)
    assert by_settings.format == by_keywords.format == "ort"
    assert by_settings.report is None and by_keywords.report is None
    [overridden] = policyport.export(policy, "onnx", tmp_path / "c.onnx", settings=settings)
    assert overridden.format == "onnx" and overridden.report is None
    with pytest.raises(TypeError, match=r"Unknown export option\(s\) sead;"):
        policyport.export(policy, "onnx", tmp_path / "d.onnx", sead=1)

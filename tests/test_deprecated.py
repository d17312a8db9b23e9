"""The policyport 0.1 modules still import, with their names, and warn that they go."""

from __future__ import annotations

import importlib
import sys

import pytest

import policyport
from policyport.formats import FORMATS


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("policyport.exporters", "policyport.formats"),
        ("policyport.runtime_checks", "policyport.checks"),
    ],
)
def test_a_0_1_module_warns_on_import(name, instead, monkeypatch):
    monkeypatch.delitem(sys.modules, name, raising=False)  # imported afresh, warning again
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated.*{instead}"):
        module = importlib.import_module(name)
    if name == "policyport.exporters":
        assert module.export is policyport.export and module.FORMATS is FORMATS
    else:
        assert module.check is policyport.check and set(module.LOADERS) >= {"onnxruntime"}

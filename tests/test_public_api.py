"""The public surface is a decision: `policyport`, `policyport.policy` and `policyport.brax`
export exactly the names listed here. Adding one means adding it here too (and to the
README if users should know it); the other subpackages are internal (their docstrings say
so) and carry no stability promise."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "policyport": [
        "ExportSettings",
        "InputError",
        "MLPActorCriticPolicy",
        "MLPQPolicy",
        "ModelFileError",
        "ModelResult",
        "OutputWriteError",
        "ParityError",
        "PolicyportError",
        "TracedPolicy",
        "UnsupportedError",
        "check",
        "export",
        "export_many",
        "from_function",
        "sampling_noise",
        "trace",
    ],
    "policyport.policy": [
        "AbstractSpace",
        "ActionLayer",
        "Bernoulli",
        "Box",
        "Categorical",
        "Dict",
        "Discrete",
        "FunctionPolicy",
        "HUGE_BOUND",
        "MLPActorCriticPolicy",
        "MLPQPolicy",
        "MultiBinary",
        "MultiCategorical",
        "MultiDiscrete",
        "MultivariateNormalDiag",
        "Normal",
        "SpacesEnv",
        "Tuple",
        "as_space",
        "from_function",
        "weights_sha256",
    ],
    "policyport.brax": ["from_ppo", "from_ppo_params", "from_sac", "from_sac_params"],
}
INTERNAL = ("policyport.formats", "policyport.checks", "policyport.tracing", "policyport.sweep")


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_namespaces_export_the_committed_names(name):
    module = importlib.import_module(name)
    assert sorted(module.__all__) == PUBLIC[name]
    assert all(hasattr(module, n) for n in module.__all__)
    # Nothing public outside __all__ but submodules (internal packages reached by path).
    stray = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and n not in module.__all__ and not hasattr(v, "__path__")
    }
    assert not stray - {"annotations"}, stray


@pytest.mark.parametrize("name", INTERNAL)
def test_internal_packages_say_so(name):
    doc = importlib.import_module(name).__doc__
    assert "Internal: no stability promise" in doc

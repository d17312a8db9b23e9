"""Compatibility names (policyport 0.1): the checks now live in `policyport.checks`, the
runtimes in `policyport.formats` (`RUNTIMES`). Importing this module warns: it goes in a
later release."""

import warnings as _warnings
from pathlib import Path as _Path

from .._export import check as check
from .._export import compare_rollouts as compare_rollouts
from ..checks import ATOL as ATOL
from ..checks import NEAR_TIE as NEAR_TIE
from ..checks import RTOL as RTOL
from ..checks import OutputCheck as OutputCheck
from ..checks import ParityReport as ParityReport
from ..checks import RolloutReport as RolloutReport
from ..checks import reference_outputs as reference_outputs
from ..checks import sample_inputs as sample_inputs
from ..formats import RUNTIMES as _RUNTIMES

# `LOADERS[runtime](path)` opens an artifact; `RUNTIMES[runtime](path, inputs)` runs it once.
LOADERS = {name: runtime.load for name, runtime in _RUNTIMES.items()}
RUNTIMES = {
    name: (lambda load: lambda path, inputs: load(_Path(path))(inputs))(runtime.load)
    for name, runtime in _RUNTIMES.items()
}

_warnings.warn(
    "policyport.runtime_checks is deprecated (a policyport 0.1 name) and will be removed: "
    "use policyport.check, policyport.checks and policyport.formats.RUNTIMES.",
    DeprecationWarning,
    stacklevel=2,
)

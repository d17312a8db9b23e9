"""Parity checks: run each artifact in its own runtime against the JAX original."""

from ._check import check as check
from ._inputs import sample_inputs as sample_inputs
from ._reference import reference_outputs as reference_outputs
from ._report import ATOL as ATOL
from ._report import NEAR_TIE as NEAR_TIE
from ._report import RTOL as RTOL
from ._report import OutputCheck as OutputCheck
from ._report import ParityReport as ParityReport
from ._rollouts import RolloutReport as RolloutReport
from ._rollouts import compare_rollouts as compare_rollouts
from ._runtimes import LOADERS as LOADERS
from ._runtimes import RUNTIMES as RUNTIMES

"""Checks: compare an artifact's runner with the traced JAX policy, format-blind.

Internal: no stability promise, names here may change in any release. The public API is
`policyport`, `policyport.policy` and `policyport.brax` (README; docs/design.md has the
layers). Re-exported here: what policyport's own code imports through this package.
"""

from ._inputs import DEFAULT_BATCH_SIZES as DEFAULT_BATCH_SIZES
from ._inputs import sample_inputs as sample_inputs
from ._parity import compare_runner as compare_runner
from ._reference import reference_outputs as reference_outputs
from ._report import ATOL as ATOL
from ._report import NEAR_TIE as NEAR_TIE
from ._report import RTOL as RTOL
from ._report import OutputCheck as OutputCheck
from ._report import ParityReport as ParityReport
from ._rollouts import RolloutReport as RolloutReport
from ._rollouts import compare_rollouts as compare_rollouts
from ._stress import stress_runner as stress_runner

"""Formats: each lowers the one traced policy into an artifact; runtimes open and run them.

Internal: no stability promise, names here may change in any release. The public API is
`policyport`, `policyport.policy` and `policyport.brax` (README; docs/design.md has the
layers). Re-exported here: what policyport's own code imports through this package.
"""

from ._base import DEFAULT_OPSET as DEFAULT_OPSET
from ._base import MAX_OPSET as MAX_OPSET
from ._base import MIN_OPSET as MIN_OPSET
from ._base import ArtifactFormat as ArtifactFormat
from ._base import ExportOptions as ExportOptions
from ._base import Runner as Runner
from ._base import Runtime as Runtime
from ._registry import ALL as ALL
from ._registry import FORMATS as FORMATS
from ._registry import RUNTIMES as RUNTIMES
from ._targets import TARGET_KEY as TARGET_KEY
from ._targets import TARGETS as TARGETS
from ._targets import fixed_batch_of as fixed_batch_of
from ._targets import in_rows as in_rows
from ._targets import resolve_target as resolve_target

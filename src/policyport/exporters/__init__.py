"""Compatibility names (policyport 0.1): the exporter now lives in `policyport.formats`,
`policyport.tracing` and the orchestration (`policyport.export`). Importing this module
warns: it goes in a later release."""

import warnings as _warnings

from .._export import ExportResult as ExportResult
from .._export import export as export
from ..formats import ALL as ALL
from ..formats import DEFAULT_OPSET as DEFAULT_OPSET
from ..formats import FORMATS as FORMATS
from ..formats import MAX_OPSET as MAX_OPSET
from ..formats import MIN_OPSET as MIN_OPSET
from ..formats import ArtifactFormat as ArtifactFormat
from ..tracing import CONTRACT_VERSION as CONTRACT_VERSION
from ..tracing import TensorSpec as TensorSpec
from ..tracing import TracedPolicy as TracedPolicy
from ..tracing import trace as trace

_warnings.warn(
    "policyport.exporters is deprecated (a policyport 0.1 name) and will be removed: use "
    "policyport.export, policyport.trace, policyport.formats and policyport.tracing.",
    DeprecationWarning,
    stacklevel=2,
)

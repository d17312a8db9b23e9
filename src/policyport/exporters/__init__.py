"""Exporters: one traced representation of a policy, lowered into each artifact format."""

from ._api import ExportResult as ExportResult
from ._api import export as export
from ._base import DEFAULT_OPSET as DEFAULT_OPSET
from ._base import MAX_OPSET as MAX_OPSET
from ._base import MIN_OPSET as MIN_OPSET
from ._base import ArtifactFormat as ArtifactFormat
from ._contract import CONTRACT_VERSION as CONTRACT_VERSION
from ._contract import TensorSpec as TensorSpec
from ._registry import ALL as ALL
from ._registry import FORMATS as FORMATS
from ._traced import TracedPolicy as TracedPolicy
from ._traced import deterministic_forward as deterministic_forward
from ._traced import trace as trace

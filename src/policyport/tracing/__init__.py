"""Trace once: a policy that follows lerax's protocol, as one jaxpr plus its contract.

Internal: no stability promise, names here may change in any release. The public API is
`policyport`, `policyport.policy` and `policyport.brax` (README; docs/design.md has the
layers). Re-exported here: what policyport's own code imports through this package.
"""

from ._contract import ACTION as ACTION
from ._contract import CONTRACT_VERSION as CONTRACT_VERSION
from ._contract import DEFAULT_ENTRY as DEFAULT_ENTRY
from ._contract import ENTRIES_KEY as ENTRIES_KEY
from ._contract import ENTRY_KEY as ENTRY_KEY
from ._contract import HEADS as HEADS
from ._contract import MASK as MASK
from ._contract import RESET as RESET
from ._contract import SAMPLE_ENTRY as SAMPLE_ENTRY
from ._contract import SUPPORTED_CONTRACT_VERSIONS as SUPPORTED_CONTRACT_VERSIONS
from ._contract import TensorSpec as TensorSpec
from ._contract import check_contract as check_contract
from ._contract import metadata as metadata
from ._contract import numpy_dtype as numpy_dtype
from ._sampling import LOG_PROB as LOG_PROB
from ._sampling import NOISE as NOISE
from ._sampling import SAMPLED_ACTION as SAMPLED_ACTION
from ._single_operand import without_argmax as without_argmax
from ._trace import TracedPolicy as TracedPolicy
from ._trace import trace as trace
from ._wrappers import unwrap as unwrap

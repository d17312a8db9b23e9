"""policyport: export trained JAX policies to portable artifacts, with proven parity."""

from ._errors import InputError as InputError
from ._errors import ModelFileError as ModelFileError
from ._errors import OutputWriteError as OutputWriteError
from ._errors import ParityError as ParityError
from ._errors import PolicyportError as PolicyportError
from ._errors import UnsupportedError as UnsupportedError
from ._export import check as check
from ._export import export as export
from ._noise import sampling_noise as sampling_noise
from ._settings import ExportSettings as ExportSettings
from ._version import __version__ as __version__
from .policy import MLPActorCriticPolicy as MLPActorCriticPolicy
from .policy import MLPQPolicy as MLPQPolicy
from .policy import from_function as from_function
from .sweep import ModelResult as ModelResult
from .sweep import export_many as export_many
from .tracing import TracedPolicy as TracedPolicy
from .tracing import trace as trace

# The public API, with policyport.policy and policyport.brax; tests/test_public_api.py holds
# the committed list, so widening it is a decision. Other subpackages are internal.
__all__ = [
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
]

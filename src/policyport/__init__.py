"""policyport: export trained JAX/Equinox actor-critic policies, with proven parity."""

__version__ = "0.1.0"

from ._errors import InputError as InputError
from ._errors import ModelFileError as ModelFileError
from ._errors import ParityError as ParityError
from ._errors import PolicyportError as PolicyportError
from ._errors import UnsupportedError as UnsupportedError
from .exporters import export as export
from .policy import MLPActorCriticPolicy as MLPActorCriticPolicy
from .runtime_checks import check as check

"""policyport: export trained JAX/Equinox actor-critic policies, with proven parity."""

__version__ = "0.1.0"

from ._errors import InputError as InputError
from ._errors import ModelFileError as ModelFileError
from ._errors import ParityError as ParityError
from ._errors import PolicyportError as PolicyportError
from .policy import MLPActorCriticPolicy as MLPActorCriticPolicy

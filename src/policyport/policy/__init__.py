"""The policies that get exported (lerax's `MLPActorCriticPolicy` and `MLPQPolicy`, any JAX
function through `from_function`), their spaces and distributions."""

from ._action_layer import ActionLayer as ActionLayer
from ._distributions import (
    Bernoulli as Bernoulli,
)
from ._distributions import (
    Categorical as Categorical,
)
from ._distributions import (
    MultiCategorical as MultiCategorical,
)
from ._distributions import (
    MultivariateNormalDiag as MultivariateNormalDiag,
)
from ._distributions import (
    Normal as Normal,
)
from ._function import FunctionPolicy as FunctionPolicy
from ._function import from_function as from_function
from ._policy import MLPActorCriticPolicy as MLPActorCriticPolicy
from ._q_policy import MLPQPolicy as MLPQPolicy
from ._serialization import SpacesEnv as SpacesEnv
from ._serialization import weights_sha256 as weights_sha256
from ._spaces import HUGE_BOUND as HUGE_BOUND
from ._spaces import AbstractSpace as AbstractSpace
from ._spaces import Box as Box
from ._spaces import Dict as Dict
from ._spaces import Discrete as Discrete
from ._spaces import MultiBinary as MultiBinary
from ._spaces import MultiDiscrete as MultiDiscrete
from ._spaces import Tuple as Tuple
from ._spaces import as_space as as_space

# Public (tests/test_public_api.py holds the committed list).
__all__ = [
    "HUGE_BOUND",
    "AbstractSpace",
    "ActionLayer",
    "Bernoulli",
    "Box",
    "Categorical",
    "Dict",
    "Discrete",
    "FunctionPolicy",
    "MLPActorCriticPolicy",
    "MLPQPolicy",
    "MultiBinary",
    "MultiCategorical",
    "MultiDiscrete",
    "MultivariateNormalDiag",
    "Normal",
    "SpacesEnv",
    "Tuple",
    "as_space",
    "from_function",
    "weights_sha256",
]

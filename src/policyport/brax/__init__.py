"""Brax PPO and SAC policies (in memory, or from Brax's checkpoint folders) as protocol
policies, so every format, check and consumer takes them unchanged.

Needs `pip install 'policyport[brax]'`. Only this subpackage imports Brax and Flax: core
`import policyport` and the export path never do. It builds policies and nothing else
(it uses `policyport.policy` only).
"""

from ._checkpoint import from_ppo as from_ppo
from ._checkpoint import from_sac as from_sac
from ._policies import from_ppo_params as from_ppo_params
from ._policies import from_sac_params as from_sac_params

# Public (tests/test_public_api.py holds the committed list).
__all__ = [
    "from_ppo",
    "from_ppo_params",
    "from_sac",
    "from_sac_params",
]

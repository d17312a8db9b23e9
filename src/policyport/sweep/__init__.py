"""A sweep: many policy files exported in one call, each checked and published on its own.

`policyport.export_many` and `policyport.ModelResult` are the public face; the CLI's
sweep (`export-policy runs/ ...`) runs the same jobs. docs/sweep.md is the user's guide.

Internal: no stability promise; `export_many` and `ModelResult` are public through
`policyport`.
"""

from ._jobs import ModelResult as ModelResult
from ._run import export_many as export_many

"""The errors policyport raises on purpose.

Every message says what was expected, what was found and what to do. The CLI turns
`InputError` into exit code 2 and `ParityError` into exit code 1; anything else is a bug
(exit code 3, see `_cli.py`).
"""

from __future__ import annotations


class PolicyportError(Exception):
    """Base of every error policyport raises on purpose."""


class InputError(PolicyportError):
    """The user's input (a file, an argument, an env) cannot be used as given."""


class ModelFileError(InputError):
    """A policy file is missing, malformed, or does not fit the arguments given."""


class UnsupportedError(InputError):
    """The policy uses something a format cannot express (e.g. an unknown primitive)."""


class OutputWriteError(InputError, OSError):
    """Writing the artifact failed for a reason outside policyport (a full disk, a file-size
    limit). Also an `OSError` carrying the original `errno`, for callers that catch those."""

    def __init__(self, message: str, errno: int):
        OSError.__init__(self, errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ParityError(PolicyportError):
    """An exported artifact does not compute what the JAX policy computes."""

    def __init__(self, message: str, report: object | None = None):
        super().__init__(message)
        self.report = report


class MissingDependencyError(PolicyportError, ImportError):
    """An optional dependency needed for the requested work is not installed."""


def missing_dependency(module: str, extra: str, purpose: str) -> MissingDependencyError:
    """Build the error for an optional import that failed."""
    return MissingDependencyError(
        f"{purpose} needs the Python package '{module}', which is not installed. "
        f"Install it with: pip install 'policyport[{extra}]'"
    )

"""Errors a user can see.

Every error that can reach the command line derives from :class:`MemplanError`. Its message
is one line that says what is wrong and how to fix it; the CLI prints it without a traceback
(unless ``--debug``) and exits with :attr:`MemplanError.exit_code`.
"""

from __future__ import annotations


class MemplanError(Exception):
    """Base class of every user-facing error."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelError(MemplanError):
    """The model file cannot be read or is not a model memplan can plan."""


class UnsupportedOpError(ModelError):
    """The model contains an operator memplan does not handle."""


class GraphError(MemplanError):
    """The graph violates an invariant (cycle, shape mismatch, tensor produced twice)."""


class ConfigError(MemplanError):
    """A hardware profile or solver configuration is malformed."""


class UsageError(MemplanError):
    """A command-line argument is malformed."""


class InfeasibleError(MemplanError):
    """No plan fits the given SRAM; the message names the binding layer."""

    exit_code = 3


class PlanError(MemplanError):
    """A plan is malformed or fails validation."""


class VerificationError(MemplanError):
    """A plan did not verify bit-exactly or byte-exactly."""

    exit_code = 4

"""Typed errors. Each message says what is wrong and what to run or change next.

The library raises these; only ``cli`` turns them into messages and exit codes.
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base class: something the operator can fix. ``exit_code`` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}; {self.fix}"
        return self.message


class ConfigError(PlatformError):
    """The settings are missing, malformed or unsafe."""


class PortInUseError(PlatformError):
    """A port the stack needs is already taken."""


class MissingBinaryError(PlatformError):
    """A program the stack needs is not installed."""


class ServiceError(PlatformError):
    """A service failed to start, stop or become healthy."""


class DatabaseUnavailableError(PlatformError):
    """The database did not answer within the wait bound."""


class SchemaError(PlatformError):
    """The database schema does not match the installed MLflow."""


class StateError(PlatformError):
    """The state folder is unusable or holds a stale run."""

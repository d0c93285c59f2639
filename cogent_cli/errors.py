"""The one error hierarchy of cogent, and the exit statuses the CLI maps it to.

Every error carries a message saying what went wrong and a hint saying how to fix it.
The CLI turns them into text in exactly one place (`cogent_cli.cli.app`).
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit statuses that cron, CI and monitors can act on."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2  # bad arguments or a bad cogent.toml
    FINDINGS = 3  # an audit or playbook check reached the failing severity
    LOCKED = 4  # another run holds the workspace lock
    THRESHOLD = 5  # `cogent status` found a threshold breached
    AUTH = 6  # credentials missing, rejected, or lacking a scope
    UNAVAILABLE = 7  # a remote system stayed unreachable after bounded retries
    INTERRUPTED = 130


class CogentError(Exception):
    """Base class: a message for the user and a hint on how to fix it."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UsageError(CogentError):
    exit_status = ExitStatus.USAGE


class WorkspaceNotFoundError(UsageError):
    pass


class WorkspaceExistsError(UsageError):
    pass


class ConfigError(UsageError):
    """cogent.toml is missing, unreadable or invalid; `problems` lists every issue found."""

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class StateError(CogentError):
    """The workspace state file cannot be used as it is."""


class StateTooNewError(StateError):
    pass


class CredentialError(CogentError):
    exit_status = ExitStatus.AUTH


class KeyringUnavailableError(CredentialError):
    pass


class LockHeldError(CogentError):
    exit_status = ExitStatus.LOCKED


class RemoteUnavailableError(CogentError):
    exit_status = ExitStatus.UNAVAILABLE

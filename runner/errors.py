"""The one exception family; each kind carries the exit code SPEC.md gives it."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID = 3
    UNREACHABLE = 4
    WAITING = 5
    LOCKED = 6
    STORE_UNAVAILABLE = 7  # the shared database cannot be reached at start: nothing was run
    TIMED_OUT = 124
    CANCELED = 130


@dataclass(frozen=True)
class Problem:
    """One validation finding: `file:line: path: message`."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class RunbookError(Exception):
    exit_code: ExitCode = ExitCode.FAILED


class UsageError(RunbookError):
    exit_code = ExitCode.USAGE


class InvalidError(RunbookError):
    """Invalid runbook, parameter or reference: nothing was run."""

    exit_code = ExitCode.INVALID

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class NoSpaceError(RunbookError):
    """The disk holding the state dir is full: exit 3 when nothing ran yet, 1 when a run was stopped."""

    def __init__(self, message: str, started: bool) -> None:
        super().__init__(message)
        self.exit_code = ExitCode.FAILED if started else ExitCode.INVALID


class LockedError(RunbookError):
    exit_code = ExitCode.LOCKED


class NotFoundError(RunbookError):
    exit_code = ExitCode.USAGE

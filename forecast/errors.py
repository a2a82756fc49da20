"""Problems found in user input, and the exceptions the toolkit raises.

User errors (bad data files, bad configuration, a damaged fit file) derive from :class:`UserInputError`; the
CLI prints them without a traceback and exits with code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One problem in one place of a user's file.

    Parameters
    ----------
    file : str
        Path of the file as the user named it.
    line : int or None
        1-based line number in the file (the header is line 1 of a CSV), or None for the whole file.
    column : str or None
        Column or field name, or None.
    value : str or None
        The offending value as text, or None.
    message : str
        What is wrong.
    fix : str
        What to do about it.

    """

    file: str
    line: int | None
    column: str | None
    value: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column {self.column!r}"
        what = self.message
        if self.value is not None:
            shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
            what += f" (value: {shown!r})"
        return f"{where}: {what}. Fix: {self.fix}"


class ForecastError(Exception):
    """Base class of the toolkit's own exceptions."""


class UserInputError(ForecastError):
    """An error in something the user supplied; the CLI exits with code 2 without a traceback."""


class DataValidationError(UserInputError):
    """Every problem found in one or more data files, raised at once.

    Parameters
    ----------
    problems : list of Problem
        All problems found; never empty.

    """

    def __init__(self, problems: list[Problem]):
        if not problems:
            raise ValueError("DataValidationError needs at least one problem")
        self.problems = list(problems)
        files = sorted({p.file for p in self.problems})
        head = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in {', '.join(files)}:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class ConfigError(UserInputError):
    """A bad configuration value (prior set, report settings, command options)."""


class FitFileError(UserInputError):
    """A fit file that is damaged, incompatible or not a fit file at all."""

    def __init__(self, path: str | Path, reason: str, fix: str):
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path}: {reason}. Fix: {fix}")


class ConvergenceError(ForecastError):
    """A fit failed its convergence gate and was asked to be used as if it had passed."""

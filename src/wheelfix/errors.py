"""Errors. One root, :class:`Error`; every subclass carries the exit code the command line exits with, so a
library user catches ``wheelfix.Error`` and a CLI user reads the code.

========  =====================================================================================
exit      meaning
========  =====================================================================================
0         ok
1         findings: the check failed, a need has no library, an edit does not fit (:class:`Findings`)
2         bad input or usage: an unusable wheel, binary, database or option (:class:`BadInput`, ...)
3         internal error: a bug (any exception that is not an :class:`Error`)
4         the output could not be written (:class:`OutputError`)
========  =====================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FINDINGS",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "BadInput",
    "Error",
    "Findings",
    "OutputError",
    "Problem",
    "UsageError",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_OUTPUT = 4  # the output could not be written (directory not writable, disk full, ...)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, optionally inside one of its members."""

    file: str
    member: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.member}" if self.member is not None else self.file
        return f"{where}: {self.message}"


class Error(Exception):
    """The root of every error wheelfix raises on purpose; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_INTERNAL


class BadInput(Error):
    """An input is unusable. Carries every problem found, not just the first."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("BadInput needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class UsageError(Error, ValueError):
    """An option or argument the caller gave makes no sense (an unknown target, a bad path)."""

    exit_code = EXIT_BAD_INPUT


class Findings(Error):
    """Valid input that wheelfix cannot act on as asked: a library found nowhere, an edit that does not fit.
    Nothing was written."""

    exit_code = EXIT_FINDINGS


class OutputError(Error):
    """Writing the output failed (nothing is left behind: outputs are written to a temp name and renamed)."""

    exit_code = EXIT_OUTPUT

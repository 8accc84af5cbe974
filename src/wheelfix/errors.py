"""Error types. Every error that reaches the CLI is a one-line message plus an exit code."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FINDINGS",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "BadInput",
    "OutputError",
    "Problem",
    "Unsupported",
    "WheelfixError",
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


class WheelfixError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_INTERNAL


class BadInput(WheelfixError):
    """An input is unusable. Carries every problem found, not just the first."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("BadInput needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class Unsupported(WheelfixError):
    """Valid input that this version cannot act on (e.g. repairing Mach-O): exit 1, nothing written."""

    exit_code = EXIT_FINDINGS


class OutputError(WheelfixError):
    """Writing the output failed (nothing is left behind: outputs are written to a temp name and renamed)."""

    exit_code = EXIT_OUTPUT

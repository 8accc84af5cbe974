"""Progress reporting: what a long command is doing, for a display the caller owns.

The pipeline and the API never print. A caller that wants a sign of life passes a :data:`Progress` callback
(``Pipeline(..., progress=cb)``, ``wheelfix.inspect(..., progress=cb)``, ``wheelfix.repair(...,
progress=cb)``); it is called **on the caller's thread** with a :class:`ProgressEvent` each time a unit of
work finishes (a member scanned, a binary patched, a wheel written, the Nix outputs evaluated or realised).
The command line's display (:mod:`wheelfix.cli.progress`) draws them on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wheelfix._enum import StrEnum

__all__ = ["Phase", "Progress", "ProgressEvent", "report"]


class Phase(StrEnum):
    SCAN = "scanning"
    PATCH = "patching"
    WRITE = "writing"
    EVALUATE = "evaluating"
    REALISE = "realising"


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """``done`` of ``total`` ``unit`` (members, binaries, wheels, outputs) of ``phase`` on ``subject`` (a
    wheel's file name, or the nixpkgs reference); ``bytes_done``/``bytes_total`` when the work is measured
    in bytes too (0 when not)."""

    phase: Phase
    subject: str
    done: int
    total: int
    unit: str
    bytes_done: int = 0
    bytes_total: int = 0


Progress = Callable[[ProgressEvent], None]


def report(progress: Progress | None, event: ProgressEvent) -> None:
    """Call ``progress`` with ``event`` when there is a callback."""
    if progress is not None:
        progress(event)

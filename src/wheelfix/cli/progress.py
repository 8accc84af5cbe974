"""The progress display of the command line: one line on stderr, redrawn in place, for work that takes more
than about a second (scans of big wheels, repairs, Nix builds). It is shown only when stderr is a terminal
and ``-q`` was not given, and it erases itself before anything else is printed, so pipes, logs and CI output
never see it.

``WHEELFIX_PROGRESS_DELAY`` (seconds, default 1) changes how long work must take before the line appears
(the tests set 0).
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import TextIO

from wheelfix.progress import ProgressEvent

__all__ = ["ProgressDisplay"]

_DEFAULT_DELAY = 1.0
_REDRAW = 0.1  # at most 10 redraws a second
_TICK = 0.5  # while nothing reports (one huge member, a Nix build), the elapsed time still moves


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get("WHEELFIX_PROGRESS_DELAY", _DEFAULT_DELAY)))
    except ValueError:
        return _DEFAULT_DELAY


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _columns(stream: TextIO) -> int:
    """The terminal's width: $COLUMNS, else the terminal's own, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


def describe(event: ProgressEvent, elapsed: float) -> str:
    """``scanning torch-....whl: 812/2431 members, 120.3 MB/843.0 MB, 4s``."""
    text = f"{event.phase} {event.subject}: {event.done}/{event.total} {event.unit}"
    if event.bytes_total:
        text += f", {_size(event.bytes_done)}/{_size(event.bytes_total)}"
    return f"{text}, {elapsed:.0f}s"


class ProgressDisplay:
    """A :data:`~wheelfix.progress.Progress` callback that draws on ``stream``; a no-op when ``enabled`` is
    false. Use as a context manager (the line is erased at the end) and call :meth:`clear` before printing
    anything else to the same terminal."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.delay = _delay()
        self._start = time.monotonic()
        self._last: ProgressEvent | None = None
        self._drawn_at = 0.0
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @classmethod
    def for_stderr(cls, stream: TextIO, *, quiet: bool) -> ProgressDisplay:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(stream, enabled=tty and not quiet and os.environ.get("TERM") != "dumb")

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        with self._lock:
            # a new phase or wheel, and the end of one, are always drawn; the steps between at most
            # every _REDRAW seconds
            changed = self._last is None or (event.phase, event.subject) != (
                self._last.phase,
                self._last.subject,
            )
            self._last = event
            now = time.monotonic()
            due = changed or event.done == event.total or now - self._drawn_at >= _REDRAW
            if now - self._start >= self.delay and due:
                self._draw(now)
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="wheelfix-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(_TICK):
            with self._lock:
                now = time.monotonic()
                if self._last is not None and now - self._start >= self.delay:
                    self._draw(now)

    def _draw(self, now: float) -> None:
        assert self._last is not None
        width = max(20, _columns(self.stream) - 1)
        line = "wheelfix: " + describe(self._last, now - self._start)
        self.stream.write("\r\x1b[K" + line[:width])
        self.stream.flush()
        self._drawn_at = now
        self._shown = True

    def clear(self) -> None:
        """Erase the line (before other output goes to the terminal)."""
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.clear()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

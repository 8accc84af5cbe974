"""The progress display, with stderr on a pseudo-terminal: drawn (and erased) on a terminal, never in a pipe,
never with -q, and not for work that is done within the delay. ``WHEELFIX_PROGRESS_DELAY=0`` makes the
synthetic wheels, scanned in milliseconds, count as slow."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import wheelfix
from wheelfix.progress import Phase, ProgressEvent

ERASE = "\r\x1b[K"


def _on_pty(args: Sequence[str | Path], delay: str | None) -> tuple[int, str, str]:
    """Run wheelfix with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WHEELFIX_PROGRESS_DELAY", "TERM")}
    env["TERM"] = "xterm"
    env["COLUMNS"] = "300"  # a pseudo-terminal has no size
    if delay is not None:
        env["WHEELFIX_PROGRESS_DELAY"] = delay
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelfix", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.communicate()[0]))
    reader.start()
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    reader.join()
    return proc.wait(), out[0].decode(), tty.decode(errors="replace")


def test_scan_progress_on_a_terminal(wheels: dict[str, Path]) -> None:
    rc, stdout, tty = _on_pty(["inspect", wheels["demo"]], delay="0")
    assert rc == 0 and stdout.startswith(wheels["demo"].name)
    assert f"{ERASE}wheelfix: scanning {wheels['demo'].name}: " in tty
    assert " members, " in tty and "/7 members" in tty  # members and bytes done of the total
    assert tty.endswith(ERASE)  # erased before the command ends


def test_repair_progress_shows_each_phase(wheels: dict[str, Path], tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    rc, stdout, tty = _on_pty(
        ["repair", wheels["consumer"], wheels["provider"], "-o", tmp_path / "out", "--allow", "*"], delay="0"
    )
    assert rc == 0, tty
    for phase in ("scanning", "writing"):
        assert f"wheelfix: {phase} " in tty, tty
    assert "wrote " in stdout and "wheelfix:" not in stdout  # the display never goes to stdout


def test_quiet_and_fast_commands_draw_nothing(wheels: dict[str, Path]) -> None:
    rc, _, tty = _on_pty(["inspect", "-q", wheels["demo"]], delay="0")
    assert rc == 0 and "scanning" not in tty and ERASE not in tty
    rc, _, tty = _on_pty(["inspect", wheels["demo"]], delay="30")  # done long before the delay
    assert rc == 0 and "scanning" not in tty and ERASE not in tty


def test_no_progress_in_a_pipe(wheels: dict[str, Path]) -> None:
    env = {**os.environ, "WHEELFIX_PROGRESS_DELAY": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "wheelfix", "inspect", str(wheels["demo"])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == ""


def test_api_progress_events(wheels: dict[str, Path], tmp_path: Path) -> None:
    """The callback hears of every member scanned (bytes too), every binary patched, every wheel written,
    on the caller's thread."""
    events: list[ProgressEvent] = []
    caller = threading.get_ident()

    def record(e: ProgressEvent) -> None:
        assert threading.get_ident() == caller
        events.append(e)

    wheelfix.repair([wheels["rpathlegacy"]], tmp_path / "out", rpath_kind="runpath", progress=record, jobs=2)
    scans = [e for e in events if e.phase is Phase.SCAN]
    assert [e.done for e in scans] == list(range(1, scans[0].total + 1))
    assert scans[-1].bytes_done == scans[-1].bytes_total > 0
    patches = [e for e in events if e.phase is Phase.PATCH]
    assert patches and patches[-1].done == patches[-1].total == 1 and patches[-1].unit == "binaries"
    assert [e.phase for e in events if e.phase is Phase.WRITE] == [Phase.WRITE]

"""Where the time of ``wheelfix inspect`` goes on a big wheel: each kind of work done alone, in one process.

Usage: python bench/inspect_phases.py [WHEEL...] (default: the manifest's bench wheels)

For each wheel, one after the other, single-threaded, with the page cache warm:

* ``import``: importing wheelfix's API (a fresh ``python -c``, wall);
* ``open``: opening and validating the wheel (central directory, RECORD, local headers);
* ``inflate``: inflating every member with the inflater wheelfix uses (ISA-L when installed);
* ``hash``: sha256 of every member (what checking RECORD costs);
* ``spool``: writing the binaries of SPOOL_MIN and more to an unlinked temp file (what keeps memory bounded);
* ``parse``: parsing every ELF/Mach-O member (headers, dynamic section, versions, dlopen scan);
* ``scan``: the real scan (all of the above but import, on wheelfix's thread pool), wall.

The sum of the work phases over the cores is the floor of this design; the scan's wall next to it shows how
close the thread pool gets. Prints a markdown table; raw numbers go to ``bench/results/inspect_phases.json``.
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import hashlib
import mmap
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from _runner import manifest_wheels, markdown_table, warm_page_cache, write_results

from wheelfix.analysis.scan import SPOOL_MIN, default_jobs, scan_archive
from wheelfix.binfmt import MAGIC_PREFIX_LEN, BinaryFormat, detect_format
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.binfmt.macho.reader import parse_macho
from wheelfix.wheel import codecs
from wheelfix.wheel.archive import WheelArchive

PHASES = ("import", "open", "inflate", "hash", "spool", "parse")


def _import_s() -> float:
    """The best of two fresh processes."""
    code = "import time; t = time.perf_counter(); import wheelfix.api; print(time.perf_counter() - t)"
    argv = [sys.executable, "-c", code]
    return min(
        float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout) for _ in range(2)
    )


class _Clock:
    """CPU seconds spent inside ``timed`` calls, per phase."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PHASES[2:], 0.0)

    def timed(self, phase: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args)
        finally:
            self.spent[phase] += time.process_time() - start


def _work(archive: WheelArchive) -> dict[str, float]:
    """One pass over the members, single-threaded, streamed as the scan streams them (pieces of about 1 MiB),
    each kind of work timed on its own; big binaries are parsed through a map of their spool file."""
    clock = _Clock()
    with tempfile.TemporaryFile() as spool:  # reused: truncated for each big binary
        for info in archive.members:
            _member_work(archive, info, clock, spool)
    return clock.spent


def _member_work(archive: WheelArchive, info: zipfile.ZipInfo, clock: _Clock, spool: IO[bytes]) -> None:
    pieces = archive.iter_member(info, check_crc=False)
    sha = hashlib.sha256()
    head: bytes = clock.timed("inflate", next, pieces, b"")
    clock.timed("hash", sha.update, head)
    fmt = detect_format(head[:MAGIC_PREFIX_LEN])
    binary = fmt in (BinaryFormat.ELF, BinaryFormat.MACHO, BinaryFormat.MACHO_FAT)
    spooled = binary and info.file_size >= SPOOL_MIN
    kept = [head]
    if spooled:
        spool.seek(0)
        spool.truncate()
        clock.timed("spool", spool.write, head)
    while piece := clock.timed("inflate", next, pieces, b""):
        clock.timed("hash", sha.update, piece)
        if spooled:
            clock.timed("spool", spool.write, piece)
        elif binary:
            kept.append(piece)
    parse = parse_elf if fmt is BinaryFormat.ELF else parse_macho
    if spooled:
        clock.timed("spool", spool.flush)
        with mmap.mmap(spool.fileno(), info.file_size, access=mmap.ACCESS_READ) as view:
            clock.timed("parse", parse, view)
    elif binary:
        clock.timed("parse", parse, b"".join(kept))


def phases(wheel: Path) -> dict[str, float]:
    """Each phase's cost in seconds: wall for import, open and scan, CPU for the work phases."""
    out: dict[str, float] = {"import": _import_s()}
    start = time.perf_counter()
    with WheelArchive.open(wheel) as archive:
        out["open"] = time.perf_counter() - start
        out.update(_work(archive))
        start = time.perf_counter()
        scan_archive(archive)
        out["scan"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    wheels = [Path(a) for a in (argv if argv is not None else sys.argv[1:])] or manifest_wheels("bench")
    rows: list[list[str]] = []
    results: dict[str, Any] = {"inflater": codecs.inflater_name(), "cores": default_jobs(), "wheels": {}}
    for wheel in wheels:
        warm_page_cache(wheel)
        got = phases(wheel)
        results["wheels"][wheel.name] = got
        work = sum(got[p] for p in ("inflate", "hash", "spool", "parse"))
        label = "-".join(wheel.name.split("-")[:2])
        cores = default_jobs()
        rows.append(
            [
                label,
                *(f"{got[p]:.2f}" for p in PHASES),
                f"{work:.2f}",
                f"{work / cores:.2f}",
                f"{got['scan']:.2f}",
            ]
        )
    headers = [
        "wheel",
        *(f"{p} s" for p in PHASES),
        "work s",
        f"work / {default_jobs()} cores",
        "scan wall s",
    ]
    print(markdown_table(headers, rows))
    path = write_results("inspect_phases", results, None)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

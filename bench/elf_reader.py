"""Measure wheelfix's ELF reader against pyelftools on the same images, for the same facts
(NEEDED, SONAME, RPATH/RUNPATH, PT_INTERP, .gnu.version_r). Usage: python bench/elf_reader.py FILE..."""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ is sys.path[0] and bench/inspect.py would shadow the stdlib module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import time  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402

from elftools.elf.dynamic import DynamicSection  # noqa: E402
from elftools.elf.elffile import ELFFile  # noqa: E402
from elftools.elf.gnuversions import GNUVerNeedSection  # noqa: E402

from wheelfix.binfmt.elf.reader import parse_elf  # noqa: E402


def with_pyelftools(data: bytes) -> tuple[list[str], list[tuple[str, list[str]]]]:
    elf = ELFFile(BytesIO(data))
    needed: list[str] = []
    verneed: list[tuple[str, list[str]]] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
        elif isinstance(section, GNUVerNeedSection):
            for vn, aux in section.iter_versions():
                verneed.append((vn.name, [a.name for a in aux]))
    for seg in elf.iter_segments():
        if seg.header.p_type == "PT_INTERP":
            seg.get_interp_name()
    return needed, verneed


def main(paths: list[str]) -> None:
    print("| file | MB | wheelfix ms | pyelftools ms | same NEEDED+verneed |")
    print("|---|---:|---:|---:|---|")
    for p in paths:
        data = Path(p).read_bytes()
        t0 = time.perf_counter()
        ours = parse_elf(data)
        t1 = time.perf_counter()
        needed, verneed = with_pyelftools(data)
        t2 = time.perf_counter()
        ours_verneed = [(v.file, list(v.versions)) for v in ours.version_needs]
        same = list(ours.needed) == needed and ours_verneed == verneed
        ms_ours, ms_theirs = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        print(f"| {Path(p).name} | {len(data) / 1e6:.1f} | {ms_ours:.1f} | {ms_theirs:.1f} | {same} |")


if __name__ == "__main__":
    main(sys.argv[1:])

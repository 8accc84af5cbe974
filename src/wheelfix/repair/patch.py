"""Apply planned ELF edits with wheelfix's own writer (:mod:`wheelfix.binfmt.elf.editor`), check every
result against the plan, and hand the wheel writer either the new bytes (small members) or a spliced
deflate stream (:mod:`wheelfix.wheel.splice`) that reuses the member's compressed bytes around the edit.

Per edited member, on a thread pool:

1. take the member as the scan inflated it into its spool, with the deflate block starts (a repair's
   pipeline keeps one, so no member is inflated twice); without one, inflate it from the wheel into an
   unnamed temp file, recording the block starts and checking its CRC-32 — the member is never held in
   memory whole;
2. plan the edit on a read-only map of it; append the tail and write the overrides in place;
3. re-read the result from a fresh map with the strict ELF reader and check it against the plan (search
   path and its tag, interpreter, NEEDED/SONAME/machine unchanged); a mismatch is an error, and nothing
   is written for any wheel;
4. hash it (CRC-32, sha256 for RECORD) and build the new deflate stream.

Mach-O members (:class:`~wheelfix.repair.plan.MachOEdit`) are edited in memory with
:func:`wheelfix.binfmt.macho.editor.edit_macho`, which re-signs edited slices ad hoc; the result is re-read
and checked against the plan (install names and LC_RPATHs per slice, nothing else changed) and every signature
it carries must match the new bytes page by page.

Why an own writer and not patchelf or lief: see the README's design notes (measured there).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from wheelfix.analysis.scan import Spool, SpooledMember
from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.editor import ElfEditError, ElfPatch, plan_patch
from wheelfix.binfmt.elf.reader import ElfInfo, parse_elf
from wheelfix.binfmt.macho.codesign import code_hash_mismatch
from wheelfix.binfmt.macho.editor import MachOEditError, edit_macho
from wheelfix.binfmt.macho.reader import parse_macho
from wheelfix.errors import BadInput, Findings, Problem
from wheelfix.progress import Phase, Progress, ProgressEvent, report
from wheelfix.repair.plan import ElfEdit, MachOEdit, WheelPlan
from wheelfix.wheel.archive import CorruptMember, WheelArchive
from wheelfix.wheel.splice import (
    InflateError,
    Spliced,
    SpliceError,
    hash_fd,
    inflate_indexed,
    splice,
    zlib_available,
)

__all__ = [
    "SPLICE_MIN",
    "PatchError",
    "Replacement",
    "patch_elf",
    "patch_elf_fd",
    "patch_macho",
    "patch_macho_bytes",
    "patch_wheel",
    "verify_edit",
    "verify_macho_edit",
]

#: Members at least this big (inflated) are spliced; smaller ones are simply recompressed.
SPLICE_MIN = 256 << 10

Replacement = bytes | Spliced


class PatchError(Findings):
    """A planned edit cannot be made, or the result is not what was planned: nothing is written."""


def verify_edit(edit: ElfEdit, old: ElfInfo, after: bytes | mmap.mmap) -> None:
    """Re-read the patched file and check it says what the plan wanted, and nothing else changed."""
    try:
        new = parse_elf(after, scan_strings=False)
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
    if (new.needed, new.soname, new.machine, new.version_needs) != (
        old.needed,
        old.soname,
        old.machine,
        old.version_needs,
    ):
        problems.append("NEEDED, SONAME, machine or version needs changed")
    if problems:
        raise PatchError(f"{edit.member}: the edit did not do what was planned: {'; '.join(problems)}")


def _plan(wheel: str, edit: ElfEdit, data: bytes | mmap.mmap) -> ElfPatch:
    try:
        return plan_patch(
            data,
            path=(edit.kind, edit.new_value) if edit.changes_path else None,
            interpreter=edit.new_interpreter,
        )
    except ElfEditError as e:  # a valid file that cannot take this edit
        raise PatchError(f"{edit.member}: cannot edit: {e}") from None
    except BinaryFormatError as e:  # malformed: bad input (exit 2), like the reader's own errors
        raise BadInput([Problem(wheel, edit.member, f"malformed ELF: {e}")]) from None


def patch_elf_fd(fd: int, edit: ElfEdit, display: str) -> ElfPatch:
    """Edit the ELF file open read-write at ``fd`` (holding the original bytes) as planned, in place, and
    check the result by re-reading it. ``display``: the file named in errors. The file is read through
    read-only maps, never copied into memory."""
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
        old = parse_elf(view, scan_strings=False)
        patch = _plan(display, edit, view)
    patch.apply_to_fd(fd)
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
        verify_edit(edit, old, view)
    return patch


def _inflated(
    archive: WheelArchive, info: zipfile.ZipInfo, member: str, spooled: SpooledMember | None
) -> bytes:
    """A member's bytes: from the scan's spool when it kept them, else inflated from the wheel."""
    if spooled is not None:
        return spooled.path.read_bytes()
    try:
        return b"".join(archive.iter_member(info, check_crc=True))
    except CorruptMember as e:
        raise PatchError(f"{member}: {e}") from None


def patch_elf(
    archive: WheelArchive,
    info: zipfile.ZipInfo,
    edit: ElfEdit,
    *,
    level: int = 6,
    spooled: SpooledMember | None = None,
) -> Replacement:
    """The checked, patched content of one ELF member: its new bytes (small members), or a spliced deflate
    stream that reuses the member's compressed bytes around the edit. ``spooled``: the member as the scan
    inflated it (with its deflate block index), then edited in place instead of inflated again."""
    member = edit.member
    small = info.file_size < SPLICE_MIN or info.compress_type != zipfile.ZIP_DEFLATED
    if small or not zlib_available() or (spooled is not None and spooled.boundaries is None):
        before = _inflated(archive, info, member, spooled)
        old = parse_elf(before, scan_strings=False)
        after = _plan(archive.display, edit, before).apply(before)
        verify_edit(edit, old, after)
        return after
    try:
        start = archive.data_offset(info)
    except CorruptMember as e:
        raise PatchError(f"{member}: {e}") from None
    fd = archive.fileno()

    def read_source(offset: int, n: int) -> bytes:
        return os.pread(fd, n, offset)

    with _member_file(archive, info, member, spooled) as (tfd, boundaries):
        patch = patch_elf_fd(tfd, edit, archive.display)
        new_crc, sha = hash_fd(tfd, patch.size)

        def read_new(offset: int, n: int) -> bytes:
            return os.pread(tfd, n, offset)

        try:
            pieces = splice(
                boundaries=boundaries,
                stream_offset=start,
                stream_length=info.compress_size,
                read_source=read_source,
                changed=patch.changed_ranges(),
                old_size=patch.source_size,
                new_size=patch.size,
                read_new=read_new,
                level=level,
            )
        except SpliceError as e:  # pragma: no cover - a bug, caught before anything is written
            raise PatchError(f"{member}: internal error: {e}") from None
        return Spliced(patch.size, new_crc, sha, pieces)


@contextmanager
def _member_file(
    archive: WheelArchive, info: zipfile.ZipInfo, member: str, spooled: SpooledMember | None
) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """An fd open read-write on the member's inflated bytes, and its deflate block starts: the spool's
    file when the scan kept it, else an unnamed temp file it is inflated into now (CRC-32 checked)."""
    if spooled is not None and spooled.boundaries is not None:
        with spooled.path.open("r+b") as f:
            yield f.fileno(), list(spooled.boundaries)
        return
    fd = archive.fileno()
    with tempfile.TemporaryFile(prefix="wheelfix-patch-") as tmp:
        tfd = tmp.fileno()

        def write(chunk: memoryview) -> None:
            while chunk:
                chunk = chunk[os.write(tfd, chunk) :]

        try:
            start = archive.data_offset(info)
            boundaries, crc, size = inflate_indexed(
                lambda o, n: os.pread(fd, n, o), start, info.compress_size, write
            )
        except (InflateError, CorruptMember) as e:
            raise PatchError(f"{member}: {e}") from None
        if crc != info.CRC or size != info.file_size:
            raise PatchError(f"{member}: CRC-32 or size does not match the central directory")
        yield tfd, boundaries


def verify_macho_edit(edit: MachOEdit, before: bytes, after: bytes) -> None:
    """Re-read an edited Mach-O file: per slice, the install names and LC_RPATHs the plan wanted, the
    same architectures, kinds of dylib commands and install id, and a signature that matches the bytes
    wherever the plan re-signs."""
    try:
        old, new = parse_macho(before), parse_macho(after)
    except BinaryFormatError as e:
        raise PatchError(f"{edit.member}: patched file does not parse: {e}") from None
    problems: list[str] = []
    if old.archs != new.archs:
        problems.append(f"architectures {old.archs} became {new.archs}")
    planned = {s.arch: s for s in edit.slices}
    for o, n in zip(old.slices, new.slices, strict=False):
        se = planned.get(o.arch)
        renames = dict(se.rename) if se else {}
        want_names = [renames.get(d.name, d.name) for d in o.dylibs]
        want_rpaths = [p for p in o.rpaths if not se or p not in se.delete_rpaths]
        want_rpaths += list(se.add_rpaths) if se else []
        if [d.name for d in n.dylibs] != want_names or [d.kind for d in n.dylibs] != [
            d.kind for d in o.dylibs
        ]:
            problems.append(f"{o.arch}: install names are {[d.name for d in n.dylibs]}, wanted {want_names}")
        if list(n.rpaths) != want_rpaths:
            problems.append(f"{o.arch}: LC_RPATHs are {list(n.rpaths)}, wanted {want_rpaths}")
        if (n.id_dylib and n.id_dylib.name) != (o.id_dylib and o.id_dylib.name):
            problems.append(f"{o.arch}: the install id changed")
        if se and se.resign and n.code_signature is None:
            problems.append(f"{o.arch}: not signed")
        if n.code_signature is not None and se is not None and se.resign:
            sl = after[n.offset : n.offset + n.size]
            bad = code_hash_mismatch(sl, n.code_signature.dataoff, n.code_signature.datasize)
            if bad:
                problems.append(f"{o.arch}: the code signature does not match: {bad}")
    if problems:
        raise PatchError(f"{edit.member}: the edit did not do what was planned: {'; '.join(problems)}")


def patch_macho(
    archive: WheelArchive, info: zipfile.ZipInfo, edit: MachOEdit, *, spooled: SpooledMember | None = None
) -> bytes:
    """The checked, edited (and re-signed) content of one Mach-O member (``spooled``: as the scan kept it)."""
    before = _inflated(archive, info, edit.member, spooled)
    return patch_macho_bytes(before, edit, archive.display)


def patch_macho_bytes(before: bytes, edit: MachOEdit, display: str) -> bytes:
    """The checked, edited (and re-signed) bytes of one Mach-O file; ``display`` names it in errors."""
    try:
        after = edit_macho(before, edit.edits(), name=edit.member)
    except MachOEditError as e:  # NoRoomError included: the planner should have caught it
        raise PatchError(f"{edit.member}: cannot edit: {e}") from None
    except BinaryFormatError as e:
        raise BadInput([Problem(display, edit.member, f"malformed Mach-O: {e}")]) from None
    verify_macho_edit(edit, before, after)
    return after


def patch_wheel(
    archive: WheelArchive,
    plan: WheelPlan,
    *,
    jobs: int = 2,
    level: int = 6,
    progress: Progress | None = None,
    spool: Spool | None = None,
) -> dict[str, Replacement]:
    """The patched, checked content of every member the plan edits (empty when it edits none), read from the
    open ``archive`` the plan was made from. Members are patched ``jobs`` at a time, largest first;
    ``progress`` is called (on this thread) after each. ``spool``: the binaries the scan of ``archive``
    kept; a member found there is not inflated again."""
    if not plan.changes:
        return {}
    if archive.identity != plan.wheel.scan.identity:
        raise BadInput([Problem(archive.display, None, "is not the wheel this plan was made for")])
    infos = {i.filename: i for i in archive.members}
    edits: list[ElfEdit | MachOEdit] = [*plan.elf_edits, *plan.macho_edits]
    edits.sort(key=lambda e: (-infos[e.member].file_size, e.member))

    def one(edit: ElfEdit | MachOEdit) -> Replacement:
        spooled = spool.take(edit.member) if spool is not None else None
        if isinstance(edit, MachOEdit):
            return patch_macho(archive, infos[edit.member], edit, spooled=spooled)
        return patch_elf(archive, infos[edit.member], edit, level=level, spooled=spooled)

    sizes = [infos[e.member].file_size for e in edits]
    done: dict[str, Replacement] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="wheelfix-patch") as pool:
        for n, (edit, replacement) in enumerate(zip(edits, pool.map(one, edits), strict=True), 1):
            done[edit.member] = replacement
            event = ProgressEvent(
                Phase.PATCH, archive.path.name, n, len(edits), "binaries", sum(sizes[:n]), sum(sizes)
            )
            report(progress, event)
    return {m: done[m] for m in [*(e.member for e in plan.elf_edits), *(e.member for e in plan.macho_edits)]}

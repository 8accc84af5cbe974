"""Stream every member of an open wheel once: verify it against RECORD, detect binaries by magic, parse them.

Members are inflated straight from the zip into memory (never to disk). Non-binary members are hashed in
chunks and dropped; a binary is inflated into one buffer so its reader can follow offsets, under a byte
budget that keeps the buffers held at once within the largest member plus 64 MiB. Members are processed by a
thread pool: zlib and hashlib release the GIL, so two cores inflate two members at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wheelfix.analysis.policy import manylinux_policies, musllinux_policies
from wheelfix.binfmt import MAGIC_PREFIX_LEN, BinaryFormat, BinaryFormatError, detect_format
from wheelfix.binfmt.elf.extras import EMPTY as NO_EXTRAS
from wheelfix.binfmt.elf.extras import ElfExtras, read_extras
from wheelfix.binfmt.elf.reader import ElfInfo, parse_elf
from wheelfix.binfmt.macho.reader import MachOInfo, parse_macho
from wheelfix.errors import BadInput, Problem
from wheelfix.progress import Phase, Progress, ProgressEvent, report
from wheelfix.wheel.archive import (
    DEFAULT_LIMITS,
    CorruptMember,
    InstallLocation,
    InstallTree,
    Limits,
    WheelArchive,
    WheelIdentity,
    WheelMeta,
    virtual_tree,
)
from wheelfix.wheel.manifest import MANIFEST_NAME, ManifestError, RepairManifest

__all__ = [
    "ElfMember",
    "MachOMember",
    "UnsupportedBinary",
    "WheelScan",
    "default_jobs",
    "scan_archive",
    "scan_wheel",
]


@dataclass(frozen=True, slots=True)
class ElfMember:
    """An ELF member, parsed."""

    member: str
    location: InstallLocation
    size: int
    elf: ElfInfo
    # portability facts beyond dynamic linking (ISA level, imports of blacklisted symbols), read leniently
    extras: ElfExtras = NO_EXTRAS


@dataclass(frozen=True, slots=True)
class MachOMember:
    """A thin or fat Mach-O member, every architecture slice parsed."""

    member: str
    location: InstallLocation
    size: int
    macho: MachOInfo

    @property
    def format(self) -> BinaryFormat:
        return BinaryFormat.MACHO if self.macho.fat is None else BinaryFormat.MACHO_FAT


@dataclass(frozen=True, slots=True)
class UnsupportedBinary:
    """A binary of a format wheelfix detects but does not analyse (PE)."""

    member: str
    format: BinaryFormat


@dataclass(frozen=True, slots=True)
class WheelScan:
    path: str
    meta: WheelMeta
    file_size: int
    member_count: int
    uncompressed_size: int
    elf: tuple[ElfMember, ...]  # sorted by member name
    macho: tuple[MachOMember, ...]  # sorted by member name
    unsupported: tuple[UnsupportedBinary, ...]
    identity: WheelIdentity  # of the file scanned: a later open must find the same
    warnings: tuple[Problem, ...] = ()  # deviations installers accept (refused with Limits.strict)
    manifest: RepairManifest | None = None  # what an earlier wheelfix repair did (dist-info/wheelfix.json)
    # where the members are: None for a wheel (the virtual tree), the real directories for a distribution
    # installed in an environment (wheelfix.env), whose RECORD paths are then the members
    tree: InstallTree | None = None

    def install_tree(self, pyver: str) -> InstallTree:
        """The tree the resolver lays this scan's members out in."""
        return self.tree if self.tree is not None else virtual_tree(pyver, self.meta.name)


def default_jobs() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


# the imported symbols the policy checks look at: every policy's blacklist, and auditwheel's PyFPE names
WANTED_IMPORTS = frozenset().union(
    *(names for p in (*manylinux_policies(), *musllinux_policies()) for names in p.blacklist.values())
) | frozenset({"PyFPE_jbuf", "PyFPE_dummy", "PyFPE_counter"})

_BIG = 2 << 20
_BUDGET_MARGIN = 64 << 20


class _ByteBudget:
    """Blocks an acquirer while others hold buffers and its buffer would push the total over the limit.
    A buffer larger than the limit is admitted alone, so progress is always possible."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        with self._cond:
            while self._used and self._used + n > self._limit:
                self._cond.wait()
            self._used += n
        try:
            yield
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()


@contextmanager
def _member_buffer(size: int) -> Iterator[mmap.mmap]:
    """An anonymous mapping for one inflated binary. Faulting in the fresh 4 KiB pages of a big buffer one
    at a time costs more than inflating into it (2.0 s for 434 MB here), so large buffers are populated by
    the kernel up front (MAP_POPULATE) and asked for huge pages."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if size >= _BIG:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    buf = mmap.mmap(-1, max(size, 1), flags=flags)
    if size >= _BIG and hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)
    try:
        yield buf
    finally:
        buf.close()


def _scan_member(
    archive: WheelArchive, info: zipfile.ZipInfo, budget: _ByteBudget
) -> tuple[list[Problem], ElfMember | MachOMember | UnsupportedBinary | None]:
    file, name = archive.display, info.filename
    entry = archive.record.get(name)
    hasher = hashlib.new(entry.algorithm) if entry is not None and entry.algorithm else None
    result: ElfMember | MachOMember | UnsupportedBinary | None = None
    problems: list[Problem] = []
    try:
        chunks = archive.iter_member(info, check_crc=hasher is None)
        # The first inflated chunk can be a few bytes long (a deflate stream may start with tiny or empty
        # blocks), so gather enough of them to classify the member by its magic.
        parts: list[bytes] = []
        got = 0
        for chunk in chunks:
            parts.append(chunk)
            got += len(chunk)
            if got >= MAGIC_PREFIX_LEN:
                break
        head = parts[0] if len(parts) == 1 else b"".join(parts)
        fmt = detect_format(head[:MAGIC_PREFIX_LEN])
        if fmt in (BinaryFormat.ELF, BinaryFormat.MACHO, BinaryFormat.MACHO_FAT):
            with budget.hold(info.file_size), _member_buffer(info.file_size) as buf:
                pos = 0
                for chunk in itertools.chain((head,), chunks):
                    buf[pos : pos + len(chunk)] = chunk
                    pos += len(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                if fmt is BinaryFormat.ELF:
                    try:
                        elf = parse_elf(buf, strict=archive.limits.strict)
                    except BinaryFormatError as e:
                        problems.append(Problem(file, name, f"malformed ELF: {e}"))
                    else:
                        extras = read_extras(buf, wanted=WANTED_IMPORTS)
                        result = ElfMember(name, archive.install_location(name), info.file_size, elf, extras)
                else:
                    try:
                        macho = parse_macho(buf)
                    except BinaryFormatError as e:
                        problems.append(Problem(file, name, f"malformed Mach-O: {e}"))
                    else:
                        result = MachOMember(name, archive.install_location(name), info.file_size, macho)
        else:
            if fmt is not None:
                result = UnsupportedBinary(name, fmt)
            for chunk in itertools.chain((head,), chunks):
                if hasher is not None:
                    hasher.update(chunk)
    except (CorruptMember, OSError) as e:
        return [Problem(file, name, f"corrupt member data: {e}")], None
    if hasher is not None and entry is not None and hasher.digest() != entry.digest:
        problems.append(Problem(file, name, f"{entry.algorithm} does not match RECORD"))
    return problems, result


def scan_wheel(path: Path, *, limits: Limits = DEFAULT_LIMITS, jobs: int | None = None) -> WheelScan:
    """Open, validate and scan one wheel (for a single look; the pipeline scans an archive it keeps open)."""
    with WheelArchive.open(path, limits) as archive:
        return scan_archive(archive, jobs=jobs)


_Scanned = tuple[list[Problem], ElfMember | MachOMember | UnsupportedBinary | None]


def _scan_members(
    archive: WheelArchive, members: list[zipfile.ZipInfo], workers: int, progress: Progress | None
) -> list[_Scanned]:
    """Every member's scan result, in ``members`` order; ``progress`` hears of each member as it finishes."""
    largest = members[0].file_size if members else 0
    # Room for the largest member plus a margin, so one huge binary does not stall the other workers
    # (peak RSS target: largest member + 200 MB).
    budget = _ByteBudget(largest + _BUDGET_MARGIN)
    total_bytes = sum(i.file_size for i in members)
    done_bytes = 0

    def tick(done: int, info: zipfile.ZipInfo) -> None:
        nonlocal done_bytes
        done_bytes += info.file_size
        report(
            progress,
            ProgressEvent(
                Phase.SCAN, archive.path.name, done, len(members), "members", done_bytes, total_bytes
            ),
        )

    if workers == 1 or len(members) < 2:
        results: list[_Scanned] = []
        for n, info in enumerate(members, 1):
            results.append(_scan_member(archive, info, budget))
            tick(n, info)
        return results
    slots: list[_Scanned | None] = [None] * len(members)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelfix-scan") as pool:
        futures = {pool.submit(_scan_member, archive, info, budget): k for k, info in enumerate(members)}
        for n, future in enumerate(as_completed(futures), 1):  # on this thread: progress is called here
            k = futures[future]
            slots[k] = future.result()
            tick(n, members[k])
    return [s for s in slots if s is not None]


def scan_archive(
    archive: WheelArchive, *, jobs: int | None = None, progress: Progress | None = None
) -> WheelScan:
    """Scan every member of an open wheel. Raises BadInput listing every problem found. ``progress`` is
    called (on this thread) after each member."""
    members = sorted(archive.members, key=lambda i: (-i.file_size, i.filename))
    results = _scan_members(archive, members, jobs or default_jobs(), progress)
    problems: list[Problem] = []
    found: list[ElfMember | MachOMember | UnsupportedBinary] = []
    for member_problems, binary in results:
        problems.extend(member_problems)
        if binary is not None:
            found.append(binary)
    manifest, warnings = None, [*archive.warnings, *_elf_warnings(archive.display, found)]
    if not problems:
        manifest = _read_manifest(archive, problems if archive.limits.strict else warnings)
    if problems:
        raise BadInput(sorted(problems, key=lambda p: (p.member or "", p.message)))
    found.sort(key=lambda b: b.member)
    return WheelScan(
        path=str(archive.path),
        meta=archive.meta,
        file_size=archive.identity.size,
        member_count=len(archive.members),
        uncompressed_size=sum(i.file_size for i in archive.members),
        elf=tuple(b for b in found if isinstance(b, ElfMember)),
        macho=tuple(b for b in found if isinstance(b, MachOMember)),
        unsupported=tuple(b for b in found if isinstance(b, UnsupportedBinary)),
        identity=archive.identity,
        warnings=tuple(warnings),
        manifest=manifest,
    )


def _elf_warnings(file: str, found: list[ElfMember | MachOMember | UnsupportedBinary]) -> list[Problem]:
    """What the ELF reader skipped (notes ld.so does not read), one warning per kind: the same message but
    for its offsets, with the members it happened in."""
    kinds: dict[str, list[str]] = {}
    for b in found:
        if isinstance(b, ElfMember):
            for w in b.elf.warnings:
                kinds.setdefault(re.sub(r"0x[0-9a-f]+", "…", w), []).append(b.member)
    out: list[Problem] = []
    for kind, members in kinds.items():
        unique = sorted(set(members))
        if len(unique) == 1:
            out.append(Problem(file, unique[0], f"{kind} (ld.so does not read notes either)"))
            continue
        shown = ", ".join(unique[:3]) + (f", +{len(unique) - 3} more" if len(unique) > 3 else "")
        out.append(
            Problem(
                file,
                None,
                f"{len(unique)} ELF files ({shown}): {kind} (ld.so does not read notes either)",
            )
        )
    return out


def _read_manifest(archive: WheelArchive, complaints: list[Problem]) -> RepairManifest | None:
    """The repair manifest, if the wheel has one; one that cannot be read is reported and ignored (the
    binaries are then judged without it)."""
    name = f"{archive.meta.dist_info}/{MANIFEST_NAME}"
    info = next((i for i in archive.members if i.filename == name), None)
    if info is None:
        return None
    if info.file_size > 64 << 20:
        complaints.append(Problem(archive.display, name, "repair manifest over 64 MiB: ignored"))
        return None
    try:
        return RepairManifest.from_json(b"".join(archive.iter_member(info, check_crc=True)))
    except (ManifestError, CorruptMember) as e:
        complaints.append(Problem(archive.display, name, f"repair manifest ignored: {e}"))
        return None

"""Stream every member of an open wheel once: verify it against RECORD, detect binaries by magic, parse them.

Every member is inflated exactly once per command (the fastest installed inflater:
:mod:`wheelfix.wheel.codecs`). Non-binary members are hashed in chunks and dropped. A small binary is
inflated into memory; one of :data:`SPOOL_MIN` bytes or more into an unlinked temp file, read by the parser
through a read-only map whose pages are dropped as the reader is done with them — so memory does not grow
with the largest member (torch's 414 MiB, tensorflow's 752 MiB library). For a repair, a :class:`Spool`
keeps every binary inflated (big ones with their deflate block index) for the patcher, which then neither
inflates nor re-hashes them again. Members are processed by a thread pool: the inflaters and hashlib
release the GIL, so two cores inflate two members at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wheelfix.analysis.policy import manylinux_policies, musllinux_policies
from wheelfix.binfmt import MAGIC_PREFIX_LEN, BinaryFormat, BinaryFormatError, detect_format, page_out
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
from wheelfix.wheel.splice import IndexedInflate, InflateError, zlib_available

__all__ = [
    "ElfMember",
    "MachOMember",
    "Spool",
    "SpooledMember",
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

#: Binaries at least this big (inflated) are inflated into a temp file and read through a map whose pages
#: are dropped as the reader is done with them; smaller ones are inflated into memory.
SPOOL_MIN = 4 << 20
#: Members at least this big are inflated with the block index (when a spool keeps them for a repair).
INDEX_MIN = 256 << 10


@dataclass(frozen=True, slots=True)
class SpooledMember:
    """A binary the scan inflated and kept for the patcher, so a repair inflates no member twice."""

    path: Path  # holds the member's inflated bytes; the patcher may edit it in place
    size: int
    crc: int
    # the deflate block starts (bit offset in the member's stream, output offset), for splicing; None when
    # the member was not inflated with the index (stored, small, or no zlib library)
    boundaries: tuple[tuple[int, int], ...] | None


class Spool:
    """Binaries a repair will patch, inflated once by the scan, kept in a private temp directory (``dir``:
    where; default the system's temp dir) until :meth:`close`. One spool per wheel."""

    def __init__(self, dir: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="wheelfix-spool-", dir=dir))
        self._lock = threading.Lock()
        self._count = itertools.count()
        self._members: dict[str, SpooledMember] = {}

    def new_file(self) -> Path:
        with self._lock:
            return self.path / str(next(self._count))

    def add(self, member: str, spooled: SpooledMember) -> None:
        with self._lock:
            self._members[member] = spooled

    def take(self, member: str) -> SpooledMember | None:
        """The spooled member, handed over once: the taker may edit its file in place."""
        with self._lock:
            return self._members.pop(member, None)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Result = ElfMember | MachOMember | UnsupportedBinary | None
_Scanned = tuple[list[Problem], _Result]


def _parse(
    archive: WheelArchive, info: zipfile.ZipInfo, fmt: BinaryFormat, data: bytes | mmap.mmap
) -> tuple[list[Problem], _Result]:
    file, name = archive.display, info.filename
    paging = page_out(data) if isinstance(data, mmap.mmap) else None
    if fmt is BinaryFormat.ELF:
        try:
            elf = parse_elf(data, strict=archive.limits.strict, page_out=paging)
        except BinaryFormatError as e:
            return [Problem(file, name, f"malformed ELF: {e}")], None
        extras = read_extras(data, wanted=WANTED_IMPORTS)
        return [], ElfMember(name, archive.install_location(name), info.file_size, elf, extras)
    try:
        macho = parse_macho(data)
    except BinaryFormatError as e:
        return [Problem(file, name, f"malformed Mach-O: {e}")], None
    return [], MachOMember(name, archive.install_location(name), info.file_size, macho)


def _write_all(fd: int, chunk: bytes | memoryview) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


#: Members at least this big are hashed (and written) on a thread of their own while they are inflated: a big
#: wheel's largest member is its scan's critical path.
PIPELINE_MIN = 32 << 20


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def _consume(
    chunks: Iterator[bytes | memoryview], fd: int | None, hasher: _Hasher | None, pipelined: bool
) -> None:
    """Write each chunk to ``fd`` and hash it, in order: here, or (``pipelined``) on a second thread that
    works while the next chunk is inflated (hashlib and os.write release the GIL)."""
    if not pipelined or (fd is None and hasher is None):
        for chunk in chunks:
            if fd is not None:
                _write_all(fd, chunk)
            if hasher is not None:
                hasher.update(chunk)
        return
    todo: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def work() -> None:
        while (chunk := todo.get()) is not None:
            if failed:
                continue  # drain, so the producer never blocks
            try:
                if fd is not None:
                    _write_all(fd, chunk)
                if hasher is not None:
                    hasher.update(chunk)
            except BaseException as e:  # re-raised on the caller's thread
                failed.append(e)

    worker = threading.Thread(target=work, name="wheelfix-hash", daemon=True)
    worker.start()
    try:
        for chunk in chunks:  # a view of a reused buffer is copied: the inflater reuses it
            todo.put(chunk if isinstance(chunk, bytes) else bytes(chunk))
            if failed:
                break
    finally:
        todo.put(None)
        worker.join()
    if failed:
        raise failed[0]


class _Member:
    """One member's inflated bytes as they stream by: hashed, and (once it is known to be a binary) kept —
    in memory, in an unlinked temp file, or in the spool."""

    def __init__(self, archive: WheelArchive, info: zipfile.ZipInfo, spool: Spool | None) -> None:
        self.archive, self.info, self.spool = archive, info, spool
        entry = archive.record.get(info.filename)
        self.entry = entry
        self.hasher = hashlib.new(entry.algorithm) if entry is not None and entry.algorithm else None
        self.indexed: IndexedInflate | None = None
        if (
            spool is not None
            and info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size >= INDEX_MIN
            and zlib_available()
        ):
            fd = archive.fileno()
            self.indexed = IndexedInflate(
                lambda o, n: os.pread(fd, n, o),
                archive.data_offset(info),
                info.compress_size,
                limit=info.file_size,
            )
            self.chunks: Iterator[bytes | memoryview] = iter(self.indexed)
        else:
            self.chunks = archive.iter_member(info, check_crc=self.hasher is None)

    def head(self) -> bytes:
        """The first bytes, enough to classify the member by its magic (a deflate stream may start with
        tiny or empty blocks), hashed."""
        parts: list[bytes] = []
        got = 0
        for chunk in self.chunks:
            part = bytes(chunk)
            parts.append(part)
            got += len(part)
            if self.hasher is not None:
                self.hasher.update(part)
            if got >= MAGIC_PREFIX_LEN:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def drain(self) -> None:
        _consume(self.chunks, None, self.hasher, self.info.file_size >= PIPELINE_MIN)
        self._check_indexed()

    def into_memory(self, head: bytes) -> bytes:
        parts = [head]
        for chunk in self.chunks:
            parts.append(bytes(chunk))
            if self.hasher is not None:
                self.hasher.update(chunk)
        self._check_indexed()
        return b"".join(parts)

    def into_file(self, head: bytes, fd: int) -> None:
        _write_all(fd, head)
        _consume(self.chunks, fd, self.hasher, self.info.file_size >= PIPELINE_MIN)
        self._check_indexed()

    def _check_indexed(self) -> None:
        job = self.indexed
        if job is not None and (job.size != self.info.file_size or job.crc != self.info.CRC):
            raise CorruptMember(f"inflates to {job.size} bytes with a CRC-32 that does not match")

    def spooled(self, path: Path) -> SpooledMember:
        job = self.indexed
        if job is not None:
            return SpooledMember(path, job.size, job.crc, tuple(job.boundaries))
        return SpooledMember(path, self.info.file_size, self.info.CRC, None)

    def hash_problem(self) -> Problem | None:
        if self.hasher is not None and self.entry is not None and self.hasher.digest() != self.entry.digest:
            return Problem(
                self.archive.display, self.info.filename, f"{self.entry.algorithm} does not match RECORD"
            )
        return None


def _parse_from_file(m: _Member, fmt: BinaryFormat, head: bytes) -> tuple[list[Problem], _Result]:
    """Inflate a binary into a file (the spool's, or an unlinked temp file) and parse it through a map."""
    info, spool = m.info, m.spool
    path = spool.new_file() if spool is not None else None
    with path.open("w+b") if path is not None else tempfile.TemporaryFile(prefix="wheelfix-scan-") as f:
        m.into_file(head, f.fileno())
        if info.file_size == 0:
            return _parse(m.archive, info, fmt, b"")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            problems, result = _parse(m.archive, info, fmt, view)
    if spool is not None and path is not None and result is not None:
        spool.add(info.filename, m.spooled(path))
    return problems, result


def _scan_member(
    archive: WheelArchive, info: zipfile.ZipInfo, spool: Spool | None = None
) -> tuple[list[Problem], _Result]:
    """Inflate one member once: check it against RECORD, classify it, parse it if it is a binary (and keep
    it in ``spool`` for the patcher)."""
    file, name = archive.display, info.filename
    result: _Result = None
    problems: list[Problem] = []
    try:
        m = _Member(archive, info, spool)
        head = m.head()
        fmt = detect_format(head[:MAGIC_PREFIX_LEN])
        if fmt in (BinaryFormat.ELF, BinaryFormat.MACHO, BinaryFormat.MACHO_FAT):
            if spool is None and info.file_size < SPOOL_MIN:
                problems, result = _parse(archive, info, fmt, m.into_memory(head))
            else:
                problems, result = _parse_from_file(m, fmt, head)
        else:
            if fmt is not None:
                result = UnsupportedBinary(name, fmt)
            m.drain()
    except (CorruptMember, InflateError, OSError) as e:
        return [Problem(file, name, f"corrupt member data: {e}")], None
    bad_hash = m.hash_problem()
    if bad_hash is not None:
        problems.append(bad_hash)
    return problems, result


def scan_wheel(path: Path, *, limits: Limits = DEFAULT_LIMITS, jobs: int | None = None) -> WheelScan:
    """Open, validate and scan one wheel (for a single look; the pipeline scans an archive it keeps open)."""
    with WheelArchive.open(path, limits) as archive:
        return scan_archive(archive, jobs=jobs)


#: Members smaller than this are scanned in batches: one read of the span they lie in, one task, each
#: member inflated in one call (a big wheel's thousands of small files cost per member, not per byte).
BATCH_MEMBER_MAX = INDEX_MIN
_BATCH_SPAN = 4 << 20  # compressed bytes per batch


def _scan_small(
    archive: WheelArchive, info: zipfile.ZipInfo, data: bytes | CorruptMember, spool: Spool | None
) -> _Scanned:
    """One small member, already inflated (or the error its inflate raised): checked and parsed."""
    file, name = archive.display, info.filename
    if isinstance(data, CorruptMember):
        return [Problem(file, name, f"corrupt member data: {data}")], None
    problems: list[Problem] = []
    entry = archive.record.get(name)
    if entry is not None and entry.algorithm and hashlib.new(entry.algorithm, data).digest() != entry.digest:
        problems.append(Problem(file, name, f"{entry.algorithm} does not match RECORD"))
    fmt = detect_format(data[:MAGIC_PREFIX_LEN])
    if fmt not in (BinaryFormat.ELF, BinaryFormat.MACHO, BinaryFormat.MACHO_FAT):
        return problems, (UnsupportedBinary(name, fmt) if fmt is not None else None)
    parse_problems, result = _parse(archive, info, fmt, data)
    if spool is not None and result is not None:
        path = spool.new_file()
        path.write_bytes(data)
        spool.add(name, SpooledMember(path, len(data), info.CRC, None))
    return problems + parse_problems, result


def _scan_batch(archive: WheelArchive, batch: list[zipfile.ZipInfo], spool: Spool | None) -> list[_Scanned]:
    hashed = archive.record

    def check_crc(info: zipfile.ZipInfo) -> bool:
        entry = hashed.get(info.filename)
        return entry is None or not entry.algorithm

    datas = archive.inflate_small(batch, check_crc)
    return [_scan_small(archive, info, data, spool) for info, data in zip(batch, datas, strict=True)]


def _alone(info: zipfile.ZipInfo) -> bool:
    """Whether a member is scanned as a task of its own (streamed), not in a batch."""
    return info.file_size >= BATCH_MEMBER_MAX or info.compress_size >= BATCH_MEMBER_MAX


def _tasks(members: list[zipfile.ZipInfo]) -> list[list[zipfile.ZipInfo]]:
    """The scan's units of work, biggest first: each big member alone, then the small ones in batches of
    neighbours in the file."""
    big = [[i] for i in members if _alone(i)]
    small = sorted((i for i in members if not _alone(i)), key=lambda i: i.header_offset)
    batches: list[list[zipfile.ZipInfo]] = []
    lo = 0
    for info in small:  # a batch is read in one piece: its span of the file (big members between included)
        end = info.header_offset + info.compress_size
        if not batches or end - lo > _BATCH_SPAN or len(batches[-1]) >= 4096:
            batches.append([])
            lo = info.header_offset
        batches[-1].append(info)
    return big + batches


#: How much nicer than the critical member's thread the scan's other threads are, when one member dominates
CRITICAL_NICE = 4
_yielding = threading.local()


def _yield_to_critical() -> None:
    """Make this (pool) thread nicer, once: the thread inflating the wheel's largest member then gets a core
    to itself. Linux keeps a nice value per thread; a thread may always raise its own. The pool's threads
    end with the scan."""
    if getattr(_yielding, "done", False) or not sys.platform.startswith("linux"):
        return  # elsewhere a thread id is no process id: setpriority could reach another process
    _yielding.done = True
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + CRITICAL_NICE)
    except OSError:  # pragma: no cover - not allowed here: only slower
        pass


def _run_task(
    archive: WheelArchive, task: list[zipfile.ZipInfo], spool: Spool | None, yield_cpu: bool = False
) -> list[_Scanned]:
    if yield_cpu:
        _yield_to_critical()
    if len(task) == 1 and _alone(task[0]):
        return [_scan_member(archive, task[0], spool)]
    return _scan_batch(archive, task, spool)


def _scan_members(
    archive: WheelArchive,
    members: list[zipfile.ZipInfo],
    workers: int,
    progress: Progress | None,
    spool: Spool | None,
) -> list[_Scanned]:
    """Every member's scan result (in no particular order); ``progress`` hears of members as they finish."""
    total_bytes = sum(i.file_size for i in members)
    done, done_bytes = 0, 0
    tasks = _tasks(members)

    def tick(task: list[zipfile.ZipInfo]) -> None:
        nonlocal done, done_bytes
        if progress is None:
            return
        for info in task:  # one event per member, even when a batch of them finished together
            done += 1
            done_bytes += info.file_size
            event = ProgressEvent(
                Phase.SCAN, archive.path.name, done, len(members), "members", done_bytes, total_bytes
            )
            report(progress, event)

    results: list[_Scanned] = []
    if workers == 1 or len(tasks) < 2:
        for task in tasks:
            results.extend(_run_task(archive, task, spool))
            tick(task)
        return results
    critical = tasks[0] if len(tasks[0]) == 1 and tasks[0][0].file_size >= PIPELINE_MIN else None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelfix-scan") as pool:
        futures = {
            pool.submit(_run_task, archive, task, spool, task is not critical and critical is not None): task
            for task in tasks
        }
        for future in as_completed(futures):  # on this thread: progress is called here
            results.extend(future.result())
            tick(futures[future])
    return results


def scan_archive(
    archive: WheelArchive,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
    spool: Spool | None = None,
) -> WheelScan:
    """Scan every member of an open wheel. Raises BadInput listing every problem found. ``progress`` is
    called (on this thread) after each member. With a ``spool``, every binary is kept there, inflated, for
    the patcher (and big members are inflated with their deflate block index, for splicing)."""
    members = sorted(archive.members, key=lambda i: (-i.file_size, i.filename))
    results = _scan_members(archive, members, jobs or default_jobs(), progress, spool)
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

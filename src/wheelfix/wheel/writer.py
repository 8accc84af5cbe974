"""Write a copy of a wheel with some members replaced, without touching the others.

``write_wheel(source, dest, {member: new_bytes})`` is the output half of ``wheelfix repair``. Design:

* **Unchanged members are copied as compressed bytes, never inflated.** The central directory of ``source``
  is read with :mod:`zipfile` (which decodes ZIP64 for us); the local header at each ``header_offset`` is
  read with ``os.pread`` (checked: signature, same name, data inside the file) to find where the compressed
  data starts, and that data is streamed to the output in 1 MiB ``pread``/``pwrite`` chunks. A fresh local
  header goes in front of it with the central directory's CRC-32, sizes, method, DOS date/time and flag
  bits 11 (UTF-8 name) and 1-2 (deflate options). Bit 3 is never set: the sizes are in the local header,
  there is no data descriptor. Extra fields (``UT`` timestamps, ``ux`` owners, ...) are kept, local and
  central apart; only ZIP64 records are dropped, and re-added where this archive needs them. The archive
  comment, member comments and attributes are kept; bytes outside members (a prefix, gaps) are not.
* **Replaced members are recompressed** with raw deflate (``zlib.compressobj(level, DEFLATED, -15)``) on a
  thread pool, in independent 1 MiB blocks that concatenate into one deflate stream, as pigz does: each
  block's compressor is primed with the 32 KiB before it (``zdict``), every block but the last ends with a
  sync flush. So one big member (the usual case: ``libtorch_cpu.so``) uses every core, not one; a member
  of one block is exactly what a single ``compressobj`` gives. The pool works at most ``2 * jobs`` blocks
  ahead of the writer, which writes each block as it comes and then fills in the local header (its size is
  fixed beforehand, ZIP64 if the worst-case compressed size needs it): compressed data is never held whole,
  and unchanged members are copied while the pool compresses. CRC-32 and sha256 of each replacement run on
  the same pool (zlib and hashlib release the GIL). A replaced member keeps its name, date/time,
  attributes, extra fields and comment, and becomes ``ZIP_DEFLATED``.
* **Spliced members** (:class:`wheelfix.wheel.splice.Spliced`, made by the patcher) arrive already
  compressed: fresh deflate bytes plus byte ranges of ``source`` itself, streamed in order; their CRC-32,
  sha256 and size come with them.
* **RECORD is edited line by line.** It is split into lines keeping their endings; each line is parsed on
  its own with :mod:`csv`; only the rows of replaced members are rewritten (``sha256=<urlsafe b64, no
  padding>`` and the new size, serialised by ``csv.writer`` with that line's own terminator). Every other
  line stays byte-identical. RECORD is then recompressed like a replaced member (it is copied raw when
  nothing is replaced). Replacing a name that is not a file member, RECORD or WHEEL, or a member RECORD
  does not list exactly once, is a ``ValueError`` raised before any output exists.
* **Byte-reproducible.** Members are written in the source's central-directory order; no field comes from
  the clock or the host (create_system/version and all attributes are the source's; fixed values in the
  ZIP64 end records); the result does not depend on ``jobs``, the order of ``replacements`` or thread
  timing, only on the block size, which is part of the format. Deflate output is zlib's: the same zlib
  (``zlib.ZLIB_RUNTIME_VERSION``) gives the same bytes; another implementation (zlib-ng, ...) may not.
* **Plain zip unless ZIP64 is needed.** A ZIP64 extra field is written only for a member whose size or
  offset reaches :data:`ZIP64_LIMIT` (the local header then carries both sizes, APPNOTE 4.5.3), and the
  ZIP64 end record and locator only when the entry count (:data:`ZIP64_COUNT_LIMIT`), the central
  directory's size or its offset need them.
* **Atomic.** Output goes to ``tempfile.mkstemp`` in ``dest``'s directory, is fsynced, gets ``dest``'s
  mode (``0666 & ~umask`` for a new file, not mkstemp's 0600) and is renamed over ``dest``; any exception
  (``KeyboardInterrupt`` included) drops the queued work and removes the temp file, so ``dest`` is the old
  file, absent, or the complete new wheel. ``source`` is only opened read-only; a ``dest`` that is the
  same file (same path, symlink or hard link) is refused.
* **Memory:** the replacements the caller passes, ``2 * jobs`` compressed blocks, the central directory
  (about 100 bytes a member) and one 1 MiB copy buffer; never a whole unchanged member.

Measured on this project's machine (2 cores, ext4, Python 3.11.7, zlib 1.2.13) with the torch 2.13.0 CPU
wheel (183 MiB, 12248 members), warm page cache, a fresh process per run, median of 3. "Replace" gives
``torch/lib/libtorch_cpu.so`` (434 MB, the largest member) its own bytes at level 6; RSS is the peak while
the call runs (``VmHWM`` reset just before), the replacement already in memory (438 MiB current RSS):

=====================================================  =======  ================
replace, ``write_wheel`` (jobs=2)                       6.9 s   459 MiB (+21)
replace, ``write_wheel`` (jobs=1)                      13.4 s
no replacement, ``write_wheel`` (copy + RECORD)         0.44 s   37 MiB
``zipfile`` re-writing every member at level 6         22.5 s    33 MiB
=====================================================  =======  ================

The time is deflating the one 434 MB member (about 32 MB/s per core at level 6); copying the other 12247
members takes under half a second. Blocks cost 11 KB on 114 MB of compressed output (0.01 %). The
output passes ``unzip -t`` and ``wheelfix inspect``. ``zipfile`` needs little memory because it streams,
but inflates and deflates all 1.1 GB of members.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import struct
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from wheelfix.wheel.archive import WheelArchive
from wheelfix.wheel.atomic import atomic_fd, copy_range
from wheelfix.wheel.deflate import BLOCK, block_starts, deflate_block, deflate_bound
from wheelfix.wheel.splice import Spliced
from wheelfix.wheel.zipformat import (
    FLAG_DEFLATE_OPTIONS,
    FLAG_ENCRYPTED,
    FLAG_MASKED_HEADERS,
    FLAG_STRONG_ENCRYPTION,
    FLAG_UTF8,
    LOCAL_HEADER,
    LOCAL_SIG,
    dist_info_dirs,
    read_local_header,
)

Replacement = bytes | Spliced

__all__ = ["ZIP64_COUNT_LIMIT", "ZIP64_LIMIT", "write_wheel"]

#: A size or offset at or above this needs ZIP64 (0xFFFFFFFF is the "see ZIP64 extra" marker).
ZIP64_LIMIT = 0xFFFFFFFF
#: An entry count at or above this needs the ZIP64 end of central directory record.
ZIP64_COUNT_LIMIT = 0xFFFF

_COPY_CHUNK = 1 << 20  # unchanged members are streamed in pieces of this size
_KERNEL_COPY_MIN = 256 << 10  # unchanged members at least this big are copied by the kernel
_BLOCK = BLOCK  # replaced members are deflated in independent blocks of this size (part of the format!)

_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_EOCD64_SIG = 0x06064B50
_EOCD64_LOCATOR_SIG = 0x07064B50
_CENTRAL = struct.Struct("<IBBHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_EOCD64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_ZIP64_EXTRA_ID = 0x0001
_ZIP64_VERSION = 45
_DEFLATE_VERSION = 20


@dataclass(frozen=True, slots=True)
class _Member:
    """Everything the local and central headers of one output member say, except its offset."""

    name: bytes
    version_needed: int  # low byte: version; high byte: the source's "reserved" byte
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc: int
    compress_size: int
    file_size: int
    local_extra: bytes  # without ZIP64 records
    central_extra: bytes  # without ZIP64 records
    create_version: int
    create_system: int
    internal_attr: int
    external_attr: int
    comment: bytes


@dataclass(frozen=True, slots=True)
class _SourceMember:
    info: zipfile.ZipInfo
    member: _Member
    data_offset: int  # where the compressed data starts in the source file


@dataclass(frozen=True, slots=True)
class _Digest:
    crc: int
    sha256: bytes


# --- zip structures ---------------------------------------------------------------------------------


def _strip_zip64(extra: bytes) -> bytes:
    """``extra`` without its ZIP64 records. Bytes after the last complete record are kept as they are."""
    out = bytearray()
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        end = pos + 4 + size
        if end > len(extra):
            break
        if tag != _ZIP64_EXTRA_ID:
            out += extra[pos:end]
        pos = end
    out += extra[pos:]
    return bytes(out)


def _zip64_extra(values: list[int]) -> bytes:
    return struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA_ID, 8 * len(values), *values) if values else b""


def _dos_date_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


def _local_zip64(m: _Member) -> bool:
    return m.file_size >= ZIP64_LIMIT or m.compress_size >= ZIP64_LIMIT


def _local_header(m: _Member, zip64: bool) -> bytes:
    """The local header; with ZIP64 both sizes go to the extra field (APPNOTE 4.5.3)."""
    if zip64:
        extra = _zip64_extra([m.file_size, m.compress_size]) + m.local_extra
        sizes = (0xFFFFFFFF, 0xFFFFFFFF)
        version = max(m.version_needed & 0xFF, _ZIP64_VERSION) | (m.version_needed & 0xFF00)
    else:
        extra, sizes, version = m.local_extra, (m.compress_size, m.file_size), m.version_needed
    if len(extra) > 0xFFFF:
        raise ValueError(f"{m.name!r}: extra field too long")
    head = LOCAL_HEADER.pack(
        LOCAL_SIG, version, m.flags, m.method, m.dos_time, m.dos_date, m.crc, *sizes, len(m.name), len(extra)
    )
    return head + m.name + extra


def _central_header(m: _Member, offset: int) -> bytes:
    """The central directory entry; only the fields that overflow go to the ZIP64 extra, in APPNOTE order."""
    wide: list[int] = []
    usize, csize, where = m.file_size, m.compress_size, offset
    if usize >= ZIP64_LIMIT:
        wide.append(usize)
        usize = 0xFFFFFFFF
    if csize >= ZIP64_LIMIT:
        wide.append(csize)
        csize = 0xFFFFFFFF
    if where >= ZIP64_LIMIT:
        wide.append(where)
        where = 0xFFFFFFFF
    extra = _zip64_extra(wide) + m.central_extra
    version = m.version_needed
    if wide:
        version = max(version & 0xFF, _ZIP64_VERSION) | (version & 0xFF00)
    if len(extra) > 0xFFFF:
        raise ValueError(f"{m.name!r}: extra field too long")
    head = _CENTRAL.pack(
        _CENTRAL_SIG,
        m.create_version,
        m.create_system,
        version,
        m.flags,
        m.method,
        m.dos_time,
        m.dos_date,
        m.crc,
        csize,
        usize,
        len(m.name),
        len(extra),
        len(m.comment),
        0,  # disk number start
        m.internal_attr,
        m.external_attr,
        where,
    )
    return head + m.name + extra + m.comment


def _end_records(count: int, cd_offset: int, cd_size: int, comment: bytes) -> bytes:
    """End of central directory, preceded by the ZIP64 end record and locator when a value needs them."""
    out = b""
    if count >= ZIP64_COUNT_LIMIT or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT:
        eocd64_offset = cd_offset + cd_size
        out += _EOCD64.pack(
            _EOCD64_SIG,
            _EOCD64.size - 12,
            _ZIP64_VERSION,
            _ZIP64_VERSION,
            0,
            0,
            count,
            count,
            cd_size,
            cd_offset,
        )
        out += _EOCD64_LOCATOR.pack(_EOCD64_LOCATOR_SIG, 0, eocd64_offset, 1)
    out += _EOCD.pack(
        _EOCD_SIG,
        0,
        0,
        min(count, 0xFFFF),
        min(count, 0xFFFF),
        min(cd_size, 0xFFFFFFFF),
        min(cd_offset, 0xFFFFFFFF),
        len(comment),
    )
    return out + comment


def _read_source_member(fd: int, file_size: int, info: zipfile.ZipInfo) -> _SourceMember:
    """Check ``info``'s local header and describe the member as the output will store it (unchanged)."""
    flags = info.flag_bits
    if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS):
        raise ValueError(f"{info.filename}: encrypted members are not supported")
    local = read_local_header(fd, info, file_size)
    dos_time, dos_date = _dos_date_time(info.date_time)
    keep = FLAG_UTF8 | (FLAG_DEFLATE_OPTIONS if info.compress_type == zipfile.ZIP_DEFLATED else 0)
    member = _Member(
        name=local.name,
        version_needed=info.extract_version | (info.reserved << 8),
        flags=flags & keep,
        method=info.compress_type,
        dos_time=dos_time,
        dos_date=dos_date,
        crc=info.CRC,
        compress_size=info.compress_size,
        file_size=info.file_size,
        local_extra=_strip_zip64(local.extra),
        central_extra=_strip_zip64(info.extra),
        create_version=info.create_version,
        create_system=info.create_system,
        internal_attr=info.internal_attr,
        external_attr=info.external_attr,
        comment=info.comment,
    )
    return _SourceMember(info, member, local.data_offset)


def _recompressed(member: _Member, crc: int, file_size: int, compress_size: int) -> _Member:
    """``member`` holding new raw-deflate data: the source's version needed if it was deflated too, else
    2.0; flag bits 1-2 (the source's deflate options) dropped."""
    version = member.version_needed if member.method == zipfile.ZIP_DEFLATED else _DEFLATE_VERSION
    return replace(
        member,
        version_needed=version | (member.version_needed & 0xFF00),
        flags=member.flags & FLAG_UTF8,
        method=zipfile.ZIP_DEFLATED,
        crc=crc,
        compress_size=compress_size,
        file_size=file_size,
    )


# --- compression and RECORD -------------------------------------------------------------------------


def _block_starts(size: int) -> range:
    return block_starts(size, _BLOCK)


def _deflate_bound(size: int) -> int:
    return deflate_bound(size, _BLOCK)


def _deflate_block(data: memoryview, start: int, level: int) -> bytes:
    """Block ``start`` of ``data`` (see :mod:`wheelfix.wheel.deflate`): the blocks of a member, concatenated,
    are one deflate stream."""
    end = min(start + _BLOCK, len(data))
    return deflate_block(lambda offset, n: data[offset : offset + n], start, end, level, end == len(data))


def _digest(data: bytes) -> _Digest:
    return _Digest(zlib.crc32(data), hashlib.sha256(data).digest())  # both release the GIL


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _record_line(path: str, digest: bytes, size: int, ending: str) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator=ending).writerow([path, _record_hash(digest), size])
    return text.getvalue().encode("utf-8")


def _edit_record(
    record: bytes, rows: Mapping[str, tuple[bytes, int]], added: Mapping[str, tuple[bytes, int]] | None = None
) -> bytes:
    """RECORD with the rows of ``rows`` (path -> (sha256 digest, size)) rewritten, every other line as is,
    and a row for each of ``added`` (new members) before RECORD's own row (or at the end)."""
    out: list[bytes] = []
    seen: set[str] = set()
    record_row: int | None = None
    usual = b"\n"  # the line ending RECORD uses, for rows it gets
    for line in record.splitlines(keepends=True):  # bytes: splits on \n, \r\n and \r only
        body = line.rstrip(b"\r\n")
        ending = line[len(body) :]
        usual = ending or usual
        try:
            parsed = list(csv.reader([body.decode("utf-8")], strict=True))
        except (UnicodeDecodeError, csv.Error):
            out.append(line)  # cannot be one of ours; a wheel reader will judge it
            continue
        row = parsed[0] if len(parsed) == 1 else []
        path = row[0] if row else None
        if path is not None and path.endswith(".dist-info/RECORD") and path.count("/") == 1:
            record_row = len(out)
        if path is None or path not in rows:
            out.append(line)
            continue
        if path in seen:
            raise ValueError(f"RECORD lists {path} more than once")
        if len(row) != 3:
            raise ValueError(f"RECORD row for {path} has {len(row)} fields, not 3")
        seen.add(path)
        digest, size = rows[path]
        out.append(_record_line(path, digest, size, ending.decode("ascii")))
    missing = sorted(set(rows) - seen)
    if missing:
        raise ValueError(f"RECORD has no row for {', '.join(missing)}")
    if added:
        if out and not out[-1].endswith((b"\n", b"\r")):
            out[-1] += usual
        new = [_record_line(path, d, s, usual.decode("ascii")) for path, (d, s) in added.items()]
        at = record_row if record_row is not None else len(out)
        out[at:at] = new
    return b"".join(out)


# --- output -----------------------------------------------------------------------------------------


class _Output:
    """Writes to the new file: small ones gathered into one buffer (a big wheel's thousands of local
    headers and small members cost a system call per megabyte, not per member), big copies done by the
    kernel (``copy_file_range``), and positional writes to fill in a local header after its data."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0  # the end of what is written, buffered or not
        self._buf = bytearray()
        self._buf_at = 0  # the file offset of the buffer's first byte

    def pwrite(self, data: bytes, pos: int) -> None:
        """Write ``data`` at ``pos``, before the end: into the buffer where it holds that range."""
        if pos >= self._buf_at and pos + len(data) <= self._buf_at + len(self._buf):
            self._buf[pos - self._buf_at : pos - self._buf_at + len(data)] = data
            return
        self.flush()
        self._pwrite_all(data, pos)

    def _pwrite_all(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, pos)
            pos += n
            view = view[n:]

    def reserve(self, n: int) -> None:
        """Leave ``n`` bytes to be filled in later with :meth:`pwrite`."""
        self.write(bytes(n))

    def write(self, data: bytes) -> None:
        if len(data) >= _COPY_CHUNK:
            self.flush()
            self._pwrite_all(data, self.pos)
            self.pos += len(data)
            self._buf_at = self.pos
            return
        self._buf += data
        self.pos += len(data)
        if len(self._buf) >= _COPY_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._pwrite_all(self._buf, self._buf_at)
            self._buf = bytearray()
        self._buf_at = self.pos

    def copy(self, src_fd: int, offset: int, size: int) -> None:
        """Copy ``size`` bytes of ``src_fd`` at ``offset``: small ones through the buffer, big ones by the
        kernel where it can."""
        if size < _KERNEL_COPY_MIN:
            self._copy_through(src_fd, offset, size)
            return
        self.flush()
        copied = copy_range(src_fd, self.fd, size, offset, self.pos)
        self.pos += copied
        self._buf_at = self.pos
        if copied != size:
            raise zipfile.BadZipFile("the source ends inside a member's data")

    def _copy_through(self, src_fd: int, offset: int, size: int) -> None:
        end = offset + size
        while offset < end:
            chunk = os.pread(src_fd, min(end - offset, _COPY_CHUNK), offset)
            if not chunk:
                raise zipfile.BadZipFile("the source ends inside a member's data")
            self.write(chunk)
            offset += len(chunk)


class _Deflater:
    """Deflates the replacements' blocks on a thread pool, in output order, at most ``ahead`` blocks ahead
    of the writer (so compressed data waits in memory only for a few blocks), and hashes each replacement
    on the same pool."""

    def __init__(
        self, pool: ThreadPoolExecutor, order: list[str], data: Mapping[str, bytes], level: int, ahead: int
    ) -> None:
        self._pool = pool
        self._level = level
        self._ahead = ahead
        self._views = {name: memoryview(data[name]) for name in order}
        self.digests: dict[str, Future[_Digest]] = {name: pool.submit(_digest, data[name]) for name in order}
        self._todo = ((name, start) for name in order for start in _block_starts(len(data[name])))
        self._running: deque[tuple[str, Future[bytes]]] = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self._running) < self._ahead:
            task = next(self._todo, None)
            if task is None:
                return
            name, start = task
            self._running.append(
                (name, self._pool.submit(_deflate_block, self._views[name], start, self._level))
            )

    def blocks(self, name: str) -> Iterator[bytes]:
        """The compressed blocks of ``name``, which must be the next replaced member in output order."""
        for _ in _block_starts(len(self._views[name])):
            self._fill()
            got, future = self._running.popleft()
            assert got == name, (got, name)
            yield future.result()
        self._fill()


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _dist_info(names: list[str]) -> str:
    dirs = dist_info_dirs(names)
    if len(dirs) != 1:
        raise ValueError(f"expected one .dist-info directory, found {len(dirs)}: {', '.join(dirs)}")
    return dirs[0]


@dataclass(frozen=True, slots=True)
class _Source:
    """The open source wheel: what the writer reads from it."""

    fd: int
    stat: os.stat_result
    entries: list[zipfile.ZipInfo]  # central directory order, directories included
    comment: bytes
    record_name: str
    record: bytes
    display: str


@contextmanager
def _thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool whose queued tasks are dropped when the body fails (the running ones are waited for)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelfix-write")
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _check_request(
    source: _Source, replacements: Mapping[str, Replacement], additions: Mapping[str, bytes]
) -> None:
    """Refuse what cannot be written, before any output exists."""
    names = [i.filename for i in source.entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{source.display} has duplicate member names")
    by_name = {i.filename: i for i in source.entries}
    dist_info = source.record_name.rpartition("/")[0]
    for name in sorted(replacements):
        if name in (source.record_name, f"{dist_info}/WHEEL"):
            raise ValueError(f"{name} cannot be replaced (wheelfix writes it)")
        if name not in by_name or by_name[name].is_dir():
            raise ValueError(f"{name} is not a file member of {source.display}")
    for name in sorted(additions):
        parts = name.split("/")
        if name in by_name or name.rstrip("/") + "/" in by_name:
            raise ValueError(f"{name} is already a member of {source.display}: replace it instead")
        if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{name!r} is not a safe member name")
    if replacements or additions:  # a missing or malformed row fails now, before any output exists
        _edit_record(source.record, dict.fromkeys(replacements, (b"", 0)), dict.fromkeys(additions, (b"", 0)))


def _added_member(name: str, template: _Member) -> _Member:
    """A new member, dated and attributed like ``template`` (RECORD), so the output stays reproducible."""
    encoded = name.encode("utf-8")
    utf8 = FLAG_UTF8 if not name.isascii() else 0
    return replace(
        template, name=encoded, flags=utf8, local_extra=b"", central_extra=b"", comment=b"", internal_attr=0
    )


def _zip_source(fd: int, zf: zipfile.ZipFile, display: str) -> _Source:
    infos = zf.infolist()
    record_name = f"{_dist_info([i.filename for i in infos])}/RECORD"
    if record_name not in {i.filename for i in infos}:
        raise ValueError(f"{record_name} is missing from {display}")
    return _Source(fd, os.fstat(fd), infos, zf.comment, record_name, zf.read(record_name), display)


def _archive_source(archive: WheelArchive) -> _Source:
    fd = archive.fileno()
    return _Source(
        fd,
        os.fstat(fd),
        archive.entries,
        archive.comment,
        archive.record_name,
        archive.record_bytes,
        archive.display,
    )


def write_wheel(
    source: Path | WheelArchive,
    dest: Path,
    replacements: Mapping[str, Replacement],
    *,
    level: int = 6,
    jobs: int | None = None,
    additions: Mapping[str, bytes] | None = None,
) -> None:
    """Write ``source`` to ``dest`` with the members named in ``replacements`` holding the new bytes, and the
    new members of ``additions`` (listed in RECORD, written just before it).

    ``source`` is an open, validated :class:`~wheelfix.wheel.archive.WheelArchive` (the repair pipeline:
    the wheel is not opened again), or the path of a zip file. Unchanged members are copied compressed,
    byte for byte; replaced members and RECORD are deflated at ``level`` on ``jobs`` threads (default: the
    usable cores). ``dest`` is replaced atomically and never left half-written. Raises ValueError for a bad
    replacement, level or jobs, or ``dest`` being ``source``; zipfile.BadZipFile for a damaged source;
    OSError from the file system.
    """
    if not -1 <= level <= 9:
        raise ValueError(f"compression level {level} is not in -1..9")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    added = dict(additions or {})
    if isinstance(source, WheelArchive):
        _write(_archive_source(source), Path(dest), replacements, added, level, jobs or _usable_cores())
        return
    with open(source, "rb") as src, zipfile.ZipFile(src) as zf:
        _write(
            _zip_source(src.fileno(), zf, Path(source).name),
            Path(dest),
            replacements,
            added,
            level,
            jobs or _usable_cores(),
        )


def _write(
    source: _Source,
    dest: Path,
    replacements: Mapping[str, Replacement],
    additions: Mapping[str, bytes],
    level: int,
    workers: int,
) -> None:
    try:
        dest_stat: os.stat_result | None = os.stat(dest)
    except FileNotFoundError:
        dest_stat = None
    if dest_stat is not None and os.path.samestat(dest_stat, source.stat):
        raise ValueError(f"{dest} is the source wheel itself; write to another file")
    _check_request(source, replacements, additions)
    src_fd = source.fd
    members = [_read_source_member(src_fd, source.stat.st_size, i) for i in source.entries]
    with atomic_fd(dest) as fd, _thread_pool(workers) as pool:
        out = _Output(fd)
        plain = {n: r for n, r in replacements.items() if not isinstance(r, Spliced)}
        spliced = {n: r for n, r in replacements.items() if isinstance(r, Spliced)}
        order = [sm.info.filename for sm in members if sm.info.filename in plain]
        deflater = _Deflater(pool, order, plain, level, ahead=2 * workers)
        central: list[bytes] = []
        for sm in members:
            name = sm.info.filename
            offset = out.pos
            if name in plain:
                m = _write_deflated(
                    out, sm.member, deflater.blocks(name), len(plain[name]), deflater.digests[name].result
                )
            elif name in spliced:
                sp = spliced[name]
                m = _write_deflated(
                    out, sm.member, sp.chunks(src_fd), sp.size, partial(_Digest, sp.crc, sp.sha256)
                )
            elif name == source.record_name and (replacements or additions):
                for new_name, data in additions.items():
                    at = out.pos
                    new_member = _write_bytes(out, _added_member(new_name, sm.member), data, level)
                    central.append(_central_header(new_member, at))
                offset = out.pos
                rows = {n: (deflater.digests[n].result().sha256, len(plain[n])) for n in order}
                rows.update({n: (sp.sha256, sp.size) for n, sp in spliced.items()})
                added_rows = {n: (hashlib.sha256(d).digest(), len(d)) for n, d in additions.items()}
                new_record = _edit_record(source.record, rows, added_rows)
                m = _write_bytes(out, sm.member, new_record, level)
            else:
                m = sm.member
                out.write(_local_header(m, _local_zip64(m)))
                out.copy(src_fd, sm.data_offset, m.compress_size)
            central.append(_central_header(m, offset))
        cd_offset = out.pos
        for entry in central:
            out.write(entry)
        out.write(_end_records(len(central), cd_offset, out.pos - cd_offset, source.comment))
        out.flush()


def _write_bytes(out: _Output, member: _Member, data: bytes, level: int) -> _Member:
    """Write ``member`` holding ``data`` (small: RECORD, the repair manifest), deflated in blocks."""
    view = memoryview(data)
    blocks = (_deflate_block(view, start, level) for start in _block_starts(len(view)))
    return _write_deflated(out, member, blocks, len(view), partial(_digest, data))


def _write_deflated(
    out: _Output, member: _Member, blocks: Iterator[bytes], file_size: int, digest: Callable[[], _Digest]
) -> _Member:
    """Write ``member`` holding ``file_size`` bytes deflated as ``blocks``. The local header's size is fixed
    before the data (ZIP64 when the data or its worst-case compressed size needs it); its content is written
    after the data, once the compressed size and the CRC are known."""
    offset = out.pos
    zip64 = file_size >= ZIP64_LIMIT or _deflate_bound(file_size) >= ZIP64_LIMIT
    out.reserve(len(_local_header(member, zip64)))
    compress_size = 0
    for block in blocks:
        out.write(block)
        compress_size += len(block)
    m = _recompressed(member, digest().crc, file_size, compress_size)
    if _local_zip64(m) and not zip64:  # pragma: no cover - _deflate_bound is an upper bound
        raise AssertionError(f"{member.name!r}: compressed size {compress_size} over its bound")
    out.pwrite(_local_header(m, zip64), offset)
    return m

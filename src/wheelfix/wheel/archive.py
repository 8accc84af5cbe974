"""Reading wheels without extracting them: file name, WHEEL, RECORD, member validation, install locations.

``WheelArchive.open(path)`` validates the central directory, the ``.dist-info`` directory, WHEEL and RECORD
before anything is inflated, collecting *every* problem into one :class:`~wheelfix.errors.BadInput`.
Member contents are then streamed by the caller (see :mod:`wheelfix.analysis.scan`), which checks each member
against its RECORD row while it reads it.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import itertools
import os
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from wheelfix.errors import BadInput, Problem
from wheelfix.wheel import codecs
from wheelfix.wheel.zipformat import CorruptMember, dist_info_dirs, parse_local_header, read_local_header

__all__ = [
    "DEFAULT_LIMITS",
    "VIRTUAL_PREFIX",
    "CorruptMember",
    "InstallLocation",
    "InstallTree",
    "Limits",
    "RecordEntry",
    "WheelArchive",
    "WheelIdentity",
    "WheelMeta",
    "install_location",
    "parse_record",
    "virtual_dir",
    "virtual_tree",
]

_MiB = 1 << 20
_GiB = 1 << 30

# Hash algorithms accepted in RECORD (PEP 376 / the binary distribution format: sha256 or stronger).
_RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b"})
_RECORD_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bomb guards and the input policy. A member is suspicious when it is larger than ``ratio_min_size``
    *and* inflates more than ``max_ratio`` times; the whole archive when its members add up to more than
    ``max_total``. ``strict`` turns the deviations that installers accept (warnings) into refusals."""

    max_total: int = 32 * _GiB
    max_ratio: float = 200.0
    ratio_min_size: int = 16 * _MiB
    max_members: int = 1_000_000
    strict: bool = False  # refuse the deviations installers accept (hex RECORD digests, odd ELF notes, ...)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class RecordEntry:
    path: str
    algorithm: str | None
    digest: bytes | None
    size: int | None


@dataclass(frozen=True, slots=True)
class WheelMeta:
    """What the file name and ``.dist-info`` say about a wheel."""

    filename: str
    name: str  # canonical (PEP 503) project name
    version: str
    tags: tuple[str, ...]  # sorted "interp-abi-platform" strings from the file name
    wheel_tags: tuple[str, ...]  # Tag: lines of the WHEEL file, as written
    root_is_purelib: bool
    dist_info: str
    data_dir: str

    @property
    def platform_tags(self) -> tuple[str, ...]:
        return tuple(sorted({t.rsplit("-", 1)[1] for t in self.tags}))

    @property
    def python_version(self) -> str | None:
        """ "3.11" for a ``cp311``/``py311`` interpreter tag; None when the tags don't pin one."""
        found = set()
        for t in self.tags:
            m = re.fullmatch(r"(?:cp|py|pp)3(\d+)", t.split("-", 1)[0])
            if m:
                found.add(f"3.{m.group(1)}")
        return found.pop() if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class InstallLocation:
    """Where a member lands once installed. ``scheme`` is one of purelib, platlib, scripts, data, headers;
    ``path`` is relative to that scheme's directory."""

    scheme: str
    path: str

    def __str__(self) -> str:
        return self.path if self.scheme in ("purelib", "platlib") else f"{{{self.scheme}}}/{self.path}"


def install_location(member: str, data_dir: str) -> InstallLocation:
    """Map a member name to its install location per the wheel spec (``.data/<scheme>/...``)."""
    prefix = data_dir + "/"
    if member.startswith(prefix):
        rest = member[len(prefix) :]
        scheme, _, path = rest.partition("/")
        if scheme in ("purelib", "platlib", "scripts", "data", "headers") and path:
            return InstallLocation(scheme, path)
    return InstallLocation("platlib", member)


def _name_problem(name: str) -> str | None:
    if "\x00" in name:
        return "NUL byte in member name"
    if "\\" in name:
        return "backslash in member name (zip-slip risk)"
    if name.startswith("/"):
        return "absolute member name (zip-slip)"
    if _DRIVE.match(name):
        return "drive letter in member name (zip-slip)"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "'..' in member name (zip-slip)"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component in member name"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_ANY_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


@functools.cache
def _digest_size(algorithm: str) -> int:
    return hashlib.new(algorithm).digest_size


def _decode_digest(text: str, size: int) -> tuple[bytes, str | None] | None:
    """A RECORD digest: urlsafe base64 without padding as the spec says, or (with a note saying which) the
    other encodings installers accept without looking: padded or standard base64, hexadecimal."""
    if _URLSAFE_B64.fullmatch(text):
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError):
            raw = b""
        if len(raw) == size:
            return raw, None
    if len(text) == 2 * size and _HEX.fullmatch(text):
        return bytes.fromhex(text), "hexadecimal"
    if _ANY_B64.fullmatch(text):
        try:
            raw = base64.b64decode(
                text.replace("-", "+").replace("_", "/") + "=" * (-len(text.rstrip("=")) % 4)
            )
        except (ValueError, TypeError):
            return None
        if len(raw) == size:
            return raw, "padded or standard base64"
    return None


@dataclass(slots=True)
class _Report:
    """Problems (the input is refused) and deviations that installers accept (a warning; refused too under
    ``strict``). Deviations of one kind are reported once, counted, with the first few members named."""

    file: str
    strict: bool
    problems: list[Problem]
    deviations: dict[tuple[str | None, str], list[str]]

    def problem(self, member: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, member, message))

    def deviation(self, where: str | None, kind: str, member: str) -> None:
        """``kind`` happened for ``member`` (inside ``where``, e.g. RECORD)."""
        self.deviations.setdefault((where, kind), []).append(member)

    def warnings(self) -> list[Problem]:
        out: list[Problem] = []
        for (where, kind), members in self.deviations.items():
            if len(members) == 1:
                out.append(
                    Problem(self.file, where, f"{kind}: {members[0]}")
                    if where
                    else Problem(self.file, members[0], kind)
                )
                continue
            shown = ", ".join(members[:3]) + (f", +{len(members) - 3} more" if len(members) > 3 else "")
            out.append(Problem(self.file, where, f"{kind}: {len(members)} members ({shown})"))
        return out


def _parse_record(data: bytes, report: _Report, record_name: str) -> dict[str, RecordEntry]:
    entries: dict[str, RecordEntry] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        report.problem(record_name, "RECORD is not UTF-8")
        return {}
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        report.problem(record_name, f"RECORD is not valid CSV: {e}")
        return {}
    for lineno, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            report.problem(record_name, f"line {lineno}: expected 3 fields, got {len(row)}")
            continue
        entry = _record_row(lineno, row, report, record_name)
        if entry is None:
            continue
        if entry.path in entries:
            report.problem(record_name, f"line {lineno}: {entry.path} listed twice")
            continue
        entries[entry.path] = entry
    return entries


def parse_record(data: bytes, file: str, record_name: str) -> tuple[dict[str, RecordEntry], list[Problem]]:
    """A RECORD file's rows by path (an installed distribution's too), and what is wrong with it: problems
    first, then deviations installers accept (grouped as :class:`_Report` does)."""
    report = _Report(file, False, [], {})
    entries = _parse_record(data, report, record_name)
    return entries, [*report.problems, *report.warnings()]


def _record_row(lineno: int, row: list[str], report: _Report, record_name: str) -> RecordEntry | None:
    path, hash_spec, size_text = row
    algorithm: str | None = None
    digest: bytes | None = None
    size: int | None = None
    if hash_spec:
        algorithm, sep, encoded = hash_spec.partition("=")
        if not sep or algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake_"):
            report.problem(record_name, f"line {lineno}: bad hash {hash_spec!r} for {path}")
            return None
        decoded = _decode_digest(encoded, _digest_size(algorithm))
        if decoded is None:
            report.problem(
                record_name, f"line {lineno}: digest of {path} is neither base64 nor hex of its size"
            )
            return None
        digest, encoding = decoded
        if encoding is not None:
            report.deviation(
                record_name, f"RECORD digest in {encoding}, not urlsafe base64 (still checked)", path
            )
        if algorithm not in _RECORD_ALGORITHMS:
            report.deviation(
                record_name, f"RECORD hash {algorithm}, weaker than sha256 (still checked)", path
            )
    if size_text:
        if not size_text.isdigit():
            report.problem(record_name, f"line {lineno}: bad size {size_text!r} for {path}")
            return None
        size = int(size_text)
    return RecordEntry(path, algorithm, digest, size)


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, limit: int = 64 * _MiB) -> bytes:
    if info.file_size > limit:
        raise BadInput(
            [Problem(file, info.filename, f"metadata file is {info.file_size} bytes, over {limit}")]
        )
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise BadInput([Problem(file, info.filename, f"cannot read: {e}")]) from None


def _inflate(
    read: Callable[[int, int], bytes], pos: int, info: zipfile.ZipInfo, check_crc: bool, chunk: int
) -> Iterator[bytes]:
    """Inflate ``info``'s data, which starts at ``pos`` (``read(n, offset)`` gives the archive's bytes), in
    pieces of at most ``chunk`` compressed bytes. Output is capped at the declared size; a short, long or
    corrupt stream raises CorruptMember; the CRC-32 is checked when ``check_crc``."""
    left_in = info.compress_size
    left_out = info.file_size
    crc = 0
    inflater = codecs.decompressobj() if info.compress_type == zipfile.ZIP_DEFLATED else None
    pending = b""
    while True:
        if pending:
            raw, pending = pending, b""
        elif left_in:
            raw = read(min(chunk, left_in), pos)
            if not raw:
                raise CorruptMember("archive ends inside the member's data")
            pos += len(raw)
            left_in -= len(raw)
        else:
            break
        if inflater is None:
            out = raw
        else:
            try:
                out = inflater.decompress(raw, left_out + 1)
            except codecs.inflate_errors() as e:
                raise CorruptMember(f"bad deflate data ({e})") from None
            pending = inflater.unconsumed_tail
        if len(out) > left_out:
            raise CorruptMember(f"inflates to more than its declared {info.file_size} bytes")
        left_out -= len(out)
        if check_crc:
            crc = codecs.crc32(out, crc)
        if out:
            yield out
        if inflater is not None and inflater.eof:
            break
    if inflater is not None and not inflater.eof:
        raise CorruptMember("deflate stream is truncated")
    if left_out:
        raise CorruptMember(f"inflates to {info.file_size - left_out} bytes, {info.file_size} declared")
    if check_crc and crc != info.CRC:
        raise CorruptMember("CRC-32 mismatch")


@dataclass(frozen=True, slots=True)
class WheelIdentity:
    """What makes an opened wheel the same file later: its size, modification time and a hash of its central
    directory (every member's name, sizes, CRC and offset). A wheel that was inspected and is opened again
    to be repaired must still have this identity (:meth:`WheelArchive.open` with ``expect``)."""

    size: int
    mtime_ns: int
    central_directory_sha256: str


def _identity(fd: int, zf: zipfile.ZipFile) -> WheelIdentity:
    st = os.fstat(fd)
    start = getattr(zf, "start_dir", 0)
    h = hashlib.sha256()
    pos = start
    while pos < st.st_size:
        chunk = os.pread(fd, min(1 << 20, st.st_size - pos), pos)
        if not chunk:
            break
        h.update(chunk)
        pos += len(chunk)
    return WheelIdentity(st.st_size, st.st_mtime_ns, h.hexdigest())


@dataclass(slots=True)
class _Entries:
    """The central directory after the per-entry checks (names, duplicates, links, encryption, method)."""

    seen: dict[str, str]  # name without a trailing slash -> name as stored
    members: list[zipfile.ZipInfo]  # file members, in archive order


def _check_entries(infos: list[zipfile.ZipInfo], file: str, problems: list[Problem]) -> _Entries:
    entries = _Entries({}, [])
    for info in infos:
        name = info.filename
        bad = _name_problem(name)
        if bad:
            problems.append(Problem(file, name, bad))
            continue
        key = name.rstrip("/")
        if key in entries.seen:
            problems.append(Problem(file, name, "duplicate member name"))
            continue
        entries.seen[key] = name
        if _is_symlink(info):
            problems.append(Problem(file, name, "symlink member (not allowed in wheels)"))
        elif info.flag_bits & 0x1:
            problems.append(Problem(file, name, "encrypted member"))
        elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            problems.append(Problem(file, name, f"unsupported compression method {info.compress_type}"))
        elif not info.is_dir():
            entries.members.append(info)
    return entries


def _check_bombs(
    infos: list[zipfile.ZipInfo], members: list[zipfile.ZipInfo], limits: Limits, file: str
) -> list[Problem]:
    """Declared sizes, compression ratios and overlapping member data."""
    problems: list[Problem] = []
    total = sum(i.file_size for i in members)
    if total > limits.max_total:
        problems.append(
            Problem(file, None, f"members inflate to {total} bytes, over the limit of {limits.max_total}")
        )
    for info in members:
        compressed = max(info.compress_size, 1)
        if info.file_size > limits.ratio_min_size and info.file_size > limits.max_ratio * compressed:
            problems.append(
                Problem(
                    file,
                    info.filename,
                    f"compression ratio {info.file_size / compressed:.0f}:1 over the limit of "
                    f"{limits.max_ratio:.0f}:1 ({info.file_size} bytes from {info.compress_size}; "
                    "possible zip bomb)",
                )
            )
    by_offset = sorted(infos, key=lambda i: i.header_offset)
    for prev, cur in itertools.pairwise(by_offset):
        end = prev.header_offset + 30 + len(prev.orig_filename.encode("utf-8")) + prev.compress_size
        if cur.header_offset < end:
            problems.append(Problem(file, cur.filename, f"member data overlaps {prev.filename} (zip bomb?)"))
    return problems


def _find_dist_info(
    path: Path, entries: _Entries, problems: list[Problem]
) -> tuple[str | None, str | None, frozenset[str], str | None]:
    """(project, version, tags) from the file name, and the one ``.dist-info`` directory that matches it."""
    file = str(path)
    name: str | None = None
    version: str | None = None
    tagset: frozenset[str] = frozenset()
    try:
        parsed_name, parsed_version, _build, tags = parse_wheel_filename(path.name)
        name, version, tagset = str(parsed_name), str(parsed_version), frozenset(str(t) for t in tags)
    except InvalidWheelFilename as e:
        problems.append(Problem(file, None, f"invalid wheel file name: {e}"))
    dist_infos = dist_info_dirs(entries.seen.values())
    if not dist_infos:
        problems.append(Problem(file, None, "no .dist-info directory"))
        return name, version, tagset, None
    if len(dist_infos) > 1:
        problems.append(Problem(file, None, f"more than one .dist-info directory: {', '.join(dist_infos)}"))
        return name, version, tagset, None
    dist_info = dist_infos[0]
    di_name = dist_info[: -len(".dist-info")].rpartition("-")[0]
    if name is not None and canonicalize_name(di_name) != name:
        problems.append(Problem(file, dist_info, f"does not match the file name's project {name}"))
    return name, version, tagset, dist_info


def _read_wheel_file(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo | None, wheel_name: str, file: str, problems: list[Problem]
) -> tuple[tuple[str, ...], bool]:
    """(Tag lines, Root-Is-Purelib) of the WHEEL file."""
    if info is None:
        problems.append(Problem(file, wheel_name, "missing"))
        return (), False
    headers = BytesHeaderParser().parsebytes(_read_small(zf, info, file))
    wv = headers.get("Wheel-Version", "")
    if not re.fullmatch(r"1\.\d+", wv.strip()):
        problems.append(Problem(file, wheel_name, f"unsupported Wheel-Version {wv!r}"))
    purelib = headers.get("Root-Is-Purelib", "false").strip().lower() == "true"
    return tuple(headers.get_all("Tag") or ()), purelib


def _check_against_record(
    record: dict[str, RecordEntry],
    infos: list[zipfile.ZipInfo],
    members: list[zipfile.ZipInfo],
    dist_info: str,
    report: _Report,
) -> None:
    """Every file member is listed with a hash (uv refuses a wheel that is not; a member's content is then
    checked against it while it is read); a size that RECORD gets wrong, or a row for a file that is not
    there, are deviations installers ignore."""
    record_name = f"{dist_info}/RECORD"
    exempt = {record_name, *(f"{dist_info}/{s}" for s in _RECORD_SIGNATURES)}
    for info in members:
        entry = record.get(info.filename)
        if info.filename in exempt:
            continue
        if entry is None:
            report.problem(info.filename, "not listed in RECORD")
        elif entry.digest is None:
            report.problem(info.filename, "RECORD has no hash for it")
        elif entry.size is not None and entry.size != info.file_size:
            report.deviation(
                None, f"size {info.file_size} does not match RECORD ({entry.size})", info.filename
            )
    for path in sorted(set(record) - {i.filename for i in infos}):
        report.deviation(None, "listed in RECORD but not in the archive", path)


class WheelArchive:
    """An open, validated wheel. Use :meth:`open`; members are streamed with :meth:`iter_member`, and the
    writer copies from the same open file (:meth:`fileno`, :attr:`entries`)."""

    def __init__(
        self,
        path: Path,
        zf: zipfile.ZipFile,
        meta: WheelMeta,
        members: tuple[zipfile.ZipInfo, ...],
        record: dict[str, RecordEntry],
        record_bytes: bytes,
        limits: Limits,
        warnings: tuple[Problem, ...] = (),
    ) -> None:
        self.path = path
        self.meta = meta
        self.members = members  # file members (no directories), in archive order
        self.record = record
        self.record_bytes = record_bytes  # RECORD as stored (the writer edits it line by line)
        self.limits = limits  # the limits it was validated with
        self.warnings = warnings  # deviations installers accept (see Limits.strict)
        self._zf = zf
        assert zf.fp is not None
        self._fd: int = zf.fp.fileno()
        self.identity = _identity(self._fd, zf)

    def fileno(self) -> int:
        """The archive's file descriptor, for positional reads (``os.pread``) of member data."""
        return self._fd

    @property
    def entries(self) -> list[zipfile.ZipInfo]:
        """Every central directory entry (directories included), in archive order."""
        return self._zf.infolist()

    @property
    def comment(self) -> bytes:
        return self._zf.comment

    @property
    def record_name(self) -> str:
        return f"{self.meta.dist_info}/RECORD"

    @property
    def display(self) -> str:
        return str(self.path)

    @classmethod
    @contextmanager
    def open(
        cls, path: Path, limits: Limits = DEFAULT_LIMITS, *, expect: WheelIdentity | None = None
    ) -> Iterator[WheelArchive]:
        """Open and validate ``path``; with ``expect``, refuse a file that is no longer the one inspected."""
        file = str(path)
        try:
            fp = path.open("rb")
        except FileNotFoundError:
            raise BadInput([Problem(file, None, "no such file")]) from None
        except IsADirectoryError:
            raise BadInput([Problem(file, None, "is a directory, not a wheel")]) from None
        except OSError as e:
            raise BadInput([Problem(file, None, f"cannot open: {e.strerror}")]) from None
        with fp:
            try:
                zf = zipfile.ZipFile(fp)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
                raise BadInput([Problem(file, None, f"not a valid zip file ({e})")]) from None
            with zf:
                archive = cls._validated(path, zf, limits)
                if expect is not None and archive.identity != expect:
                    raise BadInput([Problem(file, None, "changed since it was inspected; inspect it again")])
                yield archive

    @classmethod
    def _validated(cls, path: Path, zf: zipfile.ZipFile, limits: Limits) -> WheelArchive:
        file = str(path)
        report = _Report(file, limits.strict, [], {})
        problems = report.problems
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise BadInput(
                [Problem(file, None, f"{len(infos)} members, over the limit of {limits.max_members}")]
            )
        entries = _check_entries(infos, file, problems)
        problems.extend(_check_bombs(infos, entries.members, limits, file))
        name, version, tagset, dist_info = _find_dist_info(path, entries, problems)
        record: dict[str, RecordEntry] = {}
        record_bytes = b""
        meta: WheelMeta | None = None
        if dist_info is not None:
            by_name = {i.filename: i for i in entries.members}
            record_name = f"{dist_info}/RECORD"
            wheel_tags, root_is_purelib = _read_wheel_file(
                zf, by_name.get(f"{dist_info}/WHEEL"), f"{dist_info}/WHEEL", file, problems
            )
            if record_name not in by_name:
                problems.append(Problem(file, record_name, "missing"))
            else:
                record_bytes = _read_small(zf, by_name[record_name], file)
                before = len(problems)
                record = _parse_record(record_bytes, report, record_name)
                if len(problems) == before:
                    _check_against_record(record, infos, entries.members, dist_info, report)
            if name is not None and version is not None:
                meta = WheelMeta(
                    filename=path.name,
                    name=name,
                    version=version,
                    tags=tuple(sorted(tagset)),
                    wheel_tags=wheel_tags,
                    root_is_purelib=root_is_purelib,
                    dist_info=dist_info,
                    data_dir=dist_info[: -len(".dist-info")] + ".data",
                )
        warnings = report.warnings()
        if limits.strict:
            problems.extend(warnings)
        if problems:
            raise BadInput(problems)
        assert meta is not None
        return cls(path, zf, meta, tuple(entries.members), record, record_bytes, limits, tuple(warnings))

    def data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where the member's (compressed) data starts, after checking its local header."""
        return read_local_header(self._fd, info).data_offset

    def iter_member(
        self, info: zipfile.ZipInfo, *, check_crc: bool, chunk: int = 256 << 10
    ) -> Iterator[bytes]:
        """Inflate one member in chunks, reading with pread (no shared file position, so threads don't
        contend). Output is capped at the declared size; a short, long or corrupt stream raises
        CorruptMember. ``check_crc`` is for members that RECORD does not hash."""
        fd = self._fd
        yield from _inflate(lambda n, at: os.pread(fd, n, at), self.data_offset(info), info, check_crc, chunk)

    def inflate_small(
        self, infos: Sequence[zipfile.ZipInfo], check_crc: Callable[[zipfile.ZipInfo], bool]
    ) -> list[bytes | CorruptMember]:
        """Several small members, read with one ``pread`` of the span they lie in and each inflated in one
        call: their bytes, or the :class:`CorruptMember` that member raised, in ``infos`` order. Checks as
        :meth:`iter_member` does (local header, declared size, CRC-32 where ``check_crc(info)``). For the
        thousands of small members of a big wheel, per-member overhead is what costs."""
        if not infos:
            return []
        lo = max(0, min(i.header_offset for i in infos))  # a negative offset: refused one at a time
        hi = max(
            i.header_offset + 30 + len(i.orig_filename) * 4 + len(i.extra) + i.compress_size for i in infos
        )
        buf = os.pread(self._fd, hi + 1024 - lo, lo)
        out: list[bytes | CorruptMember] = []
        for info in infos:
            try:
                out.append(self._inflate_one(buf, lo, info, check_crc(info)))
            except CorruptMember as e:
                out.append(e)
        return out

    def _inflate_one(self, buf: bytes, base: int, info: zipfile.ZipInfo, check_crc: bool) -> bytes:
        local = parse_local_header(buf, base, info)
        if local is None:  # not wholly in the span read (a long local extra field): on its own
            return b"".join(self.iter_member(info, check_crc=check_crc))
        whole = max(1, info.compress_size)  # the member's data in one piece: one inflate call
        return b"".join(
            _inflate(lambda n, at: buf[at - base : at - base + n], local.data_offset, info, check_crc, whole)
        )

    def install_location(self, member: str) -> InstallLocation:
        return install_location(member, self.meta.data_dir)


VIRTUAL_PREFIX = "/@prefix"


def virtual_dir(scheme: str, pyver: str, project: str) -> str:
    """Scheme directories of a virtual environment, used only to evaluate ``$ORIGIN``-relative paths.

    The layout is a venv's: ``<prefix>/lib/pythonX.Y/site-packages`` for purelib/platlib, ``<prefix>/bin``
    for scripts, ``<prefix>`` for data. The prefix is a placeholder that no real path can match.
    """
    return virtual_tree(pyver, project).dir(scheme)


@dataclass(frozen=True, slots=True)
class InstallTree:
    """Where the install schemes of one distribution are: the virtual tree a wheel is resolved in
    (:func:`virtual_tree`), or the real directories of an installed environment (``real``).

    ``roots``: the directories the resolver may search, ``prefix`` first; a search-path entry that leads
    outside them is not searched (the host's library directories are not looked at)."""

    prefix: str
    schemes: tuple[tuple[str, str], ...]  # (scheme, directory) for purelib, platlib, scripts, data, headers
    real: bool = False
    roots: tuple[str, ...] = ()

    def dir(self, scheme: str) -> str:
        for name, directory in self.schemes:
            if name == scheme:
                return directory
        raise KeyError(scheme)

    def path(self, location: InstallLocation) -> str:
        """The absolute, normalized path a member lands at (an installed RECORD path may hold ``..``)."""
        return posixpath.normpath(posixpath.join(self.dir(location.scheme), location.path))

    def contains(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in (self.prefix, *self.roots))


def virtual_tree(pyver: str, project: str) -> InstallTree:
    site = f"{VIRTUAL_PREFIX}/lib/python{pyver}/site-packages"
    return InstallTree(
        VIRTUAL_PREFIX,
        (
            ("purelib", site),
            ("platlib", site),
            ("scripts", f"{VIRTUAL_PREFIX}/bin"),
            ("data", VIRTUAL_PREFIX),
            ("headers", f"{VIRTUAL_PREFIX}/include/python{pyver}/{project}"),
        ),
    )

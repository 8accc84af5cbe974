"""Reading wheels without extracting them: file name, WHEEL, RECORD, member validation, install locations.

``WheelArchive.open(path)`` validates the central directory, the ``.dist-info`` directory, WHEEL and RECORD
before anything is inflated, collecting *every* problem into one :class:`~wheelfix.errors.BadInput`.
Member contents are then streamed by the caller (see :mod:`wheelfix.analysis.scan`), which checks each member
against its RECORD row while it reads it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from wheelfix.errors import BadInput, Problem

__all__ = [
    "DEFAULT_LIMITS",
    "CorruptMember",
    "InstallLocation",
    "Limits",
    "RecordEntry",
    "WheelArchive",
    "WheelMeta",
    "install_location",
    "virtual_dir",
]

_MiB = 1 << 20
_GiB = 1 << 30

# Hash algorithms accepted in RECORD (PEP 376 / the binary distribution format: sha256 or stronger).
_RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b"})
_RECORD_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bomb guards. A member is suspicious when it is larger than ``ratio_min_size`` *and* inflates more
    than ``max_ratio`` times; the whole archive when its members add up to more than ``max_total``."""

    max_total: int = 32 * _GiB
    max_ratio: float = 200.0
    ratio_min_size: int = 16 * _MiB
    max_members: int = 1_000_000


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


def _parse_record(data: bytes, file: str, record_name: str) -> tuple[dict[str, RecordEntry], list[Problem]]:
    problems: list[Problem] = []
    entries: dict[str, RecordEntry] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [Problem(file, record_name, "RECORD is not UTF-8")]
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        return {}, [Problem(file, record_name, f"RECORD is not valid CSV: {e}")]
    for lineno, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            problems.append(Problem(file, record_name, f"line {lineno}: expected 3 fields, got {len(row)}"))
            continue
        path, hash_spec, size_text = row
        algorithm: str | None = None
        digest: bytes | None = None
        size: int | None = None
        if hash_spec:
            algorithm, sep, b64 = hash_spec.partition("=")
            if not sep or algorithm not in _RECORD_ALGORITHMS:
                problems.append(
                    Problem(file, record_name, f"line {lineno}: bad hash {hash_spec!r} for {path}")
                )
                continue
            try:
                digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            except (ValueError, TypeError):
                problems.append(Problem(file, record_name, f"line {lineno}: bad base64 digest for {path}"))
                continue
            if len(digest) != hashlib.new(algorithm).digest_size:
                problems.append(
                    Problem(file, record_name, f"line {lineno}: digest has wrong length for {path}")
                )
                continue
        if size_text:
            if not size_text.isdigit():
                problems.append(
                    Problem(file, record_name, f"line {lineno}: bad size {size_text!r} for {path}")
                )
                continue
            size = int(size_text)
        if path in entries:
            problems.append(Problem(file, record_name, f"line {lineno}: {path} listed twice"))
            continue
        entries[path] = RecordEntry(path, algorithm, digest, size)
    return entries, problems


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, limit: int = 64 * _MiB) -> bytes:
    if info.file_size > limit:
        raise BadInput(
            [Problem(file, info.filename, f"metadata file is {info.file_size} bytes, over {limit}")]
        )
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise BadInput([Problem(file, info.filename, f"cannot read: {e}")]) from None


class CorruptMember(Exception):
    """A member's stored data is damaged (bad header, deflate error, wrong size or CRC)."""


class WheelArchive:
    """An open, validated wheel. Use :meth:`open`; members are read with :meth:`open_member`."""

    def __init__(
        self,
        path: Path,
        zf: zipfile.ZipFile,
        meta: WheelMeta,
        members: tuple[zipfile.ZipInfo, ...],
        record: dict[str, RecordEntry],
    ) -> None:
        self.path = path
        self.meta = meta
        self.members = members  # file members (no directories), in archive order
        self.record = record
        self._zf = zf
        assert zf.fp is not None
        self._fd: int = zf.fp.fileno()

    def fileno(self) -> int:
        """The archive's file descriptor, for positional reads (``os.pread``) of member data."""
        return self._fd

    @property
    def display(self) -> str:
        return str(self.path)

    @classmethod
    @contextmanager
    def open(cls, path: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[WheelArchive]:
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
                yield cls._validated(path, zf, limits)

    @classmethod
    def _validated(cls, path: Path, zf: zipfile.ZipFile, limits: Limits) -> WheelArchive:
        file = str(path)
        problems: list[Problem] = []
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise BadInput(
                [Problem(file, None, f"{len(infos)} members, over the limit of {limits.max_members}")]
            )

        # -- names, duplicates, symlinks, encryption, compression
        seen: dict[str, str] = {}
        members: list[zipfile.ZipInfo] = []
        for info in infos:
            name = info.filename
            bad = _name_problem(name)
            if bad:
                problems.append(Problem(file, name, bad))
                continue
            key = name.rstrip("/")
            if key in seen:
                problems.append(Problem(file, name, "duplicate member name"))
                continue
            seen[key] = name
            if _is_symlink(info):
                problems.append(Problem(file, name, "symlink member (not allowed in wheels)"))
                continue
            if info.flag_bits & 0x1:
                problems.append(Problem(file, name, "encrypted member"))
                continue
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                problems.append(Problem(file, name, f"unsupported compression method {info.compress_type}"))
                continue
            if not info.is_dir():
                members.append(info)

        # -- bomb guards: declared sizes, ratios, overlapping member data
        total = sum(i.file_size for i in members)
        if total > limits.max_total:
            problems.append(
                Problem(file, None, f"members inflate to {total} bytes, over the limit of {limits.max_total}")
            )
        for info in members:
            if info.file_size > limits.ratio_min_size and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                ratio = info.file_size / max(info.compress_size, 1)
                problems.append(
                    Problem(
                        file,
                        info.filename,
                        f"compression ratio {ratio:.0f}:1 over the limit of {limits.max_ratio:.0f}:1 "
                        f"({info.file_size} bytes from {info.compress_size}; possible zip bomb)",
                    )
                )
        by_offset = sorted(infos, key=lambda i: i.header_offset)
        for prev, cur in itertools.pairwise(by_offset):
            end = prev.header_offset + 30 + len(prev.orig_filename.encode("utf-8")) + prev.compress_size
            if cur.header_offset < end:
                problems.append(
                    Problem(file, cur.filename, f"member data overlaps {prev.filename} (zip bomb?)")
                )

        # -- file name and .dist-info
        meta: WheelMeta | None = None
        try:
            name, version, _build, tagset = parse_wheel_filename(path.name)
        except InvalidWheelFilename as e:
            problems.append(Problem(file, None, f"invalid wheel file name: {e}"))
            name, version, tagset = None, None, frozenset()  # type: ignore[assignment]
        dist_infos = sorted(
            {m.split("/", 1)[0] for m in seen if m.split("/", 1)[0].endswith(".dist-info") and "/" in seen[m]}
        )
        dist_info: str | None = None
        if not dist_infos:
            problems.append(Problem(file, None, "no .dist-info directory"))
        elif len(dist_infos) > 1:
            problems.append(
                Problem(file, None, f"more than one .dist-info directory: {', '.join(dist_infos)}")
            )
        else:
            dist_info = dist_infos[0]
            stem = dist_info[: -len(".dist-info")]
            di_name = stem.rpartition("-")[0]
            if name is not None and canonicalize_name(di_name) != name:
                problems.append(Problem(file, dist_info, f"does not match the file name's project {name}"))

        record: dict[str, RecordEntry] = {}
        if dist_info is not None:
            by_name = {i.filename: i for i in members}
            record_name = f"{dist_info}/RECORD"
            wheel_name = f"{dist_info}/WHEEL"
            wheel_tags: tuple[str, ...] = ()
            root_is_purelib = False
            if wheel_name not in by_name:
                problems.append(Problem(file, wheel_name, "missing"))
            else:
                headers = BytesHeaderParser().parsebytes(_read_small(zf, by_name[wheel_name], file))
                wv = headers.get("Wheel-Version", "")
                if not re.fullmatch(r"1\.\d+", wv.strip()):
                    problems.append(Problem(file, wheel_name, f"unsupported Wheel-Version {wv!r}"))
                wheel_tags = tuple(headers.get_all("Tag") or ())
                root_is_purelib = headers.get("Root-Is-Purelib", "false").strip().lower() == "true"
            if record_name not in by_name:
                problems.append(Problem(file, record_name, "missing"))
            else:
                record, rproblems = _parse_record(
                    _read_small(zf, by_name[record_name], file), file, record_name
                )
                problems.extend(rproblems)
                if not rproblems:
                    exempt = {record_name, *(f"{dist_info}/{s}" for s in _RECORD_SIGNATURES)}
                    for info in members:
                        entry = record.get(info.filename)
                        if info.filename in exempt:
                            continue
                        if entry is None:
                            problems.append(Problem(file, info.filename, "not listed in RECORD"))
                        elif entry.digest is None:
                            problems.append(Problem(file, info.filename, "RECORD has no hash for it"))
                        elif entry.size is not None and entry.size != info.file_size:
                            problems.append(
                                Problem(
                                    file,
                                    info.filename,
                                    f"size {info.file_size} does not match RECORD ({entry.size})",
                                )
                            )
                    listed_missing = sorted(set(record) - {i.filename for i in infos})
                    problems.extend(
                        Problem(file, p, "listed in RECORD but not in the archive") for p in listed_missing
                    )
            if name is not None:
                meta = WheelMeta(
                    filename=path.name,
                    name=str(name),
                    version=str(version),
                    tags=tuple(sorted(str(t) for t in tagset)),
                    wheel_tags=wheel_tags,
                    root_is_purelib=root_is_purelib,
                    dist_info=dist_info,
                    data_dir=dist_info[: -len(".dist-info")] + ".data",
                )
        if problems:
            raise BadInput(problems)
        assert meta is not None
        return cls(path, zf, meta, tuple(members), record)

    def data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where the member's (compressed) data starts, after checking its local header."""
        if info.header_offset < 0:  # a central directory that claims data before the archive starts
            raise CorruptMember(f"local header offset {info.header_offset} is negative")
        header = os.pread(self._fd, 30, info.header_offset)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise CorruptMember("bad local file header")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        raw_name = os.pread(self._fd, name_len, info.header_offset + 30)
        local_name = raw_name.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if local_name != info.orig_filename:
            raise CorruptMember(
                f"local header names {local_name!r}, central directory {info.orig_filename!r}"
            )
        offset: int = info.header_offset + 30 + name_len + extra_len
        return offset

    def iter_member(
        self, info: zipfile.ZipInfo, *, check_crc: bool, chunk: int = 256 << 10
    ) -> Iterator[bytes]:
        """Inflate one member in chunks, reading with pread (no shared file position, so threads don't
        contend). Output is capped at the declared size; a short, long or corrupt stream raises
        CorruptMember. ``check_crc`` is for members that RECORD does not hash."""
        pos = self.data_offset(info)
        left_in = info.compress_size
        left_out = info.file_size
        crc = 0
        inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        pending = b""
        while True:
            if pending:
                raw, pending = pending, b""
            elif left_in:
                raw = os.pread(self._fd, min(chunk, left_in), pos)
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
                except zlib.error as e:
                    raise CorruptMember(f"bad deflate data ({e})") from None
                pending = inflater.unconsumed_tail
            if len(out) > left_out:
                raise CorruptMember(f"inflates to more than its declared {info.file_size} bytes")
            left_out -= len(out)
            if check_crc:
                crc = zlib.crc32(out, crc)
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

    def install_location(self, member: str) -> InstallLocation:
        return install_location(member, self.meta.data_dir)


VIRTUAL_PREFIX = "/@prefix"


def virtual_dir(scheme: str, pyver: str, project: str) -> str:
    """Scheme directories of a virtual environment, used only to evaluate ``$ORIGIN``-relative paths.

    The layout is a venv's: ``<prefix>/lib/pythonX.Y/site-packages`` for purelib/platlib, ``<prefix>/bin``
    for scripts, ``<prefix>`` for data. The prefix is a placeholder that no real path can match.
    """
    site = f"{VIRTUAL_PREFIX}/lib/python{pyver}/site-packages"
    return {
        "purelib": site,
        "platlib": site,
        "scripts": f"{VIRTUAL_PREFIX}/bin",
        "data": VIRTUAL_PREFIX,
        "headers": f"{VIRTUAL_PREFIX}/include/python{pyver}/{project}",
    }[scheme]

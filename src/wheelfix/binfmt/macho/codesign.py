"""Embedded code signatures of Mach-O files: read their summary, write ad-hoc ones in pure Python.

The signature is a big-endian *SuperBlob* that the ``LC_CODE_SIGNATURE`` load command points to, at the end
of ``__LINKEDIT``. What :func:`build_adhoc_signature` writes is exactly what ``ld64.lld`` writes when it
signs its output (``-adhoc_codesign``, the default for arm64):

* a SuperBlob (``0xfade0cc0``) with one index entry, padded to 8 bytes;
* one CodeDirectory (``0xfade0c02``, version ``0x20400``, flags ``CS_ADHOC | CS_LINKER_SIGNED``) with no
  special slots, SHA-256 hashes of every 4 KiB page of the slice up to the signature (the last page
  short), the identifier (the file's name) right after the 88-byte header, hashes starting at the next
  16-byte boundary of the SuperBlob, and the executable segment (``__TEXT``) base and limit, with
  ``CS_EXECSEG_MAIN_BINARY`` for executables.

That layout was read off lld's output (see tests/formats/test_macho.py, which checks our signature against
lld's byte for byte), not from lld's source. Signatures ``codesign`` made are read too (requirements,
entitlements, a CMS signature, alternate CodeDirectories), but only ever *replaced* by the lld form: after
an edit any earlier signature is void anyway.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from wheelfix.binfmt import BinaryFormatError, Buffer

__all__ = [
    "CS_ADHOC",
    "CS_EXECSEG_MAIN_BINARY",
    "CS_LINKER_SIGNED",
    "PAGE_SIZE",
    "CodeDirectoryInfo",
    "SignatureInfo",
    "build_adhoc_signature",
    "code_hash_mismatch",
    "page_hashes",
    "parse_signature",
    "signature_size",
]

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_BLOBWRAPPER = 0xFADE0B01
CSSLOT_CODEDIRECTORY = 0
CSSLOT_REQUIREMENTS = 2
CSSLOT_ENTITLEMENTS = 5
CSSLOT_DER_ENTITLEMENTS = 7
CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000
CSSLOT_ALTERNATE_CODEDIRECTORY_MAX = 5
CSSLOT_SIGNATURESLOT = 0x10000

CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_EXECSEG_MAIN_BINARY = 0x1
CS_HASHTYPE_SHA256 = 2
HASH_TYPES = {1: "sha1", 2: "sha256", 3: "sha256-truncated", 4: "sha384"}

CD_VERSION = 0x20400  # the version with the executable-segment fields, as lld writes
PAGE_SIZE_LOG2 = 12
PAGE_SIZE = 1 << PAGE_SIZE_LOG2  # lld and codesign hash 4 KiB pages, also on arm64
SHA256_SIZE = 32

_SUPERBLOB = struct.Struct(">III")  # magic, length, count
_BLOB_INDEX = struct.Struct(">II")  # type, offset
_BLOB_HEADER = struct.Struct(">II")  # magic, length
# magic, length, version, flags, hashOffset, identOffset, nSpecialSlots, nCodeSlots, codeLimit,
# hashSize, hashType, platform, pageSize, spare2, scatterOffset, teamOffset, spare3, codeLimit64,
# execSegBase, execSegLimit, execSegFlags
_CODE_DIRECTORY = struct.Struct(">9I4BIIIIQQQQ")
_CD_BASE = struct.Struct(">9I4B")  # the fields every CodeDirectory version has (44 bytes)
assert _CODE_DIRECTORY.size == 88

# Where lld puts the CodeDirectory: after the SuperBlob header and its one index entry, 8-aligned.
_HEADERS_SIZE = (_SUPERBLOB.size + _BLOB_INDEX.size + 7) & ~7


@dataclass(frozen=True, slots=True)
class CodeDirectoryInfo:
    """The parts of one CodeDirectory that matter for deciding what to do with a signature."""

    version: int
    flags: int
    identifier: str
    team_id: str | None
    hash_type: str  # sha256, sha1, ... or "hash-<n>"
    page_size: int  # bytes per hashed page; 0 means the whole code is one page
    code_limit: int
    n_code_slots: int
    n_special_slots: int
    exec_seg_base: int | None  # None before version 0x20400
    exec_seg_limit: int | None
    exec_seg_flags: int | None

    @property
    def adhoc(self) -> bool:
        return bool(self.flags & CS_ADHOC)

    @property
    def linker_signed(self) -> bool:
        return bool(self.flags & CS_LINKER_SIGNED)


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """A summary of an embedded signature (SuperBlob)."""

    code_directories: tuple[CodeDirectoryInfo, ...]  # the primary one first
    has_requirements: bool
    has_entitlements: bool
    has_cms_signature: bool  # a non-empty CMS blob: signed with a certificate, not ad hoc

    @property
    def identifier(self) -> str | None:
        return self.code_directories[0].identifier if self.code_directories else None

    @property
    def adhoc(self) -> bool:
        return bool(self.code_directories) and self.code_directories[0].adhoc and not self.has_cms_signature

    @property
    def linker_signed(self) -> bool:
        return bool(self.code_directories) and self.code_directories[0].linker_signed


def signature_size(identifier: str, code_limit: int, page_size: int = PAGE_SIZE) -> int:
    """Bytes of the signature :func:`build_adhoc_signature` writes for this identifier and code size."""
    return _hash_offset(identifier) + _n_pages(code_limit, page_size) * SHA256_SIZE


def page_hashes(code: Buffer, code_limit: int, page_size: int = PAGE_SIZE) -> list[bytes]:
    """SHA-256 of every page of ``code[:code_limit]``, the last one short."""
    if code_limit > len(code):
        raise BinaryFormatError(f"code limit {code_limit:#x} is past the end of the data ({len(code)} bytes)")
    view = memoryview(code)
    try:
        return [
            hashlib.sha256(view[start : min(start + page_size, code_limit)]).digest()
            for start in range(0, code_limit, page_size)
        ]
    finally:
        view.release()


def build_adhoc_signature(
    code: Buffer,
    code_limit: int,
    identifier: str,
    *,
    exec_seg_base: int,
    exec_seg_limit: int,
    exec_seg_flags: int = 0,
    page_size: int = PAGE_SIZE,
) -> bytes:
    """The ad-hoc, linker-signed SuperBlob lld writes for the first ``code_limit`` bytes of ``code``.

    ``code`` is the Mach-O slice as it will be on disk, with the header (LC_CODE_SIGNATURE size,
    ``__LINKEDIT`` size) already final: the first page's hash covers it.
    """
    if code_limit > 0xFFFFFFFF:
        raise BinaryFormatError(f"code limit {code_limit:#x} needs a 64-bit code limit; not supported")
    if page_size & (page_size - 1) or not 1 <= page_size <= 1 << 16:
        raise ValueError(f"page size {page_size} is not a power of two up to 64 KiB")
    ident = identifier.encode("utf-8")
    if b"\x00" in ident:
        raise ValueError("identifier contains a NUL byte")
    hashes = page_hashes(code, code_limit, page_size)
    hash_offset = _hash_offset(identifier)  # from the start of the SuperBlob
    total = hash_offset + len(hashes) * SHA256_SIZE
    cd_length = total - _HEADERS_SIZE
    ident_offset = _CODE_DIRECTORY.size
    out = bytearray(total)
    _SUPERBLOB.pack_into(out, 0, CSMAGIC_EMBEDDED_SIGNATURE, total, 1)
    _BLOB_INDEX.pack_into(out, _SUPERBLOB.size, CSSLOT_CODEDIRECTORY, _HEADERS_SIZE)
    _CODE_DIRECTORY.pack_into(
        out,
        _HEADERS_SIZE,
        CSMAGIC_CODEDIRECTORY,
        cd_length,
        CD_VERSION,
        CS_ADHOC | CS_LINKER_SIGNED,
        hash_offset - _HEADERS_SIZE,
        ident_offset,
        0,  # nSpecialSlots
        len(hashes),
        code_limit,
        SHA256_SIZE,
        CS_HASHTYPE_SHA256,
        0,  # platform
        page_size.bit_length() - 1,
        0,  # spare2
        0,  # scatterOffset
        0,  # teamOffset
        0,  # spare3
        0,  # codeLimit64
        exec_seg_base,
        exec_seg_limit,
        exec_seg_flags,
    )
    start = _HEADERS_SIZE + ident_offset
    out[start : start + len(ident)] = ident
    out[hash_offset:] = b"".join(hashes)
    return bytes(out)


def _hash_offset(identifier: str) -> int:
    fixed = _HEADERS_SIZE + _CODE_DIRECTORY.size + len(identifier.encode("utf-8")) + 1
    return (fixed + 15) & ~15


def _n_pages(code_limit: int, page_size: int) -> int:
    return (code_limit + page_size - 1) // page_size


def parse_signature(data: Buffer, offset: int, size: int) -> SignatureInfo:
    """Summarize the SuperBlob at ``data[offset : offset + size]``; BinaryFormatError when malformed."""
    if offset < 0 or offset + size > len(data):
        raise BinaryFormatError(f"code signature ({size} bytes at {offset:#x}) runs past the end of the file")
    count, end = _superblob(data, offset, size)
    directories: list[CodeDirectoryInfo] = []
    has_req = has_ent = has_cms = False
    slots: set[int] = set()
    for i in range(count):
        index_at = offset + _SUPERBLOB.size + i * _BLOB_INDEX.size
        slot, blob_off = _unpack_in(data, _BLOB_INDEX, index_at, offset, end, "blob index")
        if slot in slots:  # each slot once: else one CodeDirectory could be parsed a million times
            raise BinaryFormatError(f"code signature at {offset:#x}: slot {slot:#x} appears twice")
        slots.add(slot)
        at = offset + blob_off
        blob_magic, blob_len = _blob_header(data, at, offset, end, i)
        if _is_code_directory_slot(slot):
            if blob_magic != CSMAGIC_CODEDIRECTORY:
                raise BinaryFormatError(f"code signature: slot {slot:#x} at {at:#x} is not a CodeDirectory")
            cd = _code_directory(data, at, blob_len)
            if slot == CSSLOT_CODEDIRECTORY:
                directories.insert(0, cd)
            else:
                directories.append(cd)
        elif slot == CSSLOT_REQUIREMENTS:
            has_req = True
        elif slot in (CSSLOT_ENTITLEMENTS, CSSLOT_DER_ENTITLEMENTS):
            has_ent = True
        elif slot == CSSLOT_SIGNATURESLOT and blob_magic == CSMAGIC_BLOBWRAPPER:
            has_cms = blob_len > 8
    return SignatureInfo(tuple(directories), has_req, has_ent, has_cms)


def _unpack_in(data: Buffer, s: struct.Struct, at: int, start: int, end: int, what: str) -> tuple[int, ...]:
    """``s`` at ``at``, which must lie inside the signature ``[start, end)``."""
    if at < start or at + s.size > end:
        raise BinaryFormatError(f"code signature: {what} at {at:#x} lies outside the signature")
    return s.unpack_from(data, at)


def _superblob(data: Buffer, offset: int, size: int) -> tuple[int, int]:
    """The blob count of the SuperBlob at ``offset`` and where it ends, its header checked."""
    magic, length, count = _unpack_in(data, _SUPERBLOB, offset, offset, offset + size, "SuperBlob header")
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise BinaryFormatError(
            f"code signature at {offset:#x} is not an embedded signature (magic {magic:#x})"
        )
    if length > size or length < _SUPERBLOB.size:
        raise BinaryFormatError(f"code signature at {offset:#x}: SuperBlob length {length} does not fit")
    if count > (length - _SUPERBLOB.size) // _BLOB_INDEX.size:
        raise BinaryFormatError(f"code signature at {offset:#x}: {count} blobs cannot fit in {length} bytes")
    return count, offset + length


def _blob_header(data: Buffer, at: int, offset: int, end: int, i: int) -> tuple[int, int]:
    """(magic, length) of the SuperBlob's ``i``-th blob, which must lie inside it."""
    blob_magic, blob_len = _unpack_in(data, _BLOB_HEADER, at, offset, end, f"blob {i}")
    if blob_len < 8 or at + blob_len > end:
        raise BinaryFormatError(f"code signature: blob {i} ({blob_len} bytes at {at:#x}) does not fit")
    return blob_magic, blob_len


def _is_code_directory_slot(slot: int) -> bool:
    return slot == CSSLOT_CODEDIRECTORY or (
        CSSLOT_ALTERNATE_CODEDIRECTORIES
        <= slot
        < CSSLOT_ALTERNATE_CODEDIRECTORIES + CSSLOT_ALTERNATE_CODEDIRECTORY_MAX
    )


def code_hash_mismatch(data: Buffer, offset: int, size: int) -> str | None:
    """Check the page hashes of the primary CodeDirectory of the signature at ``data[offset:offset+size]``
    against ``data`` (a thin slice) the way the kernel does when it maps pages: None when every page hash
    matches, else what is wrong. Only SHA-256 directories are checked (others are reported)."""
    info = parse_signature(data, offset, size)
    if not info.code_directories:
        return "the signature has no CodeDirectory"
    count = struct.unpack_from(">I", data, offset + 8)[0]
    for i in range(count):
        slot, blob_off = _BLOB_INDEX.unpack_from(data, offset + _SUPERBLOB.size + i * _BLOB_INDEX.size)
        if slot == CSSLOT_CODEDIRECTORY:
            at = offset + blob_off
            break
    else:  # pragma: no cover - parse_signature found one
        return "the signature has no primary CodeDirectory"
    fields = _CD_BASE.unpack_from(data, at)
    hash_off, n_code, code_limit, hash_size, hash_type, page_log2 = (
        fields[4],
        fields[7],
        fields[8],
        fields[9],
        fields[10],
        fields[12],
    )
    if hash_type != CS_HASHTYPE_SHA256 or hash_size != SHA256_SIZE:
        return f"hash type {HASH_TYPES.get(hash_type, hash_type)} is not checked"
    if code_limit > offset:
        return f"code limit {code_limit:#x} runs into the signature at {offset:#x}"
    page_size = (1 << page_log2) if page_log2 else max(code_limit, 1)
    want = page_hashes(data, code_limit, page_size)
    if n_code != len(want):
        return f"{n_code} page hashes for {len(want)} pages"
    start = at + hash_off
    if start + n_code * SHA256_SIZE > offset + size:
        return "the page hashes run past the signature"
    for page, digest in enumerate(want):
        if bytes(data[start + page * SHA256_SIZE : start + (page + 1) * SHA256_SIZE]) != digest:
            return f"page {page} (at {page * page_size:#x}) does not match its hash"
    return None


def _code_directory(data: Buffer, at: int, length: int) -> CodeDirectoryInfo:
    if length < _CD_BASE.size:
        raise BinaryFormatError(f"code signature: CodeDirectory at {at:#x} is too short ({length} bytes)")
    fields = _CD_BASE.unpack_from(data, at)
    _magic, _len, version, flags, _hash_off, ident_off, n_special, n_code, code_limit = fields[:9]
    _hash_size, hash_type, _platform, page_log2 = fields[9:]
    team_id: str | None = None
    exec_seg: tuple[int | None, int | None, int | None] = (None, None, None)
    if version >= 0x20200 and length >= 52:
        (team_off,) = struct.unpack_from(">I", data, at + 48)
        if team_off:
            team_id = _cd_string(data, at, length, team_off, "team identifier")
    if version >= 0x20400 and length >= _CODE_DIRECTORY.size:
        exec_seg = struct.unpack_from(">QQQ", data, at + 64)
    return CodeDirectoryInfo(
        version=version,
        flags=flags,
        identifier=_cd_string(data, at, length, ident_off, "identifier"),
        team_id=team_id,
        hash_type=HASH_TYPES.get(hash_type, f"hash-{hash_type}"),
        page_size=(1 << page_log2) if page_log2 else 0,
        code_limit=code_limit,
        n_code_slots=n_code,
        n_special_slots=n_special,
        exec_seg_base=exec_seg[0],
        exec_seg_limit=exec_seg[1],
        exec_seg_flags=exec_seg[2],
    )


def _cd_string(data: Buffer, at: int, length: int, rel: int, what: str) -> str:
    if not 0 < rel < length:
        raise BinaryFormatError(f"code signature: {what} offset {rel:#x} is outside its CodeDirectory")
    stop = data.find(b"\x00", at + rel, at + length)
    if stop < 0:
        raise BinaryFormatError(f"code signature: unterminated {what} in the CodeDirectory at {at:#x}")
    return bytes(data[at + rel : stop]).decode("utf-8", "backslashreplace")

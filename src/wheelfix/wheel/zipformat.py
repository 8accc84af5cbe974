"""The zip format details that the wheel reader (:mod:`wheelfix.wheel.archive`) and writer
(:mod:`wheelfix.wheel.writer`) share: local headers, general-purpose flags, and finding the ``.dist-info``
directory. :mod:`zipfile` decodes the central directory (ZIP64 included); local headers are read here with
``os.pread``, so threads never share a file position."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from wheelfix.errors import EXIT_BAD_INPUT, Error

__all__ = [
    "FLAG_DEFLATE_OPTIONS",
    "FLAG_ENCRYPTED",
    "FLAG_MASKED_HEADERS",
    "FLAG_STRONG_ENCRYPTION",
    "FLAG_UTF8",
    "LOCAL_HEADER",
    "LOCAL_SIG",
    "CorruptMember",
    "LocalHeader",
    "dist_info_dirs",
    "parse_local_header",
    "read_local_header",
    "stored_name",
]

LOCAL_SIG = 0x04034B50
LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # 30 bytes, APPNOTE 4.3.7

FLAG_ENCRYPTED = 0x0001
FLAG_DEFLATE_OPTIONS = 0x0006
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_HEADERS = 0x2000


class CorruptMember(Error, zipfile.BadZipFile):
    """A member's stored data is damaged (bad local header, deflate error, wrong size or CRC)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True, slots=True)
class LocalHeader:
    name: bytes  # as stored
    extra: bytes  # the local extra field, as stored
    data_offset: int  # where the member's compressed data starts


def stored_name(info: zipfile.ZipInfo) -> bytes:
    """The member name's bytes as the archive stores them (UTF-8 when flag bit 11 says so, else cp437)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & FLAG_UTF8 else "cp437")


def read_local_header(fd: int, info: zipfile.ZipInfo, file_size: int | None = None) -> LocalHeader:
    """Read and check ``info``'s local header: signature, the same name as the central directory, and (when
    ``file_size`` is given) the member's data inside the file. Raises :class:`CorruptMember`."""
    if info.header_offset < 0:  # a central directory that claims data before the archive starts
        raise CorruptMember(f"local header offset {info.header_offset} is negative")
    head = os.pread(fd, LOCAL_HEADER.size, info.header_offset)
    name_len, extra_len = _fixed_part(head, info)
    rest = os.pread(fd, name_len + extra_len, info.header_offset + LOCAL_HEADER.size)
    return _variable_part(rest, name_len, extra_len, info, file_size)


def parse_local_header(buf: bytes, base: int, info: zipfile.ZipInfo) -> LocalHeader | None:
    """``info``'s local header, checked as :func:`read_local_header` does, from ``buf`` holding the
    archive's bytes from offset ``base`` on; None when the header (or the member's data) is not wholly in
    ``buf``. Raises :class:`CorruptMember`."""
    at = info.header_offset - base
    if at < 0 or at + LOCAL_HEADER.size > len(buf):
        return None
    name_len, extra_len = _fixed_part(buf[at : at + LOCAL_HEADER.size], info)
    start = at + LOCAL_HEADER.size
    if start + name_len + extra_len + info.compress_size > len(buf):
        return None
    return _variable_part(buf[start : start + name_len + extra_len], name_len, extra_len, info, None)


def _fixed_part(head: bytes, info: zipfile.ZipInfo) -> tuple[int, int]:
    if len(head) != LOCAL_HEADER.size or struct.unpack_from("<I", head)[0] != LOCAL_SIG:
        raise CorruptMember(f"{info.filename}: bad local file header")
    name_len, extra_len = struct.unpack_from("<HH", head, 26)
    return name_len, extra_len


def _variable_part(
    rest: bytes, name_len: int, extra_len: int, info: zipfile.ZipInfo, file_size: int | None
) -> LocalHeader:
    name = rest[:name_len]
    if len(rest) != name_len + extra_len or name != stored_name(info):
        local = name.decode("utf-8" if info.flag_bits & FLAG_UTF8 else "cp437", "replace")
        raise CorruptMember(f"local header names {local!r}, central directory {info.orig_filename!r}")
    data_offset = info.header_offset + LOCAL_HEADER.size + name_len + extra_len
    if file_size is not None and data_offset + info.compress_size > file_size:
        raise CorruptMember(f"{info.filename}: archive ends inside the member's data")
    return LocalHeader(name, rest[name_len:], data_offset)


def dist_info_dirs(names: Iterable[str]) -> list[str]:
    """The top-level ``*.dist-info`` directories that hold at least one member, sorted."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    return sorted(top for top in tops if top.endswith(".dist-info"))

"""Binary formats: detection by magic bytes, and readers for each format."""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable

from wheelfix._enum import StrEnum
from wheelfix.errors import EXIT_BAD_INPUT, Error

__all__ = ["MAGIC_PREFIX_LEN", "BinaryFormat", "BinaryFormatError", "Buffer", "detect_format", "page_out"]

MAGIC_PREFIX_LEN = 4096  # enough for the PE signature of any real DOS stub

Buffer = bytes | bytearray | mmap.mmap  # what the readers and editors read: a file's bytes, or a map of it


def page_out(view: mmap.mmap) -> Callable[[int, int], None]:
    """For a reader that goes through a read-only file map once (``parse_elf(..., page_out=)``): drop the
    pages wholly inside [lo, hi) from this process when it says it is done with them. They stay in the page
    cache; the process's memory does not grow with the file."""
    page = mmap.PAGESIZE

    def drop(lo: int, hi: int) -> None:
        lo = -(-lo // page) * page
        hi = hi // page * page
        if hi > lo and hasattr(mmap, "MADV_DONTNEED"):
            view.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    return drop


class BinaryFormatError(Error, ValueError):
    """A binary is truncated or malformed. The message says what and where (offset)."""

    exit_code = EXIT_BAD_INPUT


class BinaryFormat(StrEnum):
    ELF = "elf"
    MACHO = "macho"  # a thin Mach-O file
    MACHO_FAT = "macho-fat"  # a fat (universal) Mach-O file: several architecture slices
    PE = "pe"  # Windows; detected, not analysed


_MACHO_THIN = {b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe"}
_FAT = {b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"}


def detect_format(head: bytes) -> BinaryFormat | None:
    """Classify a file by its first bytes: ELF, thin or fat Mach-O, PE, or None for anything else.

    ``0xCAFEBABE`` is also the magic of Java class files; a fat Mach-O has a small architecture count
    where a class file has its version numbers (>= 45), which tells them apart.
    """
    magic = head[:4]
    if magic == b"\x7fELF":
        return BinaryFormat.ELF
    if magic in _MACHO_THIN:
        return BinaryFormat.MACHO
    if magic in _FAT and len(head) >= 8:
        (nfat,) = struct.unpack_from(">I", head, 4)
        return BinaryFormat.MACHO_FAT if 0 < nfat < 45 else None
    if head[:2] == b"MZ" and len(head) >= 64:
        (lfanew,) = struct.unpack_from("<I", head, 0x3C)
        if lfanew + 4 <= len(head) and head[lfanew : lfanew + 4] == b"PE\x00\x00":
            return BinaryFormat.PE
    return None

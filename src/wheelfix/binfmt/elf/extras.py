"""Two facts about an ELF image that dynamic linking does not need but portability checks do, read
leniently and within strict bounds:

* the x86 ISA level the binary declares it needs (``GNU_PROPERTY_X86_ISA_1_NEEDED`` in a
  ``NT_GNU_PROPERTY_TYPE_0`` note; glibc >= 2.33 refuses to load a binary whose level the CPU lacks);
* the undefined (imported) symbols of its dynamic symbol table, optionally only those in a given set.

:func:`read_extras` never raises on malformed input: what it cannot read it leaves out and says so in
``problem``. Every offset and count is checked against the image before it is read; the number of symbols
walked is bounded by the size of the symbol table, and the bytes of names compared by the image size.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass

Buffer = bytes | bytearray | mmap.mmap

__all__ = [
    "GNU_PROPERTY_X86_ISA_1_NEEDED",
    "ElfExtras",
    "Import",
    "read_extras",
    "x86_isa_level",
]

SHT_NOTE, SHT_DYNSYM = 7, 11
PT_NOTE = 4
NT_GNU_PROPERTY_TYPE_0 = 5
GNU_PROPERTY_X86_ISA_1_NEEDED = 0xC0008002
STB_WEAK = 2
STT_NOTYPE, STT_FUNC = 0, 2
MAX_NOTE_BYTES = 1 << 20  # property notes are a few dozen bytes; more is not a property note
MAX_IMPORTS = 1 << 20


@dataclass(frozen=True, slots=True)
class Import:
    """An undefined symbol of ``.dynsym``: what the binary expects some other object to define."""

    name: str
    weak: bool
    function: bool  # STT_FUNC or STT_NOTYPE (what auditwheel's PyFPE check counts)


@dataclass(frozen=True, slots=True)
class ElfExtras:
    """``isa_needed``: the ``GNU_PROPERTY_X86_ISA_1_NEEDED`` bit mask (bit 0 baseline, 1 x86-64-v2, 2 v3,
    3 v4), None without such a property. ``imports``: undefined dynamic symbols (only those named in
    ``wanted`` when it was given), None when the image has no readable dynamic symbol table section.
    ``problem``: why something could not be read (the rest is still right)."""

    isa_needed: int | None
    imports: tuple[Import, ...] | None
    problem: str | None = None


EMPTY = ElfExtras(None, None, None)


class _Bad(Exception):
    pass


class _Image:
    def __init__(self, data: Buffer) -> None:
        if len(data) < 16 or bytes(data[:4]) != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
            raise _Bad("not an ELF image")
        self.data = data
        self.size = len(data)
        self.is64 = data[4] == 2
        self.e = "<" if data[5] == 1 else ">"
        hdr = self.unpack("HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH", 16)
        # e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum
        self.phoff, self.shoff = hdr[4], hdr[5]
        self.phentsize, self.phnum, self.shentsize, self.shnum = hdr[8], hdr[9], hdr[10], hdr[11]

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        s = struct.Struct(self.e + fmt)
        if offset < 0 or offset + s.size > self.size:
            raise _Bad(f"read of {s.size} bytes at {offset:#x} past the end ({self.size} bytes)")
        return s.unpack_from(self.data, offset)

    def check(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise _Bad(f"{what} ({size} bytes at {offset:#x}) runs past the end of the file")


def _sections(img: _Image) -> list[tuple[int, ...]]:
    """(type, flags, offset, size, link, align, entsize) of every section header; [] without any."""
    e_shoff, e_shentsize, e_shnum = img.shoff, img.shentsize, img.shnum
    fmt = "IIQQQQIIQQ" if img.is64 else "IIIIIIIIII"
    size = struct.calcsize("<" + fmt)
    if not e_shoff:
        return []
    if e_shentsize != size:
        raise _Bad(f"section header size {e_shentsize}")
    if e_shnum == 0:  # extended numbering: the count is in section 0
        e_shnum = img.unpack(fmt, e_shoff)[5]
    img.check(e_shoff, e_shnum * size, "section header table")
    out: list[tuple[int, ...]] = []
    for i in range(e_shnum):
        sh = img.unpack(fmt, e_shoff + i * size)
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        out.append((sh[1], sh[2], sh[4], sh[5], sh[6], sh[8], sh[9]))
    return out


def _note_regions(img: _Image, sections: list[tuple[int, ...]]) -> Iterator[tuple[int, int, int]]:
    """(start, end, alignment) of the SHT_NOTE sections, or of the PT_NOTE segments without sections."""
    if sections:
        for sh_type, _flags, off, size, _link, align, _ent in sections:
            if sh_type == SHT_NOTE and 0 < size <= MAX_NOTE_BYTES:
                img.check(off, size, "note section")
                yield off, off + size, 8 if align == 8 else 4
        return
    e_phoff, e_phentsize, e_phnum = img.phoff, img.phentsize, img.phnum
    fmt = "IIQQQQQQ" if img.is64 else "IIIIIIII"
    size = struct.calcsize("<" + fmt)
    if not e_phoff or not e_phnum or e_phentsize != size:
        return
    for i in range(e_phnum):
        p = img.unpack(fmt, e_phoff + i * size)
        if img.is64:
            p_type, off, filesz, align = p[0], p[2], p[5], p[7]
        else:
            p_type, off, filesz, align = p[0], p[1], p[4], p[7]
        if p_type == PT_NOTE and 0 < filesz <= MAX_NOTE_BYTES:
            img.check(off, filesz, "PT_NOTE")
            yield off, off + filesz, 8 if align == 8 else 4


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _isa_needed(img: _Image, sections: list[tuple[int, ...]]) -> int | None:
    """The ISA_1_NEEDED mask of the first GNU property note (as auditwheel reads it), None without one."""
    for start, end, align in _note_regions(img, sections):
        pos = start
        while pos + 12 <= end:
            namesz, descsz, ntype = img.unpack("III", pos)
            name_off = pos + 12
            desc_off = start + _align(name_off + namesz - start, align)
            if desc_off + descsz > end:
                break  # a note running past its region: nothing more to read here
            name = bytes(img.data[name_off : name_off + namesz]).rstrip(b"\x00")
            if ntype == NT_GNU_PROPERTY_TYPE_0 and name == b"GNU":
                return _property(img, desc_off, desc_off + descsz)
            pos = start + _align(desc_off + descsz - start, align)
    return None


def _property(img: _Image, pos: int, end: int) -> int | None:
    pad = 8 if img.is64 else 4
    while pos + 8 <= end:
        pr_type, pr_datasz = img.unpack("II", pos)
        data = pos + 8
        if data + pr_datasz > end:
            return None
        if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED:
            return int(img.unpack("I", data)[0]) if pr_datasz == 4 else None
        pos = data + _align(pr_datasz, pad)
    return None


def _imports(
    img: _Image, sections: list[tuple[int, ...]], wanted: Collection[str] | None
) -> tuple[Import, ...] | None:
    dynsym = next((s for s in sections if s[0] == SHT_DYNSYM), None)
    if dynsym is None:
        return None
    _t, _f, off, size, link, _a, entsize = dynsym
    fmt = "IBBHQQ" if img.is64 else "IIIBBH"
    want_size = struct.calcsize("<" + fmt)
    if entsize != want_size:
        raise _Bad(f".dynsym entry size {entsize}")
    img.check(off, size, ".dynsym")
    if not 0 <= link < len(sections):
        raise _Bad(f".dynsym links to section {link}")
    _st, _sf, str_off, str_size, _l, _sa, _se = sections[link]
    img.check(str_off, str_size, ".dynstr")
    str_end = str_off + str_size
    wanted_bytes = {n.encode() for n in wanted} if wanted is not None else None
    longest = max((len(n) for n in wanted_bytes), default=0) if wanted_bytes is not None else None
    out: list[Import] = []
    for entry in struct.iter_unpack(img.e + fmt, img.data[off : off + size - size % want_size]):
        if img.is64:
            st_name, st_info, _other, st_shndx = entry[0], entry[1], entry[2], entry[3]
        else:
            st_name, st_info, st_shndx = entry[0], entry[3], entry[5]
        if st_shndx != 0 or st_name == 0:
            continue
        start = str_off + st_name
        if start >= str_end:
            continue
        limit = str_end if longest is None else min(str_end, start + longest + 1)
        stop = img.data.find(b"\x00", start, limit)
        if stop < 0:
            continue  # unterminated, or longer than any wanted name
        name = bytes(img.data[start:stop])
        if wanted_bytes is not None and name not in wanted_bytes:
            continue
        out.append(
            Import(
                name.decode("utf-8", "backslashreplace"),
                st_info >> 4 == STB_WEAK,
                st_info & 0xF in (STT_NOTYPE, STT_FUNC),
            )
        )
        if len(out) >= MAX_IMPORTS:
            break
    return tuple(out)


def read_extras(data: Buffer, *, wanted: Collection[str] | None = None) -> ElfExtras:
    """The ISA level and the imported symbols (those in ``wanted``, or all) of an ELF image."""
    try:
        img = _Image(data)
        sections = _sections(img)
    except (_Bad, struct.error) as e:
        return ElfExtras(None, None, str(e))
    problems: list[str] = []
    isa: int | None = None
    imports: tuple[Import, ...] | None = None
    try:
        isa = _isa_needed(img, sections)
    except (_Bad, struct.error) as e:
        problems.append(f"notes: {e}")
    try:
        imports = _imports(img, sections, wanted)
    except (_Bad, struct.error) as e:
        problems.append(f"dynamic symbols: {e}")
    return ElfExtras(isa, imports, "; ".join(problems) or None)


X86_ISA_LEVELS = ((8, "x86-64-v4"), (4, "x86-64-v3"), (2, "x86-64-v2"))


def x86_isa_level(mask: int) -> str | None:
    """The highest x86-64 micro-architecture level in an ISA_1_NEEDED mask (``x86-64-v3``); None for the
    baseline; ``unknown`` for bits beyond v4 (auditwheel: unknown x86_64 ISA)."""
    bits = mask & ~1
    for bit, name in X86_ISA_LEVELS:
        if bits & bit:
            return name
    return "unknown" if bits else None

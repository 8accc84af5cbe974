"""Plan an edit of an ELF file's search path (DT_RUNPATH / DT_RPATH) and interpreter (PT_INTERP) as a
*patch*: a few small overwrites of the original bytes plus bytes appended at the end. The result is never
built in memory here; :class:`ElfPatch` says what goes where, and the caller applies it to a file (or, for
tests and small files, to bytes).

Strategy (the repairwheel-style "append a segment", never moving existing sections). Each rule is one
named step (in parentheses), run in this order by ``_plan_patch`` after ``_check_layout`` has checked the
gABI rules the steps rely on:

* A new string fits in place when the old value of the same tag is at least as long and nothing else in
  the string table points into it (dynamic entries, version names, dynamic symbol names are checked): it
  is overwritten and padded with NULs. Otherwise a copy of ``.dynstr`` with the new string after it goes
  into a new ``PT_LOAD`` segment at the end of the file, and DT_STRTAB / DT_STRSZ point there. The old table
  stays where it was, unreferenced; offsets into the table are unchanged, so symbols and version names
  read the same. (``_Planner.set_search_path``; DT_STRTAB follows in ``point_strtab_at_copy``.)
* An interpreter that fits in the old ``PT_INTERP`` bytes is written in place (NUL-padded, same size);
  a longer one goes into the new segment and PT_INTERP points there. (``set_interpreter``; one written in
  place among bytes moved to make room for the program header table goes with them:
  ``keep_interpreter_out_of_block``.)
* The dynamic table is rewritten in place when its entries still fit (spare DT_NULL slots are common);
  otherwise it moves into the new segment (with a few spare DT_NULL slots for later edits), which is then
  writable (ld.so adjusts ``.dynamic`` in memory), and PT_DYNAMIC points there. (``place_dynamic_table``,
  ``write_dynamic_table``.)
* The new segment needs a program header. In order: a PT_NULL entry is reused; or the table grows in place
  into free bytes after it, or into room made by moving the notes and ``.interp`` behind it into the new
  segment (nothing but program headers points at them); or, in a shared library, the optional PT_PHDR
  entry becomes the new PT_LOAD. All three keep the table where ``strip``/``objcopy`` expect it. Failing
  them, the table moves into the new segment (e_phoff changes, PT_PHDR follows); for executables the new
  segment then keeps the first segment's ``p_vaddr - p_offset``, so kernels that compute AT_PHDR as
  ``load address + e_phoff`` (before Linux 5.18) get it right (at most 16 MiB of padding, else refused).
  (``_table_slot``, ``_room_after_table``; ``_Planner._keep_at_phdr``; the table is written by
  ``rewrite_program_headers``.)
* The new segment starts on a page boundary in memory above every existing segment (no page is shared with
  another segment's memory), with ``p_offset % p_align == p_vaddr % p_align`` and ``p_align`` the largest
  alignment of the existing PT_LOADs (at least 4 KiB), so 64 KiB-page arm64/ppc64le systems work. The new
  PT_LOAD is placed after the last PT_LOAD (ld.so wants them in address order). (``place_segment``,
  ``rewrite_program_headers``.)
* Section headers of ``.dynstr``, ``.dynamic`` and ``.interp`` follow their content, so ``readelf -S``,
  ``strip`` and ``objcopy`` see a consistent file. (``follow_section_headers``.)
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from wheelfix.binfmt import BinaryFormatError, Buffer
from wheelfix.binfmt.elf.consts import (
    DT_AUXILIARY,
    DT_FILTER,
    DT_NEEDED,
    DT_NULL,
    DT_RPATH,
    DT_RUNPATH,
    DT_SONAME,
    DT_STRSZ,
    DT_STRTAB,
    DT_VERDEF,
    DT_VERNEED,
    DYN32,
    DYN64,
    EHDR32,
    EHDR64,
    EI_NIDENT,
    ELFCLASS64,
    ELFDATA2LSB,
    PF_R,
    PF_W,
    PHDR32,
    PHDR64,
    PT_DYNAMIC,
    PT_GNU_PROPERTY,
    PT_INTERP,
    PT_LOAD,
    PT_NOTE,
    PT_NULL,
    PT_PHDR,
    SHDR32,
    SHDR64,
    SHT_DYNAMIC,
    SHT_DYNSYM,
    SHT_NOBITS,
    SHT_NOTE,
    SHT_PROGBITS,
    SHT_STRTAB,
    SYM32_SIZE,
    SYM64_SIZE,
    VERDAUX,
    VERDEF,
    VERNAUX,
    VERNEED,
)
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.errors import EXIT_FINDINGS

__all__ = ["ElfEditError", "ElfPatch", "plan_patch"]

_STRING_TAGS = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_AUXILIARY, DT_FILTER)
_MOVABLE_SEGMENTS = (PT_INTERP, PT_NOTE, PT_GNU_PROPERTY)  # nothing but program headers points at them
SPARE_DYNAMIC_SLOTS = 4  # DT_NULL entries left after a moved dynamic table, for later edits in place
MIN_PAGE = 0x1000
MAX_PADDING = 16 << 20  # bytes of zeros an executable's edit may add to keep AT_PHDR right


class ElfEditError(BinaryFormatError):
    """The edit cannot be made to this file (it is parsed fine, but lacks what the edit needs)."""

    exit_code = EXIT_FINDINGS


Piece = bytes | tuple[int, int]  # literal bytes, or (offset, length) of the source file


@dataclass(frozen=True, slots=True)
class ElfPatch:
    """The edited file is the source with ``overrides`` written over it and ``tail`` appended.

    ``overrides`` are (offset, bytes) pairs inside the source, sorted and disjoint; ``tail`` pieces are
    literal bytes or (offset, length) ranges of the *original* source. An empty patch changes nothing.
    """

    source_size: int
    overrides: tuple[tuple[int, bytes], ...]
    tail: tuple[Piece, ...]

    @property
    def size(self) -> int:
        return self.source_size + sum(len(p) if isinstance(p, bytes) else p[1] for p in self.tail)

    @property
    def empty(self) -> bool:
        return not self.overrides and not self.tail

    def changed_ranges(self) -> list[tuple[int, int]]:
        """The byte ranges of the result that differ from (or extend) the source, sorted, merged."""
        ranges = [(off, off + len(data)) for off, data in self.overrides]
        if self.tail:
            ranges.append((self.source_size, self.size))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def apply(self, source: Buffer) -> bytes:
        """The edited file as bytes (for small files and tests)."""
        out = bytearray(source[: self.source_size])
        for piece in self.tail:
            out += piece if isinstance(piece, bytes) else source[piece[0] : piece[0] + piece[1]]
        for off, data in self.overrides:
            out[off : off + len(data)] = data
        return bytes(out)

    def apply_to_fd(self, fd: int, chunk: int = 1 << 20) -> None:
        """Edit the file open (read-write) at ``fd`` in place: append the tail, then write the overrides.
        Tail pieces are copied from the file before any override touches it."""
        if os.fstat(fd).st_size != self.source_size:
            raise ValueError("the file is not the one this patch was planned for")
        pos = self.source_size
        for piece in self.tail:
            if isinstance(piece, bytes):
                _pwrite_all(fd, piece, pos)
                pos += len(piece)
                continue
            src, length = piece
            end = src + length
            while src < end:
                data = os.pread(fd, min(chunk, end - src), src)
                if not data:
                    raise ValueError("tail piece outside the source")
                _pwrite_all(fd, data, pos)
                src += len(data)
                pos += len(data)
        for off, data in self.overrides:
            _pwrite_all(fd, data, off)


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass(slots=True)
class _Phdr:
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int


class _Layout:
    """The struct formats of one ELF class and byte order, and the parts of the file an edit touches."""

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.is64 = data[4] == ELFCLASS64
        e = "<" if data[5] == ELFDATA2LSB else ">"
        self.e = e
        is64 = self.is64
        self.ehdr = struct.Struct(e + (EHDR64 if is64 else EHDR32))
        self.phdr = struct.Struct(e + (PHDR64 if is64 else PHDR32))
        self.shdr = struct.Struct(e + (SHDR64 if is64 else SHDR32))
        self.dyn = struct.Struct(e + (DYN64 if is64 else DYN32))
        self.sym_name = struct.Struct(e + "I")
        self.sym_size = SYM64_SIZE if is64 else SYM32_SIZE
        h = self.ehdr.unpack_from(data, EI_NIDENT)
        self.e_machine = h[1]
        self.phoff, self.shoff = h[4], h[5]
        self.phnum, self.shnum = h[9], h[11]
        if self.shoff and self.shnum == 0:
            self.shnum = self.shdr.unpack_from(data, self.shoff)[5]
        if self.phnum == 0xFFFF:
            raise ElfEditError("extended program header numbering (PN_XNUM) is not supported")
        self.phdrs = [self._read_phdr(i) for i in range(self.phnum)]
        self.sections = [
            self.shdr.unpack_from(data, self.shoff + i * self.shdr.size) for i in range(self.shnum)
        ]

    def _read_phdr(self, i: int) -> _Phdr:
        f = self.phdr.unpack_from(self.data, self.phoff + i * self.phdr.size)
        if self.is64:
            t, flags, off, va, pa, fs, ms, al = f
        else:
            t, off, va, pa, fs, ms, flags, al = f
        return _Phdr(t, flags, off, va, pa, fs, ms, al)

    def pack_phdr(self, p: _Phdr) -> bytes:
        if self.is64:
            return self.phdr.pack(p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align)
        return self.phdr.pack(p.type, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.flags, p.align)

    def loads(self) -> list[_Phdr]:
        return [p for p in self.phdrs if p.type == PT_LOAD]

    def vaddr_to_offset(self, vaddr: int) -> int:
        for p in self.loads():
            if p.vaddr <= vaddr < p.vaddr + p.filesz:
                return p.offset + vaddr - p.vaddr
        raise ElfEditError(f"address {vaddr:#x} is not in any loaded segment")

    def cstring_len(self, offset: int) -> int:
        stop = self.data.find(b"\x00", offset)
        if stop < 0:
            raise ElfEditError(f"unterminated string at {offset:#x}")
        return stop - offset


def _dynamic(lay: _Layout) -> tuple[_Phdr, list[tuple[int, int]], int]:
    """PT_DYNAMIC, its entries before the first DT_NULL, and how many entries it has room for."""
    dyn = [p for p in lay.phdrs if p.type == PT_DYNAMIC]
    if not dyn:
        raise ElfEditError("no PT_DYNAMIC segment (a static binary has no search path to set)")
    seg = dyn[0]
    capacity = seg.filesz // lay.dyn.size
    entries: list[tuple[int, int]] = []
    for i in range(capacity):
        tag, val = lay.dyn.unpack_from(lay.data, seg.offset + i * lay.dyn.size)
        if tag == DT_NULL:
            break
        entries.append((tag, val))
    return seg, entries, capacity


# Version chains as (header format, its count / aux offset / next fields, its name field or None,
# aux format, its name / next fields): Elf_Verneed + Elf_Vernaux, Elf_Verdef + Elf_Verdaux.
_VERSION_CHAINS = {
    DT_VERNEED: (VERNEED, 1, 3, 4, 2, VERNAUX, 3, 4),
    DT_VERDEF: (VERDEF, 3, 5, 6, None, VERDAUX, 0, 1),
}


def _version_names(lay: _Layout, tag: int, vaddr: int) -> Iterator[int]:
    """The string-table offsets a version-need or version-definition chain names."""
    head_fmt, cnt_i, aux_i, next_i, name_i, aux_fmt, aux_name_i, aux_next_i = _VERSION_CHAINS[tag]
    head, aux = struct.Struct(lay.e + head_fmt), struct.Struct(lay.e + aux_fmt)
    off = lay.vaddr_to_offset(vaddr)
    for _ in range(1 << 16):
        h = head.unpack_from(lay.data, off)
        if name_i is not None:
            yield h[name_i]
        a = off + h[aux_i]
        for _ in range(h[cnt_i]):
            x = aux.unpack_from(lay.data, a)
            yield x[aux_name_i]
            if not x[aux_next_i]:
                break
            a += x[aux_next_i]
        if not h[next_i]:
            break
        off += h[next_i]


def _string_refs(lay: _Layout, entries: list[tuple[int, int]]) -> Iterator[int]:
    """Every string-table offset something in the file points at (to know whether a string may be
    overwritten in place). Yields -1 when it cannot tell (no section headers to find the symbols)."""
    for tag, val in entries:
        if tag in _STRING_TAGS:
            yield val
    for tag, val in entries:
        if tag in _VERSION_CHAINS:
            yield from _version_names(lay, tag, val)
    dynsyms = [s for s in lay.sections if s[1] == SHT_DYNSYM]
    if not dynsyms:
        yield -1
        return
    for s in dynsyms:
        start, size = s[4], s[5]
        names = memoryview(lay.data)[start : start + size - size % lay.sym_size]
        fmt = lay.sym_name.format[0] + "I" + ("20x" if lay.is64 else "12x")
        for (name,) in struct.iter_unpack(fmt, names):
            yield name


class _Segment:
    """Content of the new segment, laid out from offset 0 (relative to the segment's start)."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.length = 0

    def put(self, piece: Piece, align: int = 1) -> tuple[int, int]:
        """Append ``piece`` at the next ``align``-aligned offset; return (offset, index of the piece)."""
        pad = _align(self.length, align) - self.length
        if pad:
            self.pieces.append(b"\0" * pad)
            self.length += pad
        at = self.length
        self.pieces.append(piece)
        self.length += len(piece) if isinstance(piece, bytes) else piece[1]
        return at, len(self.pieces) - 1

    def put_at_residue(self, piece: Piece, residue: int, modulus: int) -> int:
        """Append ``piece`` at the next offset that is ``residue`` modulo ``modulus``; return the offset."""
        pad = (residue - self.length) % modulus
        if pad:
            self.pieces.append(b"\0" * pad)
            self.length += pad
        at = self.length
        self.pieces.append(piece)
        self.length += len(piece) if isinstance(piece, bytes) else piece[1]
        return at


def plan_patch(
    data: Buffer, *, path: tuple[str, str] | None = None, interpreter: str | None = None
) -> ElfPatch:
    """Plan setting the search path (``path = (kind, value)``, kind "RUNPATH" or "RPATH"; the other tag is
    removed) and/or the interpreter. Raises BinaryFormatError for a file that does not parse (or whose
    values cannot be written back) and ElfEditError for one that cannot take the edit."""
    try:
        return _plan_patch(data, path=path, interpreter=interpreter)
    except (struct.error, OverflowError) as e:  # a field whose new value does not fit (hostile input)
        raise BinaryFormatError(f"a header value is out of range for this ELF class: {e}") from None


def _plan_patch(data: Buffer, *, path: tuple[str, str] | None, interpreter: str | None) -> ElfPatch:
    info = parse_elf(data, scan_strings=False)  # full validation first: bounds of everything below
    lay = _Layout(data)
    _check_layout(lay)
    plan = _Planner(lay)
    if path is not None or info.is_dynamic:
        plan.read_dynamic()
    if path is not None:
        plan.set_search_path(*path)
    if interpreter is not None:
        plan.set_interpreter(interpreter, info.interpreter)
    plan.place_dynamic_table()
    if not plan.needs_segment():  # in-place edits only: no new segment
        plan.write_dynamic_table()
        return plan.finish(None)
    plan.keep_interpreter_out_of_block()
    place = plan.place_segment()
    plan.rewrite_program_headers(place)
    plan.point_strtab_at_copy(place)
    plan.write_dynamic_table()
    plan.follow_section_headers(place)
    return plan.finish(place)


# --- the checks and steps of _plan_patch ---------------------------------------------------------------


def _check_layout(lay: _Layout) -> None:
    """gABI rules the reader does not enforce but the plan relies on. A file that breaks one is malformed
    input, not a file that cannot take the edit: plain BinaryFormatError."""
    ehdr_end = EI_NIDENT + lay.ehdr.size
    if lay.phnum and lay.phoff < ehdr_end:  # entries written there would overwrite the ELF header
        raise BinaryFormatError(f"the program header table (at {lay.phoff:#x}) overlaps the ELF header")
    if lay.shnum and lay.shoff and lay.shoff < ehdr_end:
        raise BinaryFormatError(f"the section header table (at {lay.shoff:#x}) overlaps the ELF header")
    for unique, label in ((PT_INTERP, "PT_INTERP"), (PT_DYNAMIC, "PT_DYNAMIC"), (PT_PHDR, "PT_PHDR")):
        if sum(1 for p in lay.phdrs if p.type == unique) > 1:  # the gABI allows one
            raise BinaryFormatError(f"more than one {label} program header")
    for p in lay.phdrs:
        # PT_INTERP and PT_DYNAMIC are written in place: they must not share bytes with the table or the
        # ELF header (fuzz finding: an interpreter over the header made two overwrites overlap)
        if p.type in (PT_INTERP, PT_DYNAMIC) and _overlaps_table(lay, p):
            raise BinaryFormatError(f"the program header table overlaps a segment (type {p.type:#x})")
        if p.type in (PT_INTERP, PT_DYNAMIC) and p.filesz and p.offset < ehdr_end:
            raise BinaryFormatError(f"a segment (type {p.type:#x}) overlaps the ELF header")
        if p.type != PT_NULL and _malformed(lay, p):
            raise BinaryFormatError(f"malformed program header (type {p.type:#x}, offset {p.offset:#x})")


def _overlaps_table(lay: _Layout, p: _Phdr) -> bool:
    table_start, table_stop = lay.phoff, lay.phoff + lay.phnum * lay.phdr.size
    return bool(p.filesz) and p.offset < table_stop and p.offset + p.filesz > table_start


def _malformed(lay: _Layout, p: _Phdr) -> bool:
    if p.filesz > p.memsz or p.align & (p.align - 1):
        return True
    if p.type != PT_LOAD:
        return False
    return p.vaddr + p.memsz > 1 << (64 if lay.is64 else 32) or p.offset + p.filesz > len(lay.data)


@dataclass(frozen=True, slots=True)
class _TableSlot:
    """Where the new PT_LOAD's program header goes: in an entry it replaces (``reuse``: PT_NULL or
    PT_PHDR), in room after the table (``grow``), or, with neither, the table moves (``move``)."""

    reuse: int | None = None
    # (start, end) of the bytes after the table that move into the new segment to make room for one
    # more entry; start == end when the room is free already
    grow: tuple[int, int] | None = None

    @property
    def move(self) -> bool:
        return self.reuse is None and self.grow is None

    @property
    def block(self) -> tuple[int, int] | None:
        """The bytes that move to make room (None when none do)."""
        return self.grow if self.grow is not None and self.grow[1] > self.grow[0] else None

    def in_block(self, offset: int, length: int) -> bool:
        block = self.block
        return block is not None and block[0] <= offset and offset + length <= block[1]


def _table_slot(lay: _Layout) -> _TableSlot:
    """Program header table growth, in order: a PT_NULL entry is reused; or the table grows into room after
    it (free bytes, or made by moving the notes and .interp that follow it into the new segment); or, in a
    shared library (no PT_INTERP), the PT_PHDR entry becomes the new PT_LOAD (optional there: ld.so finds
    the table through the PT_LOAD that holds it). All three keep the table where strip and objcopy expect
    it. Failing them, the table moves to the start of the new segment (ld.so copes; BFD's strip/objcopy
    may not)."""
    if any(p.type == PT_NULL for p in lay.phdrs):
        return _TableSlot(reuse=PT_NULL)
    grow = _room_after_table(lay)
    if grow is not None:
        return _TableSlot(grow=grow)
    has_interp = any(p.type == PT_INTERP for p in lay.phdrs)
    if not has_interp and any(p.type == PT_PHDR for p in lay.phdrs):
        return _TableSlot(reuse=PT_PHDR)
    return _TableSlot()


@dataclass(slots=True)
class _DynamicTable:
    """PT_DYNAMIC (None when not read: a file without one that needs no search path), and its edit."""

    seg: _Phdr | None = None
    entries: list[tuple[int, int]] = field(default_factory=list)  # before the first DT_NULL
    capacity: int = 0  # entries PT_DYNAMIC has room for
    tags: dict[int, int] = field(default_factory=dict)  # of ``entries``; the last value of a repeated tag
    new_entries: list[tuple[int, int]] = field(default_factory=list)
    new_strsz: int = 0
    strtab_rel: int | None = None  # of the string table's copy in the new segment
    changed: bool = False
    slots: int = 0  # entries the table is written with
    rel: int | None = None  # of the table in the new segment, when it moves there
    index: int = -1  # of its piece in the new segment

    @classmethod
    def read(cls, lay: _Layout) -> _DynamicTable:
        seg, entries, capacity = _dynamic(lay)
        tags = dict(entries)
        return cls(seg, entries, capacity, tags, list(entries), tags.get(DT_STRSZ, 0))


@dataclass(slots=True)
class _Interpreter:
    """PT_INTERP (None when there is none) and its edit."""

    seg: _Phdr | None
    new: bytes = b""  # the new path, without its NUL
    rel: int | None = None  # of the new path in the new segment, when it goes there


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where the new segment is, and how far the bytes moved to make room for the table moved."""

    offset: int
    vaddr: int
    align: int
    block_shift: int = 0
    vaddr_shift: int = 0

    def position(self, rel: int) -> tuple[int, int]:
        """(file offset, address) of ``rel`` bytes into the new segment."""
        return self.offset + rel, self.vaddr + rel


class _Planner:
    """One plan in the making: the overwrites of the source so far, and the new segment's content (which
    becomes a PT_LOAD only when something is put in it). Each method is one rule of the module docstring;
    _plan_patch runs them in order."""

    def __init__(self, lay: _Layout) -> None:
        self.lay = lay
        self.size = len(lay.data)
        self.overrides: dict[int, bytes] = {}
        self.seg = _Segment()
        self.slot = _table_slot(lay)
        self.new_phnum = lay.phnum if self.slot.reuse is not None else lay.phnum + 1
        self.table_rel, self.table_index = 0, -1
        if self.slot.move:  # the table goes first in the new segment
            self.table_rel, self.table_index = self.seg.put(b"\0" * (self.new_phnum * lay.phdr.size), 8)
        self.table_bytes = self.seg.length
        self.dyn = _DynamicTable()
        self.interp = _Interpreter(next((p for p in lay.phdrs if p.type == PT_INTERP), None))

    def read_dynamic(self) -> None:
        self.dyn = _DynamicTable.read(self.lay)

    # --- search path

    def set_search_path(self, kind: str, value: str) -> None:
        """DT_RUNPATH (``kind`` "RUNPATH") or DT_RPATH set to ``value``, the other one removed. The string
        overwrites the old one in place when it may, else goes after a copy of the string table."""
        dyn = self.dyn
        want_tag, other_tag = (DT_RUNPATH, DT_RPATH) if kind == "RUNPATH" else (DT_RPATH, DT_RUNPATH)
        strtab_off, strsz = self._string_table()
        encoded = value.encode("utf-8")
        if b"\0" in encoded:
            raise ElfEditError("a search path cannot contain NUL")
        str_index = self._string_in_place(want_tag, encoded, strtab_off)
        if str_index is None:  # a copy of the whole table, the new string after it
            dyn.strtab_rel, _i = self.seg.put((strtab_off, strsz))
            self.seg.put(encoded + b"\0")
            str_index = strsz
            dyn.new_strsz = strsz + len(encoded) + 1
        dyn.new_entries = _with_search_path(dyn.new_entries, want_tag, other_tag, str_index, dyn.new_strsz)

    def _string_table(self) -> tuple[int, int]:
        """(file offset, size) of the dynamic string table."""
        strtab_vaddr, strsz = self.dyn.tags.get(DT_STRTAB), self.dyn.tags.get(DT_STRSZ)
        if strtab_vaddr is None or strsz is None:
            raise ElfEditError("the dynamic section has no DT_STRTAB/DT_STRSZ")
        strtab_off = self.lay.vaddr_to_offset(strtab_vaddr)
        if strtab_off + strsz > self.size:
            raise ElfEditError(f"DT_STRSZ ({strsz:#x} at {strtab_off:#x}) runs past the end of the file")
        return strtab_off, strsz

    def _string_in_place(self, tag: int, encoded: bytes, strtab_off: int) -> int | None:
        """The string-table index ``tag`` can name ``encoded`` at without a new table: its current string's,
        when that is ``encoded`` already, or when ``encoded`` fits over it and nothing else in the file
        points into it (the overwrite is planned). None otherwise."""
        current = self.dyn.tags.get(tag)
        if current is None:
            return None
        old_len = self.lay.cstring_len(strtab_off + current)
        old_value = bytes(self.lay.data[strtab_off + current : strtab_off + current + old_len])
        if old_value == encoded:
            return current
        if len(encoded) > old_len:
            return None
        others = [e for e in self.dyn.entries if e != (tag, current)]
        if any(r < 0 or current <= r <= current + old_len for r in _string_refs(self.lay, others)):
            return None
        self.overrides[strtab_off + current] = encoded + b"\0" * (old_len + 1 - len(encoded))
        return current

    # --- PT_INTERP placement

    def set_interpreter(self, interpreter: str, old: str | None) -> None:
        """An interpreter that fits in the old PT_INTERP bytes is written there (NUL-padded over the old
        string only); a longer one goes into the new segment."""
        seg = self.interp.seg
        if seg is None:
            raise ElfEditError("no PT_INTERP to change (a shared library has no interpreter)")
        new = interpreter.encode("utf-8")
        if b"\0" in new or not new:
            raise ElfEditError("an interpreter path must be non-empty and cannot contain NUL")
        self.interp.new = new
        old_interp = (old or "").encode("utf-8")
        if new == old_interp:
            return
        if len(new) + 1 <= seg.filesz:
            width = max(len(new), min(len(old_interp), seg.filesz - 1)) + 1
            self.overrides[seg.offset] = new + b"\0" * (width - len(new))
        else:
            self.interp.rel, _i = self.seg.put(new + b"\0")

    def keep_interpreter_out_of_block(self) -> None:
        """An interpreter written in place must not stay among the bytes moved away to make room for the
        table (the table's new entry overwrites them): it goes into the new segment with them."""
        seg, grow = self.interp.seg, self.slot.grow
        if (
            seg is not None
            and seg.offset in self.overrides
            and grow is not None
            and seg.offset < grow[1]
            and seg.offset + seg.filesz > grow[0]
        ):
            del self.overrides[seg.offset]
            self.interp.rel, _i = self.seg.put(self.interp.new + b"\0")

    # --- dynamic table: in place vs moved

    def place_dynamic_table(self) -> None:
        """The dynamic table is rewritten in place when its entries and a DT_NULL fit; otherwise it moves
        into the new segment, with SPARE_DYNAMIC_SLOTS more DT_NULL entries for later edits."""
        dyn = self.dyn
        dyn.changed = dyn.seg is not None and dyn.new_entries != dyn.entries
        dyn.slots = dyn.capacity
        if dyn.changed and len(dyn.new_entries) + 1 > dyn.capacity:
            dyn.slots = len(dyn.new_entries) + 1 + SPARE_DYNAMIC_SLOTS
            dyn.rel, dyn.index = self.seg.put(b"\0" * (dyn.slots * self.lay.dyn.size), 8)

    def needs_segment(self) -> bool:
        """Whether anything but the moved table's placeholder went into the new segment."""
        return self.seg.length != self.table_bytes

    def point_strtab_at_copy(self, place: _Placement) -> None:
        if self.dyn.strtab_rel is not None:
            vaddr = place.vaddr + self.dyn.strtab_rel
            self.dyn.new_entries = [(t, vaddr if t == DT_STRTAB else v) for t, v in self.dyn.new_entries]

    def write_dynamic_table(self) -> None:
        dyn = self.dyn
        if not dyn.changed or dyn.seg is None:
            return
        packed = _pack_dynamic(self.lay, dyn.new_entries, dyn.slots)
        if dyn.rel is None:
            self.overrides[dyn.seg.offset] = packed
        else:
            self.seg.pieces[dyn.index] = packed

    # --- the new segment and the program header table

    def place_segment(self) -> _Placement:
        """The moved block (if any) goes last into the new segment, at its old offset modulo 16. The segment
        starts on a page above every segment's memory, with p_offset % p_align == p_vaddr % p_align and
        p_align the largest alignment of the PT_LOADs (at least MIN_PAGE)."""
        lay, block = self.lay, self.slot.block
        block_rel = 0
        if block is not None:
            block_rel = self.seg.put_at_residue((block[0], block[1] - block[0]), block[0] % 16, 16)
        loads = lay.loads()
        if not loads:
            raise ElfEditError("no PT_LOAD segment")
        align = max([MIN_PAGE, *(p.align for p in loads)])
        max_end = max(p.vaddr + p.memsz for p in loads)
        if self.interp.seg is not None and self.slot.move:
            offset, vaddr = self._keep_at_phdr(loads[0], align, max_end)
        else:
            offset = _align(self.size, 16)
            vaddr = _align(max_end, align) + offset % align
        if block is None:
            return _Placement(offset, vaddr, align)
        block_shift = offset + block_rel - block[0]
        vaddr_shift = vaddr + block_rel - _offset_to_vaddr(lay, block[0])
        return _Placement(offset, vaddr, align, block_shift, vaddr_shift)

    def _keep_at_phdr(self, first: _Phdr, align: int, max_end: int) -> tuple[int, int]:
        """(offset, address) of the new segment of an executable whose table moves there: the first
        segment's vaddr - offset is kept, so that kernels before 5.18 (AT_PHDR = load address + e_phoff)
        point at the table. This pads the file up to its memory image, at most MAX_PADDING bytes."""
        delta = first.vaddr - first.offset
        offset = max(_align(self.size, 16), _align(max_end, align) - delta)
        if offset - self.size > MAX_PADDING:
            raise ElfEditError(
                f"no room for another program header, and moving the table would pad the file by "
                f"{offset - self.size} bytes (its memory image); not done"
            )
        vaddr = offset + delta
        if vaddr % align != offset % align:
            raise ElfEditError("the first PT_LOAD is not page-aligned; cannot place a new segment")
        return offset, vaddr

    def rewrite_program_headers(self, place: _Placement) -> None:
        """The table with the new PT_LOAD after the last PT_LOAD (ld.so wants them in address order), the
        entries of moved content following it, and e_phoff/e_phnum in the ELF header."""
        lay = self.lay
        phdrs = [self._moved_phdr(p, place) for p in lay.phdrs]
        if self.slot.reuse is not None:
            phdrs.remove(next(p for p in phdrs if p.type == self.slot.reuse))
        flags = PF_R | (PF_W if self.dyn.rel is not None else 0)  # ld.so adjusts .dynamic in memory
        length = self.seg.length
        new_load = _Phdr(PT_LOAD, flags, place.offset, place.vaddr, place.vaddr, length, length, place.align)
        last_load = max(i for i, p in enumerate(phdrs) if p.type == PT_LOAD)
        phdrs.insert(last_load + 1, new_load)
        table = b"".join(lay.pack_phdr(p) for p in phdrs)
        if self.slot.move:
            self.seg.pieces[self.table_index] = table
        else:  # in place, the entries after it (a PT_NULL or PT_PHDR left over, or moved bytes) cleared
            old_end = lay.phoff + lay.phnum * lay.phdr.size
            grow = self.slot.grow
            cleared = max(0, (grow[1] if grow is not None else old_end) - lay.phoff - len(table))
            self.overrides[lay.phoff] = table + b"\0" * cleared
        if self.new_phnum != lay.phnum or self.slot.move:
            h = list(lay.ehdr.unpack_from(lay.data, EI_NIDENT))
            h[4] = place.offset + self.table_rel if self.slot.move else lay.phoff  # e_phoff
            h[9] = self.new_phnum  # e_phnum
            self.overrides[EI_NIDENT] = lay.ehdr.pack(*h)

    def _moved_phdr(self, p: _Phdr, place: _Placement) -> _Phdr:
        """A copy of ``p`` that follows its content: out of the moved block, or into the new segment."""
        q = replace(p)
        if place.block_shift and q.type != PT_LOAD and self.slot.in_block(q.offset, q.filesz):
            q.offset += place.block_shift
            q.vaddr += place.vaddr_shift
            q.paddr += place.vaddr_shift
        if q.type == PT_PHDR and self.slot.reuse != PT_PHDR:
            if self.slot.move:
                q.offset, q.vaddr = place.position(self.table_rel)
                q.paddr = q.vaddr
            q.filesz = q.memsz = self.new_phnum * self.lay.phdr.size
        elif q.type == PT_INTERP and self.interp.rel is not None:
            q.offset, q.vaddr = place.position(self.interp.rel)
            q.paddr = q.vaddr
            q.filesz = q.memsz = len(self.interp.new) + 1
        elif q.type == PT_DYNAMIC and self.dyn.rel is not None:
            q.offset, q.vaddr = place.position(self.dyn.rel)
            q.paddr = q.vaddr
            q.filesz = q.memsz = self.dyn.slots * self.lay.dyn.size
        return q

    # --- section header follow-up

    def follow_section_headers(self, place: _Placement) -> None:
        """Section headers follow their content: ``.dynstr``, ``.dynamic`` and ``.interp`` into the new
        segment, the sections in the moved block (but SHT_NOBITS) by its shift."""
        lay = self.lay
        for i, s in enumerate(lay.sections):
            fields = list(s)
            moved = self._moved_section(s)
            if moved is not None:
                fields[3], fields[4], fields[5] = place.vaddr + moved[0], place.offset + moved[0], moved[1]
            elif place.block_shift and s[1] != SHT_NOBITS and self.slot.in_block(s[4], s[5]):
                fields[3], fields[4] = s[3] + place.vaddr_shift if s[3] else 0, s[4] + place.block_shift
            else:
                continue
            self.overrides[lay.shoff + i * lay.shdr.size] = lay.shdr.pack(*fields)

    def _moved_section(self, s: tuple[int, ...]) -> tuple[int, int] | None:
        """(offset in the new segment, size) of a section whose content moved there, else None."""
        sh_type, sh_addr, sh_off, sh_size = s[1], s[3], s[4], s[5]
        dyn, interp = self.dyn, self.interp
        if (
            dyn.strtab_rel is not None
            and sh_type == SHT_STRTAB
            and sh_addr
            and sh_addr == dyn.tags[DT_STRTAB]
        ):
            return dyn.strtab_rel, dyn.new_strsz
        if dyn.rel is not None and sh_type == SHT_DYNAMIC:
            return dyn.rel, dyn.slots * self.lay.dyn.size
        if (
            interp.rel is not None
            and interp.seg is not None
            and sh_type == SHT_PROGBITS  # .interp, not a note that happens to start at the same offset
            and sh_off == interp.seg.offset
            and sh_size
        ):
            return interp.rel, len(interp.new) + 1
        return None

    def finish(self, place: _Placement | None) -> ElfPatch:
        """The patch: the overrides, and (when placed) padding up to the new segment and its content."""
        tail: list[Piece] = []
        if place is not None:
            tail = [b"\0" * (place.offset - self.size)] if place.offset > self.size else []
            tail.extend(self.seg.pieces)
        return _finish(self.size, self.overrides, tuple(tail))


def _with_search_path(
    entries: list[tuple[int, int]], want_tag: int, other_tag: int, str_index: int, strsz: int
) -> list[tuple[int, int]]:
    """``entries`` with one ``want_tag`` entry naming ``str_index`` (where the first one was, else after the
    last DT_NEEDED, as linkers write it), no ``other_tag`` entry, and every DT_STRSZ set to ``strsz``."""
    rebuilt: list[tuple[int, int]] = []
    placed = False
    for tag, val in entries:
        if tag == other_tag:
            continue
        if tag == want_tag:
            if not placed:
                rebuilt.append((tag, str_index))
                placed = True
            continue
        rebuilt.append((tag, strsz if tag == DT_STRSZ else val))
    if not placed:
        at = max((i + 1 for i, (t, _v) in enumerate(rebuilt) if t == DT_NEEDED), default=0)
        rebuilt.insert(at, (want_tag, str_index))
    return rebuilt


def _offset_to_vaddr(lay: _Layout, offset: int) -> int:
    for p in lay.loads():
        if p.offset <= offset < p.offset + p.filesz:
            return p.vaddr + offset - p.offset
    raise ElfEditError(f"offset {offset:#x} is not in any loaded segment")


def _room_after_table(lay: _Layout) -> tuple[int, int] | None:
    """Room for one more program header right after the table: ``(start, end)`` of the bytes that must
    move away first (``start == end``: the room is free already), or None when it cannot be made. Only
    notes and ``.interp`` are moved: nothing but program headers points at them."""
    need = lay.phdr.size
    table_end = lay.phoff + lay.phnum * lay.phdr.size
    first = lay.loads()[0] if lay.loads() else None
    if first is None or not (first.offset <= lay.phoff and table_end + need <= first.offset + first.filesz):
        return None
    interp = next((p for p in lay.phdrs if p.type == PT_INTERP), None)
    # everything that occupies file bytes after the table: sections, and non-LOAD segments
    items: list[tuple[int, int, bool]] = []  # (start, end, movable)
    for s in lay.sections:
        sh_type, sh_off, sh_size = s[1], s[4], s[5]
        if sh_type == SHT_NOBITS or sh_size == 0 or sh_off + sh_size <= table_end or sh_off == 0:
            continue
        movable = sh_type == SHT_NOTE or (
            interp is not None and sh_type == SHT_PROGBITS and sh_off == interp.offset
        )
        items.append((sh_off, sh_off + sh_size, movable))
    for p in lay.phdrs:
        if p.type in (PT_LOAD, PT_PHDR) or p.filesz == 0 or p.offset + p.filesz <= table_end:
            continue
        items.append((p.offset, p.offset + p.filesz, p.type in _MOVABLE_SEGMENTS))
    if not lay.sections:
        return None  # without section headers the free space cannot be told from unnamed data
    items.sort()
    moved_end = table_end
    for start, end, movable in items:
        if start >= table_end + need and start >= moved_end:
            return (table_end, moved_end)
        if start < table_end:
            return None  # something overlaps the table itself
        if not movable:
            return None
        moved_end = max(moved_end, end)
    limit = first.offset + first.filesz
    return (table_end, moved_end) if moved_end + 0 <= limit and table_end + need <= limit else None


def _pack_dynamic(lay: _Layout, entries: list[tuple[int, int]], slots: int) -> bytes:
    body = b"".join(lay.dyn.pack(t, v) for t, v in entries)
    return body + b"\0" * (slots * lay.dyn.size - len(body))


def _finish(size: int, overrides: dict[int, bytes], tail: tuple[Piece, ...]) -> ElfPatch:
    items = sorted(overrides.items())
    for (a, da), (b, _db) in itertools.pairwise(items):
        if a + len(da) > b:
            raise AssertionError(f"overlapping overrides at {a:#x} and {b:#x}")
    return ElfPatch(size, tuple(items), tail)

"""Plan an edit of an ELF file's search path (DT_RUNPATH / DT_RPATH) and interpreter (PT_INTERP) as a
*patch*: a few small overwrites of the original bytes plus bytes appended at the end. The result is never
built in memory here; :class:`ElfPatch` says what goes where, and the caller applies it to a file (or, for
tests and small files, to bytes).

Strategy (the repairwheel-style "append a segment", never moving existing sections):

* A new string fits in place when the old value of the same tag is at least as long and nothing else in
  the string table points into it (dynamic entries, version names, dynamic symbol names are checked): it
  is overwritten and padded with NULs. Otherwise a copy of ``.dynstr`` with the new string after it goes
  into a new ``PT_LOAD`` segment at the end of the file, and DT_STRTAB / DT_STRSZ point there. The old table
  stays where it was, unreferenced; offsets into the table are unchanged, so symbols and version names
  read the same.
* An interpreter that fits in the old ``PT_INTERP`` bytes is written in place (NUL-padded, same size);
  a longer one goes into the new segment and PT_INTERP points there.
* The dynamic table is rewritten in place when its entries still fit (spare DT_NULL slots are common);
  otherwise it moves into the new segment (with a few spare DT_NULL slots for later edits), which is then
  writable (ld.so adjusts ``.dynamic`` in memory), and PT_DYNAMIC points there.
* The new segment needs a program header. In order: a PT_NULL entry is reused; or the table grows in place
  into free bytes after it, or into room made by moving the notes and ``.interp`` behind it into the new
  segment (nothing but program headers points at them); or, in a shared library, the optional PT_PHDR
  entry becomes the new PT_LOAD. All three keep the table where ``strip``/``objcopy`` expect it. Failing
  them, the table moves into the new segment (e_phoff changes, PT_PHDR follows); for executables the new
  segment then keeps the first segment's ``p_vaddr - p_offset``, so kernels that compute AT_PHDR as
  ``load address + e_phoff`` (before Linux 5.18) get it right (at most 16 MiB of padding, else refused).
* The new segment starts on a page boundary in memory above every existing segment (no page is shared with
  another segment's memory), with ``p_offset % p_align == p_vaddr % p_align`` and ``p_align`` the largest
  alignment of the existing PT_LOADs (at least 4 KiB), so 64 KiB-page arm64/ppc64le systems work. The new
  PT_LOAD is placed after the last PT_LOAD (ld.so wants them in address order).
* Section headers of ``.dynstr``, ``.dynamic`` and ``.interp`` follow their content, so ``readelf -S``,
  ``strip`` and ``objcopy`` see a consistent file.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.errors import EXIT_FINDINGS

__all__ = ["ElfEditError", "ElfPatch", "plan_patch"]

Buffer = bytes | bytearray | mmap.mmap

PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = 0, 1, 2, 3, 6
PF_W, PF_R = 0x2, 0x4
SHT_STRTAB, SHT_DYNAMIC, SHT_DYNSYM = 3, 6, 11
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SONAME, DT_RPATH = 0, 1, 5, 6, 10, 14, 15
DT_RUNPATH = 29
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF
DT_VERDEF, DT_VERNEED = 0x6FFFFFFC, 0x6FFFFFFE
_STRING_TAGS = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_AUXILIARY, DT_FILTER)
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
        self.is64 = data[4] == 2
        e = "<" if data[5] == 1 else ">"
        self.e = e
        if self.is64:
            self.ehdr = struct.Struct(e + "HHIQQQIHHHHHH")
            self.phdr = struct.Struct(e + "IIQQQQQQ")
            self.shdr = struct.Struct(e + "IIQQQQIIQQ")
            self.dyn = struct.Struct(e + "qQ")
            self.sym_name = struct.Struct(e + "I")
            self.sym_size = 24
        else:
            self.ehdr = struct.Struct(e + "HHIIIIIHHHHHH")
            self.phdr = struct.Struct(e + "IIIIIIII")
            self.shdr = struct.Struct(e + "IIIIIIIIII")
            self.dyn = struct.Struct(e + "iI")
            self.sym_name = struct.Struct(e + "I")
            self.sym_size = 16
        h = self.ehdr.unpack_from(data, 16)
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
    DT_VERNEED: ("HHIII", 1, 3, 4, 2, "IHHII", 3, 4),
    DT_VERDEF: ("HHHHIII", 3, 5, 6, None, "II", 0, 1),
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
    ehdr_end = 16 + lay.ehdr.size
    if lay.phnum and lay.phoff < ehdr_end:  # entries written there would overwrite the ELF header
        raise BinaryFormatError(f"the program header table (at {lay.phoff:#x}) overlaps the ELF header")
    if lay.shnum and lay.shoff and lay.shoff < ehdr_end:
        raise BinaryFormatError(f"the section header table (at {lay.shoff:#x}) overlaps the ELF header")
    for unique, label in ((PT_INTERP, "PT_INTERP"), (PT_DYNAMIC, "PT_DYNAMIC"), (PT_PHDR, "PT_PHDR")):
        if sum(1 for p in lay.phdrs if p.type == unique) > 1:  # the gABI allows one
            raise BinaryFormatError(f"more than one {label} program header")
    table_start, table_stop = lay.phoff, lay.phoff + lay.phnum * lay.phdr.size
    for p in lay.phdrs:  # gABI rules the reader does not enforce but the layout below relies on
        # PT_INTERP and PT_DYNAMIC are written in place: they must not share bytes with the table
        if (
            p.type in (PT_INTERP, PT_DYNAMIC)
            and p.filesz
            and p.offset < table_stop
            and p.offset + p.filesz > table_start
        ):
            raise BinaryFormatError(f"the program header table overlaps a segment (type {p.type:#x})")
        if p.type != PT_NULL and (
            p.filesz > p.memsz
            or p.align & (p.align - 1)
            or (p.type == PT_LOAD and p.vaddr + p.memsz > 1 << (64 if lay.is64 else 32))
            or (p.type == PT_LOAD and p.offset + p.filesz > len(data))
        ):
            # malformed input, not an edit this file cannot take: a plain BinaryFormatError
            raise BinaryFormatError(f"malformed program header (type {p.type:#x}, offset {p.offset:#x})")
    size = len(data)
    overrides: dict[int, bytes] = {}
    # A slot for the new PT_LOAD, so that the table stays where strip and objcopy expect it: a PT_NULL
    # entry; or room after the table (free bytes, or made by moving the notes and .interp that follow it
    # into the new segment); or, in a shared library (no PT_INTERP), the PT_PHDR entry (optional there:
    # ld.so finds the table through the PT_LOAD that holds it). Failing all, the table moves to the start
    # of the new segment (ld.so copes; BFD's strip/objcopy may not).
    has_interp = any(p.type == PT_INTERP for p in lay.phdrs)
    reuse: int | None = PT_NULL if any(p.type == PT_NULL for p in lay.phdrs) else None
    grow = None if reuse is not None else _room_after_table(lay)
    if reuse is None and grow is None and not has_interp and any(p.type == PT_PHDR for p in lay.phdrs):
        reuse = PT_PHDR
    move_table = reuse is None and grow is None
    new_phnum = lay.phnum if reuse is not None else lay.phnum + 1
    seg = _Segment()
    table_rel, table_index = seg.put(b"\0" * (new_phnum * lay.phdr.size), 8) if move_table else (0, -1)
    table_bytes = seg.length

    # --- search path
    dyn_seg: _Phdr | None = None
    entries: list[tuple[int, int]] = []
    capacity = 0
    if path is not None or info.is_dynamic:
        dyn_seg, entries, capacity = _dynamic(lay)
    old_tags = dict(entries)
    new_entries = list(entries)
    strtab_rel: int | None = None
    new_strsz = old_tags.get(DT_STRSZ, 0)
    if path is not None:
        kind, value = path
        want_tag, other_tag = (DT_RUNPATH, DT_RPATH) if kind == "RUNPATH" else (DT_RPATH, DT_RUNPATH)
        strtab_vaddr, strsz = old_tags.get(DT_STRTAB), old_tags.get(DT_STRSZ)
        if strtab_vaddr is None or strsz is None:
            raise ElfEditError("the dynamic section has no DT_STRTAB/DT_STRSZ")
        strtab_off = lay.vaddr_to_offset(strtab_vaddr)
        if strtab_off + strsz > size:
            raise ElfEditError(f"DT_STRSZ ({strsz:#x} at {strtab_off:#x}) runs past the end of the file")
        encoded = value.encode("utf-8")
        if b"\0" in encoded:
            raise ElfEditError("a search path cannot contain NUL")
        current = old_tags.get(want_tag)
        str_index: int | None = None
        if current is not None:
            old_len = lay.cstring_len(strtab_off + current)
            old_value = bytes(data[strtab_off + current : strtab_off + current + old_len])
            if old_value == encoded:
                str_index = current
            elif len(encoded) <= old_len:
                others = [e for e in entries if e != (want_tag, current)]
                clash = any(r < 0 or current <= r <= current + old_len for r in _string_refs(lay, others))
                if not clash:
                    overrides[strtab_off + current] = encoded + b"\0" * (old_len + 1 - len(encoded))
                    str_index = current
        if str_index is None:  # a copy of the whole table, the new string after it
            strtab_rel, _i = seg.put((strtab_off, strsz))
            seg.put(encoded + b"\0")
            str_index = strsz
            new_strsz = strsz + len(encoded) + 1
        rebuilt: list[tuple[int, int]] = []
        placed = False
        for tag, val in new_entries:
            if tag == other_tag:
                continue
            if tag == want_tag:
                if not placed:
                    rebuilt.append((tag, str_index))
                    placed = True
                continue
            rebuilt.append((tag, new_strsz if tag == DT_STRSZ else val))
        if not placed:  # after the last DT_NEEDED, as linkers write it
            at = max((i + 1 for i, (t, _v) in enumerate(rebuilt) if t == DT_NEEDED), default=0)
            rebuilt.insert(at, (want_tag, str_index))
        new_entries = rebuilt

    # --- interpreter
    interp_rel: int | None = None
    new_interp = b""
    interp_seg = next((p for p in lay.phdrs if p.type == PT_INTERP), None)
    if interpreter is not None:
        if interp_seg is None:
            raise ElfEditError("no PT_INTERP to change (a shared library has no interpreter)")
        new_interp = interpreter.encode("utf-8")
        if b"\0" in new_interp or not new_interp:
            raise ElfEditError("an interpreter path must be non-empty and cannot contain NUL")
        old_interp = (info.interpreter or "").encode("utf-8")
        if new_interp != old_interp:
            if len(new_interp) + 1 <= interp_seg.filesz:  # in place, over the old string only
                width = max(len(new_interp), min(len(old_interp), interp_seg.filesz - 1)) + 1
                overrides[interp_seg.offset] = new_interp + b"\0" * (width - len(new_interp))
            else:
                interp_rel, _i = seg.put(new_interp + b"\0")

    # --- dynamic table: in place when the entries fit, else into the new segment
    dyn_changed = dyn_seg is not None and new_entries != entries
    dyn_rel: int | None = None
    dyn_index = -1
    dyn_slots = capacity
    if dyn_changed and len(new_entries) + 1 > capacity:
        dyn_slots = len(new_entries) + 1 + SPARE_DYNAMIC_SLOTS
        dyn_rel, dyn_index = seg.put(b"\0" * (dyn_slots * lay.dyn.size), 8)

    if seg.length == table_bytes:  # in-place edits only: no new segment
        if dyn_changed and dyn_seg is not None:
            overrides[dyn_seg.offset] = _pack_dynamic(lay, new_entries, capacity)
        return _finish(size, overrides, ())

    # an interpreter written in place must not stay among the bytes moved away to make room for the
    # table (the table's new entry overwrites them): it goes into the new segment with them
    if (
        interp_seg is not None
        and interp_seg.offset in overrides
        and grow is not None
        and interp_seg.offset < grow[1]
        and interp_seg.offset + interp_seg.filesz > grow[0]
    ):
        del overrides[interp_seg.offset]
        interp_rel, _i = seg.put(new_interp + b"\0")

    # --- place the new segment
    block_rel = 0
    if grow is not None and grow[1] > grow[0]:
        block_rel = seg.put_at_residue((grow[0], grow[1] - grow[0]), grow[0] % 16, 16)
    loads = lay.loads()
    if not loads:
        raise ElfEditError("no PT_LOAD segment")
    align = max([MIN_PAGE, *(p.align for p in loads)])
    max_end = max(p.vaddr + p.memsz for p in loads)
    seg_offset = _align(size, 16)
    if interp_seg is not None and move_table:
        # the table moves: keep the first segment's vaddr - offset, so that kernels before 5.18
        # (AT_PHDR = load address + e_phoff) point at it; this pads the file up to the memory image
        delta = loads[0].vaddr - loads[0].offset
        seg_offset = max(seg_offset, _align(max_end, align) - delta)
        if seg_offset - size > MAX_PADDING:
            raise ElfEditError(
                f"no room for another program header, and moving the table would pad the file by "
                f"{seg_offset - size} bytes (its memory image); not done"
            )
        seg_vaddr = seg_offset + delta
        if seg_vaddr % align != seg_offset % align:
            raise ElfEditError("the first PT_LOAD is not page-aligned; cannot place a new segment")
    else:
        seg_vaddr = _align(max_end, align) + seg_offset % align
    flags = PF_R | (PF_W if dyn_rel is not None else 0)
    new_load = _Phdr(PT_LOAD, flags, seg_offset, seg_vaddr, seg_vaddr, seg.length, seg.length, align)

    def to_segment(rel: int) -> tuple[int, int]:
        return seg_offset + rel, seg_vaddr + rel

    block_shift = vaddr_shift = 0
    if grow is not None and grow[1] > grow[0]:
        block_shift = seg_offset + block_rel - grow[0]
        vaddr_shift = seg_vaddr + block_rel - _offset_to_vaddr(lay, grow[0])

    def in_block(offset: int, length: int) -> bool:
        return grow is not None and grow[0] <= offset and offset + length <= grow[1] and grow[1] > grow[0]

    phdrs: list[_Phdr] = []
    for p in lay.phdrs:
        q = _Phdr(p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align)
        if block_shift and q.type != PT_LOAD and in_block(q.offset, q.filesz):
            q.offset += block_shift
            q.vaddr += vaddr_shift
            q.paddr += vaddr_shift
        if q.type == PT_PHDR and reuse != PT_PHDR:
            if move_table:
                q.offset, q.vaddr = to_segment(table_rel)
                q.paddr = q.vaddr
            q.filesz = q.memsz = new_phnum * lay.phdr.size
        elif q.type == PT_INTERP and interp_rel is not None:
            q.offset, q.vaddr = to_segment(interp_rel)
            q.paddr = q.vaddr
            q.filesz = q.memsz = len(new_interp) + 1
        elif q.type == PT_DYNAMIC and dyn_rel is not None:
            q.offset, q.vaddr = to_segment(dyn_rel)
            q.paddr = q.vaddr
            q.filesz = q.memsz = dyn_slots * lay.dyn.size
        phdrs.append(q)
    if reuse is not None:
        phdrs.remove(next(p for p in phdrs if p.type == reuse))
    last_load = max(i for i, p in enumerate(phdrs) if p.type == PT_LOAD)
    phdrs.insert(last_load + 1, new_load)
    table = b"".join(lay.pack_phdr(p) for p in phdrs)
    if move_table:
        seg.pieces[table_index] = table
    else:
        old_end = lay.phoff + lay.phnum * lay.phdr.size
        cleared = max(0, (grow[1] if grow is not None else old_end) - lay.phoff - len(table))
        overrides[lay.phoff] = table + b"\0" * cleared
    if new_phnum != lay.phnum or move_table:
        h = list(lay.ehdr.unpack_from(data, 16))
        h[4] = seg_offset + table_rel if move_table else lay.phoff
        h[9] = new_phnum
        overrides[16] = lay.ehdr.pack(*h)

    if strtab_rel is not None:
        new_entries = [(t, seg_vaddr + strtab_rel if t == DT_STRTAB else v) for t, v in new_entries]
    if dyn_changed and dyn_seg is not None:
        packed = _pack_dynamic(lay, new_entries, dyn_slots)
        if dyn_rel is None:
            overrides[dyn_seg.offset] = packed
        else:
            seg.pieces[dyn_index] = packed

    # --- section headers follow their content
    for i, s in enumerate(lay.sections):
        sh_type, sh_addr, sh_off, sh_size = s[1], s[3], s[4], s[5]
        moved: tuple[int, int] | None = None
        if strtab_rel is not None and sh_type == SHT_STRTAB and sh_addr and sh_addr == old_tags[DT_STRTAB]:
            moved = (strtab_rel, new_strsz)
        elif dyn_rel is not None and sh_type == SHT_DYNAMIC:
            moved = (dyn_rel, dyn_slots * lay.dyn.size)
        elif (
            interp_rel is not None
            and interp_seg is not None
            and sh_type == SHT_PROGBITS  # .interp, not a note that happens to start at the same offset
            and sh_off == interp_seg.offset
            and sh_size
        ):
            moved = (interp_rel, len(new_interp) + 1)
        if moved is None and block_shift and sh_type != 8 and in_block(sh_off, sh_size):  # 8: SHT_NOBITS
            fields = list(s)
            fields[3], fields[4] = sh_addr + vaddr_shift if sh_addr else 0, sh_off + block_shift
            overrides[lay.shoff + i * lay.shdr.size] = lay.shdr.pack(*fields)
        if moved is not None:
            fields = list(s)
            fields[3], fields[4], fields[5] = seg_vaddr + moved[0], seg_offset + moved[0], moved[1]
            overrides[lay.shoff + i * lay.shdr.size] = lay.shdr.pack(*fields)

    tail: list[Piece] = [b"\0" * (seg_offset - size)] if seg_offset > size else []
    tail.extend(seg.pieces)
    return _finish(size, overrides, tuple(tail))


_MOVABLE_SEGMENTS = (PT_INTERP, 4, 0x6474E553)  # PT_INTERP, PT_NOTE, PT_GNU_PROPERTY
SHT_NOTE, SHT_PROGBITS, SHT_NOBITS = 7, 1, 8


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

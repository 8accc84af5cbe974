"""A small, strict ELF reader for what dynamic linking needs.

It reads an ELF image held in memory: header, program headers, the dynamic segment (NEEDED, SONAME,
RPATH/RUNPATH), PT_INTERP, ``.gnu.version_r`` (required symbol versions), FDO ``.note.dlopen`` notes, and
``lib*.so*`` strings in read-only data (dlopen candidates). Every offset and count is bounds-checked
against the image, so truncated or hostile files raise :class:`BinaryFormatError` with the offending
offset instead of reading garbage or looping. It never loads symbols tables, which is where general
readers like pyelftools spend their time (see the README's design notes for the measurement).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from wheelfix.binfmt import BinaryFormatError, Buffer
from wheelfix.binfmt.elf.consts import (
    DT_NEEDED,
    DT_NULL,
    DT_RPATH,
    DT_RUNPATH,
    DT_SONAME,
    DT_STRSZ,
    DT_STRTAB,
    DT_VERNEED,
    DT_VERNEEDNUM,
    DYN32,
    DYN64,
    EHDR32,
    EHDR64,
    EI_NIDENT,
    ELF_MAGIC,
    ELFCLASS32,
    ELFCLASS64,
    ELFDATA2LSB,
    ELFDATA2MSB,
    ET_DYN,
    ET_EXEC,
    NT_FDO_DLOPEN_METADATA,
    PHDR32,
    PHDR64,
    PT_DYNAMIC,
    PT_INTERP,
    PT_LOAD,
    PT_NOTE,
    SHDR32,
    SHDR64,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHT_NOTE,
    SHT_PROGBITS,
    VERNAUX,
    VERNEED,
)

__all__ = ["DlopenNote", "ElfInfo", "VersionNeed", "machine_name", "max_versions", "parse_elf"]

# e_machine -> the architecture name wheels use in platform tags
MACHINES = {
    3: "i686",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "armv7l",
    62: "x86_64",
    183: "aarch64",
    243: "riscv64",
    258: "loongarch64",
}
OSABIS = {0: "SYSV", 3: "GNU/Linux", 6: "Solaris", 9: "FreeBSD", 12: "OpenBSD", 97: "ARM", 255: "standalone"}
E_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

MAX_DLOPEN_CANDIDATES = 256
_DLOPEN_RE = re.compile(
    rb"(?<![A-Za-z0-9_.+/-])lib[A-Za-z0-9_+-][A-Za-z0-9_.+-]*?\.so(?:\.[0-9]+)*(?![A-Za-z0-9_.+-])"
)


@dataclass(frozen=True, slots=True)
class VersionNeed:
    """One ``Elf_Verneed`` entry: the versions this object requires from ``file``."""

    file: str
    versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DlopenNote:
    """One entry of an FDO ``.note.dlopen`` note (https://systemd.io/ELF_DLOPEN_METADATA/)."""

    sonames: tuple[str, ...]
    priority: str
    feature: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class ElfInfo:
    elf_class: int  # 32 or 64
    endian: str  # "little" or "big"
    machine: str  # x86_64, aarch64, ... or "EM_<n>" when unknown
    osabi: str
    type: str  # ET_DYN, ET_EXEC, ...
    interpreter: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpath: str | None  # DT_RPATH exactly as stored (":"-separated), None when absent
    runpath: str | None  # DT_RUNPATH exactly as stored, None when absent
    version_needs: tuple[VersionNeed, ...]
    dlopen_notes: tuple[DlopenNote, ...]
    dlopen_candidates: tuple[str, ...]
    is_dynamic: bool
    # what the reader skipped in parts dynamic linking does not use (notes ld.so does not read, a
    # .note.dlopen that is not valid JSON): refused instead with parse_elf(strict=True)
    warnings: tuple[str, ...] = ()

    def symbol_versions(self) -> dict[str, str]:
        """Highest required version per prefix (GLIBC, GLIBCXX, CXXABI, GCC, ...) over all needed files."""
        return max_versions(v for need in self.version_needs for v in need.versions)


def max_versions(versions: Iterator[str] | tuple[str, ...] | list[str]) -> dict[str, str]:
    best: dict[str, tuple[tuple[int, ...], str]] = {}
    for v in versions:
        prefix, sep, number = v.partition("_")
        if not sep or not re.fullmatch(r"\d+(?:\.\d+)*", number):
            continue  # GLIBC_PRIVATE and private version nodes
        key = tuple(int(x) for x in number.split("."))
        if prefix not in best or key > best[prefix][0]:
            best[prefix] = (key, v)
    return {p: best[p][1] for p in sorted(best)}


class _Reader:
    def __init__(self, data: Buffer, little: bool, is64: bool) -> None:
        self.data = data
        self.size = len(data)
        self.e = "<" if little else ">"
        self.is64 = is64
        # Total bytes of names decoded. A well-formed image names far less than its own size; without a
        # budget, many entries naming suffixes of one long string make gigabytes of names from a small file.
        self.string_budget = max(1 << 20, self.size)

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        s = struct.Struct(self.e + fmt)
        if offset < 0 or offset + s.size > self.size:
            raise BinaryFormatError(
                f"{what} at offset {offset:#x} is past the end of the file ({self.size} bytes)"
            )
        return s.unpack_from(self.data, offset)

    def region(self, off: int, size: int, what: str) -> tuple[int, int]:
        """(start, end) of ``size`` bytes at ``off``, which must lie inside the file."""
        if off > self.size or off + size > self.size:
            raise BinaryFormatError(f"{what} ({size} bytes at {off:#x}) runs past the end of the file")
        return off, off + size

    def cstring(self, offset: int, end: int, what: str) -> str:
        if offset < 0 or offset >= end:
            raise BinaryFormatError(f"{what}: string offset {offset:#x} outside its table")
        limit = min(end, offset + self.string_budget + 1)
        stop = self.data.find(b"\x00", offset, limit)
        if stop < 0:
            if limit < end:
                raise BinaryFormatError(f"{what}: string at {offset:#x} exceeds what the file can hold")
            raise BinaryFormatError(f"{what}: unterminated string at {offset:#x}")
        self.string_budget -= stop - offset
        return bytes(self.data[offset:stop]).decode("utf-8", "backslashreplace")


def parse_elf(
    data: Buffer,
    *,
    scan_strings: bool = True,
    strict: bool = False,
    page_out: Callable[[int, int], None] | None = None,
) -> ElfInfo:
    """Parse what dynamic linking needs from an ELF image. Raises BinaryFormatError on malformed input.

    The phases run in file-structure order, each checking the bounds of what it reads: identification,
    ELF header, section headers, program headers, PT_INTERP, the dynamic table and the strings it names,
    notes, and (``scan_strings``) the dlopen candidates in read-only data. What dynamic linking needs is
    read strictly; notes, which ld.so does not read, leniently: a note region wheelfix cannot walk (an
    alignment other than 4 or 8, a note running past its segment, a .note.dlopen that is not valid JSON)
    is skipped and named in ``warnings`` (``strict``: refused).
    """
    is64, little, osabi = _identification(data)
    r = _Reader(data, little, is64)
    e_type, e_machine, e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum = _header(r)
    sections, phnum = _section_headers(r, e_shoff, e_shentsize, e_shnum, e_phnum)
    segments = _program_headers(r, e_phoff, e_phentsize, phnum)
    loads = [s for s in segments if s[0] == PT_LOAD]
    interpreter = _interpreter(r, segments)
    dyn = [s for s in segments if s[0] == PT_DYNAMIC]
    entries = _dynamic_entries(r, dyn[0]) if dyn else []
    names = _dynamic_names(r, entries, loads)
    warnings: list[str] = []

    def skipped(message: str) -> None:
        if strict:
            raise BinaryFormatError(message)
        warnings.append(message)

    dlopen_notes = _dlopen_notes(r, _note_regions(r, segments, sections, skipped), skipped)
    candidates: tuple[str, ...] = ()
    if scan_strings and e_type in (ET_EXEC, ET_DYN):
        candidates = _dlopen_candidates(r, sections, names, page_out)
    return ElfInfo(
        elf_class=64 if is64 else 32,
        endian="little" if little else "big",
        machine=machine_name(e_machine, little),
        osabi=OSABIS.get(osabi, f"OSABI_{osabi}"),
        type=E_TYPES.get(e_type, f"ET_{e_type:#x}"),
        interpreter=interpreter,
        soname=names.soname,
        needed=names.needed,
        rpath=names.rpath,
        runpath=names.runpath,
        version_needs=names.version_needs,
        dlopen_notes=dlopen_notes,
        dlopen_candidates=candidates,
        is_dynamic=bool(dyn),
        warnings=tuple(dict.fromkeys(warnings)),
    )


# --- phases of parse_elf, in the order it runs them ----------------------------------------------------

_Segment = tuple[int, int, int, int, int, int]  # p_type, p_flags, p_offset, p_vaddr, p_filesz, p_align


@dataclass(slots=True)
class _DynamicNames:
    """What the dynamic entries name."""

    needed: tuple[str, ...]
    soname: str | None
    rpath: str | None
    runpath: str | None
    version_needs: tuple[VersionNeed, ...]


def _identification(data: Buffer) -> tuple[bool, bool, int]:
    """(64-bit, little-endian, EI_OSABI) from ``e_ident``, which must say ELF version 1."""
    if len(data) < EI_NIDENT or bytes(data[:4]) != ELF_MAGIC:
        raise BinaryFormatError("not an ELF file (truncated identification)")
    ei_class, ei_data, ei_version, ei_osabi = data[4], data[5], data[6], data[7]
    if ei_class not in (ELFCLASS32, ELFCLASS64):
        raise BinaryFormatError(f"bad ELF class {ei_class}")
    if ei_data not in (ELFDATA2LSB, ELFDATA2MSB):
        raise BinaryFormatError(f"bad ELF data encoding {ei_data}")
    if ei_version != 1:
        raise BinaryFormatError(f"bad ELF version {ei_version}")
    return ei_class == ELFCLASS64, ei_data == ELFDATA2LSB, ei_osabi


def _header(r: _Reader) -> tuple[int, int, int, int, int, int, int, int]:
    """e_type, e_machine, e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum."""
    h = r.unpack(EHDR64 if r.is64 else EHDR32, EI_NIDENT, "ELF header")
    # h: e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum,
    # e_shentsize, e_shnum, e_shstrndx
    return h[0], h[1], h[4], h[5], h[8], h[9], h[10], h[11]


def _section_headers(
    r: _Reader, shoff: int, shentsize: int, shnum: int, phnum: int
) -> tuple[list[tuple[int, ...]], int]:
    """The section headers (none without e_shoff) and the program header count. Section 0 holds the real
    counts when they do not fit the ELF header (extended numbering)."""
    if not shoff:
        return [], phnum
    shdr_fmt = SHDR64 if r.is64 else SHDR32
    shdr_size = struct.calcsize("<" + shdr_fmt)
    if shentsize != shdr_size:
        raise BinaryFormatError(f"bad section header size {shentsize}")
    sh0 = r.unpack(shdr_fmt, shoff, "section header 0")
    if shnum == 0:
        shnum = sh0[5]
    if phnum == 0xFFFF:  # PN_XNUM
        phnum = sh0[7]
    if shoff + shnum * shdr_size > r.size:
        raise BinaryFormatError(
            f"section header table ({shnum} entries at {shoff:#x}) runs past the end of the file"
        )
    sections = [r.unpack(shdr_fmt, shoff + i * shdr_size, f"section header {i}") for i in range(shnum)]
    return sections, phnum


def _program_headers(r: _Reader, phoff: int, phentsize: int, phnum: int) -> list[_Segment]:
    if not phnum:
        return []
    phdr_fmt = PHDR64 if r.is64 else PHDR32
    phdr_size = struct.calcsize("<" + phdr_fmt)
    if phentsize != phdr_size:
        raise BinaryFormatError(f"bad program header size {phentsize}")
    if phoff + phnum * phdr_size > r.size:
        raise BinaryFormatError(
            f"program header table ({phnum} entries at {phoff:#x}) runs past the end of the file"
        )
    segments: list[_Segment] = []
    for i in range(phnum):
        p = r.unpack(phdr_fmt, phoff + i * phdr_size, f"program header {i}")
        if r.is64:
            p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, _memsz, p_align = p
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _memsz, p_flags, p_align = p
        segments.append((p_type, p_flags, p_offset, p_vaddr, p_filesz, p_align))
    return segments


def _interpreter(r: _Reader, segments: list[_Segment]) -> str | None:
    for p_type, _f, off, _va, filesz, _a in segments:
        if p_type == PT_INTERP:  # the first one, as the kernel reads it
            start, end = r.region(off, filesz, "PT_INTERP")
            return r.cstring(start, end, "PT_INTERP")
    return None


def _dynamic_entries(r: _Reader, dynamic: _Segment) -> list[tuple[int, int]]:
    """(d_tag, d_val) of the entries of PT_DYNAMIC before the first DT_NULL."""
    start, end = r.region(dynamic[2], dynamic[4], "PT_DYNAMIC")
    dfmt, dsize = (DYN64, 16) if r.is64 else (DYN32, 8)
    entries: list[tuple[int, int]] = []
    for off in range(start, end - dsize + 1, dsize):
        tag, val = r.unpack(dfmt, off, "dynamic entry")
        if tag == DT_NULL:
            break
        entries.append((tag, val))
    return entries


def _dynamic_names(r: _Reader, entries: list[tuple[int, int]], loads: list[_Segment]) -> _DynamicNames:
    """The strings the dynamic entries name (in DT_STRTAB), and the version needs (DT_VERNEED)."""
    first: dict[int, int] = {}
    for tag, val in entries:
        first.setdefault(tag, val)
    if DT_STRTAB not in first:
        if any(t in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) for t, _ in entries):
            raise BinaryFormatError("dynamic section has names but no DT_STRTAB")
        return _DynamicNames((), None, None, None, ())
    str_start = _vaddr_to_offset(loads, first[DT_STRTAB], "DT_STRTAB")
    str_end = min(str_start + first.get(DT_STRSZ, r.size), r.size)

    def dstr(idx: int, what: str) -> str:
        return r.cstring(str_start + idx, str_end, what)

    needed: list[str] = []
    soname = rpath = runpath = None
    for tag, val in entries:  # the first SONAME, RPATH and RUNPATH count, as for ld.so
        if tag == DT_NEEDED:
            needed.append(dstr(val, "DT_NEEDED"))
        elif tag == DT_SONAME and soname is None:
            soname = dstr(val, "DT_SONAME")
        elif tag == DT_RPATH and rpath is None:
            rpath = dstr(val, "DT_RPATH")
        elif tag == DT_RUNPATH and runpath is None:
            runpath = dstr(val, "DT_RUNPATH")
    version_needs: list[VersionNeed] = []
    if DT_VERNEED in first:
        version_needs = _verneed(
            r, _vaddr_to_offset(loads, first[DT_VERNEED], "DT_VERNEED"), first.get(DT_VERNEEDNUM, 0), dstr
        )
    return _DynamicNames(tuple(needed), soname, rpath, runpath, tuple(version_needs))


def _vaddr_to_offset(loads: list[_Segment], vaddr: int, what: str) -> int:
    for _t, _f, off, va, filesz, _a in loads:
        if va <= vaddr < va + filesz:
            return off + (vaddr - va)
    raise BinaryFormatError(f"{what} address {vaddr:#x} is not in any loaded segment")


def _note_regions(
    r: _Reader, segments: list[_Segment], sections: list[tuple[int, ...]], skipped: Callable[[str], None]
) -> set[tuple[int, int, int]]:
    """(start, end, alignment) of the PT_NOTE segments and SHT_NOTE sections; they usually overlap. Notes
    are 4- or 8-byte aligned (gABI); a region with another alignment, or outside the file, is skipped."""
    found = [
        (f"PT_NOTE at {off:#x}", off, filesz, align)
        for p_type, _f, off, _va, filesz, align in segments
        if p_type == PT_NOTE
    ]
    found += [
        (f"note section {i}", sh[4], sh[5], sh[8]) for i, sh in enumerate(sections) if sh[1] == SHT_NOTE
    ]
    regions: set[tuple[int, int, int]] = set()
    for what, off, size, align in found:
        if align not in (0, 1, 2, 4, 8):
            skipped(
                f"a note region aligned to {align} bytes (the gABI allows 4 or 8): its notes are not read"
            )
            continue
        try:
            regions.add((*r.region(off, size, what), 8 if align == 8 else 4))
        except BinaryFormatError as e:
            skipped(f"{e}; its notes are not read")
    return regions


def _dlopen_notes(
    r: _Reader, regions: set[tuple[int, int, int]], skipped: Callable[[str], None]
) -> tuple[DlopenNote, ...]:
    """The FDO .note.dlopen entries in the note regions, each note read once (deduplicated by position).
    A region whose notes cannot be walked is left where it stops; a .note.dlopen that is not valid is
    skipped."""
    notes: list[DlopenNote] = []
    seen: set[int] = set()
    # A note is at least 12 bytes and lies in at most a segment and a section: more reads than this means
    # regions overlapping on purpose, each of which would be walked in full.
    budget = 2 * (r.size // 12) + 64
    for start, end, align in sorted(regions):
        try:
            for pos, ntype, name_off, namesz, desc_off, descsz in _notes(r, start, end, align):
                budget -= 1
                if budget < 0:
                    raise BinaryFormatError("note regions overlap: more notes than the file can hold")
                if pos in seen:
                    continue
                seen.add(pos)
                if ntype != NT_FDO_DLOPEN_METADATA or namesz > 8:
                    continue
                if bytes(r.data[name_off : name_off + namesz]).rstrip(b"\x00") == b"FDO":
                    notes.extend(_dlopen_note(bytes(r.data[desc_off : desc_off + descsz]), pos, skipped))
        except BinaryFormatError as e:
            skipped(f"{e}; the notes after it are not read")
            if budget < 0:
                break
    return tuple(notes)


def _dlopen_candidates(
    r: _Reader,
    sections: list[tuple[int, ...]],
    names: _DynamicNames,
    page_out: Callable[[int, int], None] | None = None,
) -> tuple[str, ...]:
    """``lib*.so*`` strings in allocated, non-executable data (the whole file without section headers),
    sorted, at most MAX_DLOPEN_CANDIDATES, not counting the file's own DT_NEEDED and DT_SONAME names."""
    ranges = [
        (sh[4], min(sh[4] + sh[5], r.size))
        for sh in sections
        if sh[1] == SHT_PROGBITS and sh[2] & SHF_ALLOC and not sh[2] & SHF_EXECINSTR and sh[4] < r.size
    ]
    if not sections:
        ranges = [(0, r.size)]
    exclude = set(names.needed)
    if names.soname:
        exclude.add(names.soname)
    found: dict[str, None] = {}
    for lo, hi in _merged(ranges):  # overlapping sections are scanned once
        for start in range(lo, hi, SCAN_PIECE):
            # pieces overlap by 2 bytes, so a ".so" across a piece boundary is found in exactly one piece
            stop = min(hi, start + SCAN_PIECE + 2)
            found.update(dict.fromkeys(_dlopen_strings(r.data, lo, hi, start, stop)))
            if page_out is not None:  # a name's window reaches 200 bytes back: keep those
                page_out(max(lo, start - _WINDOW_BACK), max(lo, stop - _WINDOW_BACK))
    return tuple(sorted(s for s in found if s not in exclude)[:MAX_DLOPEN_CANDIDATES])


#: bytes of read-only data the dlopen scan reads before it says it is done with them (``page_out``)
SCAN_PIECE = 8 << 20
_WINDOW_BACK = 256


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _dlopen_strings(data: Buffer, lo: int, hi: int, start: int, stop: int) -> Iterator[str]:
    """``lib*.so*`` strings in data[lo:hi] around each ``.so`` found in data[start:stop]. Finds each ``.so``
    with a fast substring search, then matches the full name in a small window around it (a regex over the
    whole range would be several times slower)."""
    pos = data.find(b".so", start, stop)
    while pos >= 0:
        window_lo = max(lo, pos - 200)
        for m in _DLOPEN_RE.finditer(data, window_lo, min(hi, pos + 64)):
            if m.start() <= pos < m.end() and (m.start() > window_lo or window_lo == lo):
                yield m.group().decode("ascii")
        pos = data.find(b".so", pos + 3, stop)


def machine_name(e_machine: int, little: bool) -> str:
    if e_machine == 21 and little:
        return "ppc64le"
    return MACHINES.get(e_machine, f"EM_{e_machine}")


def _verneed(r: _Reader, offset: int, count: int, dstr: Callable[[int, str], str]) -> list[VersionNeed]:
    out: list[VersionNeed] = []
    visited: set[int] = set()
    aux_seen: set[int] = set()  # across all entries: a shared chain would be walked once per Verneed
    for _ in range(min(count, 1 << 16)):
        if offset in visited:
            raise BinaryFormatError(f"version-needed entries loop at {offset:#x}")
        visited.add(offset)
        _ver, vn_cnt, vn_file, vn_aux, vn_next = r.unpack(VERNEED, offset, "Elf_Verneed")
        file = dstr(vn_file, "Elf_Verneed file")
        versions: list[str] = []
        aux = offset + vn_aux
        for _ in range(vn_cnt):
            if aux in aux_seen:
                raise BinaryFormatError(f"version-needed aux entry at {aux:#x} is reached twice")
            aux_seen.add(aux)
            _hash, _flags, _other, vna_name, vna_next = r.unpack(VERNAUX, aux, "Elf_Vernaux")
            versions.append(dstr(vna_name, "Elf_Vernaux name"))
            if vna_next == 0:
                break
            aux += vna_next
        out.append(VersionNeed(file, tuple(versions)))
        if vn_next == 0:
            break
        offset += vn_next
    return out


def _notes(r: _Reader, start: int, end: int, align: int) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(position, type, name offset, namesz, desc offset, descsz) of each note in [start, end)."""
    pos = start
    while pos + 12 <= end:
        namesz, descsz, ntype = r.unpack("III", pos, "note header")
        name_off = pos + 12
        desc_off = start + _align(name_off + namesz - start, align)
        nxt = start + _align(desc_off + descsz - start, align)
        if desc_off + descsz > end:  # the last note's padding may lie past the end
            raise BinaryFormatError(f"note at {pos:#x} runs past its segment")
        yield pos, ntype, name_off, namesz, desc_off, descsz
        pos = nxt


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _dlopen_note(desc: bytes, pos: int, skipped: Callable[[str], None]) -> list[DlopenNote]:
    try:
        return _dlopen_entries(desc, pos)
    except BinaryFormatError as e:
        skipped(f"{e}; the note is ignored")
        return []


def _dlopen_entries(desc: bytes, pos: int) -> list[DlopenNote]:
    try:
        payload = json.loads(desc.rstrip(b"\x00").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BinaryFormatError(f".note.dlopen at {pos:#x} is not valid JSON: {e}") from None
    if not isinstance(payload, list):
        raise BinaryFormatError(f".note.dlopen at {pos:#x} is not a JSON array")
    notes: list[DlopenNote] = []
    for item in payload:
        if not isinstance(item, dict):
            raise BinaryFormatError(f".note.dlopen at {pos:#x} has a non-object entry")
        sonames = item.get("soname")
        if not isinstance(sonames, list) or not all(isinstance(s, str) for s in sonames):
            raise BinaryFormatError(f".note.dlopen at {pos:#x}: 'soname' must be a list of strings")
        priority = item.get("priority", "recommended")
        feature, description = item.get("feature"), item.get("description")
        notes.append(
            DlopenNote(
                sonames=tuple(sonames),
                priority=priority if isinstance(priority, str) else "recommended",
                feature=feature if isinstance(feature, str) else None,
                description=description if isinstance(description, str) else None,
            )
        )
    return notes

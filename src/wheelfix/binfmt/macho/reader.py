"""A small, strict Mach-O reader for what dynamic linking (and repairing it) needs.

It reads thin Mach-O files (32/64-bit, either byte order) and fat ones (``FAT_MAGIC`` and ``FAT_MAGIC_64``)
held in memory. Per architecture slice it gives the header, every load command's position, the dylib
load commands (``LC_LOAD_DYLIB``, ``LC_LOAD_WEAK_DYLIB``, ``LC_REEXPORT_DYLIB``, ``LC_LAZY_LOAD_DYLIB``,
``LC_LOAD_UPWARD_DYLIB``), ``LC_ID_DYLIB``, ``LC_RPATH``, the platform and OS versions (``LC_BUILD_VERSION``,
``LC_VERSION_MIN_*``), segments and sections, a summary of the code signature, and the free header padding:
the bytes between the end of the load commands and the first file content after them, which is where
an editor can grow the load commands.

Every count, size and offset is checked against the slice and the load-command area, so truncated or
hostile files raise :class:`BinaryFormatError` with a one-line message instead of reading garbage. The
amount of work is bounded by the file size (no count is trusted before it is checked against the bytes
that would have to hold it).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass

from wheelfix.binfmt import BinaryFormatError, Buffer
from wheelfix.binfmt.macho.codesign import SignatureInfo, parse_signature

__all__ = [
    "CodeSignature",
    "Dylib",
    "LoadCommand",
    "MachOInfo",
    "MachOSlice",
    "PlatformVersion",
    "Section",
    "Segment",
    "arch_name",
    "parse_macho",
    "parse_slice",
]

MH_MAGIC, MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
FAT_MAGIC, FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
MAX_FAT_ARCHS = 64  # lipo's own limit is far lower in practice; detect_format accepts < 45
MAX_LOAD_COMMANDS = 1 << 16  # real binaries have tens to a few hundred

LC_REQ_DYLD = 0x80000000
LC_SEGMENT, LC_SYMTAB, LC_DYSYMTAB = 0x1, 0x2, 0xB
LC_LOAD_DYLIB, LC_ID_DYLIB = 0xC, 0xD
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_SEGMENT_64, LC_UUID = 0x19, 0x1B
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_CODE_SIGNATURE = 0x1D
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_ENCRYPTION_INFO, LC_ENCRYPTION_INFO_64 = 0x21, 0x2C
LC_DYLD_INFO, LC_DYLD_INFO_ONLY = 0x22, 0x22 | LC_REQ_DYLD
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX, LC_VERSION_MIN_IPHONEOS = 0x24, 0x25
LC_VERSION_MIN_TVOS, LC_VERSION_MIN_WATCHOS = 0x2F, 0x30
LC_BUILD_VERSION = 0x32

LOAD_COMMAND_NAMES = {
    0x1: "LC_SEGMENT",
    0x2: "LC_SYMTAB",
    0x3: "LC_SYMSEG",
    0x4: "LC_THREAD",
    0x5: "LC_UNIXTHREAD",
    0x6: "LC_LOADFVMLIB",
    0x7: "LC_IDFVMLIB",
    0x8: "LC_IDENT",
    0x9: "LC_FVMFILE",
    0xA: "LC_PREPAGE",
    0xB: "LC_DYSYMTAB",
    0xC: "LC_LOAD_DYLIB",
    0xD: "LC_ID_DYLIB",
    0xE: "LC_LOAD_DYLINKER",
    0xF: "LC_ID_DYLINKER",
    0x10: "LC_PREBOUND_DYLIB",
    0x11: "LC_ROUTINES",
    0x12: "LC_SUB_FRAMEWORK",
    0x13: "LC_SUB_UMBRELLA",
    0x14: "LC_SUB_CLIENT",
    0x15: "LC_SUB_LIBRARY",
    0x16: "LC_TWOLEVEL_HINTS",
    0x17: "LC_PREBIND_CKSUM",
    0x18 | LC_REQ_DYLD: "LC_LOAD_WEAK_DYLIB",
    0x19: "LC_SEGMENT_64",
    0x1A: "LC_ROUTINES_64",
    0x1B: "LC_UUID",
    0x1C | LC_REQ_DYLD: "LC_RPATH",
    0x1D: "LC_CODE_SIGNATURE",
    0x1E: "LC_SEGMENT_SPLIT_INFO",
    0x1F | LC_REQ_DYLD: "LC_REEXPORT_DYLIB",
    0x20: "LC_LAZY_LOAD_DYLIB",
    0x21: "LC_ENCRYPTION_INFO",
    0x22: "LC_DYLD_INFO",
    0x22 | LC_REQ_DYLD: "LC_DYLD_INFO_ONLY",
    0x23 | LC_REQ_DYLD: "LC_LOAD_UPWARD_DYLIB",
    0x24: "LC_VERSION_MIN_MACOSX",
    0x25: "LC_VERSION_MIN_IPHONEOS",
    0x26: "LC_FUNCTION_STARTS",
    0x27: "LC_DYLD_ENVIRONMENT",
    0x28 | LC_REQ_DYLD: "LC_MAIN",
    0x29: "LC_DATA_IN_CODE",
    0x2A: "LC_SOURCE_VERSION",
    0x2B: "LC_DYLIB_CODE_SIGN_DRS",
    0x2C: "LC_ENCRYPTION_INFO_64",
    0x2D: "LC_LINKER_OPTION",
    0x2E: "LC_LINKER_OPTIMIZATION_HINT",
    0x2F: "LC_VERSION_MIN_TVOS",
    0x30: "LC_VERSION_MIN_WATCHOS",
    0x31: "LC_NOTE",
    0x32: "LC_BUILD_VERSION",
    0x33 | LC_REQ_DYLD: "LC_DYLD_EXPORTS_TRIE",
    0x34 | LC_REQ_DYLD: "LC_DYLD_CHAINED_FIXUPS",
    0x35 | LC_REQ_DYLD: "LC_FILESET_ENTRY",
    0x36: "LC_ATOM_INFO",
}
DYLIB_LOADS = {LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB}
VERSION_MIN = {
    LC_VERSION_MIN_MACOSX: "macos",
    LC_VERSION_MIN_IPHONEOS: "ios",
    LC_VERSION_MIN_TVOS: "tvos",
    LC_VERSION_MIN_WATCHOS: "watchos",
}
# linkedit_data_command: cmd, cmdsize, dataoff, datasize
LINKEDIT_DATA = {0x1D, 0x1E, 0x26, 0x29, 0x2B, 0x2E, 0x33 | LC_REQ_DYLD, 0x34 | LC_REQ_DYLD, 0x36}

PLATFORMS = {
    1: "macos",
    2: "ios",
    3: "tvos",
    4: "watchos",
    5: "bridgeos",
    6: "maccatalyst",
    7: "iossimulator",
    8: "tvossimulator",
    9: "watchossimulator",
    10: "driverkit",
    11: "visionos",
    12: "visionossimulator",
}
FILETYPES = {
    1: "object",
    2: "execute",
    3: "fvmlib",
    4: "core",
    5: "preload",
    6: "dylib",
    7: "dylinker",
    8: "bundle",
    9: "dylib_stub",
    10: "dsym",
    11: "kext_bundle",
    12: "fileset",
}

CPU_ARCH_ABI64, CPU_ARCH_ABI64_32 = 0x01000000, 0x02000000
CPU_TYPE_X86, CPU_TYPE_ARM, CPU_TYPE_POWERPC = 7, 12, 18
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64
CPU_TYPE_ARM64_32 = CPU_TYPE_ARM | CPU_ARCH_ABI64_32
CPU_TYPE_POWERPC64 = CPU_TYPE_POWERPC | CPU_ARCH_ABI64
CPU_SUBTYPE_MASK = 0xFF000000  # capability bits (e.g. arm64e's pointer-authentication ABI version)
_ARM_SUBTYPES = {5: "armv4t", 6: "armv6", 7: "armv5", 9: "armv7", 11: "armv7s", 12: "armv7k", 14: "armv6m"}
_ARM_SUBTYPES |= {15: "armv7m", 16: "armv7em"}

# S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL: no file content whatever their offset says
_ZEROFILL_TYPES = {0x1, 0xC, 0x12}


def arch_name(cputype: int, cpusubtype: int) -> str:
    """The architecture name Apple's tools (and wheel platform tags) use: arm64, arm64e, x86_64, i386, ..."""
    sub = cpusubtype & ~CPU_SUBTYPE_MASK
    if cputype == CPU_TYPE_ARM64:
        return {0: "arm64", 1: "arm64v8", 2: "arm64e"}.get(sub, f"arm64-subtype{sub}")
    if cputype == CPU_TYPE_X86_64:
        return "x86_64h" if sub == 8 else "x86_64"
    if cputype == CPU_TYPE_X86:
        return "i386"
    if cputype == CPU_TYPE_ARM64_32:
        return "arm64_32"
    if cputype == CPU_TYPE_ARM:
        return _ARM_SUBTYPES.get(sub, "arm")
    if cputype == CPU_TYPE_POWERPC:
        return "ppc"
    if cputype == CPU_TYPE_POWERPC64:
        return "ppc64"
    return f"cputype{cputype & 0xFFFFFFFF}"


@dataclass(frozen=True, slots=True)
class LoadCommand:
    cmd: int
    name: str  # LC_RPATH, ... or "LC_<hex>" when unknown
    offset: int  # from the start of the slice
    size: int  # cmdsize


@dataclass(frozen=True, slots=True)
class Dylib:
    """A dylib load command (or LC_ID_DYLIB)."""

    kind: str  # LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, ...
    name: str
    timestamp: int
    current_version: str  # "1.2.3", as otool prints it
    compatibility_version: str
    index: int  # of the load command in the slice

    @property
    def weak(self) -> bool:
        return self.kind == "LC_LOAD_WEAK_DYLIB"


@dataclass(frozen=True, slots=True)
class PlatformVersion:
    kind: str  # LC_BUILD_VERSION or LC_VERSION_MIN_*
    platform: str  # macos, ios, maccatalyst, ... or "platform-<n>"
    minos: str  # "11.0", "10.9", "13.3.1"
    sdk: str  # same form; "0.0" when not recorded


@dataclass(frozen=True, slots=True)
class Section:
    segname: str
    sectname: str
    addr: int
    size: int
    offset: int
    flags: int

    @property
    def zerofill(self) -> bool:
        return (self.flags & 0xFF) in _ZEROFILL_TYPES


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    maxprot: int
    initprot: int
    flags: int
    sections: tuple[Section, ...]
    index: int  # of the load command


@dataclass(frozen=True, slots=True)
class CodeSignature:
    dataoff: int  # from the start of the slice
    datasize: int
    info: SignatureInfo

    @property
    def adhoc(self) -> bool:
        return self.info.adhoc

    @property
    def linker_signed(self) -> bool:
        return self.info.linker_signed

    @property
    def identifier(self) -> str | None:
        return self.info.identifier


@dataclass(frozen=True, slots=True)
class MachOSlice:
    offset: int  # of the slice in the file; 0 for a thin file
    size: int
    align: int  # fat alignment as a power of two; 0 for a thin file
    cputype: int
    cpusubtype: int
    arch: str
    bits: int  # 32 or 64
    endian: str  # "little" or "big"
    filetype: str  # dylib, bundle, execute, object, ... or "filetype-<n>"
    flags: int
    header_size: int
    ncmds: int
    sizeofcmds: int
    load_commands: tuple[LoadCommand, ...]
    dylibs: tuple[Dylib, ...]  # every dylib this slice loads, in load-command order (not LC_ID_DYLIB)
    id_dylib: Dylib | None
    rpaths: tuple[str, ...]
    platforms: tuple[PlatformVersion, ...]
    uuid: str | None  # "4C4C4495-5555-3144-A126-D8CC1927FB13" as otool prints it
    segments: tuple[Segment, ...]
    code_signature: CodeSignature | None
    header_padding: int  # free bytes after the load commands, before the first file content

    @property
    def load_commands_end(self) -> int:
        return self.header_size + self.sizeofcmds

    @property
    def minos(self) -> str | None:
        """The minimum macOS version, when the slice says (LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX)."""
        for p in self.platforms:
            if p.platform == "macos":
                return p.minos
        return None

    def segment(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None


@dataclass(frozen=True, slots=True)
class MachOInfo:
    fat: str | None  # None for a thin file, "FAT_MAGIC" or "FAT_MAGIC_64"
    size: int
    slices: tuple[MachOSlice, ...]

    @property
    def archs(self) -> tuple[str, ...]:
        return tuple(s.arch for s in self.slices)


def parse_macho(data: Buffer) -> MachOInfo:
    """Parse a thin or fat Mach-O image. Raises BinaryFormatError on anything malformed."""
    size = len(data)
    if size < 8:
        raise BinaryFormatError(f"not a Mach-O file (only {size} bytes)")
    (magic,) = struct.unpack_from(">I", data, 0)
    if magic in (FAT_MAGIC, FAT_MAGIC_64):
        return MachOInfo(
            "FAT_MAGIC" if magic == FAT_MAGIC else "FAT_MAGIC_64",
            size,
            _fat_slices(data, magic == FAT_MAGIC_64),
        )
    return MachOInfo(None, size, (parse_slice(data),))


def _fat_slices(data: Buffer, is64: bool) -> tuple[MachOSlice, ...]:
    size = len(data)
    (nfat,) = struct.unpack_from(">I", data, 4)
    entry = struct.Struct(">IIQQII" if is64 else ">IIIII")
    if nfat == 0:
        raise BinaryFormatError("fat file has no architectures")
    if nfat > MAX_FAT_ARCHS:
        raise BinaryFormatError(f"fat file claims {nfat} architectures (at most {MAX_FAT_ARCHS} accepted)")
    table_end = 8 + nfat * entry.size
    if table_end > size:
        raise BinaryFormatError(
            f"fat header ({nfat} architectures) runs past the end of the file ({size} bytes)"
        )
    entries: list[tuple[int, int, int, int, int]] = []
    for i in range(nfat):
        cputype, cpusubtype, offset, slice_size, align = entry.unpack_from(data, 8 + i * entry.size)[:5]
        if align > 15:
            raise BinaryFormatError(f"fat architecture {i}: alignment 2^{align} is implausible")
        if offset < table_end or offset + slice_size > size:
            raise BinaryFormatError(
                f"fat architecture {i}: slice ({slice_size} bytes at {offset:#x}) lies outside the file "
                f"({size} bytes, header ends at {table_end:#x})"
            )
        if offset % (1 << align):
            raise BinaryFormatError(f"fat architecture {i}: offset {offset:#x} is not aligned to 2^{align}")
        entries.append((offset, slice_size, align, cputype, cpusubtype))
    ordered = sorted(range(nfat), key=lambda i: entries[i][0])
    for a, b in itertools.pairwise(ordered):
        if entries[a][0] + entries[a][1] > entries[b][0]:
            raise BinaryFormatError(f"fat architectures {a} and {b} overlap")
    slices = []
    seen: set[tuple[int, int]] = set()
    for i, (offset, slice_size, align, cputype, cpusubtype) in enumerate(entries):
        try:
            sl = parse_slice(data, offset, slice_size, align)
        except BinaryFormatError as e:
            raise BinaryFormatError(f"fat architecture {i} at {offset:#x}: {e}") from None
        if (sl.cputype, sl.cpusubtype) != (cputype, cpusubtype):
            raise BinaryFormatError(
                f"fat architecture {i} says {arch_name(cputype, cpusubtype)} but its slice is {sl.arch}"
            )
        key = (cputype, cpusubtype & ~CPU_SUBTYPE_MASK)
        if key in seen:
            raise BinaryFormatError(f"fat file has two {sl.arch} slices")
        seen.add(key)
        slices.append(sl)
    return tuple(slices)


class _Slice:
    """Bounds-checked access to one slice: offsets are relative to ``base``, limited to ``size``."""

    def __init__(self, data: Buffer, base: int, size: int, little: bool) -> None:
        self.data = data
        self.base = base
        self.size = size
        self.e = "<" if little else ">"

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        s = struct.Struct(self.e + fmt)
        if offset < 0 or offset + s.size > self.size:
            raise BinaryFormatError(
                f"{what} at offset {offset:#x} is past the end of the slice ({self.size} bytes)"
            )
        return s.unpack_from(self.data, self.base + offset)

    def name16(self, offset: int) -> str:
        """A 16-byte, NUL-padded name (segname, sectname) inside already bounds-checked bytes."""
        raw = bytes(self.data[self.base + offset : self.base + offset + 16])
        return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")

    def lc_str(self, cmd_off: int, cmdsize: int, str_off: int, fixed: int, what: str) -> str:
        """A load command's lc_str: must start after the fixed part and end with a NUL inside the command."""
        if not fixed <= str_off < cmdsize:
            raise BinaryFormatError(f"{what} at {cmd_off:#x}: name offset {str_off} is outside the command")
        start = self.base + cmd_off + str_off
        stop = self.data.find(b"\x00", start, self.base + cmd_off + cmdsize)
        if stop < 0:
            raise BinaryFormatError(f"{what} at {cmd_off:#x}: name is not NUL-terminated inside the command")
        return bytes(self.data[start:stop]).decode("utf-8", "backslashreplace")


def parse_slice(data: Buffer, offset: int = 0, size: int | None = None, align: int = 0) -> MachOSlice:
    """Parse the thin Mach-O image at ``data[offset : offset + size]`` (the whole buffer by default).

    Phases: the slice's bounds and magic, the mach header, every load command in order (``_LoadCommands``:
    one reader per command kind), the header padding, and the code signature.
    """
    if size is None:
        size = len(data) - offset
    if offset < 0 or size < 0 or offset + size > len(data):
        raise BinaryFormatError(f"slice ({size} bytes at {offset:#x}) lies outside the file")
    if size < 28:
        raise BinaryFormatError(f"Mach-O header truncated ({size} bytes)")
    little, is64 = _thin_magic(bytes(data[offset : offset + 4]))
    r = _Slice(data, offset, size, little)
    header_size = 32 if is64 else 28
    cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags = r.unpack("IIIIII", 4, "Mach-O header")
    lc_end = _load_commands_end(header_size, ncmds, sizeofcmds, size)
    arch = arch_name(cputype, cpusubtype)
    lcs = _LoadCommands(r, is64)
    lcs.read(header_size, ncmds, lc_end)
    free_until = lcs.free_until(lc_end)
    return MachOSlice(
        offset=offset,
        size=size,
        align=align,
        cputype=cputype,
        cpusubtype=cpusubtype,
        arch=arch,
        bits=64 if is64 else 32,
        endian="little" if little else "big",
        filetype=FILETYPES.get(filetype, f"filetype-{filetype}"),
        flags=flags,
        header_size=header_size,
        ncmds=ncmds,
        sizeofcmds=sizeofcmds,
        load_commands=tuple(lcs.commands),
        dylibs=tuple(lcs.dylibs),
        id_dylib=lcs.id_dylib,
        rpaths=tuple(lcs.rpaths),
        platforms=tuple(lcs.platforms),
        uuid=lcs.uuid,
        segments=tuple(lcs.segments),
        code_signature=_code_signature(data, offset, lcs.signature),
        header_padding=free_until - lc_end,
    )


def _thin_magic(head: bytes) -> tuple[bool, bool]:
    """(little-endian, 64-bit) from a thin Mach-O magic, in either byte order."""
    (le_magic,) = struct.unpack("<I", head)
    (be_magic,) = struct.unpack(">I", head)
    if le_magic in (MH_MAGIC, MH_MAGIC_64):
        return True, le_magic == MH_MAGIC_64
    if be_magic in (MH_MAGIC, MH_MAGIC_64):
        return False, be_magic == MH_MAGIC_64
    if be_magic in (FAT_MAGIC, FAT_MAGIC_64):
        raise BinaryFormatError("a fat file nested inside a fat file")
    raise BinaryFormatError(f"not a Mach-O file (magic {be_magic:#010x})")


def _load_commands_end(header_size: int, ncmds: int, sizeofcmds: int, size: int) -> int:
    """Where the load commands end, once their count and size are checked against the slice."""
    if header_size > size:
        raise BinaryFormatError(f"Mach-O header truncated ({size} bytes)")
    lc_end = header_size + sizeofcmds
    if lc_end > size:
        raise BinaryFormatError(
            f"load commands ({sizeofcmds} bytes) run past the end of the slice ({size} bytes)"
        )
    if ncmds > MAX_LOAD_COMMANDS:
        raise BinaryFormatError(f"{ncmds} load commands (at most {MAX_LOAD_COMMANDS} accepted)")
    if ncmds * 8 > sizeofcmds:
        raise BinaryFormatError(f"{ncmds} load commands cannot fit in sizeofcmds {sizeofcmds}")
    return lc_end


def _code_signature(data: Buffer, offset: int, signature: tuple[int, int] | None) -> CodeSignature | None:
    if signature is None:
        return None
    dataoff, datasize = signature
    info = (
        parse_signature(data, offset + dataoff, datasize)
        if datasize
        else SignatureInfo((), False, False, False)
    )
    return CodeSignature(dataoff, datasize, info)


@dataclass(frozen=True, slots=True)
class _Command:
    """The load command being read, and how error messages name it."""

    lc: LoadCommand
    index: int
    what: str

    def need(self, n: int) -> None:
        """The command must be at least ``n`` bytes (its fixed part)."""
        if self.lc.size < n:
            raise BinaryFormatError(
                f"{self.what} at {self.lc.offset:#x}: cmdsize {self.lc.size} is too small (needs {n})"
            )


class _LoadCommands:
    """What the load commands of one slice say, read in order; one method per command kind (see
    _COMMAND_READERS), each checking the command's size and every range it points at. ``content`` collects
    the file content the commands point at, to find the header padding."""

    def __init__(self, r: _Slice, is64: bool) -> None:
        self.r = r
        self.is64 = is64
        self.commands: list[LoadCommand] = []
        self.dylibs: list[Dylib] = []
        self.id_dylib: Dylib | None = None
        self.rpaths: list[str] = []
        self.platforms: list[PlatformVersion] = []
        self.segments: list[Segment] = []
        self.uuid: str | None = None
        self.signature: tuple[int, int] | None = None  # LC_CODE_SIGNATURE's dataoff, datasize
        self.content: list[tuple[int, int]] = []  # (start, size) of file content the commands point at
        self.header_limits: list[int] = []  # ends of segments that map the header: commands must fit inside

    def read(self, header_size: int, ncmds: int, lc_end: int) -> None:
        pos = header_size
        for index in range(ncmds):
            lc = self._command_at(pos, index, lc_end)
            self.commands.append(lc)
            reader = _COMMAND_READERS.get(lc.cmd)
            if reader is not None:
                reader(self, _Command(lc, index, f"{lc.name} (load command {index})"))
            pos += lc.size
        if pos != lc_end:
            raise BinaryFormatError(f"load commands end at {pos:#x} but sizeofcmds says {lc_end:#x}")

    def _command_at(self, pos: int, index: int, lc_end: int) -> LoadCommand:
        if pos + 8 > lc_end:
            raise BinaryFormatError(f"load command {index} at {pos:#x} runs past sizeofcmds")
        cmd, cmdsize = self.r.unpack("II", pos, f"load command {index}")
        name = LOAD_COMMAND_NAMES.get(cmd, f"LC_{cmd:#x}")
        cmd_align = 8 if self.is64 else 4
        if cmdsize < 8 or cmdsize % cmd_align:
            problem = f"is not a multiple of {cmd_align}" if cmdsize >= 8 else "is too small"
            raise BinaryFormatError(f"load command {index} ({name}) at {pos:#x}: cmdsize {cmdsize} {problem}")
        if pos + cmdsize > lc_end:
            raise BinaryFormatError(f"load command {index} ({name}) at {pos:#x} runs past sizeofcmds")
        return LoadCommand(cmd, name, pos, cmdsize)

    def free_until(self, lc_end: int) -> int:
        """Where the first file content after the load commands starts (the end of the header padding)."""
        free_until = min((start for start, length in self.content if length), default=self.r.size)
        free_until = min(free_until, *self.header_limits) if self.header_limits else free_until
        if free_until < lc_end:
            raise BinaryFormatError(
                f"load commands (ending at {lc_end:#x}) overlap file content at {free_until:#x}"
            )
        return free_until

    def _content(self, start: int, length: int, what: str) -> None:
        _check_range(start, length, self.r.size, what)
        self.content.append((start, length))

    # --- one reader per command kind

    def _dylib(self, c: _Command) -> None:
        c.need(24)
        pos, r = c.lc.offset, self.r
        str_off, timestamp, current, compat = r.unpack("IIII", pos + 8, c.what)
        dylib = Dylib(
            c.lc.name,
            r.lc_str(pos, c.lc.size, str_off, 24, c.what),
            timestamp,
            _dylib_version(current),
            _dylib_version(compat),
            c.index,
        )
        if c.lc.cmd != LC_ID_DYLIB:
            self.dylibs.append(dylib)
        elif self.id_dylib is not None:
            raise BinaryFormatError(f"more than one LC_ID_DYLIB (load command {c.index})")
        else:
            self.id_dylib = dylib

    def _rpath(self, c: _Command) -> None:
        c.need(12)
        (str_off,) = self.r.unpack("I", c.lc.offset + 8, c.what)
        self.rpaths.append(self.r.lc_str(c.lc.offset, c.lc.size, str_off, 12, c.what))

    def _segment(self, c: _Command) -> None:
        r, pos, cmdsize, what = self.r, c.lc.offset, c.lc.size, c.what
        if (c.lc.cmd == LC_SEGMENT_64) != self.is64:
            raise BinaryFormatError(f"{what} at {pos:#x} in a {64 if self.is64 else 32}-bit file")
        seg_fmt, seg_size = _SEGMENT_COMMAND[self.is64]
        sect_size = _SECTION[self.is64][1]
        c.need(seg_size)
        vmaddr, vmsize, fileoff, filesize, maxprot, initprot, nsects, segflags = r.unpack(
            seg_fmt, pos + 24, what
        )
        seg_name = r.name16(pos + 8)
        if nsects > (cmdsize - seg_size) // sect_size:
            raise BinaryFormatError(f"{what} at {pos:#x}: {nsects} sections do not fit in cmdsize {cmdsize}")
        if fileoff + filesize > r.size:
            raise BinaryFormatError(
                f"segment {seg_name} ({filesize} bytes at {fileoff:#x}) runs past the end of the slice "
                f"({r.size} bytes)"
            )
        if filesize and fileoff:
            self.content.append((fileoff, filesize))
        elif filesize:
            self.header_limits.append(filesize)
        sections = self._sections(c, nsects, pos + seg_size)
        self.segments.append(
            Segment(
                seg_name,
                vmaddr,
                vmsize,
                fileoff,
                filesize,
                maxprot,
                initprot,
                segflags,
                sections,
                c.index,
            )
        )

    def _sections(self, c: _Command, nsects: int, first: int) -> tuple[Section, ...]:
        r = self.r
        sect_fmt, sect_size = _SECTION[self.is64]
        sections = []
        for k in range(nsects):
            at = first + k * sect_size
            f = r.unpack(sect_fmt, at + 32, f"section {k} of {c.what}")
            sect = Section(r.name16(at + 16), r.name16(at), f[0], f[1], f[2], f[6])
            sections.append(sect)
            if sect.offset and sect.size and not sect.zerofill:
                self.content.append((sect.offset, sect.size))
        return tuple(sections)

    def _build_version(self, c: _Command) -> None:
        c.need(24)
        platform, minos, sdk, ntools = self.r.unpack("IIII", c.lc.offset + 8, c.what)
        if ntools > (c.lc.size - 24) // 8:
            raise BinaryFormatError(
                f"{c.what} at {c.lc.offset:#x}: {ntools} tools do not fit in cmdsize {c.lc.size}"
            )
        self.platforms.append(
            PlatformVersion(
                c.lc.name,
                PLATFORMS.get(platform, f"platform-{platform}"),
                _os_version(minos),
                _os_version(sdk),
            )
        )

    def _version_min(self, c: _Command) -> None:
        c.need(16)
        version, sdk = self.r.unpack("II", c.lc.offset + 8, c.what)
        self.platforms.append(
            PlatformVersion(c.lc.name, VERSION_MIN[c.lc.cmd], _os_version(version), _os_version(sdk))
        )

    def _uuid(self, c: _Command) -> None:
        c.need(24)
        start = self.r.base + c.lc.offset + 8
        raw = bytes(self.r.data[start : start + 16]).hex().upper()
        self.uuid = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    def _linkedit_data(self, c: _Command) -> None:
        c.need(16)
        dataoff, datasize = self.r.unpack("II", c.lc.offset + 8, c.what)
        self._content(dataoff, datasize, c.what)
        if c.lc.cmd == LC_CODE_SIGNATURE:
            if self.signature is not None:
                raise BinaryFormatError(f"more than one LC_CODE_SIGNATURE (load command {c.index})")
            self.signature = (dataoff, datasize)

    def _symtab(self, c: _Command) -> None:
        c.need(24)
        symoff, nsyms, stroff, strsize = self.r.unpack("IIII", c.lc.offset + 8, c.what)
        symbols = nsyms * (16 if self.is64 else 12)
        _check_range(symoff, symbols, self.r.size, c.what + " symbols")
        _check_range(stroff, strsize, self.r.size, c.what + " strings")
        self.content += [(symoff, symbols), (stroff, strsize)]

    def _dysymtab(self, c: _Command) -> None:
        c.need(80)
        f = self.r.unpack("18I", c.lc.offset + 8, c.what)
        # (offset, count, entry size): toc, module table, external refs, indirect symbols, ext/loc relocs
        for off, count, entry_size in (
            (f[6], f[7], 8),
            (f[8], f[9], 56 if self.is64 else 52),
            (f[10], f[11], 4),
            (f[12], f[13], 4),
            (f[14], f[15], 8),
            (f[16], f[17], 8),
        ):
            self._content(off, count * entry_size, c.what)

    def _dyld_info(self, c: _Command) -> None:
        c.need(48)
        f = self.r.unpack("10I", c.lc.offset + 8, c.what)
        for k in range(0, 10, 2):  # rebase, bind, weak bind, lazy bind, export: (offset, size) each
            self._content(f[k], f[k + 1], c.what)

    def _encryption_info(self, c: _Command) -> None:
        c.need(20)
        cryptoff, cryptsize = self.r.unpack("II", c.lc.offset + 8, c.what)
        self._content(cryptoff, cryptsize, c.what)


# (format of the numeric fields after the 16-byte name(s), size) of segment_command(_64) and section(_64),
# by 64-bit
_SEGMENT_COMMAND = {True: ("QQQQiiII", 72), False: ("IIIIiiII", 56)}
_SECTION = {True: ("QQIIIIIIII", 80), False: ("IIIIIIIII", 68)}

# the command kinds whose fields the reader checks and reports; others are only listed
_COMMAND_READERS: dict[int, Callable[[_LoadCommands, _Command], None]] = {
    **dict.fromkeys([*DYLIB_LOADS, LC_ID_DYLIB], _LoadCommands._dylib),
    LC_RPATH: _LoadCommands._rpath,
    LC_SEGMENT: _LoadCommands._segment,
    LC_SEGMENT_64: _LoadCommands._segment,
    LC_BUILD_VERSION: _LoadCommands._build_version,
    **dict.fromkeys(VERSION_MIN, _LoadCommands._version_min),
    LC_UUID: _LoadCommands._uuid,
    **dict.fromkeys(LINKEDIT_DATA, _LoadCommands._linkedit_data),
    LC_SYMTAB: _LoadCommands._symtab,
    LC_DYSYMTAB: _LoadCommands._dysymtab,
    LC_DYLD_INFO: _LoadCommands._dyld_info,
    LC_DYLD_INFO_ONLY: _LoadCommands._dyld_info,
    LC_ENCRYPTION_INFO: _LoadCommands._encryption_info,
    LC_ENCRYPTION_INFO_64: _LoadCommands._encryption_info,
}


def _check_range(start: int, length: int, size: int, what: str) -> None:
    if length and start + length > size:
        raise BinaryFormatError(
            f"{what}: {length} bytes at {start:#x} run past the end of the slice ({size} bytes)"
        )


def _os_version(v: int) -> str:
    """xxxx.yy.zz nibble-packed: "11.0", "10.9", "13.3.1" (the patch only when non-zero)."""
    text = f"{v >> 16}.{(v >> 8) & 0xFF}"
    return f"{text}.{v & 0xFF}" if v & 0xFF else text


def _dylib_version(v: int) -> str:
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"

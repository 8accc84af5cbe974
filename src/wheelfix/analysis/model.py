"""The analysis model: for every need of every binary, where it resolves and why. Frozen and typed;
built by :mod:`wheelfix.analysis.resolve`, read by checks and renderers. ELF and Mach-O binaries share one
shape for reports (:class:`BinaryView`: needs per architecture)."""

from __future__ import annotations

from dataclasses import dataclass

from wheelfix._enum import StrEnum
from wheelfix.analysis.scan import ElfMember, MachOMember, WheelScan
from wheelfix.binfmt import BinaryFormat

__all__ = [
    "OUTCOME_ORDER",
    "Analysis",
    "ArchView",
    "BinaryFormat",
    "BinaryKind",
    "BinaryView",
    "ElfAnalysis",
    "Library",
    "MachOAnalysis",
    "Need",
    "Outcome",
    "Resolution",
    "SearchDir",
    "SearchKind",
    "Source",
    "StrEnum",
    "WheelAnalysis",
]


class Outcome(StrEnum):
    UNRESOLVED = "unresolved"  # nothing provides it
    MANYLINUX = "manylinux_policy"  # a manylinux policy lets wheels assume it; absent on Nix
    OTHER_WHEEL = "other_wheel"  # shipped by another wheel given in the same call
    BUNDLED = "bundled"  # shipped by this wheel
    GPU_DRIVER = "gpu_driver"  # comes with the host's GPU driver
    PYTHON = "python"  # the interpreter's own libpython, already loaded in the process
    GLIBC = "glibc"  # part of the C library
    MACOS_SYSTEM = "macos_system"  # /usr/lib/* or /System/Library/*: part of every macOS install (dyld cache)
    NIX_STORE = "nix_store"  # the binary names a /nix/store path for it (a repaired wheel); not looked up


OUTCOME_ORDER = {o: i for i, o in enumerate(Outcome)}


class Source(StrEnum):
    NEEDED = "needed"  # DT_NEEDED, LC_LOAD_DYLIB
    DLOPEN_NOTE = "dlopen_note"  # FDO .note.dlopen
    DLOPEN_STRING = "dlopen_string"  # a lib*.so* string in read-only data: a hint, not a requirement


class BinaryKind(StrEnum):
    EXTENSION = "extension"  # a Python extension module
    LIBRARY = "library"
    EXECUTABLE = "executable"
    OBJECT = "object"  # a relocatable object (.o): never loaded


class SearchKind(StrEnum):
    RPATH = "RPATH"
    RUNPATH = "RUNPATH"
    LC_RPATH = "LC_RPATH"


@dataclass(frozen=True, slots=True)
class SearchDir:
    """One directory ld.so or dyld would search: an entry of the binary's own RPATH/RUNPATH/LC_RPATH, or of
    a loader's (``inherited_from`` names that binary). ``path`` is the directory in the virtual install
    tree, None when it cannot be evaluated without the host (absolute, cwd-relative, $LIB/$PLATFORM) —
    ``note`` says why."""

    kind: SearchKind
    entry: str
    path: str | None
    note: str | None
    inherited_from: str | None = None

    @property
    def label(self) -> str:
        """ "RUNPATH", or "RPATH of <member>" for an inherited entry."""
        return f"{self.kind} of {self.inherited_from}" if self.inherited_from else str(self.kind)

    def inherited(self, loader: str) -> SearchDir:
        """This entry as seen by a binary that ``loader`` loads (an inherited entry keeps its origin)."""
        if self.inherited_from is not None:
            return self
        return SearchDir(self.kind, self.entry, self.path, None, loader)


@dataclass(frozen=True, slots=True)
class Resolution:
    outcome: Outcome
    detail: str
    wheel: str | None = None  # providing wheel's file name (bundled / other_wheel)
    member: str | None = None  # providing member
    via: str | None = None  # the search-path entry that found it, e.g. "RUNPATH $ORIGIN/../x.libs"
    reachable: bool = True  # False: present in the wheel set but not on the binary's search path


@dataclass(frozen=True, slots=True)
class Need:
    soname: str
    source: Source
    resolution: Resolution
    required: bool  # DT_NEEDED and "required" dlopen notes; dlopen strings and optional notes are hints


@dataclass(frozen=True, slots=True)
class ElfAnalysis:
    binary: ElfMember
    kind: BinaryKind
    search_path: tuple[SearchDir, ...]
    needs: tuple[Need, ...]


@dataclass(frozen=True, slots=True)
class ArchView:
    """One architecture of a binary: an ELF file's only one, or one slice of a (fat) Mach-O file."""

    arch: str  # ELF machine ("x86_64", "aarch64") or Mach-O arch ("arm64", "x86_64")
    filetype: str  # ELF type (ET_DYN) or Mach-O filetype (bundle, dylib, execute)
    minos: str | None  # Mach-O: minimum macOS version; None for ELF or when not recorded
    search_path: tuple[SearchDir, ...]  # Mach-O: the LC_RPATHs @rpath is expanded with
    needs: tuple[Need, ...]


@dataclass(frozen=True, slots=True)
class MachOAnalysis:
    binary: MachOMember
    kind: BinaryKind
    slices: tuple[ArchView, ...]  # in the order of the file's slices


@dataclass(frozen=True, slots=True)
class BinaryView:
    """A binary of either format, as checks and reports see it: needs per architecture."""

    member: str
    format: BinaryFormat
    kind: BinaryKind
    archs: tuple[ArchView, ...]

    def needs(self) -> tuple[Need, ...]:
        """Needs over every architecture, the first of each (soname, outcome, reachable) kept."""
        seen: set[tuple[str, Outcome, bool]] = set()
        out: list[Need] = []
        for a in self.archs:
            for n in a.needs:
                key = (n.soname, n.resolution.outcome, n.resolution.reachable)
                if key not in seen:
                    seen.add(key)
                    out.append(n)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Library:
    """A soname as the wheel needs it, aggregated over its binaries."""

    soname: str
    outcome: Outcome
    resolution: Resolution  # the first binary's (by member name) resolution with this outcome
    needed_by: tuple[str, ...]  # members
    sources: tuple[Source, ...]
    required: bool


@dataclass(frozen=True, slots=True)
class WheelAnalysis:
    scan: WheelScan
    elf: tuple[ElfAnalysis, ...]
    macho: tuple[MachOAnalysis, ...] = ()

    def views(self) -> tuple[BinaryView, ...]:
        """Every analysed binary, ELF ones first (each by member name)."""
        out = [
            BinaryView(
                b.binary.member,
                BinaryFormat.ELF,
                b.kind,
                (ArchView(b.binary.elf.machine, b.binary.elf.type, None, b.search_path, b.needs),),
            )
            for b in self.elf
        ]
        out.extend(BinaryView(m.binary.member, m.binary.format, m.kind, m.slices) for m in self.macho)
        return tuple(out)

    def libraries(self) -> tuple[Library, ...]:
        """Needs grouped by (soname, outcome, reachable); unresolved first, then by soname."""
        groups: dict[tuple[str, Outcome, bool], list[tuple[str, Need]]] = {}
        for b in self.views():
            for n in b.needs():
                groups.setdefault((n.soname, n.resolution.outcome, n.resolution.reachable), []).append(
                    (b.member, n)
                )
        libs = [
            Library(
                soname=soname,
                outcome=outcome,
                resolution=items[0][1].resolution,
                needed_by=tuple(sorted({m for m, _ in items})),
                sources=tuple(sorted({n.source for _, n in items}, key=lambda s: list(Source).index(s))),
                required=any(n.required for _, n in items),
            )
            for (soname, outcome, _reachable), items in groups.items()
        ]
        return tuple(
            sorted(
                libs,
                key=lambda lib: (
                    OUTCOME_ORDER[lib.outcome],
                    lib.resolution.reachable,
                    not lib.required,
                    lib.soname,
                ),
            )
        )


@dataclass(frozen=True, slots=True)
class Analysis:
    wheels: tuple[WheelAnalysis, ...]
    python_version: str  # the X.Y used for the virtual site-packages

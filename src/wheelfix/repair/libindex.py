"""Libraries outside the wheels that a repair may point binaries at: ``--lib-path DIR`` directories.

Like nixpkgs' autoPatchelf, a directory is searched flat (no recursion) and a file only counts when its ELF
class, endianness and machine match the binary that needs it. Mach-O libraries (thin or fat) count for a
slice when they have a slice of the same architecture, and are found by the file name of an install name
(``@rpath/libomp.dylib`` -> ``libomp.dylib``). Nothing else on the host is looked at.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.reader import ElfInfo, machine_name
from wheelfix.binfmt.macho.reader import FAT_MAGIC, FAT_MAGIC_64, MH_MAGIC, MH_MAGIC_64, parse_macho

__all__ = ["FoundLib", "LibIndex", "dirs_from_env"]


@dataclass(frozen=True, slots=True)
class FoundLib:
    soname: str
    path: str  # the file, as found (directory as given + name)
    directory: str  # absolute, as given (store paths are kept as they are, symlinks not resolved)


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    directory: str
    elf_class: int
    endian: str
    machine: str


_MACHO_MAGICS = {m.to_bytes(4, order) for m in (MH_MAGIC, MH_MAGIC_64) for order in ("little", "big")} | {
    FAT_MAGIC.to_bytes(4, "big"),
    FAT_MAGIC_64.to_bytes(4, "big"),
}


def _macho_archs(path: str) -> frozenset[str] | None:
    """The architectures of a Mach-O file (thin or fat); None for anything else or a malformed file."""
    try:
        with open(path, "rb") as f:
            if f.read(4) not in _MACHO_MAGICS:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # only the headers are read
                return frozenset(parse_macho(data).archs)
    except (OSError, ValueError, BinaryFormatError):
        return None


def _ident(path: str) -> tuple[int, str, str] | None:
    """(class, endian, machine) from an ELF file's fixed header; None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return (64 if head[4] == 2 else 32, "little" if little else "big", machine_name(machine, little))


class LibIndex:
    def __init__(
        self,
        entries: dict[str, list[_Entry]],
        dirs: tuple[str, ...],
        macho: dict[str, list[tuple[str, str, frozenset[str]]]] | None = None,
    ) -> None:
        self._entries = entries
        self._macho = macho or {}  # file name -> [(path, directory, archs)]
        self.dirs = dirs

    @classmethod
    def from_dirs(cls, dirs: Sequence[Path]) -> LibIndex:
        entries: dict[str, list[_Entry]] = {}
        macho: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
        absolute: list[str] = []
        for d in dirs:
            directory = os.path.normpath(os.path.abspath(d))
            absolute.append(directory)
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                if not os.path.isfile(path):
                    continue
                ident = _ident(path)
                if ident is not None:
                    entries.setdefault(name, []).append(_Entry(path, directory, *ident))
                    continue
                archs = _macho_archs(path)
                if archs is not None:
                    macho.setdefault(name, []).append((path, directory, archs))
        return cls(entries, tuple(absolute), macho)

    def find_elf(self, soname: str, elf: ElfInfo) -> FoundLib | None:
        """The first file named ``soname`` in the directories (in the order given) that ``elf`` can load."""
        for e in self._entries.get(soname, []):
            if (e.elf_class, e.endian, e.machine) == (elf.elf_class, elf.endian, elf.machine):
                return FoundLib(soname, e.path, e.directory)
        return None

    def find_macho(self, install_name: str, arch: str) -> FoundLib | None:
        """The first Mach-O file named like ``install_name``'s last component (in the directories' order)
        that has an ``arch`` slice."""
        name = install_name.rsplit("/", 1)[-1]
        for path, directory, archs in self._macho.get(name, []):
            if arch in archs:
                return FoundLib(name, path, directory)
        return None


def dirs_from_env(environ: Mapping[str, str]) -> list[Path]:
    """The library directories of a Nix build's inputs, for ``--from-env``: ``lib`` and ``lib64`` of every
    store path in ``$buildInputs`` and ``$propagatedBuildInputs`` (space-separated, as stdenv exports
    them), following each input's ``nix-support/propagated-build-inputs`` transitively, then the
    directories of ``$WHEELFIX_LIB_PATH`` (colon-separated). Order: first seen first; no duplicates."""
    queue: list[str] = []
    for var in ("buildInputs", "propagatedBuildInputs"):
        queue.extend(environ.get(var, "").split())
    seen: set[str] = set()
    dirs: list[Path] = []
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        for sub in ("lib", "lib64"):
            d = Path(path) / sub
            if d.is_dir() and d not in dirs:
                dirs.append(d)
        try:
            propagated = (Path(path) / "nix-support" / "propagated-build-inputs").read_text()
        except OSError:
            continue
        queue.extend(propagated.split())
    for entry in environ.get("WHEELFIX_LIB_PATH", "").split(":"):
        if entry and Path(entry) not in dirs:
            dirs.append(Path(entry))
    return dirs

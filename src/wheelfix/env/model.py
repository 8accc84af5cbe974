"""What reading an installed environment gives: frozen results, built by :mod:`wheelfix.env.scan`, read by
the renderers, the checks and the in-place repair."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wheelfix.analysis.model import Analysis, WheelAnalysis
from wheelfix.analysis.scan import ElfMember, MachOMember, WheelScan
from wheelfix.env.discover import Distribution
from wheelfix.env.interpreter import Interpreter
from wheelfix.env.layout import Layout
from wheelfix.errors import Problem

__all__ = ["UNRECORDED", "EnvAnalysis", "EnvScan", "FileStamp"]

# the name the files that no RECORD lists go by, as one pseudo-distribution
UNRECORDED = "(not in any RECORD)"


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What makes a scanned file the same file when the repair writes it: device, inode, size, mtime; and
    its mode and owner, which the repaired file keeps."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class EnvScan:
    """An environment's distributions and binaries. ``scans`` has one :class:`WheelScan` per distribution
    with binaries (its members are its RECORD paths, its ``tree`` the real directories), then one for the
    binaries no RECORD lists (``owners`` is None there)."""

    layout: Layout
    interpreter: Interpreter | None
    distributions: tuple[Distribution, ...]  # every one, pure ones included
    scans: tuple[WheelScan, ...]
    owners: tuple[Distribution | None, ...]  # parallel to scans
    stamps: Mapping[str, FileStamp]  # absolute path of each binary -> its stamp when read
    pth_dirs: tuple[str, ...]  # directories .pth files add (editable installs), searched for binaries
    python_version: str
    warnings: tuple[Problem, ...]

    def owner(self, scan: WheelScan) -> Distribution | None:
        for s, d in zip(self.scans, self.owners, strict=True):
            if s is scan:
                return d
        raise ValueError(f"{scan.path}: not a scan of this environment")

    def path_of(self, scan: WheelScan, member: str) -> str:
        """The absolute path of a binary of ``scan``."""
        binaries: tuple[ElfMember | MachOMember, ...] = (*scan.elf, *scan.macho)
        for b in binaries:
            if b.member == member:
                return scan.install_tree(self.python_version).path(b.location)
        raise KeyError(member)


@dataclass(frozen=True, slots=True)
class EnvAnalysis:
    """An environment and the resolution of every need of its binaries (``analysis.wheels`` are its
    distributions with binaries, then the files no RECORD lists)."""

    scan: EnvScan
    analysis: Analysis

    @property
    def layout(self) -> Layout:
        return self.scan.layout

    @property
    def interpreter(self) -> Interpreter | None:
        return self.scan.interpreter

    @property
    def distributions(self) -> tuple[Distribution, ...]:
        return self.scan.distributions

    def owner(self, wheel: WheelAnalysis) -> Distribution | None:
        """The distribution a :class:`WheelAnalysis` of ``analysis`` is (None: the unrecorded files)."""
        return self.scan.owner(wheel.scan)

    @property
    def unrecorded(self) -> tuple[str, ...]:
        """Absolute paths of the binaries that no RECORD lists."""
        out: list[str] = []
        for s, d in zip(self.scan.scans, self.scan.owners, strict=True):
            if d is None:
                out += [self.scan.path_of(s, b.member) for b in s.elf]
                out += [self.scan.path_of(s, b.member) for b in s.macho]
        return tuple(out)

"""Plan ELF repairs: which binaries get which RUNPATH/RPATH and PT_INTERP, recorded as edits before
anything is written (the plan is what ``--dry-run`` prints and what the patcher applies, once per file).

For each binary, every need that no wheel provides (``unresolved`` or ``manylinux_policy``) is looked up
in the ``--lib-path`` directories; its directory is appended to the binary's search path. The new value is
the existing entries that stay valid — ``$ORIGIN`` entries that resolve inside the install, and absolute
``/nix/store`` entries — in their order, then the new directories, deduplicated, in NEEDED order. DT_RPATH
stays DT_RPATH and DT_RUNPATH stays DT_RUNPATH unless asked otherwise; a binary with neither gets
DT_RUNPATH, or DT_RPATH when it relies on a loader's inherited DT_RPATH. Executables get the loader found
in the lib-path directories (or ``--interpreter``); an executable whose loader is found nowhere is a
missing need (its PT_INTERP would still say /lib64/...), marked :attr:`Missing.interpreter`.
A shared library that also carries a PT_INTERP (``ET_DYN`` with a ``DT_SONAME``: libQt5Core, libc.so.6,
runnable to print their version) is not an executable for the repair: the loader of the process that loads
it is used and its own PT_INTERP never is, so the repair leaves that PT_INTERP alone and its loader is never
a missing need (:func:`runs_directly`).
A required need that nothing provides makes the plan incomplete: the repair stops unless ``--allow``.

Mach-O binaries (macOS wheels), per slice: every unresolved install name is looked up by its file name in
the ``--lib-path`` directories (a library counts when it has a slice of the same architecture). The fix is
chosen per need and slice:

* by default the install name is rewritten to the library's absolute path (``@rpath/libomp.dylib`` ->
  ``/nix/store/...-openmp/lib/libomp.dylib``): dyld then loads exactly that file, whatever LC_RPATHs the
  binary or its loaders carry. Leaked build-machine LC_RPATHs (``/opt/homebrew/opt/libomp/lib``) could
  otherwise load a host library first, and this is how nixpkgs links on darwin;
* when those longer names do not fit the header padding, ``@rpath/`` needs keep their name and the slice
  gets one LC_RPATH per store directory instead, with its leaked build-machine LC_RPATHs deleted (they
  would be searched first); other names are still rewritten;
* when neither fits, the repair stops before writing anything, naming the binary, the slice and the bytes
  missing (:class:`NoRoom`).

Edited slices that were signed, and every edited arm64 slice, are re-signed ad hoc by the patcher.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wheelfix._enum import StrEnum
from wheelfix.analysis.model import Analysis, ArchView, ElfAnalysis, MachOAnalysis, Outcome, WheelAnalysis
from wheelfix.analysis.resolve import BUILD_MACHINE_PREFIXES
from wheelfix.binfmt.macho.editor import MachOEdits, slice_room, wants_signature
from wheelfix.binfmt.macho.reader import MachOSlice
from wheelfix.repair.libindex import LibIndex
from wheelfix.wheel.manifest import ArchRecord, BinaryRecord, RepairManifest

__all__ = [
    "ElfEdit",
    "MachOEdit",
    "Missing",
    "NoRoom",
    "SliceEdit",
    "Strategy",
    "WheelPlan",
    "plan_repair",
    "runs_directly",
]

_NEEDS_A_PATH = (Outcome.UNRESOLVED, Outcome.MANYLINUX)


class Strategy(StrEnum):
    """How a Mach-O slice's needs are pointed at the store."""

    INSTALL_NAME = "install-name"  # rewrite each install name to the library's absolute path
    RPATH = "rpath"  # keep @rpath/ names, add one LC_RPATH per store directory


@dataclass(frozen=True, slots=True)
class ElfEdit:
    member: str
    kind: str  # "RUNPATH" or "RPATH": the tag the new value is written to
    old_value: str | None  # the value of that binary's effective search-path tag before the edit
    old_kind: str | None
    new_value: str
    added: tuple[tuple[str, str], ...]  # (soname, directory) that made a directory necessary
    old_interpreter: str | None
    new_interpreter: str | None  # None: unchanged
    arch: str = ""  # the ELF machine

    @property
    def changes_path(self) -> bool:
        if self.old_kind is None and not self.new_value:
            return False  # no search path before, nothing to add: no empty tag
        return (self.kind, self.new_value) != (self.old_kind, self.old_value)


@dataclass(frozen=True, slots=True)
class Missing:
    """A required need of ``member`` that no library directory has (or, in ``WheelPlan.allowed``, one that
    ``--allow`` accepted unresolved)."""

    member: str
    soname: str
    outcome: Outcome
    arch: str = ""  # the ELF machine or Mach-O slice
    interpreter: str | None = None  # the need is the executable's loader: its PT_INTERP (not a DT_NEEDED)


@dataclass(frozen=True, slots=True)
class SliceEdit:
    """The load-command edits of one slice of a Mach-O binary."""

    arch: str
    strategy: Strategy
    rename: tuple[tuple[str, str], ...]  # (old install name, new install name)
    add_rpaths: tuple[str, ...]
    delete_rpaths: tuple[str, ...]  # leaked build-machine LC_RPATHs ("rpath" strategy only)
    resign: bool  # the slice gets a new ad-hoc signature (it was signed, or it is arm64)
    needed: int  # bytes of load commands after the edit
    available: int  # bytes there are for them (sizeofcmds + header padding)
    provides: tuple[tuple[str, str], ...] = ()  # (install name after the edit, directory of the library)

    def edits(self) -> MachOEdits:
        return MachOEdits(
            change_names=dict(self.rename), add_rpaths=self.add_rpaths, delete_rpaths=self.delete_rpaths
        )


@dataclass(frozen=True, slots=True)
class MachOEdit:
    member: str
    slices: tuple[SliceEdit, ...]  # only the slices that change, in the file's slice order

    def edits(self) -> dict[str, MachOEdits]:
        return {s.arch: s.edits() for s in self.slices}


@dataclass(frozen=True, slots=True)
class NoRoom:
    """A slice whose new load commands fit the header padding with no strategy."""

    member: str
    arch: str
    needed: int  # the smallest any strategy needs
    available: int

    @property
    def missing(self) -> int:
        return self.needed - self.available


@dataclass(frozen=True, slots=True)
class WheelPlan:
    """Everything a repair will do to one wheel, decided before anything is written."""

    wheel: WheelAnalysis
    elf_edits: tuple[ElfEdit, ...]
    macho_edits: tuple[MachOEdit, ...]
    missing: tuple[Missing, ...]  # required needs found nowhere (the repair stops unless --allow)
    no_room: tuple[NoRoom, ...]  # Mach-O slices whose edit fits no strategy (the repair stops)
    allowed: tuple[Missing, ...] = ()  # required needs found nowhere that --allow accepted

    def manifest(self, tool_version: str) -> RepairManifest | None:
        """What this repair does, for the repaired wheel's ``wheelfix.json`` (merged into the manifest an
        earlier repair left); None when the plan changes nothing."""
        if not self.changes:
            return None
        binaries: dict[str, BinaryRecord] = {}
        allowed: dict[tuple[str, str], list[str]] = {}
        for a in self.allowed:
            allowed.setdefault((a.member, a.arch), []).append(a.soname)
        for e in self.elf_edits:
            provides = {soname: d for soname, d in e.added if d.startswith("/")}
            arch = e.arch
            binaries[e.member] = BinaryRecord(
                format="elf",
                archs={arch: ArchRecord(provides, tuple(allowed.get((e.member, arch), ())))},
                search_kind=e.kind if e.changes_path else None,
                added=tuple(dict.fromkeys(d for _, d in e.added)),
                interpreter=e.new_interpreter,
            )
        for m in self.macho_edits:
            binaries[m.member] = BinaryRecord(
                format="macho",
                archs={
                    s.arch: ArchRecord(dict(s.provides), tuple(allowed.get((m.member, s.arch), ())))
                    for s in m.slices
                },
                added=tuple(dict.fromkeys(d for s in m.slices for d in s.add_rpaths)),
            )
        new = RepairManifest(tool_version, binaries)
        old = self.wheel.scan.manifest
        return old.merged(new) if old is not None else new

    @property
    def complete(self) -> bool:
        """Every required need is met and every edit fits: the plan can be applied."""
        return not self.missing and not self.no_room

    @property
    def changes(self) -> bool:
        return bool(self.elf_edits or self.macho_edits)


def _kept_entries(b: ElfAnalysis, driver_dir: str | None = None) -> list[str]:
    """Existing entries that stay valid once installed: $ORIGIN paths inside the install, store paths (and
    the GPU driver directory when it is asked for)."""
    own = [d for d in b.search_path if d.inherited_from is None]
    kept: list[str] = []
    for d in own:
        valid = d.path is not None or d.entry.startswith("/nix/store/") or d.entry == driver_dir
        if valid and d.entry not in kept:
            kept.append(d.entry)
    return kept


@dataclass(slots=True)
class _Found:
    """What planning one wheel found: needs nothing provides, and those --allow accepted."""

    missing: list[Missing]
    allowed: list[Missing]

    def unmet(
        self,
        member: str,
        soname: str,
        outcome: Outcome,
        arch: str,
        allow: Sequence[str],
        interpreter: str | None = None,
    ) -> None:
        (self.allowed if _allowed(soname, allow) else self.missing).append(
            Missing(member, soname, outcome, arch, interpreter)
        )


@dataclass(frozen=True, slots=True)
class _Tree:
    """Where each binary of the wheel set lands in its install tree (the virtual one of a wheel, see
    :func:`wheelfix.wheel.archive.virtual_tree`, or an installed environment's), by (wheel file name,
    member)."""

    paths: Mapping[tuple[str, str], str]

    @classmethod
    def of(cls, analysis: Analysis) -> _Tree:
        paths: dict[tuple[str, str], str] = {}
        for w in analysis.wheels:
            tree = w.scan.install_tree(analysis.python_version)
            for b in w.scan.elf:
                paths[(w.scan.meta.filename, b.member)] = tree.path(b.location)
        return cls(paths)

    def origin_dir(self, wheel: str, member: str, provider_wheel: str, provider: str) -> str | None:
        """``$ORIGIN``-relative directory of ``provider`` as seen from ``member``."""
        here = self.paths.get((wheel, member))
        there = self.paths.get((provider_wheel, provider))
        if here is None or there is None:
            return None
        rel = posixpath.relpath(posixpath.dirname(there), posixpath.dirname(here))
        return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


def _search_additions(
    b: ElfAnalysis,
    wheel: str,
    index: LibIndex,
    allow: Sequence[str],
    found: _Found,
    tree: _Tree,
    driver_dir: str | None = None,
) -> list[tuple[str, str]]:
    """(soname, directory) to add: each external need found in the library directories, and each library
    the wheels ship that is not on the binary's search path (it loads today only if something else loaded
    it first: torch's test_shim and libtorch.so). The second kind is added relative to ``$ORIGIN``, as the
    directory the wheel installs it to."""
    elf = b.binary.elf
    added: list[tuple[str, str]] = []
    for need in b.needs:
        res = need.resolution
        if res.outcome in (Outcome.BUNDLED, Outcome.OTHER_WHEEL) and not res.reachable and need.required:
            if res.member is not None and res.wheel is not None:
                d = tree.origin_dir(wheel, b.binary.member, res.wheel, res.member)
                if d is not None:
                    added.append((need.soname, d))
            continue
        if driver_dir and res.outcome is Outcome.GPU_DRIVER:
            added.append((need.soname, driver_dir))
            continue
        if res.outcome not in _NEEDS_A_PATH:
            continue
        lib = index.find_elf(need.soname, elf)
        if lib is not None:
            added.append((need.soname, lib.directory))
        elif need.required:
            found.unmet(b.binary.member, need.soname, res.outcome, elf.machine, allow)
    return added


def runs_directly(b: ElfAnalysis) -> bool:
    """Whether the binary's PT_INTERP is used: it has one and is not a shared library (``ET_DYN`` with a
    ``DT_SONAME``), which is loaded by the process's loader whatever its own PT_INTERP says."""
    elf = b.binary.elf
    return elf.interpreter is not None and not (elf.type == "ET_DYN" and elf.soname is not None)


def _plan_interpreter(
    b: ElfAnalysis, index: LibIndex, allow: Sequence[str], interpreter: str | None, found: _Found
) -> str | None:
    """The new PT_INTERP of an executable, or None to leave it; an executable whose loader is found nowhere
    is a missing need (keeping /lib64/ld-linux-x86-64.so.2, it does not run on NixOS). A shared library's
    PT_INTERP is left alone (:func:`runs_directly`)."""
    elf = b.binary.elf
    if elf.interpreter is None or not runs_directly(b):
        return None
    wanted = interpreter
    if wanted is None:
        loader = index.find_elf(posixpath.basename(elf.interpreter), elf)
        wanted = loader.path if loader is not None else None
    if wanted is None and not elf.interpreter.startswith("/nix/store/"):
        name = posixpath.basename(elf.interpreter)
        found.unmet(b.binary.member, name, Outcome.UNRESOLVED, elf.machine, allow, elf.interpreter)
    return wanted if wanted is not None and wanted != elf.interpreter else None


def _plan_binary(
    b: ElfAnalysis,
    index: LibIndex,
    allow: Sequence[str],
    rpath_kind: str,
    interpreter: str | None,
    found: _Found,
    tree: _Tree,
    wheel: str,
    driver_dir: str | None = None,
) -> ElfEdit | None:
    elf = b.binary.elf
    added = _search_additions(b, wheel, index, allow, found, tree, driver_dir)
    old_kind = "RUNPATH" if elf.runpath is not None else "RPATH" if elf.rpath is not None else None
    old_value = elf.runpath if elf.runpath is not None else elf.rpath
    # A binary with neither tag gets DT_RUNPATH, unless it finds something through a loader's DT_RPATH
    # (scipy.libs' libgfortran finds libquadmath that way): DT_RUNPATH would switch that inheritance off,
    # DT_RPATH keeps it.
    inherits = any(d.inherited_from is not None for d in b.search_path)
    default_kind = "RPATH" if inherits else "RUNPATH"
    kind = {"rpath": "RPATH", "runpath": "RUNPATH"}.get(rpath_kind, old_kind or default_kind)
    entries = _kept_entries(b, driver_dir)
    for _soname, directory in added:
        if directory not in entries:
            entries.append(directory)
    new_interp = _plan_interpreter(b, index, allow, interpreter, found)
    edit = ElfEdit(
        member=b.binary.member,
        kind=kind,
        old_value=old_value,
        old_kind=old_kind,
        new_value=":".join(entries),
        added=tuple(added),
        old_interpreter=elf.interpreter,
        new_interpreter=new_interp,
        arch=elf.machine,
    )
    if not added and new_interp is None and (kind == old_kind or old_kind is None):
        return None  # nothing to add: the binary is not touched
    if not edit.changes_path and new_interp is None:
        return None
    return edit


def _allowed(name: str, allow: Sequence[str]) -> bool:
    base = posixpath.basename(name)
    return any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(base, g) for g in allow)


def _plan_slice(
    member: str,
    sl: MachOSlice,
    index: int,
    view: ArchView,
    libs: LibIndex,
    allow: Sequence[str],
    unmet: _Found,
) -> tuple[SliceEdit | None, NoRoom | None]:
    found: list[tuple[str, str, str]] = []  # (install name, file, directory)
    for need in view.needs:
        if need.resolution.outcome is not Outcome.UNRESOLVED or any(n == need.soname for n, _, _ in found):
            continue
        lib = libs.find_macho(need.soname, sl.arch)
        if lib is not None:
            found.append((need.soname, lib.path, lib.directory))
        elif need.required:
            unmet.unmet(member, need.soname, need.resolution.outcome, sl.arch, allow)
    if not found:
        return None, None
    by_name = MachOEdits(change_names={name: path for name, path, _ in found})
    rpath_dirs: list[str] = []
    for name, _path, directory in found:
        if name.startswith("@rpath/") and directory not in rpath_dirs and directory not in sl.rpaths:
            rpath_dirs.append(directory)
    by_rpath = MachOEdits(
        change_names={name: path for name, path, _ in found if not name.startswith("@rpath/")},
        add_rpaths=tuple(rpath_dirs),
        delete_rpaths=tuple(p for p in sl.rpaths if p.startswith(BUILD_MACHINE_PREFIXES)),
    )
    candidates = [(Strategy.INSTALL_NAME, by_name)]
    if any(name.startswith("@rpath/") for name, _, _ in found):
        candidates.append((Strategy.RPATH, by_rpath))
    rooms = [(strategy, edits, slice_room(sl, index, edits)) for strategy, edits in candidates]
    for strategy, edits, room in rooms:
        if not edits:  # the store directories are LC_RPATHs already: dyld finds the libraries there
            return None, None
        if room.missing == 0:
            provides = tuple((edits.change_names.get(name, name), directory) for name, _, directory in found)
            return (
                SliceEdit(
                    arch=sl.arch,
                    strategy=strategy,
                    rename=tuple(edits.change_names.items()),
                    add_rpaths=edits.add_rpaths,
                    delete_rpaths=edits.delete_rpaths,
                    resign=wants_signature(sl),
                    needed=room.needed,
                    available=room.available,
                    provides=provides,
                ),
                None,
            )
    best = min((room for _, _, room in rooms), key=lambda r: r.needed)
    return None, NoRoom(member, sl.arch, best.needed, best.available)


def _plan_macho(
    m: MachOAnalysis, libs: LibIndex, allow: Sequence[str], found: _Found
) -> tuple[MachOEdit | None, list[NoRoom]]:
    no_room: list[NoRoom] = []
    slices: list[SliceEdit] = []
    for index, (sl, view) in enumerate(zip(m.binary.macho.slices, m.slices, strict=True)):
        edit, room = _plan_slice(m.binary.member, sl, index, view, libs, allow, found)
        if room is not None:
            no_room.append(room)
        if edit is not None:
            slices.append(edit)
    return (MachOEdit(m.binary.member, tuple(slices)) if slices else None), no_room


def plan_repair(
    analysis: Analysis,
    index: LibIndex,
    *,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
    driver_dir: str | None = None,
) -> tuple[WheelPlan, ...]:
    """Decide every edit of every wheel of ``analysis`` against the libraries of ``index``. ``driver_dir``
    (e.g. ``/run/opengl-driver/lib``) is added to the search path of binaries that need GPU driver
    libraries, and only to theirs."""
    tree = _Tree.of(analysis)
    plans = []
    for w in analysis.wheels:
        found = _Found([], [])
        elf_edits = [
            e
            for b in w.elf
            if (
                e := _plan_binary(
                    b, index, allow, rpath_kind, interpreter, found, tree, w.scan.meta.filename, driver_dir
                )
            )
        ]
        macho_edits: list[MachOEdit] = []
        no_room: list[NoRoom] = []
        for m in w.macho:
            medit, rooms = _plan_macho(m, index, allow, found)
            no_room.extend(rooms)
            if medit is not None:
                macho_edits.append(medit)
        plans.append(
            WheelPlan(
                w,
                tuple(elf_edits),
                tuple(macho_edits),
                tuple(found.missing),
                tuple(no_room),
                tuple(found.allowed),
            )
        )
    return tuple(plans)

"""Plan ELF repairs: which binaries get which RUNPATH/RPATH and PT_INTERP, recorded as edits before
anything is written (the plan is what ``--dry-run`` prints and what the patcher applies, once per file).

For each binary, every need that no wheel provides (``unresolved`` or ``manylinux_policy``) is looked up
in the ``--lib-path`` directories; its directory is appended to the binary's search path. The new value is
the existing entries that stay valid — ``$ORIGIN`` entries that resolve inside the install, and absolute
``/nix/store`` entries — in their order, then the new directories, deduplicated, in NEEDED order. DT_RPATH
stays DT_RPATH and DT_RUNPATH stays DT_RUNPATH unless asked otherwise; a binary with neither gets
DT_RUNPATH, or DT_RPATH when it relies on a loader's inherited DT_RPATH. Executables get the loader found
in the lib-path directories (or ``--interpreter``); an executable whose loader is found nowhere is a
missing need (its PT_INTERP would still say /lib64/...).
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
from collections.abc import Sequence
from dataclasses import dataclass

from wheelfix.analysis.model import Analysis, ArchView, BinaryAnalysis, MachOAnalysis, Outcome, WheelAnalysis
from wheelfix.analysis.resolve import BUILD_MACHINE_PREFIXES
from wheelfix.binfmt.macho.editor import MachOEdits, slice_room, wants_signature
from wheelfix.binfmt.macho.reader import MachOSlice
from wheelfix.repair.libindex import LibIndex

__all__ = ["ElfEdit", "MachOEdit", "Missing", "NoRoom", "SliceEdit", "WheelPlan", "plan_repair"]

_NEEDS_A_PATH = (Outcome.UNRESOLVED, Outcome.MANYLINUX)


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

    @property
    def changes_path(self) -> bool:
        if self.old_kind is None and not self.new_value:
            return False  # no search path before, nothing to add: no empty tag
        return (self.kind, self.new_value) != (self.old_kind, self.old_value)


@dataclass(frozen=True, slots=True)
class Missing:
    member: str
    soname: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class SliceEdit:
    """The load-command edits of one slice of a Mach-O binary."""

    arch: str
    strategy: str  # "install-name" (absolute names) or "rpath" (LC_RPATHs for @rpath/ needs)
    rename: tuple[tuple[str, str], ...]  # (old install name, new install name)
    add_rpaths: tuple[str, ...]
    delete_rpaths: tuple[str, ...]  # leaked build-machine LC_RPATHs ("rpath" strategy only)
    resign: bool  # the slice gets a new ad-hoc signature (it was signed, or it is arm64)
    needed: int  # bytes of load commands after the edit
    available: int  # bytes there are for them (sizeofcmds + header padding)

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
    wheel: WheelAnalysis
    edits: tuple[ElfEdit, ...]
    missing: tuple[Missing, ...]
    macho_edits: tuple[MachOEdit, ...] = ()
    no_room: tuple[NoRoom, ...] = ()


def _kept_entries(b: BinaryAnalysis, driver_dir: str | None = None) -> list[str]:
    """Existing entries that stay valid once installed: $ORIGIN paths inside the install, store paths (and
    the GPU driver directory when it is asked for)."""
    own = [d for d in b.search_path if d.kind in ("RPATH", "RUNPATH")]
    kept: list[str] = []
    for d in own:
        valid = d.path is not None or d.entry.startswith("/nix/store/") or d.entry == driver_dir
        if valid and d.entry not in kept:
            kept.append(d.entry)
    return kept


def _plan_binary(
    b: BinaryAnalysis,
    index: LibIndex,
    allow: Sequence[str],
    rpath_kind: str,
    interpreter: str | None,
    driver_dir: str | None = None,
) -> tuple[ElfEdit | None, list[Missing]]:
    elf = b.binary.elf
    missing: list[Missing] = []
    added: list[tuple[str, str]] = []
    for need in b.needs:
        if driver_dir is not None and need.resolution.outcome is Outcome.GPU_DRIVER:
            # only on the machine that runs the program (NixOS: /run/opengl-driver/lib), so not looked up
            added.append((need.soname, driver_dir))
            continue
        if need.resolution.outcome not in _NEEDS_A_PATH:
            continue
        found = index.find(need.soname, elf)
        if found is not None:
            added.append((need.soname, found.directory))
        elif need.required and not any(fnmatch.fnmatchcase(need.soname, g) for g in allow):
            missing.append(Missing(b.binary.member, need.soname, need.resolution.outcome))
    old_kind = "RUNPATH" if elf.runpath is not None else "RPATH" if elf.rpath is not None else None
    old_value = elf.runpath if elf.runpath is not None else elf.rpath
    # A binary with neither tag gets DT_RUNPATH, unless it finds something through a loader's DT_RPATH
    # (scipy.libs' libgfortran finds libquadmath that way): DT_RUNPATH would switch that inheritance off,
    # DT_RPATH keeps it.
    inherits = any(d.kind.startswith("RPATH of") for d in b.search_path)
    default_kind = "RPATH" if inherits else "RUNPATH"
    kind = {"rpath": "RPATH", "runpath": "RUNPATH"}.get(rpath_kind, old_kind or default_kind)
    entries = _kept_entries(b, driver_dir)
    for _soname, directory in added:
        if directory not in entries:
            entries.append(directory)
    new_value = ":".join(entries)
    new_interp: str | None = None
    if elf.interpreter is not None:
        wanted = interpreter
        if wanted is None:
            loader = index.find(posixpath.basename(elf.interpreter), elf)
            wanted = loader.path if loader is not None else None
        if wanted is not None and wanted != elf.interpreter:
            new_interp = wanted
        loader_name = posixpath.basename(elf.interpreter)
        if (
            wanted is None
            and not elf.interpreter.startswith("/nix/store/")
            and not any(fnmatch.fnmatchcase(loader_name, g) for g in allow)
        ):  # an executable that keeps /lib64/ld-linux-x86-64.so.2 does not run on NixOS
            missing.append(Missing(b.binary.member, loader_name, Outcome.UNRESOLVED))
    edit = ElfEdit(
        member=b.binary.member,
        kind=kind,
        old_value=old_value,
        old_kind=old_kind,
        new_value=new_value,
        added=tuple(added),
        old_interpreter=elf.interpreter,
        new_interpreter=new_interp,
    )
    if not added and new_interp is None and (kind == old_kind or old_kind is None):
        return None, missing  # nothing to add: the binary is not touched
    if not edit.changes_path and new_interp is None:
        return None, missing
    return edit, missing


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
) -> tuple[SliceEdit | None, list[Missing], NoRoom | None]:
    missing: list[Missing] = []
    found: list[tuple[str, str, str]] = []  # (install name, file, directory)
    for need in view.needs:
        if need.resolution.outcome is not Outcome.UNRESOLVED or any(n == need.soname for n, _, _ in found):
            continue
        lib = libs.find_macho(need.soname, sl.arch)
        if lib is not None:
            found.append((need.soname, lib.path, lib.directory))
        elif need.required and not _allowed(need.soname, allow):
            missing.append(Missing(member, need.soname, need.resolution.outcome))
    if not found:
        return None, missing, None
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
    candidates = [("install-name", by_name)]
    if any(name.startswith("@rpath/") for name, _, _ in found):
        candidates.append(("rpath", by_rpath))
    rooms = [(strategy, edits, slice_room(sl, index, edits)) for strategy, edits in candidates]
    for strategy, edits, room in rooms:
        if not edits:  # the store directories are LC_RPATHs already: dyld finds the libraries there
            return None, missing, None
        if room.missing == 0:
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
                ),
                missing,
                None,
            )
    best = min((room for _, _, room in rooms), key=lambda r: r.needed)
    return None, missing, NoRoom(member, sl.arch, best.needed, best.available)


def _plan_macho(
    m: MachOAnalysis, libs: LibIndex, allow: Sequence[str]
) -> tuple[MachOEdit | None, list[Missing], list[NoRoom]]:
    missing: list[Missing] = []
    no_room: list[NoRoom] = []
    slices: list[SliceEdit] = []
    for index, (sl, view) in enumerate(zip(m.binary.macho.slices, m.slices, strict=True)):
        edit, miss, room = _plan_slice(m.binary.member, sl, index, view, libs, allow)
        missing.extend(miss)
        if room is not None:
            no_room.append(room)
        if edit is not None:
            slices.append(edit)
    return (MachOEdit(m.binary.member, tuple(slices)) if slices else None), missing, no_room


def plan_repair(
    analysis: Analysis,
    index: LibIndex,
    *,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
    driver_dir: str | None = None,
) -> tuple[WheelPlan, ...]:
    """``driver_dir``: appended to the search path of the ELF binaries that need a GPU driver library
    (DT_NEEDED, .note.dlopen or a dlopen string: libcuda.so.1, ...), and of no other."""
    plans = []
    for w in analysis.wheels:
        edits: list[ElfEdit] = []
        missing: list[Missing] = []
        for b in w.binaries:
            edit, miss = _plan_binary(b, index, allow, rpath_kind, interpreter, driver_dir)
            missing.extend(miss)
            if edit is not None:
                edits.append(edit)
        macho_edits: list[MachOEdit] = []
        no_room: list[NoRoom] = []
        for m in w.macho:
            medit, miss, rooms = _plan_macho(m, index, allow)
            missing.extend(miss)
            no_room.extend(rooms)
            if medit is not None:
                macho_edits.append(medit)
        plans.append(WheelPlan(w, tuple(edits), tuple(missing), tuple(macho_edits), tuple(no_room)))
    return tuple(plans)

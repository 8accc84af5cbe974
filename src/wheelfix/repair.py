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
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from .libpath import LibIndex
from .model import Analysis, BinaryAnalysis, Outcome, WheelAnalysis

__all__ = ["ElfEdit", "Missing", "WheelPlan", "plan_repair"]

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
class WheelPlan:
    wheel: WheelAnalysis
    edits: tuple[ElfEdit, ...]
    missing: tuple[Missing, ...]


def _kept_entries(b: BinaryAnalysis) -> list[str]:
    """Existing entries that stay valid once installed: $ORIGIN paths inside the install, store paths."""
    own = [d for d in b.search_path if d.kind in ("RPATH", "RUNPATH")]
    kept: list[str] = []
    for d in own:
        if (d.path is not None or d.entry.startswith("/nix/store/")) and d.entry not in kept:
            kept.append(d.entry)
    return kept


def _plan_binary(
    b: BinaryAnalysis,
    index: LibIndex,
    allow: Sequence[str],
    rpath_kind: str,
    interpreter: str | None,
) -> tuple[ElfEdit | None, list[Missing]]:
    elf = b.binary.elf
    missing: list[Missing] = []
    added: list[tuple[str, str]] = []
    for need in b.needs:
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
    entries = _kept_entries(b)
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


def plan_repair(
    analysis: Analysis,
    index: LibIndex,
    *,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
) -> tuple[WheelPlan, ...]:
    plans = []
    for w in analysis.wheels:
        edits: list[ElfEdit] = []
        missing: list[Missing] = []
        for b in w.binaries:
            edit, miss = _plan_binary(b, index, allow, rpath_kind, interpreter)
            missing.extend(miss)
            if edit is not None:
                edits.append(edit)
        plans.append(WheelPlan(w, tuple(edits), tuple(missing)))
    return tuple(plans)

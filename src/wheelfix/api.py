"""wheelfix's public Python API: what the command line does, as functions that return typed, frozen results.

Every function raises :class:`wheelfix.Error` (or a subclass, whose ``exit_code`` the CLI uses) for bad
input, unknown targets, findings that stop a repair, and unwritable outputs — never a bare exception for
something a user did. See ``docs/api.md`` for examples.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelfix.analysis.check import CheckResult, run_check
from wheelfix.analysis.model import Analysis
from wheelfix.errors import Findings, UsageError
from wheelfix.nixkb.kb import Answer, Candidate, KnowledgeBase
from wheelfix.pipeline import Pipeline
from wheelfix.render.nix import FLAVORS, Flavor, NixPlan, plan_nix, render_nix
from wheelfix.repair.libindex import LibIndex, dirs_from_env
from wheelfix.repair.plan import WheelPlan
from wheelfix.repair.plan import plan_repair as _plan
from wheelfix.wheel.archive import DEFAULT_LIMITS, Limits

__all__ = [
    "NixFragment",
    "RepairIncomplete",
    "RepairResult",
    "check",
    "inspect",
    "lookup",
    "nix_fragment",
    "plan_repair",
    "repair",
    "write_repaired",
]

PathLike = str | os.PathLike[str]


def inspect(
    wheels: Iterable[PathLike], *, limits: Limits = DEFAULT_LIMITS, jobs: int | None = None
) -> Analysis:
    """Read ``wheels`` (each opened once, streamed, never unpacked) and resolve every need of every binary
    against the whole set, as if they were installed in one environment."""
    with Pipeline([Path(w) for w in wheels], limits=limits, jobs=jobs) as p:
        return p.analysis


def check(analysis: Analysis, target: str = "nix", *, allow: Sequence[str] = ()) -> CheckResult:
    """Judge an analysis for ``target``: ``nix``, ``auto`` (each wheel against its own platform tags), or a
    manylinux/musllinux policy (``manylinux_2_28``, ``manylinux2014``, ``musllinux_1_2``, optionally with an
    architecture: ``manylinux_2_28_aarch64``). ``result.passed`` is the verdict; ``result.wheels`` has each
    wheel's ``consistent_with`` (the most compatible manylinux/musllinux tag its binaries satisfy).
    Raises :class:`~wheelfix.analysis.check.UnknownTarget` (a :class:`~wheelfix.errors.UsageError`)."""
    return run_check(analysis, target, allow)


def _lib_index(lib_paths: Sequence[PathLike], from_env: bool, environ: Mapping[str, str] | None) -> LibIndex:
    dirs = [Path(d) for d in lib_paths]
    if from_env:
        dirs.extend(dirs_from_env(os.environ if environ is None else environ))
    return LibIndex.from_dirs(dirs)


def plan_repair(
    analysis: Analysis,
    *,
    lib_paths: Sequence[PathLike] = (),
    from_env: bool = False,
    environ: Mapping[str, str] | None = None,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
) -> tuple[WheelPlan, ...]:
    """What a repair would do to each wheel: the RUNPATH/RPATH and interpreter edits (ELF), install-name
    and LC_RPATH edits (Mach-O), and the needs found nowhere. Pure planning: nothing is read but the
    ``lib_paths`` directories (and, with ``from_env``, the Nix build inputs named in ``environ``)."""
    if rpath_kind not in ("keep", "runpath", "rpath"):
        raise UsageError(f"rpath_kind must be keep, runpath or rpath, not {rpath_kind!r}")
    index = _lib_index(lib_paths, from_env, environ)
    return _plan(analysis, index, allow=allow, rpath_kind=rpath_kind, interpreter=interpreter)


@dataclass(frozen=True, slots=True)
class RepairResult:
    """One wheel of a repair: its plan, and where the repaired copy went (None for a dry run)."""

    source: Path
    plan: WheelPlan
    output: Path | None

    @property
    def changed(self) -> tuple[str, ...]:
        """The members the repair rewrote."""
        return tuple(e.member for e in self.plan.elf_edits) + tuple(e.member for e in self.plan.macho_edits)


class RepairIncomplete(Findings):
    """Some required need has no library (and was not allowed), or an edit does not fit a binary: nothing
    was written. ``plans`` says which."""

    def __init__(self, plans: Sequence[WheelPlan]) -> None:
        self.plans = tuple(plans)
        missing = sorted({m.soname for p in self.plans for m in p.missing})
        rooms = sum(len(p.no_room) for p in self.plans)
        parts = [f"no library for {', '.join(missing)}"] if missing else []
        parts += [f"{rooms} binary slices without room for the edit"] if rooms else []
        super().__init__("repair stopped: " + "; ".join(parts))


def _check_outdir(wheels: Sequence[Path], outdir: Path) -> None:
    for w in wheels:
        if w.exists() and outdir.exists() and outdir.resolve() == w.resolve().parent:
            raise UsageError(f"{outdir} holds the input {w.name}: it would be overwritten")


def repair(
    wheels: Iterable[PathLike],
    outdir: PathLike,
    *,
    lib_paths: Sequence[PathLike] = (),
    from_env: bool = False,
    environ: Mapping[str, str] | None = None,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
    dry_run: bool = False,
    compression_level: int = 6,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
    on_plan: Callable[[tuple[WheelPlan, ...]], None] | None = None,
) -> list[RepairResult]:
    """Write copies of ``wheels`` into ``outdir`` whose binaries find their libraries in ``lib_paths``.

    Each wheel is opened once: scanned, planned, patched and copied from the same open file. Every edit is
    made and verified (re-read, page hashes of new signatures) before any wheel is written. ``on_plan`` is
    called with the plans before patching starts (the CLI prints them). Raises :class:`RepairIncomplete`
    when a required need has no library and is not matched by ``allow``, or an edit does not fit.
    """
    paths = [Path(w) for w in wheels]
    out = Path(outdir)
    _check_outdir(paths, out)
    index = _lib_index(lib_paths, from_env, environ)
    with Pipeline(paths, limits=limits, jobs=jobs) as p:
        plans = _plan(p.analysis, index, allow=allow, rpath_kind=rpath_kind, interpreter=interpreter)
        if not all(plan.complete for plan in plans):
            raise RepairIncomplete(plans)
        if on_plan is not None:
            on_plan(plans)
        if dry_run:
            return [RepairResult(path, plan, None) for path, plan in zip(paths, plans, strict=True)]
        written = p.write(plans, out, level=compression_level)
    return [RepairResult(path, plan, dest) for path, plan, dest in zip(paths, plans, written, strict=True)]


def write_repaired(
    plans: Sequence[WheelPlan],
    outdir: PathLike,
    *,
    compression_level: int = 6,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
) -> list[RepairResult]:
    """Apply plans made earlier (``plan_repair(inspect(...))``) and write the wheels into ``outdir``. Each
    wheel is opened again, once, and must be the very file that was inspected (size, modification time
    and central directory unchanged), else :class:`~wheelfix.errors.BadInput`."""
    if not all(plan.complete for plan in plans):
        raise RepairIncomplete(plans)
    paths = [Path(plan.wheel.scan.path) for plan in plans]
    out = Path(outdir)
    _check_outdir(paths, out)
    with Pipeline.reopen(plans, limits=limits, jobs=jobs) as p:
        written = p.write(plans, out, level=compression_level)
    return [RepairResult(path, plan, dest) for path, plan, dest in zip(paths, plans, written, strict=True)]


def lookup(
    names: Iterable[str],
    *,
    data: PathLike | None = None,
    preferences: PathLike | None = None,
    nixpkgs: str | None = None,
    kb: KnowledgeBase | None = None,
) -> tuple[Answer, ...]:
    """Which nixpkgs output provides each library name, the alternatives, why, and where the answer comes
    from. With ``nixpkgs`` (a path or a flake reference), the chosen outputs' store paths are evaluated
    there with ``nix-instantiate`` instead of taken from the data. ``kb``: a knowledge base already loaded
    (else the packaged data, or ``data`` and ``preferences``)."""
    if kb is None:
        kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    answers = kb.lookup_all(names)
    if nixpkgs is None:
        return answers
    from wheelfix.nixkb.storepaths import resolve_store_paths

    def bare(c: Candidate) -> Candidate:
        return Candidate(c.attr, c.output, None)

    paths = resolve_store_paths(nixpkgs, [bare(a.chosen) for a in answers if a.chosen])
    return tuple(
        dataclasses.replace(
            a,
            chosen=dataclasses.replace(a.chosen, store_path=paths[bare(a.chosen)]),
            provenance=a.provenance + f"; evaluated store path: {nixpkgs}",
        )
        if a.chosen
        else a
        for a in answers
    )


@dataclass(frozen=True, slots=True)
class NixFragment:
    """A Nix fragment and what it was made from. ``unknown``: library names no known nixpkgs package
    provides (listed in a comment of ``text``)."""

    text: str
    flavor: Flavor
    plan: NixPlan

    @property
    def unknown(self) -> tuple[str, ...]:
        return self.plan.unknown


def nix_fragment(
    analysis: Analysis,
    flavor: str = "uv2nix",
    *,
    data: PathLike | None = None,
    preferences: PathLike | None = None,
) -> NixFragment:
    """The Nix that gives the Python packages of ``analysis`` the nixpkgs libraries they need, in the shape
    of ``flavor``: ``uv2nix`` (pyproject.nix overlay), ``poetry2nix``, ``nixpkgs`` (buildPythonPackage
    attributes) or ``plain`` (a list of packages)."""
    chosen = next((f for f in FLAVORS if f == flavor), None)
    if chosen is None:
        raise UsageError(f"unknown flavor {flavor!r}: use one of {', '.join(FLAVORS)}")
    kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    plan = plan_nix(analysis, kb)
    return NixFragment(render_nix(plan, chosen), chosen, plan)

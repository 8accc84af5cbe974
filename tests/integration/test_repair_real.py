"""``wheelfix repair`` on real manylinux wheels against a fake Nix store (issue 7, item 5).

The store: Debian's libstdc++.so.6, libgcc_s.so.1, libgomp.so.1, libz.so.1 and the loader, each copied
into its own directory and added with ``nix-store --add``; every wheel is repaired with those
``/nix/store/...-x/lib`` directories as ``--lib-path``. Oracles, none of them wheelfix:

* ``readelf`` on every ELF member before and after: the members expected to change (those that need one of
  the store libraries, and executables) are exactly the members that changed; each has the intended
  search path — its own ``$ORIGIN`` entries in order, then the store directory of each store library it
  needs, in NEEDED order — in the same tag (DT_RPATH stays DT_RPATH, DT_RUNPATH stays DT_RUNPATH, neither
  becomes DT_RUNPATH), PT_INTERP set to the store loader, NEEDED/SONAME untouched. Every other member is
  byte-identical, down to its compressed bytes; RECORD hashes match the new contents.
* the dynamic loader: each extension module that imports from the original wheel (installed in a fresh
  venv, imported by a ``python -I`` subprocess) still imports from the repaired wheel, and that process's
  ``/proc/self/maps`` shows every store library that a loaded wheel ELF needs mapped from ``/nix/store``
  and no host copy of any of them. Executables run, with their libraries from the store
  (``LD_TRACE_LOADED_OBJECTS``).
* repairing the repaired wheel gives the same bytes.

Each wheel is repaired, compared and installed once per module (``RealRepairs`` caches everything).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import posixpath
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import fresh_venv
from tests.support.nix import nix_env
from tests.support.oracles import readelf_facts
from tests.support.prereq import require_tool, unavailable
from tests.support.realwheels import fetch, load_manifest
from tests.support.wheels import record_hash

pytestmark = pytest.mark.network

HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu")
# soname -> name of its store path (one store path per library, like nixpkgs' separate outputs)
STORE_LIBS = {
    "libstdc++.so.6": "wheelfix-test-libstdcxx",
    "libgcc_s.so.1": "wheelfix-test-libgcc",
    "libgomp.so.1": "wheelfix-test-libgomp",
    "libz.so.1": "wheelfix-test-zlib",
}
LOADER = "ld-linux-x86-64.so.2"
LOADER_STORE_NAME = "wheelfix-test-glibc-loader"
ELF_MAGIC = b"\x7fELF"
PREFIX = "/prefix"  # a virtual install prefix, to tell which $ORIGIN entries stay inside the install
SITE = "lib/python3.11/site-packages"
EXTENSION = re.compile(
    r"(?P<module>[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)\.(?:cpython-311-x86_64-linux-gnu|abi3)\.so"
)
TIMEOUT = 600


@dataclass(frozen=True)
class Case:
    name: str  # manifest name
    why: str
    deps: tuple[str, ...] = ()  # other cases installed beside it (their repaired wheels after repair)
    # executables: path inside the venv, arguments, expected start of stdout
    runs: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    explicit_interpreter: bool = False  # --interpreter instead of the loader's directory in --lib-path
    modules: tuple[str, ...] = ()  # what to import instead of every extension module by its file name


CASES = {
    c.name: c
    for c in (
        Case("numpy", "DT_RPATH $ORIGIN/../../numpy.libs; bundled libgfortran needs libz + libgcc_s"),
        Case(
            "scipy",
            "114 ELFs, DT_RPATH into scipy.libs, two bundled libgfortran, a build-tree DT_RUNPATH to drop",
            deps=("numpy",),
        ),
        Case("pyarrow", "C++-heavy: 38 ELFs with DT_RUNPATH $ORIGIN, all need libstdc++ + libgcc_s"),
        Case("pillow", "libz for the bundled codecs (DT_RPATH $ORIGIN and no search path at all)"),
        Case(
            "opencv-python-headless",
            "74 MB C++ cv2.abi3.so, 15 bundled libs",
            deps=("numpy",),
            modules=("cv2",),  # cv2/__init__.py loads cv2.abi3.so; "cv2.cv2" cannot be imported directly
        ),
        Case("lxml", "needs nothing outside glibc: the wheel is copied verbatim"),
        Case(
            "ninja",
            "ELF executable in .data/scripts; the loader is found in --lib-path",
            runs=(("bin/ninja", ("--version",), "1.13.2."),),
        ),
        Case(
            "cmake",
            "three ELF executables under the package dir; --interpreter given explicitly",
            runs=(
                (f"{SITE}/cmake/data/bin/cmake", ("--version",), "cmake version 4.4.4"),
                (f"{SITE}/cmake/data/bin/ctest", ("--version",), "ctest version 4.4.4"),
            ),
            explicit_interpreter=True,
        ),
    )
}
IMPORTING = [name for name in CASES if not CASES[name].runs]
MANIFEST = {entry["name"]: entry for entry in load_manifest()}


@dataclass(frozen=True)
class Store:
    lib_dirs: dict[str, str]  # soname -> /nix/store/...-x/lib
    loader: str  # /nix/store/...-loader/lib/ld-linux-x86-64.so.2

    @property
    def loader_dir(self) -> str:
        return posixpath.dirname(self.loader)


@dataclass(frozen=True)
class ElfMember:
    member: str
    install: str  # relative to the venv prefix
    before: dict[str, Any]  # readelf facts (tests.support.oracles.readelf_facts)
    after: dict[str, Any] | None  # None: the member is byte-identical
    expected: dict[str, Any] | None  # None: must stay byte-identical
    store_needs: tuple[str, ...]


@dataclass
class Comparison:
    """Original and repaired wheel, member by member."""

    elfs: dict[str, ElfMember] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # every member whose bytes changed
    problems: list[str] = field(default_factory=list)  # zip-level differences that must not exist


def _install_path(member: str, dist_data: str) -> str:
    """Where a wheel member lands, relative to the venv prefix."""
    if member.startswith(dist_data + "/"):
        scheme, _, rest = member[len(dist_data) + 1 :].partition("/")
        return {"scripts": f"bin/{rest}", "purelib": f"{SITE}/{rest}", "platlib": f"{SITE}/{rest}"}.get(
            scheme, rest
        )
    return f"{SITE}/{member}"


def _kept_entries(value: str | None, install_path: str) -> list[str]:
    """$ORIGIN entries that stay inside the install (and store paths), in order, without repeats."""
    kept: list[str] = []
    origin = posixpath.join(PREFIX, posixpath.dirname(install_path))
    for entry in (value or "").split(":"):
        if entry.startswith("/nix/store/"):
            pass
        elif re.search(r"\$(ORIGIN\b|\{ORIGIN\})", entry):
            expanded = posixpath.normpath(re.sub(r"\$(ORIGIN\b|\{ORIGIN\})", origin, entry))
            if not expanded.startswith(PREFIX + "/"):
                continue
        else:
            continue
        if entry not in kept:
            kept.append(entry)
    return kept


def expected_edit(
    facts: dict[str, Any], install_path: str, store: Store, interpreter: str, inherits: bool
) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The readelf facts the repaired member must have (None: unchanged), and its store needs."""
    store_needs = tuple(s for s in facts["needed"] if s in store.lib_dirs)
    if not store_needs and facts["interpreter"] is None:
        return None, store_needs
    expected = dict(facts)
    if store_needs:
        if facts["runpath"] is not None:
            kind = "runpath"
        elif facts["rpath"] is not None:
            kind = "rpath"
        else:  # neither: DT_RUNPATH, unless the library relies on a loader's DT_RPATH
            kind = "rpath" if inherits else "runpath"
        entries = _kept_entries(facts[kind], install_path)
        entries += [d for d in dict.fromkeys(store.lib_dirs[s] for s in store_needs) if d not in entries]
        expected["rpath" if kind == "rpath" else "runpath"] = ":".join(entries)
    if facts["interpreter"] is not None:
        expected["interpreter"] = interpreter
    return expected, store_needs


def _raw_data(fh: io.BufferedReader, info: zipfile.ZipInfo) -> bytes:
    """A member's compressed bytes, as stored."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    assert header[:4] == b"PK\x03\x04", f"{info.filename}: no local header"
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    return fh.read(info.compress_size)


def _record_lines(zf: zipfile.ZipFile, record: str) -> list[bytes]:
    return zf.read(record).splitlines(keepends=True)


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs)


IMPORT_SCRIPT = """
import importlib, json, sys
results = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
        results[name] = None
    except BaseException as e:  # noqa: BLE001 (SystemExit from a module is a failure too)
        results[name] = f"{type(e).__name__}: {e}"
maps = set()
with open("/proc/self/maps") as fh:
    for line in fh:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            maps.add(parts[5].rstrip("\\n"))
with open(sys.argv[1], "w") as fh:
    json.dump({"results": results, "maps": sorted(maps)}, fh)
"""


class RealRepairs:
    """Everything each test needs, computed once per module and wheel."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp

    @functools.cached_property
    def store(self) -> Store:
        require_tool("nix-store")
        root = self.tmp.mktemp("store-src")
        paths: dict[str, str] = {}
        for name, soname in [*((n, s) for s, n in STORE_LIBS.items()), (LOADER_STORE_NAME, LOADER)]:
            lib = root / name / "lib"
            lib.mkdir(parents=True)
            source = (HOST_LIBS / soname).resolve()
            if not source.is_file():
                unavailable(f"{HOST_LIBS / soname} is missing: the fake store copies it")
            shutil.copyfile(source, lib / soname)
            (lib / soname).chmod(0o755)
            added = subprocess.run(
                ["nix-store", "--add", str(root / name)],
                capture_output=True,
                text=True,
                env=nix_env(),
                check=False,
            )
            assert added.returncode == 0, added.stderr
            paths[soname] = added.stdout.strip() + "/lib"
        loader_dir = paths.pop(LOADER)
        return Store(lib_dirs=paths, loader=f"{loader_dir}/{LOADER}")

    def source(self, name: str) -> Path:
        return fetch(MANIFEST[name])

    def repair_args(self, name: str) -> list[str]:
        args = [arg for d in self.store.lib_dirs.values() for arg in ("--lib-path", d)]
        if CASES[name].explicit_interpreter:
            return [*args, "--interpreter", self.store.loader]
        return [*args, "--lib-path", self.store.loader_dir]

    def _repair(self, wheel: Path, out: Path, name: str) -> Path:
        proc = _run(
            [sys.executable, "-m", "wheelfix", "repair", str(wheel), "-o", str(out), *self.repair_args(name)]
        )
        assert proc.returncode == 0, f"repair of {wheel.name} exited {proc.returncode}:\n{proc.stderr}"
        result = out / wheel.name
        assert result.is_file(), proc.stdout
        return result

    @functools.cache  # noqa: B019 (one instance per module)
    def repaired(self, name: str) -> Path:
        return self._repair(self.source(name), self.tmp.mktemp(f"repaired-{name}"), name)

    @functools.cache  # noqa: B019
    def repaired_again(self, name: str) -> Path:
        return self._repair(self.repaired(name), self.tmp.mktemp(f"again-{name}"), name)

    @functools.cache  # noqa: B019
    def compare(self, name: str) -> Comparison:
        require_tool("readelf")
        source, repaired = self.source(name), self.repaired(name)
        scratch = self.tmp.mktemp(f"elf-{name}")
        result = Comparison()
        interpreter = self.store.loader
        pending: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []
        with (
            zipfile.ZipFile(source) as old_zip,
            zipfile.ZipFile(repaired) as new_zip,
            source.open("rb") as old_fh,
            repaired.open("rb") as new_fh,
        ):
            old_infos, new_infos = old_zip.infolist(), new_zip.infolist()
            # a repair that patches adds exactly one member, its manifest, just before RECORD
            manifests = [i for i in new_infos if i.filename.endswith(".dist-info/wheelfix.json")]
            new_infos = [i for i in new_infos if i not in manifests]
            if len(manifests) > 1 or [i.filename for i in old_infos] != [i.filename for i in new_infos]:
                result.problems.append("member names or their order differ")
                return result
            dist_data = next(i.filename for i in old_infos if ".dist-info/" in i.filename).split(
                ".dist-info"
            )[0]
            dist_data += ".data"
            for old, new in zip(old_infos, new_infos, strict=True):
                for attr in ("date_time", "external_attr", "create_system", "comment", "extra"):
                    if getattr(old, attr) != getattr(new, attr):
                        result.problems.append(f"{old.filename}: {attr} differs")
                if old.is_dir():
                    continue
                if posixpath.basename(old.filename) in STORE_LIBS:
                    pytest.fail(
                        f"{name} bundles {old.filename}: the expected-edit oracle assumes it does not"
                    )
                before, after = old_zip.read(old), new_zip.read(new)
                if before != after:
                    result.changed.append(old.filename)
                elif (
                    _raw_data(old_fh, old) != _raw_data(new_fh, new) or old.compress_type != new.compress_type
                ):
                    result.problems.append(f"{old.filename}: unchanged but recompressed")
                if before[:4] != ELF_MAGIC:
                    continue
                path = scratch / "member"
                path.write_bytes(before)
                facts_before = readelf_facts(path, old.filename)
                install = _install_path(old.filename, dist_data)
                facts_after = None
                if after != before:
                    path.write_bytes(after)
                    facts_after = readelf_facts(path, old.filename)
                pending.append((old.filename, install, facts_before, facts_after))
        # Libraries loaded by a binary with DT_RPATH (and no DT_RUNPATH) may rely on inheriting it: ld.so's
        # rule, independent of wheelfix's resolver. Those with neither tag must get DT_RPATH.
        rpath_loaded = {
            n
            for _m, _i, f, _a in pending
            if f["rpath"] is not None and f["runpath"] is None
            for n in f["needed"]
        }
        for member, install, facts_before, facts_after in pending:
            inherits = (
                posixpath.basename(member) in rpath_loaded or facts_before.get("soname") in rpath_loaded
            )
            expected, store_needs = expected_edit(facts_before, install, self.store, interpreter, inherits)
            result.elfs[member] = ElfMember(member, install, facts_before, facts_after, expected, store_needs)
        return result

    @functools.cache  # noqa: B019
    def venv(self, name: str, *, repaired: bool) -> Path:
        """A fresh venv with the wheel and its deps (original or repaired) installed; returns its prefix."""
        where = self.tmp.mktemp(f"venv-{name}-{'after' if repaired else 'before'}")
        wheels = [self.repaired(n) if repaired else self.source(n) for n in (*CASES[name].deps, name)]
        return fresh_venv(where, wheels)

    def modules(self, name: str) -> list[str]:
        return list(CASES[name].modules) or extension_modules(self.source(name))

    @functools.cache  # noqa: B019
    def imports(self, name: str, *, repaired: bool) -> dict[str, Any]:
        prefix = self.venv(name, repaired=repaired)
        out = prefix / "imports.json"
        proc = _run([str(prefix / "bin/python"), "-I", "-c", IMPORT_SCRIPT, str(out), *self.modules(name)])
        assert proc.returncode == 0 and out.is_file(), (
            f"import process died ({proc.returncode}):\n{proc.stderr}"
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def extension_modules(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = [m["module"].replace("/", ".") for n in zf.namelist() if (m := EXTENSION.fullmatch(n))]
    return sorted(names)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRepairs]:
    yield RealRepairs(tmp_path_factory)


def test_cases_cover_the_issue() -> None:
    """At least 5 wheels: one with executables, one C++-heavy, one with $ORIGIN search paths into .libs."""
    assert len(CASES) >= 5
    assert all(name in MANIFEST for name in CASES), "every case is a pinned manifest wheel"
    assert any(c.runs for c in CASES.values())


@pytest.mark.parametrize("name", list(CASES))
def test_exactly_the_needing_elfs_are_patched_as_intended(real: RealRepairs, name: str) -> None:
    comparison = real.compare(name)
    assert not comparison.problems, "\n".join(comparison.problems[:20])
    expected_changes = sorted(m for m, e in comparison.elfs.items() if e.expected is not None)
    changed_elfs = sorted(m for m in comparison.changed if m in comparison.elfs)
    assert changed_elfs == expected_changes
    wrong = []
    for member in expected_changes:
        elf = comparison.elfs[member]
        got, want = elf.after or {}, elf.expected or {}
        if got != want:
            diff = {k: {"got": got.get(k), "want": v} for k, v in want.items() if got.get(k) != v}
            wrong.append(f"{member}: {json.dumps(diff)}")
    assert not wrong, f"{len(wrong)}/{len(expected_changes)} patched ELFs are not as intended:\n" + "\n".join(
        wrong[:20]
    )
    if not expected_changes:
        assert real.repaired(name).read_bytes() == real.source(name).read_bytes()


@pytest.mark.parametrize("name", list(CASES))
def test_record_is_updated_for_the_changed_members_only(real: RealRepairs, name: str) -> None:
    comparison = real.compare(name)
    changed_elfs = [m for m in comparison.changed if m in comparison.elfs]
    with zipfile.ZipFile(real.source(name)) as old_zip, zipfile.ZipFile(real.repaired(name)) as new_zip:
        (record,) = [n for n in new_zip.namelist() if n.endswith(".dist-info/RECORD")]
        assert sorted(comparison.changed) == sorted([*changed_elfs, record] if changed_elfs else [])
        old_lines, new_lines = _record_lines(old_zip, record), _record_lines(new_zip, record)
        if changed_elfs:  # the manifest's row, with its hash, right before RECORD's own row
            manifest = record.replace("/RECORD", "/wheelfix.json")
            data = new_zip.read(manifest)
            (at,) = [i for i, line in enumerate(new_lines) if line.startswith(manifest.encode() + b",")]
            ending = b"\r\n" if old_lines[-1].endswith(b"\r\n") else b"\n"
            assert new_lines.pop(at) == f"{manifest},{record_hash(data)},{len(data)}".encode() + ending
            assert new_lines[at].startswith(record.encode() + b",")
        assert len(old_lines) == len(new_lines)
        for old_line, new_line in zip(old_lines, new_lines, strict=True):
            (row,) = csv.reader([new_line.decode()])
            if row[0] in changed_elfs:
                data = new_zip.read(row[0])
                assert row[1:] == [record_hash(data), str(len(data))], row
                assert new_line.endswith(b"\r\n") == old_line.endswith(b"\r\n")
            else:
                assert new_line == old_line


@pytest.mark.parametrize("name", IMPORTING)
def test_extensions_still_import_with_their_libs_from_the_store(real: RealRepairs, name: str) -> None:
    modules = real.modules(name)
    assert modules, f"{name} has no extension modules to import"
    before = real.imports(name, repaired=False)["results"]
    imported = [m for m in modules if before[m] is None]
    assert imported, f"no extension module of {name} imports even before repair: {before}"
    after = real.imports(name, repaired=True)
    broken = {m: after["results"][m] for m in imported if after["results"][m] is not None}
    assert not broken, (
        f"{len(broken)}/{len(imported)} modules that imported before repair fail after:\n"
        + "\n".join(f"{m}: {e}" for m, e in broken.items())
    )

    # /proc/self/maps of that process: store libs where the loaded wheel ELFs need them, no host copies
    maps = set(after["maps"])
    prefix = real.venv(name, repaired=True).resolve()
    loaded = [
        (member, elf)
        for dep in (*CASES[name].deps, name)
        for member, elf in real.compare(dep).elfs.items()
        if str(prefix / elf.install) in maps
    ]
    assert loaded, "no ELF of the wheel is mapped after importing its modules"
    wanted = {s: member for member, elf in loaded for s in elf.store_needs}
    missing = {s: m for s, m in wanted.items() if f"{real.store.lib_dirs[s]}/{s}" not in maps}
    # a host copy of a soname the wheel needs means ld.so bound the wheel's ELFs to it (same soname)
    host = sorted(
        p for p in maps if not p.startswith("/nix/store/") and posixpath.basename(p).startswith(tuple(wanted))
    )
    assert not missing and not host, (
        f"store libs not mapped (soname: needed by): {missing}; host copies: {host}"
    )


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].runs])
def test_executables_run_with_the_store_loader_and_libs(real: RealRepairs, name: str) -> None:
    prefix = real.venv(name, repaired=True)
    comparison = real.compare(name)
    for relpath, args, start in CASES[name].runs:
        exe = prefix / relpath
        ran = _run([str(exe), *args])
        assert ran.returncode == 0, f"{relpath} exited {ran.returncode}: {ran.stderr}"
        assert ran.stdout.startswith(start), ran.stdout
        # ld.so itself (the store copy, from PT_INTERP) says where each library comes from
        traced = _run([str(exe)], env={**os.environ, "LD_TRACE_LOADED_OBJECTS": "1"})
        assert traced.returncode == 0, traced.stderr
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", traced.stdout, re.M))
        (elf,) = [e for e in comparison.elfs.values() if e.install == relpath]
        needs = elf.store_needs
        assert needs, f"{elf.member} needs no store library: nothing to check"
        for soname in needs:
            assert resolved.get(soname) == f"{real.store.lib_dirs[soname]}/{soname}", traced.stdout
        assert re.search(rf"^\s*{re.escape(real.store.loader)} \(0x", traced.stdout, re.M), traced.stdout


@pytest.mark.parametrize("name", list(CASES))
def test_repairing_the_repaired_wheel_changes_nothing(real: RealRepairs, name: str) -> None:
    assert real.repaired_again(name).read_bytes() == real.repaired(name).read_bytes()

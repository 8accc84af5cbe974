"""ELF binaries built at test time with gcc (GNU ld) or clang-15 + ld.lld-15.

Nothing here uses wheelfix. Each builder checks for the tools its case needs (see
:func:`tests.support.prereq.require_tool`): a gcc-only case runs where clang-15 is not installed.
The synthetic wheels (also gcc) are built by :mod:`tests.support.synthetic`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.prereq import require_tool

GCC = ("gcc",)
LLD = ("clang-15", "ld.lld-15")

# No LD_LIBRARY_PATH or other loader variables: only the binary's own search path finds libdep.
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


# --- the ELF writer's binaries: a library or executable that needs deps/libdep.so.1 -------------------

DEP_C = "int dep_value(void) { return 7; }\n"
LIB_C = """\
#include <string.h>
int dep_value(void);
int lib_value(void) { return dep_value() * 6; }
size_t lib_len(const char *s) { return strlen(s); }
"""
EXE_C = """\
#include <stdio.h>
int dep_value(void);
int main(void) {
    char buf[4096];
    size_t n;
    FILE *maps = fopen("/proc/self/maps", "r");
    printf("%d\\n", dep_value());
    while ((n = fread(buf, 1, sizeof buf, maps)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"""
BIG_C = """\
int dep_value(void);
__attribute__((used)) const char big[64 << 20] = {1, 2, 3};
int lib_value(void) { return dep_value() * 6 + big[1] - 2; }
"""


def run_clean(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, check=False)


def compile_checked(cmd: list[str], cwd: Path) -> None:
    proc = run_clean(cmd, cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")


@dataclass(frozen=True)
class Kind:
    name: str
    linker: str  # "bfd" (gcc) or "lld" (clang-15 -fuse-ld=lld)
    binary: str  # "lib", "pie", "nopie"

    @property
    def is_lib(self) -> bool:
        return self.binary == "lib"


KINDS = {
    k.name: k
    for k in (
        Kind("bfd-lib", "bfd", "lib"),
        Kind("lld-lib", "lld", "lib"),
        Kind("bfd-pie", "bfd", "pie"),
        Kind("bfd-nopie", "bfd", "nopie"),
        Kind("lld-pie", "lld", "pie"),
        Kind("lld-nopie", "lld", "nopie"),
    )
}
EXES = [k for k in KINDS if not KINDS[k].is_lib]


def runpath_flag(value: str) -> str:
    return f"-Wl,--enable-new-dtags,-rpath,{value}"


def rpath_flag(value: str) -> str:
    return f"-Wl,--disable-new-dtags,-rpath,{value}"


class Builder:
    """Builds (once per module) the binaries the tests patch; every one needs ``deps/libdep.so.1``.
    gcc builds that library; each build checks for the tools its kind needs (clang-15 and ld.lld-15 only
    for the lld kinds)."""

    def __init__(self, root: Path) -> None:
        require_tool("gcc")
        self.root = root
        self.deps = root / "deps"
        self.deps.mkdir()
        for name, text in (("dep.c", DEP_C), ("lib.c", LIB_C), ("exe.c", EXE_C), ("big.c", BIG_C)):
            (root / name).write_text(text)
        compile_checked(
            ["gcc", "-shared", "-fPIC", "-Wl,-soname,libdep.so.1", "-o", "deps/libdep.so.1", "dep.c"], root
        )
        self._cache: dict[tuple[str, tuple[str, ...], str], Path] = {}

    def build(self, kind: Kind, *flags: str, source: str | None = None) -> Path:
        key = (kind.name, flags, source or "")
        if key in self._cache:
            return self._cache[key]
        for tool in GCC if kind.linker == "bfd" else LLD:  # per case: a gcc-only case needs no clang
            require_tool(tool)
        out = self.root / f"bin{len(self._cache)}-{kind.name}"
        cc = ["gcc"] if kind.linker == "bfd" else ["clang-15", "-fuse-ld=lld"]
        mode = {"lib": ["-shared", "-fPIC"], "pie": ["-fPIE", "-pie"], "nopie": ["-fno-PIE", "-no-pie"]}
        src = source or ("lib.c" if kind.is_lib else "exe.c")
        compile_checked(
            [*cc, "-O2", *mode[kind.binary], *flags, "-o", out.name, src, "deps/libdep.so.1"], self.root
        )
        self._cache[key] = out
        return out


# --- single programs ----------------------------------------------------------------------------------


def gcc_bytes(tmp_path: Path, source: str, *flags: str) -> bytearray:
    """The bytes of ``source`` compiled and linked by gcc (an executable, or what ``flags`` ask for)."""
    src = tmp_path / "m.c"
    src.write_text(source)
    out = tmp_path / "m"
    subprocess.run([require_tool("gcc"), *flags, "-o", str(out), str(src)], check=True)
    return bytearray(out.read_bytes())


# --- the reader's gcc corpus ------------------------------------------------------------------------------

_C_PROGRAM = """#include <math.h>
#include <stdio.h>
int main(int c, char **v) { printf("%f\\n", sqrt(c)); return 0; }
"""
_CXX_PROGRAM = '#include <iostream>\nint main() { std::cout << "hi" << std::endl; return 0; }\n'
_C_LIB = "int f(void) { return 1; }\n"

# name -> (source, compiler flags); every build links with --no-as-needed so each -l is a NEEDED entry.
GCC_BUILDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pie-runpath": (
        _C_PROGRAM,
        ("-pie", "-fPIE", "-Wl,--enable-new-dtags,-rpath,/opt/a:$ORIGIN/../lib", "-lm", "-l:libz.so.1"),
    ),
    "nopie-rpath": (_C_PROGRAM, ("-no-pie", "-Wl,--disable-new-dtags,-rpath,/opt/legacy/lib", "-lm")),
    "static": (_C_PROGRAM, ("-static", "-lm")),
    "static-pie": (_C_PROGRAM, ("-static-pie", "-lm")),
    "cxx": (_CXX_PROGRAM, ("-lstdc++",)),
    "shared-many": (
        _C_LIB,
        (
            "-shared",
            "-fPIC",
            "-Wl,-soname,libmany.so.7",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
            "-l:libz.so.1",
            "-lm",
            "-ldl",
            "-lpthread",
            "-lrt",
        ),
    ),
    "shared-nodeps": (_C_LIB, ("-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libnodeps.so")),
    "shared-sysv-hash": (_C_LIB, ("-shared", "-fPIC", "-Wl,--hash-style=sysv", "-Wl,-z,norelro")),
}


def build_gcc_programs(out: Path) -> dict[str, Path]:
    """Each GCC_BUILDS program that this toolchain can build (static ones need libc.a), in ``out``."""
    built: dict[str, Path] = {}
    for name, (source, flags) in GCC_BUILDS.items():
        cxx = "iostream" in source
        src = out / (f"{name}.cpp" if cxx else f"{name}.c")
        src.write_text(source)
        target = out / name
        cmd = [
            "g++" if cxx else "gcc",
            "-O1",
            "-g0",
            "-Wl,--no-as-needed",
            "-o",
            str(target),
            str(src),
            *flags,
        ]
        if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
            built[name] = target
    return built

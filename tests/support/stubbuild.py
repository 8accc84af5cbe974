"""Binaries for the policy checks, built with gcc/binutils against stub libraries (``-nostdlib``, a version
script per stub), so the symbol versions they need are exactly the ones the test writes, whatever the host's
glibc or zlib; and the one-extension wheels that carry them."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support import synthetic as generate

EXT = ".cpython-311-x86_64-linux-gnu.so"


def run(cmd: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stderr}")


def stub(tmp: Path, soname: str, versions: Mapping[str, Sequence[str]]) -> Path:
    """A shared library ``soname`` defining each symbol under its version node."""
    src = tmp / f"{soname}.c"
    src.write_text("".join(f"void {s}(void) {{}}\n" for syms in versions.values() for s in syms))
    script = tmp / f"{soname}.map"
    script.write_text("".join(f"{v} {{ global: {'; '.join(syms)}; }};\n" for v, syms in versions.items()))
    out = tmp / soname
    run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-nostdlib",
            f"-Wl,-soname,{soname}",
            f"-Wl,--version-script={script}",
            "-o",
            str(out),
            str(src),
        ],
        tmp,
    )
    return out


def extension(
    tmp: Path, name: str, calls: Sequence[str], libs: Sequence[Path], flags: Sequence[str] = ()
) -> Path:
    """An extension module ``name`` whose PyInit calls each of ``calls`` (declared, not defined)."""
    src = tmp / f"{name}.c"
    src.write_text(
        "".join(f"extern void {c}(void);\n" for c in calls)
        + f"void *PyInit_{name}(void) {{ {' '.join(f'{c}();' for c in calls)} return 0; }}\n"
    )
    out = tmp / f"{name}{EXT}"
    run(
        [
            "gcc",
            "-O1",
            "-fPIC",
            "-shared",
            "-nostdlib",
            "-Wl,--no-as-needed",
            "-Wl,--build-id=none",
            *flags,
            "-o",
            str(out),
            str(src),
            *map(str, libs),
        ],
        tmp,
    )
    return out


def wheel(out: Path, name: str, platform: str, ext: Path) -> Path:
    dist = generate.Dist(name, "1.0", f"cp311-cp311-{platform}")
    data = generate._wheel(dist, {f"{name}/{ext.name}": ext.read_bytes(), f"{name}/__init__.py": b""})
    path = out / dist.filename
    path.write_bytes(data)
    return path

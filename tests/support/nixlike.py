"""A Nix-like host for one command: a mount namespace (``unshare -m``, as root) in which the host's library
directories are hidden, as on NixOS.

``/usr/lib/x86_64-linux-gnu`` (``/lib`` is a symlink to ``usr/lib`` on Debian) is replaced by a directory that
holds only glibc (the libraries of Debian's libc6 package) and the libraries the given interpreter itself
needs from there (found with ``ldd``, independently of wheelfix); ``/etc/ld.so.cache`` and ``/usr/local/lib``
are hidden too.
A library the host would give a Python extension (libstdc++, libz, libgcc_s) is then not there, as on NixOS,
and ``dlopen`` fails with ``cannot open shared object file``, while ``/nix/store`` stays visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.prereq import require_tool, unavailable

HOST_LIB = Path("/usr/lib/x86_64-linux-gnu")
# glibc: the libraries of Debian's libc6 package (a NixOS glibc store path has the same set)
GLIBC = (
    "ld-linux-x86-64.so.2",
    "libBrokenLocale.so.1",
    "libanl.so.1",
    "libc.so.6",
    "libc_malloc_debug.so.0",
    "libdl.so.2",
    "libm.so.6",
    "libmvec.so.1",
    "libnsl.so.1",
    "libnss_compat.so.2",
    "libnss_dns.so.2",
    "libnss_files.so.2",
    "libnss_hesiod.so.2",
    "libpthread.so.0",
    "libresolv.so.2",
    "librt.so.1",
    "libthread_db.so.1",
    "libutil.so.1",
)


def interpreter_libs(python: Path) -> list[str]:
    """The file names in HOST_LIB that ``python`` loads (``ldd``), glibc's among them."""
    proc = subprocess.run(["ldd", str(python)], capture_output=True, text=True, check=True)
    names: set[str] = set(GLIBC)
    for line in proc.stdout.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/") and (p.startswith(str(HOST_LIB)) or p.startswith("/lib/x86_64-linux-gnu")):
                names.add(Path(p).name)
    return sorted(names)


def run_nix_like(
    argv: Sequence[str | Path],
    *,
    python: Path,
    env: dict[str, str] | None = None,
    keep: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a mount namespace where HOST_LIB holds only glibc and what ``python`` needs (and the
    file names in ``keep``: what the interpreter's own stdlib extensions load, such as libffi for ctypes)."""
    if os.geteuid() != 0:
        unavailable("the Nix-like namespace needs root (unshare -m, mount --bind)")
    unshare = require_tool("unshare")
    require_tool("mount")
    if not HOST_LIB.is_dir():
        unavailable(f"{HOST_LIB} is not this host's library directory")
    with tempfile.TemporaryDirectory(prefix="wheelfix-nixlike-") as tmp:
        libdir = Path(tmp) / "lib"
        libdir.mkdir()
        for name in sorted({*interpreter_libs(python), *keep}):
            if (HOST_LIB / name).exists():
                shutil.copy2(HOST_LIB / name, libdir / name)  # follows symlinks: real files
        empty_file = Path(tmp) / "empty"
        empty_file.write_bytes(b"")
        empty_dir = Path(tmp) / "empty.d"
        empty_dir.mkdir()
        # the order matters: `mount` itself needs HOST_LIB, so it is hidden last
        script = (
            'set -e; mount --make-rprivate /; mount --bind "$1" /etc/ld.so.cache; '
            'if [ -d /usr/local/lib ]; then mount --bind "$2" /usr/local/lib; fi; '
            f'mount --bind "$3" {HOST_LIB}; shift 3; exec "$@"'
        )
        cmd = [unshare, "-m", "/bin/sh", "-c", script, "sh", str(empty_file), str(empty_dir), str(libdir)]
        cmd += [str(a) for a in argv]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=300)

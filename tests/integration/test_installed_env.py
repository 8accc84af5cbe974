"""Installed environments as users meet them: a venv made by ``python -m venv`` (pip) and one made by
``uv venv`` (uv pip), holding real wheels from the package index and synthetic ones whose extension needs
``libfoo.so.1``, a library that exists only in a ``nix-store --add``ed path.

Each import is judged in a fresh interpreter (``python -I -S``: RUNPATH does not matter for a library
already loaded) on a Nix-like host (tests/support/nixlike.py: a mount namespace in which the host's library
directories hold only glibc and what the interpreter needs). Before the repair the imports fail for the
right reason (``libstdc++.so.6: cannot open shared object file``); after ``wheelfix repair --in-place`` they
succeed there with the libraries mapped from /nix/store. The repair is idempotent, keeps RECORD right so
``pip check`` / ``pip uninstall`` / ``uv pip uninstall`` work, leaves uv's cache (hard-linked into the
venv) alone, and a process that had the old file loaded keeps working.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import synthetic as generate
from tests.support.cli import RunCli, fresh_venv
from tests.support.nix import nix_add, nix_env, run
from tests.support.nixlike import interpreter_libs, run_nix_like
from tests.support.oracles import readelf
from tests.support.prereq import unavailable
from tests.support.realwheels import fetch, load_manifest

# pinned like tests/support/realwheels.json's entries (fetched with pip, checked by sha256 and size)
KIWISOLVER = {
    "name": "kiwisolver",
    "version": "1.5.1",
    "filename": "kiwisolver-1.5.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    "sha256": "95a02752aa032eef4aed01cda6d9b687c669bd0396bf4519eef8bba22a286720",
    "size": 1438206,
    "why": "a small C++ extension that needs the system's libstdc++.so.6 and libgcc_s.so.1 (manylinux)",
}
MSGPACK = {
    "name": "msgpack",
    "version": "1.2.4",
    "filename": (
        "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
    ),
    "sha256": "a45ceb5f199d5e388f28b550ba881096a3740d4bda10e661d77f59d9a2e8187a",
    "size": 480247,
    "why": "an extension that needs only glibc: imports on a Nix-like host before and after",
}
KIWI_EXT = "kiwisolver/_cext.cpython-311-x86_64-linux-gnu.so"
DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"

IMPORT = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
print(open('/proc/self/maps').read())
"""


@pytest.fixture(scope="module")
def real() -> dict[str, Path]:
    if sys.version_info[:2] != (3, 11):
        unavailable("the pinned real wheels are cp311")
    return {"kiwisolver": fetch(KIWISOLVER), "msgpack": fetch(MSGPACK)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Store paths: libfoo (exists nowhere else), and copies of the host's zlib, libstdc++/libgcc_s and
    loader standing in for nixpkgs' zlib, stdenv.cc.cc.lib and glibc."""
    root = tmp_path_factory.mktemp("env-store")
    generate.build_libfoo(root / "wheelfix-env-foo" / "lib")
    host = Path("/usr/lib/x86_64-linux-gnu")
    copies = {
        "zlib": ["libz.so.1"],
        "gcclib": ["libstdc++.so.6", "libgcc_s.so.1"],
        "glibc": ["ld-linux-x86-64.so.2"],
    }
    for name, libs in copies.items():
        d = root / f"wheelfix-env-{name}" / "lib"
        d.mkdir(parents=True)
        for lib in libs:
            (d / lib).write_bytes((host / lib).resolve().read_bytes())
            (d / lib).chmod(0o755)
    return {name: nix_add(root / f"wheelfix-env-{name}") for name in ("foo", *copies)}


def lib_args(store: dict[str, str]) -> list[str]:
    return [a for name in ("foo", "zlib", "gcclib", "glibc") for a in ("--lib-path", f"{store[name]}/lib")]


def site_of(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def nix_like_import(venv: Path, *modules: str) -> subprocess.CompletedProcess[str]:
    python = venv / "bin" / "python"
    return run_nix_like([python, "-I", "-S", "-c", IMPORT, site_of(venv), *modules], python=python.resolve())


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
    }


def record_rows(dist_info: Path) -> list[list[str]]:
    with (dist_info / "RECORD").open(newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f) if row]


def assert_record_true(site: Path, dist_info: Path) -> None:
    """Every hashed RECORD row matches its file (computed here with hashlib, not wheelfix)."""
    for path, digest, size in record_rows(dist_info):
        if not digest:
            continue
        data = (site / path).read_bytes()
        want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert (digest, size) == (want, str(len(data))), path


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.network
def test_pip_venv_repaired_in_place_imports_on_a_nix_like_host(
    run_cli: RunCli, wheels: dict[str, Path], real: dict[str, Path], store: dict[str, str], tmp_path: Path
) -> None:
    venv = fresh_venv(
        tmp_path / "venv",
        [
            wheels["demo"],
            wheels["provider"],
            wheels["consumer"],
            wheels["pure"],
            real["kiwisolver"],
            real["msgpack"],
        ],
    )
    site = site_of(venv)

    # the report groups by distribution, with the nixpkgs answers
    report = run_cli("inspect", venv)
    assert report.returncode == 0, report.stderr
    assert "kiwisolver 1.5.1: libgcc_s.so.1, libstdc++.so.6 -> pkgs.stdenv.cc.cc.lib" in report.stdout
    assert "demo 1.0: libz.so.1 -> pkgs.zlib; libfoo.so.1 -> UNKNOWN" in report.stdout
    assert "msgpack 1.2.4" in report.stdout.split("needs met")[1]
    assert run_cli("check", venv).returncode == 1

    # before: on a Nix-like host the imports fail, each for its own missing library
    for module, lib in (
        ("kiwisolver", "libstdc++.so.6"),
        ("consumer", "libstdc++.so.6"),
        ("demo", "libfoo.so.1"),
    ):
        failed = nix_like_import(venv, module)
        assert failed.returncode != 0, module
        assert f"{lib}: cannot open shared object file" in failed.stderr, failed.stderr
    control = nix_like_import(venv, "msgpack")  # glibc only: the namespace hides nothing it needs
    assert control.returncode == 0, control.stderr

    repaired = run_cli("repair", "--in-place", venv, *lib_args(store))
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired 4 files of 3 distributions" in repaired.stdout
    runpath = readelf(site / KIWI_EXT, "-d")
    assert f"Library runpath: [{store['gcclib']}/lib]" in runpath
    assert f"[$ORIGIN/../demo.libs:{store['foo']}/lib:{store['zlib']}/lib]" in readelf(site / DEMO_EXT, "-d")
    assert store["glibc"] in readelf(venv / "bin" / "demo-tool", "-l")

    # after: every import works there, with the libraries mapped from the store
    ok = nix_like_import(venv, "kiwisolver", "consumer", "demo", "msgpack")
    assert ok.returncode == 0, ok.stderr
    for name, lib in (("gcclib", "libstdc++.so.6"), ("gcclib", "libgcc_s.so.1"), ("foo", "libfoo.so.1")):
        assert f"{store[name]}/lib/{lib}" in ok.stdout
    assert f"{store['zlib']}/lib/libz.so.1" in ok.stdout
    (venv / "bin" / "demo-tool").chmod(0o755)  # pip installs this non-Python script 0644
    tool = run_nix_like([venv / "bin" / "demo-tool"], python=(venv / "bin" / "python").resolve())
    assert tool.returncode == 0, tool.stderr  # the script runs with the store's loader

    # the check passes (the repair manifest pins the store paths), and a second repair changes nothing
    passed = run_cli("check", venv)
    assert passed.returncode == 0, passed.stdout
    before = tree_hashes(venv)
    again = run_cli("repair", "--in-place", venv, *lib_args(store))
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout + again.stderr
    assert tree_hashes(venv) == before

    # RECORD is true again (hash and size of every repaired file, the manifest listed), so pip works
    for dist in ("demo-1.0", "consumer-1.0", "kiwisolver-1.5.1"):
        dist_info = site / f"{dist}.dist-info"
        assert_record_true(site, dist_info)
        assert [r for r in record_rows(dist_info) if r[0] == f"{dist}.dist-info/wheelfix.json"]
    checked = pip(venv, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = {
        dist: [site / r[0] for r in record_rows(site / f"{dist}.dist-info")]
        for dist in ("demo-1.0", "kiwisolver-1.5.1")
    }
    removed = pip(venv, "uninstall", "-y", "demo", "kiwisolver")
    assert removed.returncode == 0, removed.stderr
    for dist, files in listed.items():
        left = [str(f) for f in files if os.path.lexists(f)]
        assert not left, left
        assert not (site / f"{dist}.dist-info").exists()
    assert (site / KIWI_EXT).exists() is False and (site / "consumer").is_dir()


UV = {
    "name": "uv",
    "version": "0.13.9",
    "filename": "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "sha256": "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "size": 17606939,
    "why": "`uv venv` and `uv pip install` make the environment users get from uv",
}


@pytest.fixture(scope="module")
def uv_tool(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PyPI's uv (pinned), in a scratch venv (the test extra stays what the flake's devShell has)."""
    scratch = tmp_path_factory.mktemp("uv-tool") / "venv"
    fresh_venv(scratch, [fetch(UV)])
    tool = scratch / "bin" / "uv"
    if not tool.is_file():
        unavailable(f"the uv wheel installed no {tool}")
    return str(tool)


@pytest.mark.network
def test_uv_venv_repaired_in_place_keeps_uv_cache_and_running_processes(
    run_cli: RunCli,
    wheels: dict[str, Path],
    real: dict[str, Path],
    store: dict[str, str],
    uv_tool: str,
    tmp_path: Path,
) -> None:
    uv = uv_tool
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_OFFLINE": "1",
        "UV_NO_CONFIG": "1",
    }
    venv = tmp_path / ".venv"
    python = str(Path(sys.executable).resolve())
    made = subprocess.run(
        [uv, "venv", "--python", python, str(venv)], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stderr
    assert "uv = " in (venv / "pyvenv.cfg").read_text()
    installed = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            "--no-deps",
            str(real["kiwisolver"]),
            str(wheels["demo"]),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    site = site_of(venv)
    ext = site / KIWI_EXT
    linked = ext.stat()
    assert linked.st_nlink == 2, "uv links installed files to its cache"
    cached = next(p for p in (tmp_path / "uv-cache").rglob(ext.name) if p.stat().st_ino == linked.st_ino)
    cached_bytes = cached.read_bytes()

    report = run_cli("inspect", venv)
    assert "venv made by uv" in report.stdout
    assert "kiwisolver 1.5.1: libgcc_s.so.1, libstdc++.so.6 -> pkgs.stdenv.cc.cc.lib" in report.stdout
    before = nix_like_import(venv, "kiwisolver")
    assert "libstdc++.so.6: cannot open shared object file" in before.stderr, before.stderr

    # a process that has the extension loaded (on this host, whose libstdc++ it finds) while it is replaced
    waiting = subprocess.Popen(
        [
            str(venv / "bin" / "python"),
            "-I",
            "-c",
            "import sys, kiwisolver; print('ready', flush=True); sys.stdin.readline(); "
            "print(kiwisolver.Variable('x').name(), flush=True)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout is not None and waiting.stdout.readline().strip() == "ready"
    repaired = run_cli("repair", "--in-place", venv, *lib_args(store))
    assert repaired.returncode == 0, repaired.stderr
    out, err = waiting.communicate("go\n", timeout=60)
    assert waiting.returncode == 0 and out.strip() == "x", err

    after = ext.stat()
    assert after.st_ino != linked.st_ino and after.st_nlink == 1  # replaced by a rename
    assert after.st_mode == linked.st_mode
    assert cached.read_bytes() == cached_bytes  # uv's cache is not changed through the hard link
    ok = nix_like_import(venv, "kiwisolver", "demo")
    assert ok.returncode == 0, ok.stderr
    assert (
        f"{store['gcclib']}/lib/libstdc++.so.6" in ok.stdout
        and f"{store['foo']}/lib/libfoo.so.1" in ok.stdout
    )

    assert_record_true(site, site / "kiwisolver-1.5.1.dist-info")
    listed = [site / r[0] for r in record_rows(site / "kiwisolver-1.5.1.dist-info")]
    removed = subprocess.run(
        [uv, "pip", "uninstall", "--python", str(venv / "bin" / "python"), "kiwisolver", "demo"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert removed.returncode == 0, removed.stderr
    assert not [str(f) for f in listed if os.path.lexists(f)]


def test_environment_in_the_store_is_refused(
    run_cli: RunCli, wheels: dict[str, Path], store: dict[str, str], tmp_path: Path
) -> None:
    venv = fresh_venv(tmp_path / "venv", [wheels["demo"]])
    in_store = Path(nix_add(venv))
    seen = run_cli("inspect", in_store)  # reading it is fine
    assert seen.returncode == 0, seen.stderr
    assert "demo 1.0" in seen.stdout
    refused = run_cli("repair", "--in-place", in_store, *lib_args(store))
    assert refused.returncode == 2
    assert "read-only by design" in refused.stderr
    assert run(["nix-store", "--verify-path", in_store], env=nix_env()).returncode == 0


BIG = ("numpy", "scipy", "pyarrow", "opencv-python-headless", "pillow")
BIG_IMPORT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "import numpy, scipy.linalg, scipy.sparse, pyarrow.compute, cv2, PIL.Image; "
    "assert numpy.linalg.inv(numpy.eye(2))[0, 0] == 1.0; print(open('/proc/self/maps').read())"
)


def ctypes_libs(python: Path) -> list[str]:
    """What the interpreter's own _ctypes extension loads from the host (libffi): a Nix Python has it in
    the store; scipy imports ctypes."""
    where = subprocess.run(
        [str(python), "-I", "-S", "-c", "import _ctypes; print(_ctypes.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return interpreter_libs(Path(where))


@pytest.mark.network
def test_real_scientific_venv_repaired_in_place(
    run_cli: RunCli, store: dict[str, str], tmp_path: Path
) -> None:
    """numpy, scipy, pyarrow, opencv and pillow (the pinned real wheels of the corpus, C++ and Fortran);
    on the Nix-like host they import only after the repair, with libstdc++/libgcc_s/libz from the store."""
    if sys.version_info[:2] != (3, 11):
        unavailable("the pinned real wheels are cp311")
    entries = {e["name"]: e for e in load_manifest()}
    venv = fresh_venv(tmp_path / "venv", [fetch(entries[name]) for name in BIG])
    python = venv / "bin" / "python"
    keep = ctypes_libs(python)
    before = run_nix_like(
        [python, "-I", "-S", "-c", BIG_IMPORT, site_of(venv)], python=python.resolve(), keep=keep
    )
    assert before.returncode != 0
    assert "cannot open shared object file" in before.stderr
    repaired = run_cli(
        "repair",
        "--in-place",
        venv,
        "--lib-path",
        f"{store['zlib']}/lib",
        "--lib-path",
        f"{store['gcclib']}/lib",
    )
    assert repaired.returncode == 0, repaired.stderr
    after = run_nix_like(
        [python, "-I", "-S", "-c", BIG_IMPORT, site_of(venv)], python=python.resolve(), keep=keep
    )
    assert after.returncode == 0, after.stderr
    for lib in (f"{store['gcclib']}/lib/libstdc++.so.6", f"{store['zlib']}/lib/libz.so.1"):
        assert lib in after.stdout
    assert run_cli("check", venv).returncode == 0

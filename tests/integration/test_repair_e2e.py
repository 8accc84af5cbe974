"""repair end to end with real Nix store paths: before, the extension cannot load libfoo.so.1; after
`wheelfix repair --lib-path /nix/store/...-foo/lib`, it imports in a clean interpreter with libfoo mapped
from /nix/store, and Nix sees the store path as a runtime reference of the unpacked wheel."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import synthetic as generate
from tests.support.cli import RunCli, fresh_venv
from tests.support.nix import nix_add, nix_env
from tests.support.oracles import readelf
from tests.support.prereq import require_tool

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Store paths: <hash>-wheelfix-test-foo/lib/libfoo.so.1 (exists nowhere else) and a zlib copy."""
    root = tmp_path_factory.mktemp("store-src")
    foo = root / "wheelfix-test-foo"
    generate.build_libfoo(foo / "lib")
    z = root / "wheelfix-test-zlib" / "lib"
    z.mkdir(parents=True)
    (z / "libz.so.1").write_bytes(Path("/usr/lib/x86_64-linux-gnu/libz.so.1").resolve().read_bytes())
    g = root / "wheelfix-test-glibc" / "lib"  # the loader, for the wheel's executable (PT_INTERP)
    g.mkdir(parents=True)
    (g / "ld-linux-x86-64.so.2").write_bytes(Path("/lib64/ld-linux-x86-64.so.2").resolve().read_bytes())
    (g / "ld-linux-x86-64.so.2").chmod(0o755)
    return {
        "foo": nix_add(foo),
        "zlib": nix_add(root / "wheelfix-test-zlib"),
        "glibc": nix_add(root / "wheelfix-test-glibc"),
    }


def install(wheel: Path, where: Path) -> Path:
    """A fresh venv with only this wheel in it; returns its site-packages."""
    fresh_venv(where, [wheel])
    (site,) = where.glob("lib/python3*/site-packages")
    return site


IMPORT = """
import sys
sys.path.insert(0, sys.argv[1])
import demo
print(demo.value())
print(open('/proc/self/maps').read())
"""


def import_demo(site: Path) -> subprocess.CompletedProcess[str]:
    # -I -S: nothing of this process's environment or site-packages; libs load fresh
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT, str(site)], capture_output=True, text=True, check=False
    )


def test_repaired_wheel_imports_with_libs_from_the_store(
    run_cli: RunCli, wheels: dict[str, Path], store: dict[str, str], tmp_path: Path
) -> None:
    source = wheels["demo"]
    before_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    failed = import_demo(install(source, tmp_path / "before"))
    assert failed.returncode != 0 and "libfoo.so.1: cannot open shared object file" in failed.stderr

    out = tmp_path / "out"
    libs = ["--lib-path", f"{store['foo']}/lib", "--lib-path", f"{store['zlib']}/lib"]
    libs += ["--lib-path", f"{store['glibc']}/lib"]
    proc = run_cli("repair", source, "-o", out, *libs)
    assert proc.returncode == 0, proc.stderr
    repaired = out / source.name
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before_hash  # input untouched

    # independent oracle: readelf on the patched member
    site = install(repaired, tmp_path / "after")
    dynamic = readelf(site / DEMO_EXT, "-d")
    assert f"Library runpath: [$ORIGIN/../demo.libs:{store['foo']}/lib:{store['zlib']}/lib]" in dynamic

    ok = import_demo(site)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "49"
    maps = ok.stdout
    assert f"{store['foo']}/lib/libfoo.so.1" in maps
    assert f"{store['zlib']}/lib/libz.so.1" in maps

    # repairing the repaired wheel changes nothing, byte for byte
    again = run_cli("repair", repaired, "-o", tmp_path / "again", *libs)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / source.name).read_bytes() == repaired.read_bytes()
    # check: the input fails --target nix, the repaired wheel passes (its needs are pinned to store paths);
    # for manylinux the store pin is an error, except for what the policy allows (libz)
    assert run_cli("check", source).returncode == 1
    passed = run_cli("check", repaired)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    doc = json.loads(run_cli("inspect", "--json", repaired).stdout)
    outcomes = {n["soname"]: n["outcome"] for b in doc["wheels"][0]["binaries"] for n in b["needs"]}
    assert outcomes["libfoo.so.1"] == outcomes["libz.so.1"] == "nix_store"
    ml = json.loads(run_cli("check", "--target", "manylinux_2_17", "--format", "json", repaired).stdout)
    pinned = sorted(f["soname"] for f in ml["findings"] if f["code"] == "nix-store")
    assert pinned == ["libfoo.so.1"]
    # and the same repair twice gives the same bytes
    twice = run_cli("repair", source, "-o", tmp_path / "twice", *libs)
    assert twice.returncode == 0, twice.stderr
    assert (tmp_path / "twice" / source.name).read_bytes() == repaired.read_bytes()


UNPACK = 'import os, zipfile; zipfile.ZipFile(os.environ[\\"wheel\\"]).extractall(os.environ[\\"out\\"])'


def test_nix_sees_the_runtime_reference(
    run_cli: RunCli, wheels: dict[str, Path], store: dict[str, str], tmp_path: Path
) -> None:
    require_tool("nix-build")
    out = tmp_path / "out"
    proc = run_cli(
        "repair",
        wheels["demo"],
        "-o",
        out,
        "--lib-path",
        f"{store['foo']}/lib",
        "--lib-path",
        f"{store['zlib']}/lib",
        "--lib-path",
        f"{store['glibc']}/lib",
    )
    assert proc.returncode == 0, proc.stderr
    wheel = out / wheels["demo"].name
    expr = tmp_path / "unpack.nix"
    expr.write_text(f"""
derivation {{
  name = "demo-unpacked";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  wheel = {wheel};
  libs = [ (builtins.storePath "{store["foo"]}") (builtins.storePath "{store["zlib"]}") ];
  args = [ "-c" "{sys.executable} -c '{UNPACK}'" ];
}}
""")
    built = subprocess.run(
        ["nix-build", "--no-out-link", str(expr)], capture_output=True, text=True, env=nix_env(), check=False
    )
    assert built.returncode == 0, built.stderr
    outpath = built.stdout.strip().splitlines()[-1]
    refs = subprocess.run(
        ["nix-store", "-q", "--references", outpath],
        capture_output=True,
        text=True,
        env=nix_env(),
        check=True,
    ).stdout.split()
    assert store["foo"] in refs and store["zlib"] in refs


def test_missing_library_stops_the_repair(run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("repair", wheels["demo"], "-o", tmp_path / "out")
    assert proc.returncode == 1
    assert "missing: libfoo.so.1 needed by demo/_demo.cpython-311-x86_64-linux-gnu.so" in proc.stderr
    assert not (tmp_path / "out").exists()
    # the executable's loader is a need too: without it, PT_INTERP would still say /lib64/...
    assert (
        "missing: ld-linux-x86-64.so.2 needed by demo-1.0.data/scripts/demo-tool as its interpreter "
        "(PT_INTERP /lib64/ld-linux-x86-64.so.2)" in proc.stderr
    )
    allowed = run_cli("repair", wheels["demo"], "-o", tmp_path / "out", "--allow", "lib*", "--dry-run")
    assert allowed.returncode == 1 and "ld-linux-x86-64.so.2" in allowed.stderr
    allowed = run_cli(
        "repair",
        wheels["demo"],
        "-o",
        tmp_path / "out",
        "--allow",
        "lib*",
        "--allow",
        "ld-linux*",
        "--dry-run",
    )
    assert allowed.returncode == 0 and not (tmp_path / "out").exists()


def test_refuses_to_write_into_the_input_directory(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("repair", wheels["demo"], "-o", wheels["demo"].parent, "--allow", "*")
    assert proc.returncode == 2 and "would be overwritten" in proc.stderr


def test_wheel_without_edits_is_copied_verbatim_with_a_normal_mode(
    run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path
) -> None:
    proc = run_cli("repair", wheels["pure"], "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / wheels["pure"].name
    assert out.read_bytes() == wheels["pure"].read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left behind

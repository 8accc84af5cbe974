"""repair --in-place of a macOS site-packages directory (as ``pip install --target`` leaves one): the
extension's ``@rpath/libomp.dylib`` becomes the library's absolute path, the edited slice is re-signed ad
hoc, RECORD and the repair manifest follow, and a second run changes nothing. Judged by LLVM's otool and a
signature check done with hashlib (tests/support/machochecks.py), not by wheelfix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import wheelfix

from tests.support import machobuild as mf
from tests.support.cli import RunCli
from tests.support.machochecks import verify_signature
from tests.support.nix import nix_add
from tests.support.oracles import otool_L
from tests.support.prereq import require_tool
from tests.support.wheels import with_record

EXT = "macdemo/_mac.cpython-311-darwin.so"
DIST_INFO = "macdemo-1.0.dist-info"


@pytest.fixture
def mac_site(tmp_path: Path) -> tuple[Path, Path]:
    for tool in mf.TOOLS:
        require_tool(tool)
    build = tmp_path / "build"
    ext = mf.build(
        build / "_mac.cpython-311-darwin.so",
        kind="bundle",
        rpaths=["@loader_path/.dylibs", "/opt/homebrew/opt/libomp/lib"],
        deps=[mf.Dep("@rpath/libomp.dylib"), mf.Dep("/usr/lib/libSystem.B.dylib")],
        headerpad=0x800,  # room for the store path as an install name
    )
    omp = tmp_path / "wheelfix-env-libomp"
    mf.build(omp / "lib" / "libomp.dylib", install_name="@rpath/libomp.dylib")
    for leftover in (omp / "lib").glob(".*.build"):  # the builder's work directory
        shutil.rmtree(leftover)
    libs = Path(nix_add(omp)) / "lib"  # a store path: the repair manifest pins the need to it
    site = tmp_path / "target"
    files = {
        EXT: ext.read_bytes(),
        "macdemo/__init__.py": b"",
        f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\nName: macdemo\nVersion: 1.0\n",
        f"{DIST_INFO}/WHEEL": (
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-macosx_11_0_arm64\n"
        ),
    }
    for name, data in with_record(files, DIST_INFO).items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    (site / EXT).chmod(0o755)
    return site, libs


def test_macho_site_packages_repaired_in_place(mac_site: tuple[Path, Path], run_cli: RunCli) -> None:
    site, libs = mac_site
    report = run_cli("inspect", site)
    assert report.returncode == 0, report.stderr
    assert "macdemo 1.0: @rpath/libomp.dylib -> unresolved (macOS)" in report.stdout

    repaired = run_cli("repair", "--in-place", site, "--lib-path", libs)
    assert repaired.returncode == 0, repaired.stderr
    assert "re-signed ad hoc" in repaired.stdout
    names = [d.name for d in otool_L(site / EXT)]
    assert f"{libs}/libomp.dylib" in names and "@rpath/libomp.dylib" not in names
    data = (site / EXT).read_bytes()
    verify_signature(data, "_mac.cpython-311-darwin.so")
    assert (site / EXT).stat().st_mode & 0o777 == 0o755

    record = (site / DIST_INFO / "RECORD").read_text()
    assert f"{DIST_INFO}/wheelfix.json," in record
    assert [r for r in record.splitlines() if r.startswith(EXT + ",")] == [
        with_record({EXT: data}, DIST_INFO)[f"{DIST_INFO}/RECORD"].decode().splitlines()[0]
    ]
    manifest = json.loads((site / DIST_INFO / "wheelfix.json").read_text())
    assert manifest["binaries"][EXT]["format"] == "macho"

    env = wheelfix.inspect_env(site)
    assert wheelfix.check_env(env).passed
    again = wheelfix.repair_env(env, lib_paths=[libs])
    assert not again.changed and (site / EXT).read_bytes() == data

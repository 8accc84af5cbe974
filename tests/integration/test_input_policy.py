"""The input policy on real wheels that pip and uv install but that deviate from the spec in harmless ways:
every command works on them, with one grouped warning per kind of deviation, and ``--strict`` refuses them.

* apsw 3.53.4.0: 57 of its ELF files carry a ``.note.apsw`` section in a 32-byte-aligned PT_NOTE (the gABI
  allows 4 or 8; readelf warns "Corrupt note: alignment 32" and skips it; ld.so never reads notes).
* gmsh 4.15.2: every RECORD digest is hexadecimal instead of urlsafe base64 (the content still matches).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import RunCli
from tests.support.realwheels import fetch

APSW: dict[str, Any] = {
    "name": "apsw",
    "version": "3.53.4.0",
    "filename": "apsw-3.53.4.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    "sha256": "cca0a8a4498a355326fb491d852187c2fd2031d3e61925e349ba297d3ab884f4",
    "size": 3652275,
    "why": "57 ELF files with a 32-byte-aligned PT_NOTE (.note.apsw)",
}
GMSH: dict[str, Any] = {
    "name": "gmsh",
    "version": "4.15.2",
    "filename": "gmsh-4.15.2-py2.py3-none-manylinux_2_24_x86_64.whl",
    "sha256": "4076a948ce22625330d1413d4982e22b5c69fc2f0f7951f5df64c778cf54108c",
    "size": 40006930,
    "why": "RECORD digests in hexadecimal",
}
WARNING = {
    "apsw": "57 ELF files (apsw/sqlite_extra_binaries/amatch.so, apsw/sqlite_extra_binaries/anycollseq.so, "
    "apsw/sqlite_extra_binaries/appendvfs.so, +54 more): a note region aligned to 32 bytes (the gABI allows "
    "4 or 8): its notes are not read (ld.so does not read notes either)",
    "gmsh": "gmsh-4.15.2.dist-info/RECORD: RECORD digest in hexadecimal, not urlsafe base64 (still checked): "
    "424 members (gmsh.py, gmsh-4.15.2.data/data/lib/libgmsh.so.4.15, gmsh-4.15.2.data/data/lib/gmsh.jl, "
    "+421 more)",
}


@pytest.fixture(scope="module", params=[APSW, GMSH], ids=["apsw", "gmsh"])
def deviant(request: pytest.FixtureRequest) -> tuple[str, Path]:
    entry: dict[str, Any] = request.param
    return entry["name"], fetch(entry)


@pytest.mark.network
def test_every_command_works_with_one_grouped_warning(
    deviant: tuple[str, Path], run_cli: RunCli, tmp_path: Path
) -> None:
    name, wheel = deviant
    expected = f"wheelfix: warning: {wheel}: {WARNING[name]}"
    proc = run_cli("inspect", "--json", wheel)
    assert proc.returncode == 0 and proc.stderr.splitlines() == [expected], proc.stderr
    assert json.loads(proc.stdout)["wheels"][0]["name"] == name
    for args in (("check", "--target", "nix"), ("check", "--target", "manylinux_2_28"), ("nix",)):
        proc = run_cli(*args, wheel)
        assert proc.returncode in (0, 1), proc.stderr
        assert expected in proc.stderr.splitlines()
        assert "error" not in proc.stderr
    out = tmp_path / "out"
    proc = run_cli("repair", wheel, "-o", out, "--allow", "*")
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stderr.splitlines()
    assert (out / wheel.name).read_bytes() == wheel.read_bytes()  # nothing to patch: copied as it is


@pytest.mark.network
def test_strict_refuses_them(deviant: tuple[str, Path], run_cli: RunCli) -> None:
    name, wheel = deviant
    proc = run_cli("inspect", "--strict", wheel)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith(f"wheelfix: error: {wheel}: ") for line in lines)
    if name == "gmsh":
        assert lines == [f"wheelfix: error: {wheel}: {WARNING['gmsh']}"]
    else:  # one line per ELF file, as for any malformed binary
        assert len(lines) == 57 and all("aligned to 32 bytes" in line for line in lines)


@pytest.mark.network
def test_the_gmsh_digests_are_still_checked(run_cli: RunCli, tmp_path: Path) -> None:
    """Liberal on the encoding, strict on the content: a hex digest that does not match is refused."""
    wheel = fetch(GMSH)
    bad = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "gmsh.py":
                data = data.replace(b"gmsh", b"GMSH", 1)
            dst.writestr(info, data)
    proc = run_cli("inspect", bad)
    assert proc.returncode == 2
    assert f"wheelfix: error: {bad}: gmsh.py: sha256 does not match RECORD" in proc.stderr.splitlines()

"""Oracle test: ``wheelfix inspect --json`` against binutils' ``readelf`` on real wheels.

For every pinned CI wheel in ``tests/support/realwheels.json``, every zip member that starts
with the ELF magic is extracted and read with ``readelf``; NEEDED (in order), SONAME, RPATH,
RUNPATH, PT_INTERP and the machine must equal what wheelfix reports for that member, and the
report must validate against the inspect schema.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from wheelfix.render.jsondoc import load_schema

from tests.support.oracles import readelf_facts
from tests.support.prereq import require_tool
from tests.support.realwheels import fetch, load_manifest

pytestmark = pytest.mark.network

CI_WHEELS = [entry for entry in load_manifest() if entry["ci"]]
ELF_MAGIC = b"\x7fELF"


@functools.cache
def _wheel(filename: str) -> Path:
    (entry,) = (e for e in CI_WHEELS if e["filename"] == filename)
    return fetch(entry)


def _wheelfix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *args], capture_output=True, text=True, timeout=900, check=False
    )


def _elf_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        members = []
        for info in zf.infolist():
            if info.is_dir():
                continue
            with zf.open(info) as fh:
                if fh.read(len(ELF_MAGIC)) == ELF_MAGIC:
                    members.append(info.filename)
        return members


def test_manifest_has_ci_wheels() -> None:
    assert len(CI_WHEELS) >= 12


@pytest.mark.parametrize("filename", [e["filename"] for e in CI_WHEELS], ids=[e["name"] for e in CI_WHEELS])
def test_inspect_matches_readelf(filename: str, tmp_path: Path) -> None:
    require_tool("readelf")
    wheel = _wheel(filename)
    proc = _wheelfix("inspect", "--json", str(wheel))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    jsonschema.validate(report, load_schema("inspect"))
    assert report["schema_version"] == 2
    (wheel_report,) = report["wheels"]
    assert wheel_report["filename"] == filename

    elf_binaries = [b for b in wheel_report["binaries"] if b["format"] == "elf"]
    reported = {b["member"]: b["elf"] for b in elf_binaries}
    assert len(reported) == len(elf_binaries), "a member is reported twice"
    elf_members = _elf_members(wheel)
    assert elf_members, "a CI wheel without ELF members tests nothing"
    assert sorted(reported) == sorted(elf_members), "ELF members (by magic) != binaries reported as elf"

    extracted = tmp_path / "member.elf"
    mismatches = []
    with zipfile.ZipFile(wheel) as zf:
        for member in elf_members:
            with zf.open(member) as src, extracted.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            expected = readelf_facts(extracted, member)
            got = {key: reported[member].get(key, "<missing>") for key in expected}
            if got != expected:
                diff = {k: {"wheelfix": got[k], "readelf": v} for k, v in expected.items() if got[k] != v}
                mismatches.append(f"{member}: {json.dumps(diff)}")
    assert not mismatches, f"{len(mismatches)}/{len(elf_members)} ELF members differ:\n" + "\n".join(
        mismatches[:25]
    )


@pytest.mark.parametrize("filename", [e["filename"] for e in CI_WHEELS], ids=[e["name"] for e in CI_WHEELS])
def test_check_nix_exit_code(filename: str) -> None:
    proc = _wheelfix("check", "--target", "nix", str(_wheel(filename)))
    assert proc.returncode in (0, 1), f"exit {proc.returncode} (2 means usage/internal error):\n{proc.stderr}"

"""inspect and check on macOS wheels: synthetic wheels built at test time from clang-15/lld-15 fixtures
(tests/support/machobuild.py), and the pinned real macOS wheels (tests/support/realwheels.py).

The oracle for what each binary says is llvm-otool-15 (the install names it lists must be the needs we
report, per slice); the resolution follows dyld's rules as documented in wheelfix.analysis.resolve.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wheelfix.render.jsondoc import load_schema

from tests.support import machobuild as mf
from tests.support.cli import RunCli
from tests.support.oracles import otool_L
from tests.support.prereq import require_tool
from tests.support.realwheels import MACOS_WHEELS, fetch
from tests.support.wheels import make_wheel

EXT = "machodemo/_ext.cpython-311-darwin.so"
FOO = "machodemo/.dylibs/libfoo.dylib"
BAZ = "machodemo/.dylibs/libbaz.dylib"
BAR = "machodemo/.dylibs/libbar.dylib"


def build_demo(work: Path, arch: str = "arm64", min_os: str = "11.0") -> dict[str, bytes]:
    """An extension loading a bundled dylib through @rpath (which loads another one through the
    extension's LC_RPATH, inherited), one through @loader_path, a system lib, a leaked Homebrew path and
    an @executable_path one."""
    w = work / arch / min_os
    ext = mf.build(
        w / "_ext.cpython-311-darwin.so",
        arch=arch,
        kind="bundle",
        min_os=min_os,
        rpaths=["@loader_path/.dylibs", "/opt/homebrew/lib"],
        deps=[
            mf.Dep("@rpath/libfoo.dylib"),
            mf.Dep("@loader_path/.dylibs/libbar.dylib"),
            mf.Dep("/usr/lib/libSystem.B.dylib"),
            mf.Dep("/opt/homebrew/opt/libomp/lib/libomp.dylib"),
            mf.Dep("@executable_path/../lib/libexe.dylib"),
            mf.Dep("@rpath/libmissing.dylib", mode="weak"),
        ],
    )
    foo = mf.build(
        w / "libfoo.dylib",
        arch=arch,
        min_os=min_os,
        install_name="@rpath/libfoo.dylib",
        deps=[mf.Dep("@rpath/libbaz.dylib")],
    )
    baz = mf.build(w / "libbaz.dylib", arch=arch, min_os=min_os, install_name="@rpath/libbaz.dylib")
    bar = mf.build(w / "libbar.dylib", arch=arch, min_os=min_os, install_name="/usr/local/lib/libbar.dylib")
    return {EXT: ext.read_bytes(), FOO: foo.read_bytes(), BAZ: baz.read_bytes(), BAR: bar.read_bytes()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in mf.TOOLS:
        require_tool(tool)
    work = tmp_path_factory.mktemp("macho-pipeline")
    out = work / "wheels"
    out.mkdir()
    arm = build_demo(work, "arm64")
    x86 = build_demo(work, "x86_64", "10.13")
    new = build_demo(work, "arm64", "13.0")
    fat: dict[str, bytes] = {}
    for member in arm:
        a, x = work / "a.bin", work / "x.bin"
        a.write_bytes(arm[member])
        x.write_bytes(x86[member])
        fat[member] = mf.lipo(work / "fat.bin", x, a).read_bytes()
    wheels = {
        "arm64": ("cp311-cp311-macosx_11_0_arm64", arm),
        "universal2": ("cp311-cp311-macosx_10_13_universal2", fat),
        "mislabelled": ("cp311-cp311-macosx_10_13_universal2", arm),
        "too_new": ("cp311-cp311-macosx_12_0_arm64", new),
        "x86_tag": ("cp311-cp311-macosx_10_13_x86_64", arm),
    }
    result = {}
    for key, (tag, files) in wheels.items():
        (out / key).mkdir()
        result[key] = make_wheel(out / key, "machodemo", tag, files)
    return result


def inspect_json(run_cli: RunCli, *paths: Path) -> dict[str, Any]:
    proc = run_cli("inspect", "--json", *paths)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    jsonschema.validate(doc, load_schema("inspect"))
    return doc


def macho(doc: dict[str, Any], member: str) -> dict[str, Any]:
    for b in doc["wheels"][0]["macho_binaries"]:
        if b["member"] == member:
            return b
    raise AssertionError(member)


def needs(sl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["soname"]: n for n in sl["needs"]}


def test_inspect_thin_follows_dyld_rules(run_cli: RunCli, demo: dict[str, Path], tmp_path: Path) -> None:
    doc = inspect_json(run_cli, demo["arm64"])
    w = doc["wheels"][0]
    assert w["binaries"] == [] and w["unsupported_binaries"] == []
    assert w["summary"]["macho_binaries"] == 4
    ext = macho(doc, EXT)
    assert ext["format"] == "macho" and ext["kind"] == "extension"
    (sl,) = ext["slices"]
    assert sl["arch"] == "arm64" and sl["minos"] == "11.0" and sl["code_signature"] is True
    assert sl["rpaths"] == ["@loader_path/.dylibs", "/opt/homebrew/lib"]
    # oracle: llvm-otool-15 lists the same install names in the same order
    with zipfile.ZipFile(demo["arm64"]) as zf:
        (tmp_path / "ext").write_bytes(zf.read(EXT))
    assert [d["name"] for d in sl["dylibs"]] == [d.name for d in otool_L(tmp_path / "ext")]
    n = needs(sl)
    assert n["@rpath/libfoo.dylib"]["outcome"] == "bundled"
    assert n["@rpath/libfoo.dylib"]["member"] == FOO
    assert n["@rpath/libfoo.dylib"]["via"] == "LC_RPATH @loader_path/.dylibs"
    assert n["@loader_path/.dylibs/libbar.dylib"]["member"] == BAR
    assert n["/usr/lib/libSystem.B.dylib"]["outcome"] == "macos_system"
    leaked = n["/opt/homebrew/opt/libomp/lib/libomp.dylib"]
    assert leaked["outcome"] == "unresolved" and "build machine" in leaked["detail"]
    exe = n["@executable_path/../lib/libexe.dylib"]
    assert exe["outcome"] == "unresolved" and "@executable_path" in exe["detail"]
    weak = n["@rpath/libmissing.dylib"]
    assert weak["outcome"] == "unresolved" and weak["required"] is False
    search = {d["entry"]: d for d in sl["search_path"]}
    assert search["/opt/homebrew/lib"]["path"] is None
    # libfoo has no LC_RPATH of its own: @rpath/libbaz.dylib is found through the extension's
    (foo_sl,) = macho(doc, FOO)["slices"]
    baz = needs(foo_sl)["@rpath/libbaz.dylib"]
    assert baz["outcome"] == "bundled" and baz["member"] == BAZ
    assert baz["via"] == f"LC_RPATH of {EXT} @loader_path/.dylibs"
    assert macho(doc, BAR)["slices"][0]["id_dylib"] == "/usr/local/lib/libbar.dylib"
    libs = {lib["soname"]: lib for lib in w["libraries"]}
    assert libs["/usr/lib/libSystem.B.dylib"]["needed_by"] == [EXT]


def test_inspect_fat_per_slice(run_cli: RunCli, demo: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, demo["universal2"])
    ext = macho(doc, EXT)
    assert ext["format"] == "macho-fat"
    assert [s["arch"] for s in ext["slices"]] == ["x86_64", "arm64"]
    assert [s["minos"] for s in ext["slices"]] == ["10.13", "11.0"]
    for sl in ext["slices"]:
        n = needs(sl)
        # the candidate must have a slice of the same architecture: each slice finds the fat libfoo
        assert n["@rpath/libfoo.dylib"]["member"] == FOO
        assert n["/usr/lib/libSystem.B.dylib"]["outcome"] == "macos_system"


def test_inspect_text(run_cli: RunCli, demo: dict[str, Path]) -> None:
    proc = run_cli("inspect", "-v", demo["universal2"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "0 ELF binaries, 4 Mach-O binaries" in out
    assert "macos       /usr/lib/libSystem.B.dylib: part of macOS" in out
    assert f"[extension] {EXT} (macho-fat, x86_64, arm64)" in out
    assert "    arm64: bundle, minos 11.0, signed" in out
    assert "UNRESOLVED  /opt/homebrew/opt/libomp/lib/libomp.dylib" in out
    assert "not analysed" not in out


def check_json(run_cli: RunCli, wheel: Path) -> dict[str, Any]:
    proc = run_cli("check", "--format", "json", wheel)
    doc: dict[str, Any] = json.loads(proc.stdout)
    jsonschema.validate(doc, load_schema("check"))
    return doc


def codes(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        out.setdefault(f["code"], []).append(f)
    return out


def test_check_matching_tags(run_cli: RunCli, demo: dict[str, Path]) -> None:
    for key in ("arm64", "universal2"):
        found = codes(check_json(run_cli, demo[key]))
        assert not {"arch-mismatch", "minos", "extra-arch", "platform-tag"} & set(found), found
        # the leaked Homebrew path is an error like any unresolved need; system libs are fine
        assert {f["soname"] for f in found["unresolved"]} >= {"/opt/homebrew/opt/libomp/lib/libomp.dylib"}
        assert "/usr/lib/libSystem.B.dylib" not in {f["soname"] for f in found["unresolved"]}


def test_check_universal2_needs_both_archs(run_cli: RunCli, demo: dict[str, Path]) -> None:
    found = codes(check_json(run_cli, demo["mislabelled"]))
    (f,) = found["arch-mismatch"]
    assert f["severity"] == "error" and "no x86_64 slice" in f["message"]
    assert set(f["members"]) == {EXT, FOO, BAZ, BAR}


def test_check_arm64_binaries_under_x86_64_tag(run_cli: RunCli, demo: dict[str, Path]) -> None:
    found = codes(check_json(run_cli, demo["x86_tag"]))
    (f,) = found["arch-mismatch"]
    assert f["message"] == "tagged macosx_10_13_x86_64, but binaries have no x86_64 slice"
    (extra,) = found["extra-arch"]
    assert extra["severity"] == "warning" and "arm64" in extra["message"]
    assert "minos" not in found  # arm64 slices are not held to a tag older than macOS 11


def test_check_minos_newer_than_tag(run_cli: RunCli, demo: dict[str, Path]) -> None:
    found = codes(check_json(run_cli, demo["too_new"]))
    (f,) = found["minos"]
    assert f["severity"] == "error"
    assert "tagged cp311-cp311-macosx_12_0_arm64" not in f["message"]  # the platform tag, not the whole tag
    assert "macosx_12_0_arm64 (macOS 12.0), but binaries need macOS 13.0 (arm64)" in f["message"]
    proc = run_cli("check", demo["too_new"])
    assert proc.returncode == 1
    assert "error:" in proc.stdout and "need macOS 13.0" in proc.stdout


@pytest.mark.network
@pytest.mark.parametrize("entry", MACOS_WHEELS, ids=[e["filename"] for e in MACOS_WHEELS])
def test_real_macos_wheels_inspect_and_check(run_cli: RunCli, entry: dict[str, Any]) -> None:
    wheel = fetch({**entry, "ci": False, "bench": False})
    doc = inspect_json(run_cli, wheel)
    w = doc["wheels"][0]
    assert w["unsupported_binaries"] == []
    assert w["macho_binaries"], "every pinned macOS wheel has Mach-O members"
    for b in w["macho_binaries"]:
        for sl in b["slices"]:
            assert [n["soname"] for n in sl["needs"]] == [d["name"] for d in sl["dylibs"]]
            for n in sl["needs"]:
                if n["soname"].startswith(("/usr/lib/", "/System/Library/")):
                    assert n["outcome"] == "macos_system"
    proc = run_cli("check", "--format", "json", wheel)
    assert proc.returncode in (0, 1), proc.stderr
    found = codes(json.loads(proc.stdout))
    assert not {"arch-mismatch", "platform-tag"} & set(found), found
    if entry["name"] == "cryptography":
        # a true positive: the Rust extension's x86_64 slice says LC_BUILD_VERSION minos 10.13 (rustc's
        # default deployment target), newer than the 10_9 of the tag; llvm-otool-15 -l shows the same
        (f,) = found["minos"]
        assert f["message"] == (
            "tagged macosx_10_9_universal2 (macOS 10.9), but binaries need macOS 10.13 (x86_64)"
        )
    else:
        assert "minos" not in found, found


def test_repair_of_demo_without_libraries_lists_what_is_missing(
    run_cli: RunCli, demo: dict[str, Path], tmp_path: Path
) -> None:
    """The demo's leaked Homebrew libomp and its @executable_path library are found nowhere: exit 1, one
    line each, nothing written (the weak libmissing is optional and not listed)."""
    wheel = next(iter(demo.values()))
    before = wheel.read_bytes()
    out = tmp_path / "out"
    proc = run_cli("repair", wheel, "-o", out)
    assert proc.returncode == 1, proc.stderr
    missing = sorted(
        {line.split(" needed by ")[0] for line in proc.stderr.splitlines() if line.startswith("missing")}
    )
    assert missing == [
        "missing: /opt/homebrew/opt/libomp/lib/libomp.dylib",
        "missing: @executable_path/../lib/libexe.dylib",
    ]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert wheel.read_bytes() == before

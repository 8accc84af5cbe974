"""``wheelfix repair`` on macOS wheels: install names rewritten to store paths (or LC_RPATHs added), per
slice, re-signed ad hoc, refused cleanly when the header padding is too small.

Fixtures are built at test time with clang-15 + ld64.lld-15 (tests/support/machobuild.py); the libraries the
repairs point at are Mach-O files added to the store with ``nix-store --add``. Oracles, none of them wheelfix:
``llvm-otool-15`` / ``llvm-objdump-15`` read the edited load commands; the signatures are checked page by page
with hashlib (tests/support/machochecks.py's verify_signature); and an edit is compared byte for byte with
what lld itself writes when linked against the new name (only LC_UUID, which lld derives from the content, and
therefore the first page's hash, differ). Real wheels: xgboost and lightgbm for macOS, which need Homebrew's
``@rpath/libomp.dylib``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wheelfix.binfmt.macho.reader import parse_macho

from tests.support import machobuild as mf
from tests.support.cli import RunCli
from tests.support.machochecks import first_content_offset, verify_signature
from tests.support.nix import nix_add
from tests.support.oracles import objdump_dylibs_used, objdump_private_headers, otool_header, otool_L, otool_l
from tests.support.prereq import require_tool
from tests.support.realwheels import fetch
from tests.support.wheels import make_wheel

EXT = "omptest/_ext.cpython-311-darwin.so"
IDENT = "_ext.cpython-311-darwin.so"  # lld's signature identifier: the output file's name


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in mf.TOOLS:
        require_tool(tool)


@pytest.fixture(scope="module")
def omp_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store path holding a fat (arm64 + x86_64) libomp.dylib: <store>/lib/libomp.dylib."""
    for tool in mf.TOOLS:
        require_tool(tool)
    work = tmp_path_factory.mktemp("omp")
    thin = [
        mf.build(work / arch / "libomp.dylib", arch=arch, install_name="/usr/local/lib/libomp.dylib")
        for arch in ("arm64", "x86_64")
    ]
    lib = work / "wheelfix-test-openmp" / "lib"
    mf.lipo(lib / "libomp.dylib", *thin)
    return nix_add(lib.parent)


@pytest.fixture
def short_libdir() -> Iterator[Path]:
    """/tmp/wfxXXXXXXXX/libomp.dylib (arm64): a name of a known length, for the comparison with lld."""
    d = Path(tempfile.mkdtemp(prefix="wfx", dir="/tmp"))
    try:
        mf.build(d / "build" / "libomp.dylib", arch="arm64", install_name=str(d / "libomp.dylib"))
        shutil.move(d / "build" / "libomp.dylib", d / "libomp.dylib")
        yield d
    finally:
        shutil.rmtree(d)


def member(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def uuid_offset(data: bytes) -> int:
    (sl,) = parse_macho(data).slices
    (lc,) = [c for c in sl.load_commands if c.name == "LC_UUID"]
    return lc.offset + 8


def test_edit_equals_what_lld_links(run_cli: RunCli, tmp_path: Path, short_libdir: Path) -> None:
    """X links @rpath/omp/lib/libomp.dylib, Y the library's new absolute name (same cmdsize). Repairing X
    must give Y's bytes: everything equal except the LC_UUID lld computes from the content, and the first
    page hash that covers it; the signature is lld's layout with every page hash right."""
    new_name = f"{short_libdir}/libomp.dylib"
    old_name = "@rpath/omp/lib/libomp.dylib"
    assert mf.dylib_cmdsize(old_name) == mf.dylib_cmdsize(new_name)  # the precondition of the comparison
    x = mf.build(tmp_path / "x" / IDENT, kind="bundle", deps=[mf.Dep(old_name)])
    y = mf.build(tmp_path / "y" / IDENT, kind="bundle", deps=[mf.Dep(new_name)])
    wheel = make_wheel(tmp_path, "omptest", "cp311-cp311-macosx_11_0_arm64", {EXT: x.read_bytes()})
    before = wheel.read_bytes()
    proc = run_cli("repair", wheel, "-o", tmp_path / "out", "--lib-path", short_libdir)
    assert proc.returncode == 0, proc.stderr
    assert f"{old_name} -> {new_name}" in proc.stdout and "re-signed ad hoc" in proc.stdout
    assert wheel.read_bytes() == before
    out = member(tmp_path / "out" / wheel.name, EXT)
    lld = y.read_bytes()
    assert len(out) == len(lld)
    u = uuid_offset(lld)
    (hash0,) = verify_signature(out, IDENT)  # every page hash recomputed with hashlib
    (lld_hash0,) = verify_signature(lld, IDENT)
    assert hash0 == lld_hash0
    differ = {i for i in range(len(out)) if out[i] != lld[i]}
    assert differ and differ <= set(range(u, u + 16)) | set(range(hash0, hash0 + 32))
    assert out[u : u + 16] == x.read_bytes()[u : u + 16]  # the UUID is X's, kept
    edited = write(tmp_path / "edited" / IDENT, out)
    assert [d.name for d in otool_L(edited)][:1] == [new_name]


def build_fat(work: Path, deps: list[mf.Dep], rpaths: list[str]) -> bytes:
    thin = [
        mf.build(work / arch / IDENT, arch=arch, kind="bundle", deps=deps, rpaths=rpaths, headerpad=0x400)
        for arch in ("arm64", "x86_64")
    ]
    return mf.lipo(work / "fat" / IDENT, *thin).read_bytes()


def test_universal2_repair_per_slice(run_cli: RunCli, tmp_path: Path, omp_store: str) -> None:
    fat = build_fat(
        tmp_path,
        [mf.Dep("@rpath/libomp.dylib"), mf.Dep("/usr/lib/libSystem.B.dylib")],
        ["/opt/homebrew/opt/libomp/lib", "@loader_path/.dylibs"],
    )
    other = b"print('hello')\n"
    wheel = make_wheel(
        tmp_path, "omptest", "cp311-cp311-macosx_11_0_universal2", {EXT: fat, "omptest/__init__.py": other}
    )
    before = wheel.read_bytes()
    out_dir = tmp_path / "out"
    proc = run_cli("repair", wheel, "-o", out_dir, "--lib-path", f"{omp_store}/lib")
    assert proc.returncode == 0, proc.stderr
    repaired = out_dir / wheel.name
    new = write(tmp_path / "new" / IDENT, member(repaired, EXT))
    want = f"{omp_store}/lib/libomp.dylib"
    for arch in ("arm64", "x86_64"):
        names = [d.name for d in objdump_dylibs_used(new, arch)]
        assert names == [want, "/usr/lib/libSystem.B.dylib"], arch
        rpaths = [c["path"] for c in objdump_private_headers(new, arch) if c["cmd"] == "LC_RPATH"]
        assert rpaths == ["/opt/homebrew/opt/libomp/lib", "@loader_path/.dylibs"]
    slices = {s.arch: s for s in parse_macho(new.read_bytes()).slices}
    assert slices["x86_64"].code_signature is None  # lld left it unsigned; not an arm64 slice: stays so
    assert len(verify_signature(new.read_bytes(), IDENT)) == 1  # the arm64 slice, page by page
    assert member(repaired, "omptest/__init__.py") == other
    # the input fails check --target nix; the repaired wheel passes, libomp pinned to the store
    assert run_cli("check", wheel).returncode == 1
    assert run_cli("check", repaired).returncode == 0
    doc = json.loads(run_cli("inspect", "--json", repaired).stdout)
    (binary,) = doc["wheels"][0]["macho_binaries"]
    for sl in binary["slices"]:
        assert {n["soname"]: n["outcome"] for n in sl["needs"]}[want] == "nix_store"
    assert wheel.read_bytes() == before
    # the output is a valid wheel (RECORD checked while reading) and a second repair is byte-identical
    assert run_cli("inspect", repaired).returncode in (0, 1)
    proc = run_cli("repair", wheel, "-o", tmp_path / "again", "--lib-path", f"{omp_store}/lib")
    assert proc.returncode == 0 and (tmp_path / "again" / wheel.name).read_bytes() == repaired.read_bytes()


def test_rpath_strategy_when_names_do_not_fit(run_cli: RunCli, tmp_path: Path) -> None:
    """Four @rpath needs from one store directory: four longer names do not fit the padding, one LC_RPATH
    (with the leaked Homebrew one deleted) does; the names stay @rpath/..."""
    libs = tmp_path / "store-src" / "wheelfix-test-many" / "lib"
    names = [f"liba{i}.dylib" for i in range(4)]
    for n in names:
        mf.build(tmp_path / "b" / n, install_name=f"/usr/local/lib/{n}")
        write(libs / n, (tmp_path / "b" / n).read_bytes())
    store = nix_add(libs.parent)
    deps = [mf.Dep(f"@rpath/{n}") for n in names]
    x = mf.build(tmp_path / "x" / IDENT, kind="bundle", deps=deps, rpaths=["/opt/homebrew/lib"], headerpad=96)
    header = otool_header(x)
    padding = first_content_offset(otool_l(x)) - 32 - header["sizeofcmds"]
    grow_names = sum(mf.dylib_cmdsize(f"{store}/lib/{n}") - mf.dylib_cmdsize(f"@rpath/{n}") for n in names)
    grow_rpath = mf.rpath_cmdsize(f"{store}/lib") - mf.rpath_cmdsize("/opt/homebrew/lib")
    assert grow_rpath <= padding < grow_names, (padding, grow_rpath, grow_names)  # fixture precondition
    wheel = make_wheel(tmp_path, "omptest", "cp311-cp311-macosx_11_0_arm64", {EXT: x.read_bytes()})
    proc = run_cli("repair", wheel, "-o", tmp_path / "out", "--lib-path", f"{store}/lib")
    assert proc.returncode == 0, proc.stderr
    assert "rpath strategy" in proc.stdout and "delete LC_RPATH /opt/homebrew/lib" in proc.stdout
    new = write(tmp_path / "new" / IDENT, member(tmp_path / "out" / wheel.name, EXT))
    assert [d.name for d in otool_L(new)] == [f"@rpath/{n}" for n in names]
    rpaths = [c["path"] for c in otool_l(new) if c["cmd"] == "LC_RPATH"]
    assert rpaths == [f"{store}/lib"]
    verify_signature(new.read_bytes(), IDENT)


def test_no_room_is_refused_without_output(run_cli: RunCli, tmp_path: Path, omp_store: str) -> None:
    x = mf.build(tmp_path / "x" / IDENT, kind="bundle", deps=[mf.Dep("@rpath/libomp.dylib")], headerpad=0)
    header = otool_header(x)
    available = first_content_offset(otool_l(x)) - 32
    need_name = header["sizeofcmds"] + mf.dylib_cmdsize(f"{omp_store}/lib/libomp.dylib") - 48
    need_rpath = header["sizeofcmds"] + mf.rpath_cmdsize(f"{omp_store}/lib")
    needed = min(need_name, need_rpath)
    assert needed > available  # fixture precondition: neither strategy fits
    wheel = make_wheel(tmp_path, "omptest", "cp311-cp311-macosx_11_0_arm64", {EXT: x.read_bytes()})
    before = wheel.read_bytes()
    out = tmp_path / "out"
    proc = run_cli("repair", wheel, "-o", out, "--lib-path", f"{omp_store}/lib")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"no room: {EXT} (arm64 slice) in {wheel.name}: the new load commands need {needed} bytes, "
        f"the header has {available}: {needed - available} bytes missing "
        "(relink with -headerpad_max_install_names)"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and wheel.read_bytes() == before


def test_missing_library_stops_the_repair(run_cli: RunCli, tmp_path: Path) -> None:
    x = mf.build(tmp_path / "x" / IDENT, kind="bundle", deps=[mf.Dep("@rpath/libomp.dylib")])
    wheel = make_wheel(tmp_path, "omptest", "cp311-cp311-macosx_11_0_arm64", {EXT: x.read_bytes()})
    out = tmp_path / "out"
    proc = run_cli("repair", wheel, "-o", out)
    assert proc.returncode == 1
    # one wheel: its name is not repeated; the answer is the one `wheelfix nix` gives for libomp
    assert f"missing: @rpath/libomp.dylib needed by {EXT}: pkgs.llvmPackages.openmp" in proc.stderr
    assert not out.exists()
    proc = run_cli("repair", wheel, "-o", out, "--allow", "libomp.dylib")
    assert proc.returncode == 0, proc.stderr
    assert member(out / wheel.name, EXT) == x.read_bytes()  # nothing to rewrite: copied as it was


# --- real wheels -------------------------------------------------------------------------------------

REAL: list[dict[str, Any]] = [
    {
        "name": "xgboost",
        "version": "3.2.0",
        "filename": "xgboost-3.2.0-py3-none-macosx_12_0_arm64.whl",
        "sha256": "eabbd40d474b8dbf6cb3536325f9150b9e6f0db32d18de9914fb3227d0bef5b7",
        "size": 2328527,
        "member": "xgboost/lib/libxgboost.dylib",
    },
    {
        "name": "xgboost",
        "version": "3.2.0",
        "filename": "xgboost-3.2.0-py3-none-macosx_10_15_x86_64.whl",
        "sha256": "2f661966d3e322536d9c448090a870fcba1e32ee5760c10b7c46bac7a342079a",
        "size": 2507014,
        "member": "xgboost/lib/libxgboost.dylib",
    },
    {
        "name": "lightgbm",
        "version": "4.7.0",
        "filename": "lightgbm-4.7.0-py3-none-macosx_12_0_arm64.whl",
        "sha256": "129535462686f274df179133643118c5c5c5667167fe6c3a28d955f0b3c8e868",
        "size": 1498914,
        "member": "lightgbm/lib/lib_lightgbm.dylib",
    },
    {
        "name": "lightgbm",
        "version": "4.7.0",
        "filename": "lightgbm-4.7.0-py3-none-macosx_10_15_x86_64.whl",
        "sha256": "dfc1cfe8e760387be1e7ba7a214688be21fdff96e4ed9749188f83e1877c2477",
        "size": 1877851,
        "member": "lightgbm/lib/lib_lightgbm.dylib",
    },
]


@pytest.mark.network
@pytest.mark.parametrize("entry", REAL, ids=[e["filename"] for e in REAL])
def test_real_wheel_needing_libomp(
    run_cli: RunCli, tmp_path: Path, omp_store: str, entry: dict[str, Any]
) -> None:
    wheel = fetch(entry)
    before = hashlib.sha256(wheel.read_bytes()).hexdigest()
    name = entry["member"]
    old = member(wheel, name)
    (old_slice,) = parse_macho(old).slices
    proc = run_cli("repair", wheel, "-o", tmp_path / "out", "--lib-path", f"{omp_store}/lib")
    assert proc.returncode == 0, proc.stderr
    repaired = tmp_path / "out" / wheel.name
    new_bytes = member(repaired, name)
    new = write(tmp_path / "new" / Path(name).name, new_bytes)
    want = [
        f"{omp_store}/lib/libomp.dylib" if d.name == "@rpath/libomp.dylib" else d.name
        for d in old_slice.dylibs
    ]
    # otool -L lists LC_ID_DYLIB first for a dylib
    assert [d.name for d in otool_L(new)][1:] == want
    (new_slice,) = parse_macho(new_bytes).slices
    assert new_slice.rpaths == old_slice.rpaths  # install-name strategy: LC_RPATHs untouched
    if old_slice.code_signature is not None:
        identifier = old_slice.code_signature.info.identifier
        assert identifier is not None
        verify_signature(new_bytes, identifier)
    else:
        assert new_slice.code_signature is None
    # everything after the load commands is unchanged up to the signature
    end = new_slice.code_signature.dataoff if new_slice.code_signature else len(old)
    first = 32 + old_slice.sizeofcmds + old_slice.header_padding
    assert new_bytes[first:end] == old[first:end]
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(repaired) as b:
        for info in a.infolist():
            if info.filename != name and not info.filename.endswith("RECORD"):
                assert a.read(info) == b.read(info.filename)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == before
    with zipfile.ZipFile(repaired) as zf:
        assert zf.testzip() is None
    proc = run_cli("repair", wheel, "-o", tmp_path / "again", "--lib-path", f"{omp_store}/lib")
    assert proc.returncode == 0 and (tmp_path / "again" / wheel.name).read_bytes() == repaired.read_bytes()

"""Synthetic wheels for each rule auditwheel applies and the verdicts it gives (recorded once with
``auditwheel show`` 6.8.2 on these very wheels; no auditwheel at test time), built with gcc/binutils.

The binaries link against stub libraries (``-nostdlib``, a version script per stub), so the symbol versions
they need are the ones written here, whatever the host's glibc or zlib: a stub ``libc.so.6`` exporting
``GLIBC_2.2.5``/``GLIBC_2.29``/``GLIBC_PRIVATE``, a stub ``libz.so.1`` exporting ``ZLIB_1.2.9`` (where
``uncompress2`` lives: blacklisted up to manylinux_2_31) and a stub ``libpython3.11.so.1.0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import RunCli
from tests.support.prereq import require_tool
from tests.support.stubbuild import extension, run, stub, wheel

EXT = ".cpython-311-x86_64-linux-gnu.so"


# name -> (platform tag, calls, stubs linked, extra flags, auditwheel show 6.8.2's headline for the wheel)
CASES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "baseline": ("manylinux_2_5_x86_64", ("malloc",), ("libc",), (), "manylinux_2_5_x86_64"),
    "glibc229": ("manylinux_2_17_x86_64", ("malloc", "exp_new"), ("libc",), (), "manylinux_2_31_x86_64"),
    "glibcprivate": ("manylinux_2_17_x86_64", ("malloc", "_dl_private"), ("libc",), (), "linux_x86_64"),
    "zlib129": ("manylinux_2_5_x86_64", ("compress2",), ("libc", "libz"), (), "manylinux_2_27_x86_64"),
    "blacklisted": ("manylinux_2_17_x86_64", ("uncompress2",), ("libc", "libz"), (), "manylinux_2_34_x86_64"),
    "libpython": (
        "manylinux_2_17_x86_64",
        ("malloc", "Py_Initialize"),
        ("libc", "libpython"),
        (),
        "linux_x86_64",
    ),
    "isav3": (
        "manylinux_2_17_x86_64",
        ("malloc",),
        ("libc",),
        ("-march=x86-64-v3", "-Wl,-z,x86-64-v3"),
        "linux_x86_64",
    ),
    "isav2": ("manylinux_2_17_x86_64", ("malloc",), ("libc",), ("-Wl,-z,x86-64-v2",), "linux_x86_64"),
    "pyfpe": ("manylinux_2_17_x86_64", ("malloc", "PyFPE_jbuf"), ("libc",), (), "linux_x86_64"),
    "external": ("manylinux_2_17_x86_64", ("malloc", "foo"), ("libc", "libfoo"), (), "linux_x86_64"),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("gcc")
    require_tool("ld")
    tmp = tmp_path_factory.mktemp("gate-synthetic")
    stubs = {
        "libc": stub(
            tmp,
            "libc.so.6",
            {"GLIBC_2.2.5": ["malloc"], "GLIBC_2.29": ["exp_new"], "GLIBC_PRIVATE": ["_dl_private"]},
        ),
        "libz": stub(
            tmp, "libz.so.1", {"ZLIB_1.2.0": ["compress2_old"], "ZLIB_1.2.9": ["uncompress2", "compress2"]}
        ),
        "libpython": _plain(tmp),
        "libfoo": stub(tmp, "libfoo.so.1", {"FOO_1": ["foo"]}),
    }
    out = tmp / "wheels"
    out.mkdir()
    built = {}
    for name, (platform, calls, libs, flags, _aw) in CASES.items():
        ext = extension(tmp, name, calls, [stubs[lib] for lib in libs], flags)
        built[name] = wheel(out, name, platform, ext)
    return built


def _plain(tmp: Path) -> Path:
    """libpython3.11.so.1.0 without symbol versions (as CPython builds it)."""
    src = tmp / "py.c"
    src.write_text("void Py_Initialize(void) {}\n")
    out = tmp / "libpython3.11.so.1.0"
    run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libpython3.11.so.1.0",
            "-o",
            str(out),
            str(src),
        ],
        tmp,
    )
    return out


def _auto(run_cli: RunCli, wheel: Path) -> dict[str, object]:
    proc = run_cli("check", "--target", "auto", "--format", "json", wheel)
    assert proc.returncode in (0, 1), proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize("name", list(CASES))
def test_consistent_with_agrees_with_auditwheel(
    run_cli: RunCli, synthetic: dict[str, Path], name: str
) -> None:
    expected = CASES[name][4]
    doc = _auto(run_cli, synthetic[name])
    (wheel,) = doc["wheels"]  # type: ignore[misc]
    assert wheel["consistent_with"] == (None if expected.startswith("linux_") else expected)


def _errors(run_cli: RunCli, wheel: Path, target: str) -> list[dict[str, object]]:
    proc = run_cli("check", "--target", target, "--format", "json", wheel)
    assert proc.returncode in (0, 1), proc.stderr
    return [f for f in json.loads(proc.stdout)["findings"] if f["severity"] == "error"]


def test_isa_level_from_the_gnu_property_note(run_cli: RunCli, synthetic: dict[str, Path]) -> None:
    for name, level in (("isav3", "x86-64-v3"), ("isav2", "x86-64-v2")):
        (f,) = [f for f in _errors(run_cli, synthetic[name], "manylinux_2_28") if f["code"] == "isa-level"]
        assert f["symbols"] == [level] and f["members"] == [f"{name}/{name}{EXT}"]
        assert level in str(f["message"])
    doc = json.loads(run_cli("inspect", "--json", synthetic["isav3"]).stdout)
    assert doc["wheels"][0]["binaries"][0]["elf"]["isa_level"] == "x86-64-v3"
    assert _errors(run_cli, synthetic["baseline"], "manylinux_2_28") == []


def test_blacklisted_zlib_symbol(run_cli: RunCli, synthetic: dict[str, Path]) -> None:
    """uncompress2 is blacklisted up to manylinux_2_31 (not in every libz.so.1 those systems have)."""
    found = _errors(run_cli, synthetic["blacklisted"], "manylinux_2_31")
    assert {(f["code"], f["cause"]) for f in found} == {
        ("blacklisted-symbol", None),
        ("tag-mismatch", "blacklisted-symbol"),  # its own tag, manylinux_2_17
        ("tag-mismatch", "symbol-version"),  # ZLIB_1.2.9 is beyond manylinux_2_17 too
    }
    (f,) = [f for f in found if f["code"] == "blacklisted-symbol"]
    assert f["soname"] == "libz.so.1" and f["symbols"] == ["uncompress2"] and f["policy"] == "manylinux_2_31"
    assert f["members"] == [f"blacklisted/blacklisted{EXT}"]
    # at manylinux_2_34 the symbol is fine; only the wheel's own tag (2_17) is wrong
    at_2_34 = _errors(run_cli, synthetic["blacklisted"], "manylinux_2_34")
    assert {(f["code"], f["policy"]) for f in at_2_34} == {("tag-mismatch", "manylinux_2_17_x86_64")}


def test_version_needs_name_the_library_and_binaries(run_cli: RunCli, synthetic: dict[str, Path]) -> None:
    ext = f"glibc229/glibc229{EXT}"
    (f,) = _errors(run_cli, synthetic["glibc229"], "manylinux_2_31")
    assert f["code"] == "tag-mismatch" and f["cause"] == "symbol-version" and f["soname"] == "libc.so.6"
    assert f["symbols"] == ["GLIBC_2.29"] and f["members"] == [ext]
    assert "libc.so.6: needs GLIBC_2.29; manylinux_2_17 allows up to GLIBC_2.17" in str(f["message"])
    (g,) = [
        f for f in _errors(run_cli, synthetic["glibc229"], "manylinux_2_28") if f["code"] == "symbol-version"
    ]
    assert "libc.so.6: needs GLIBC_2.29; manylinux_2_28 allows up to GLIBC_2.28" in str(g["message"])
    text = run_cli("check", "--target", "manylinux_2_28", synthetic["glibc229"]).stdout
    assert f"binaries: {ext}" in text
    private = _errors(run_cli, synthetic["glibcprivate"], "manylinux_2_41")
    assert [(f["code"], f["symbols"]) for f in private] == [
        ("symbol-version", ["GLIBC_PRIVATE"]),
        ("tag-mismatch", ["GLIBC_PRIVATE"]),
    ]


def test_no_allowed_version_is_a_finding_not_a_crash(run_cli: RunCli, synthetic: dict[str, Path]) -> None:
    """Issue 13: a ZLIB_* need at manylinux_2_5 (whose policy lists no ZLIB version) was max() of nothing."""
    for target in ("manylinux_2_5", "manylinux1", "manylinux_2_12", "auto", "nix"):
        proc = run_cli("check", "--target", target, synthetic["zlib129"])
        assert proc.returncode in (0, 1), (target, proc.stderr)
    (f,) = _errors(run_cli, synthetic["zlib129"], "manylinux_2_5")
    assert f["code"] == "symbol-version" and f["symbols"] == ["ZLIB_1.2.9"]
    assert "manylinux_2_5 allows no ZLIB version" in str(f["message"])


def test_libpython_and_pyfpe_and_external(run_cli: RunCli, synthetic: dict[str, Path]) -> None:
    (f,) = _errors(run_cli, synthetic["libpython"], "manylinux_2_17")
    assert (f["code"], f["soname"]) == ("libpython", "libpython3.11.so.1.0")
    assert _errors(run_cli, synthetic["libpython"], "nix") == []  # the interpreter provides it
    (f,) = _errors(run_cli, synthetic["pyfpe"], "manylinux_2_17")
    assert f["code"] == "pyfpe"
    (f,) = _errors(run_cli, synthetic["external"], "manylinux_2_17")
    assert (f["code"], f["soname"], f["members"]) == (
        "external-library",
        "libfoo.so.1",
        [f"external/external{EXT}"],
    )
    assert (
        run_cli(
            "check", "--target", "manylinux_2_17", "--allow", "libfoo.so.*", synthetic["external"]
        ).returncode
        == 0
    )

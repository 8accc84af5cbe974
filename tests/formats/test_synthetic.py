"""Checks of the synthetic wheel generator (tests/support/synthetic.py) itself, using only binutils and the
standard library."""

from __future__ import annotations

import csv
import ctypes
import io
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import synthetic as generate
from tests.support.oracles import readelf, readelf_errors
from tests.support.paths import EXAMPLE_WHEEL, REPO
from tests.support.prereq import unavailable
from tests.support.wheels import record_hash

EXT = ".cpython-311-x86_64-linux-gnu.so"
DEMO_EXT = f"demo/_demo{EXT}"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"
EVIL_SO = f"evil/_evil{EXT}"
FDO_DLOPEN = 0x407C0C0A


@pytest.fixture(scope="session")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate.build_all(tmp_path_factory.mktemp("valid"))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("hostile")
    return {name: generate.build_wheel(name, outdir) for name in generate.HOSTILE}


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True)


def extract(wheel: Path, member: str, dest: Path) -> Path:
    path = dest / Path(member).name
    with zipfile.ZipFile(wheel) as zf:
        path.write_bytes(zf.read(member))
    return path


def record_rows(zf: zipfile.ZipFile) -> list[list[str]]:
    (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    return list(csv.reader(io.StringIO(zf.read(name).decode("utf-8"))))


def record_problems(zf: zipfile.ZipFile) -> list[str]:
    """Every way RECORD disagrees with the archive; each copy of a duplicated member is checked."""
    infos: dict[str, list[zipfile.ZipInfo]] = {}
    for info in zf.infolist():
        infos.setdefault(info.filename, []).append(info)
    problems: list[str] = []
    listed: set[str] = set()
    for row in record_rows(zf):
        if len(row) != 3:
            problems.append(f"bad row {row}")
            continue
        path, digest, size = row
        listed.add(path)
        if path.endswith(".dist-info/RECORD"):
            if digest or size:
                problems.append(f"RECORD row hashed {row}")
        elif path not in infos:
            problems.append(f"missing {path}")
        else:
            for info in infos[path]:
                data = zf.read(info)
                if digest != record_hash(data):
                    problems.append(f"hash {path}")
                if size != str(len(data)):
                    problems.append(f"size {path}")
    problems += [f"unlisted {name}" for name in sorted(infos.keys() - listed)]
    return problems


def note_segments(binary: Path) -> list[list[str]]:
    """Section names of each PT_NOTE segment, from readelf's section-to-segment mapping."""
    lines = readelf(binary, "-l").splitlines()
    start = lines.index("Program Headers:") + 2
    end = lines.index("", start)
    kinds = [line.split()[0] for line in lines[start:end] if not line.strip().startswith("[")]
    mapping_start = next(i for i, line in enumerate(lines) if "Segment Sections..." in line) + 1
    sections = [line.split()[1:] for line in lines[mapping_start : mapping_start + len(kinds)]]
    return [secs for kind, secs in zip(kinds, sections, strict=True) if kind == "NOTE"]


# --- libfoo and demo ------------------------------------------------------------------------------


def test_libfoo(tmp_path: Path) -> None:
    lib = generate.build_libfoo(tmp_path)
    assert lib == tmp_path / "libfoo.so.1"
    assert "Library soname: [libfoo.so.1]" in readelf(lib, "-d")
    assert ctypes.CDLL(str(lib)).foo_value() == 42


def test_demo_extension_dynamic(valid: dict[str, Path], tmp_path: Path) -> None:
    dynamic = readelf(extract(valid["demo"], DEMO_EXT, tmp_path), "-d")
    for lib in ("libz.so.1", "libfoo.so.1", "libbar-1a2b3c4d.so.1"):
        assert f"Shared library: [{lib}]" in dynamic
    assert "Library runpath: [$ORIGIN/../demo.libs]" in dynamic
    assert "Library rpath:" not in dynamic
    symbols = readelf(tmp_path / Path(DEMO_EXT).name, "--dyn-syms")
    assert "PyInit__demo" in symbols


def test_demo_dlopen_string(valid: dict[str, Path], tmp_path: Path) -> None:
    strings = run("strings", "-a", extract(valid["demo"], DEMO_EXT, tmp_path)).stdout.split("\n")
    assert "libdlopened.so.2" in strings


def test_demo_fdo_note(valid: dict[str, Path], tmp_path: Path) -> None:
    ext = extract(valid["demo"], DEMO_EXT, tmp_path)
    # binutils 2.40 prints "Unknown note type: (0x407c0c0a)" and exits 1; newer ones decode it.
    notes = readelf(ext, "-n", check=False)  # and nothing on stderr
    assert "Displaying notes found in: .note.dlopen" in notes
    assert "FDO                  0x0000005f" in notes
    assert any(".note.dlopen" in sections for sections in note_segments(ext))
    raw = tmp_path / "note.bin"
    run("objcopy", f"--dump-section=.note.dlopen={raw}", ext, tmp_path / "ignored")
    note = raw.read_bytes()
    namesz, descsz, kind = struct.unpack_from("<III", note)
    assert (namesz, kind) == (4, FDO_DLOPEN)
    assert note[12:16] == b"FDO\0"
    desc = note[16 : 16 + descsz]
    assert desc.endswith(b"\0") and len(note) % 4 == 0
    assert json.loads(desc[:-1]) == [
        {"soname": ["libnoted.so.3"], "feature": "noted", "description": "test", "priority": "recommended"}
    ]


def test_demo_bundled_lib(valid: dict[str, Path], tmp_path: Path) -> None:
    lib = extract(valid["demo"], "demo.libs/libbar-1a2b3c4d.so.1", tmp_path)
    dynamic = readelf(lib, "-d")
    assert "Library soname: [libbar-1a2b3c4d.so.1]" in dynamic
    assert [line for line in dynamic.splitlines() if "(NEEDED)" in line] == [
        " 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]"
    ]
    assert "bar_value" in readelf(lib, "--dyn-syms")


def test_demo_tool(valid: dict[str, Path], tmp_path: Path) -> None:
    tool = extract(valid["demo"], DEMO_TOOL, tmp_path)
    dynamic = readelf(tool, "-d")
    assert "Shared library: [libbar-1a2b3c4d.so.1]" in dynamic
    assert "Library rpath: [$ORIGIN/../lib/python3.11/site-packages/demo.libs]" in dynamic
    assert "Library runpath:" not in dynamic
    assert "Requesting program interpreter: /lib64/ld-linux-x86-64.so.2" in readelf(tool, "-l")
    assert "DYN (Position-Independent Executable file)" in readelf(tool, "-h")
    with zipfile.ZipFile(valid["demo"]) as zf:
        assert zf.getinfo(DEMO_TOOL).external_attr >> 16 == 0o755
        assert zf.getinfo(DEMO_EXT).external_attr >> 16 == 0o644


# --- the other valid wheels -----------------------------------------------------------------------


def test_provider_and_consumer(valid: dict[str, Path], tmp_path: Path) -> None:
    prov = readelf(extract(valid["provider"], "provider/lib/libprov.so.1", tmp_path), "-d")
    assert "Library soname: [libprov.so.1]" in prov
    ext = extract(valid["consumer"], f"consumer/_consumer{EXT}", tmp_path)
    dynamic = readelf(ext, "-d")
    assert "Shared library: [libprov.so.1]" in dynamic
    assert "Shared library: [libstdc++.so.6]" in dynamic
    assert "Library runpath: [$ORIGIN/../provider/lib]" in dynamic
    versions = readelf(ext, "-V")
    assert "File: libstdc++.so.6" in versions
    assert "Name: GLIBCXX_3.4" in versions


def test_pure_has_no_binaries(valid: dict[str, Path]) -> None:
    assert valid["pure"].name == "purepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(valid["pure"]) as zf:
        assert not [i.filename for i in zf.infolist() if zf.read(i).startswith(b"\x7fELF")]
        assert b"Root-Is-Purelib: true" in zf.read("purepkg-1.0.dist-info/WHEEL")


def test_rpathlegacy(valid: dict[str, Path], tmp_path: Path) -> None:
    assert valid["rpathlegacy"].name == "legacy-1.0-cp311-cp311-linux_x86_64.whl"
    dynamic = readelf(extract(valid["rpathlegacy"], f"legacy/_legacy{EXT}", tmp_path), "-d")
    assert "Library rpath: [$ORIGIN/.libs]" in dynamic
    assert "Library runpath:" not in dynamic
    assert "Shared library: [libleg.so.0]" in dynamic
    assert "Shared library: [libm.so.6]" in dynamic
    lib = extract(valid["rpathlegacy"], "legacy/.libs/libleg.so.0", tmp_path)
    assert "Library soname: [libleg.so.0]" in readelf(lib, "-d")


def test_example(valid: dict[str, Path], tmp_path: Path) -> None:
    ext = extract(valid["example"], f"wheelfix_example/_example{EXT}", tmp_path)
    dynamic = readelf(ext, "-d")
    assert "Shared library: [libz.so.1]" in dynamic
    assert "Shared library: [libexdep.so.1]" in dynamic
    assert "Library runpath: [$ORIGIN/../wheelfix_example.libs]" in dynamic


def test_committed_example_matches_generator(valid: dict[str, Path]) -> None:
    committed = EXAMPLE_WHEEL
    assert committed.name == generate.EXAMPLE_FILENAME
    assert committed.stat().st_size < 50_000
    with zipfile.ZipFile(committed) as old, zipfile.ZipFile(valid["example"]) as new:
        assert record_problems(old) == []
        assert old.namelist() == new.namelist()


def test_extensions_import(valid: dict[str, Path], tmp_path: Path) -> None:
    """Unpacked side by side, the extensions load through their own RUNPATH/RPATH."""
    if sys.version_info[:2] != (3, 11):
        unavailable("the synthetic extensions are built for CPython 3.11")
    for name in ("provider", "consumer", "rpathlegacy", "example"):
        with zipfile.ZipFile(valid[name]) as zf:
            zf.extractall(tmp_path)
    code = (
        "import consumer, legacy, wheelfix_example;"
        "print(consumer.describe(), legacy.value(0.0), wheelfix_example.value())"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["prov=3", "5.0", "11"]


# --- every valid wheel ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", generate.WHEELS)
def test_wheel_layout(valid: dict[str, Path], name: str) -> None:
    dist, version, *tag = valid[name].stem.split("-")
    dist_info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(valid[name]) as zf:
        assert zf.testzip() is None
        assert record_problems(zf) == []
        names = zf.namelist()
        assert names[-1] == f"{dist_info}/RECORD"
        assert names[-3:-1] == [f"{dist_info}/METADATA", f"{dist_info}/WHEEL"]
        assert names[:-3] == sorted(names[:-3])
        assert len(set(names)) == len(names)
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED
        metadata = zf.read(f"{dist_info}/METADATA").decode().splitlines()
        wheel = zf.read(f"{dist_info}/WHEEL").decode().splitlines()
    assert metadata[:3] == ["Metadata-Version: 2.1", f"Name: {dist}", f"Version: {version}"]
    assert "Wheel-Version: 1.0" in wheel
    assert "Generator: wheelfix-testdata" in wheel
    assert f"Tag: {'-'.join(tag)}" in wheel


def test_deterministic(valid: dict[str, Path], hostile: dict[str, Path], tmp_path: Path) -> None:
    for name, path in {**valid, **hostile}.items():
        assert generate.build_wheel(name, tmp_path).read_bytes() == path.read_bytes(), name


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown test wheel"):
        generate.build_wheel("nope", tmp_path)


def test_cli(tmp_path: Path) -> None:
    # as the module docstring says: python -m tests.support.synthetic OUTDIR [NAME...], in the repository
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.synthetic", tmp_path, "pure", "not-a-zip"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [
        str(tmp_path / "purepkg-1.0-py3-none-any.whl"),
        str(tmp_path / "not-a-zip" / "evil-1.0-cp311-cp311-linux_x86_64.whl"),
    ]


# --- hostile wheels -------------------------------------------------------------------------------


def only_member(name: str) -> Callable[[zipfile.ZipFile], None]:
    def check(zf: zipfile.ZipFile) -> None:
        assert name in zf.namelist()
        assert record_problems(zf) == []

    return check


def check_duplicate(zf: zipfile.ZipFile) -> None:
    assert zf.namelist().count("evil/util.py") == 2
    assert record_problems(zf) == []


def check_symlink(zf: zipfile.ZipFile) -> None:
    mode = zf.getinfo("evil/link.py").external_attr >> 16
    assert stat.S_ISLNK(mode)
    assert zf.read("evil/link.py") == b"/etc/passwd"
    assert record_problems(zf) == []


def check_bomb(zf: zipfile.ZipFile) -> None:
    info = zf.getinfo("evil/zeros.bin")
    assert info.file_size == 50 * 1024 * 1024
    assert info.file_size > 500 * info.compress_size
    assert record_problems(zf) == []


def check_record_missing(zf: zipfile.ZipFile) -> None:
    assert not [n for n in zf.namelist() if n.endswith("RECORD")]
    assert "evil-1.0.dist-info/WHEEL" in zf.namelist()


def check_record_malformed(zf: zipfile.ZipFile) -> None:
    rows = record_rows(zf)
    assert [r[0] for r in rows if len(r) != 3] == ["evil/__init__.py"]
    assert [r[0] for r in rows if len(r) == 3 and r[1] and not r[1].startswith("sha256=")] == ["evil/util.py"]


def exact_problems(*expected: str) -> Callable[[zipfile.ZipFile], None]:
    def check(zf: zipfile.ZipFile) -> None:
        assert record_problems(zf) == list(expected)

    return check


def check_two_dist_info(zf: zipfile.ZipFile) -> None:
    dist_infos = {n.split("/")[0] for n in zf.namelist() if n.split("/")[0].endswith(".dist-info")}
    assert dist_infos == {"evil-1.0.dist-info", "other-1.0.dist-info"}
    assert record_problems(zf) == []


def member_readelf_errors(zf: zipfile.ZipFile) -> str:
    return readelf_errors(zf.read(EVIL_SO), "-l")


def check_garbage_elf(zf: zipfile.ZipFile, tmp_path: Path) -> None:
    assert zf.read(EVIL_SO).startswith(b"\x7fELF")
    assert "Error" in member_readelf_errors(zf)
    assert record_problems(zf) == []


def check_truncated_elf(zf: zipfile.ZipFile, tmp_path: Path) -> None:
    data = zf.read(EVIL_SO)
    assert len(data) == 100 and data.startswith(b"\x7fELF")
    assert "Error" in member_readelf_errors(zf)
    assert record_problems(zf) == []


def check_elf_bad_offsets(zf: zipfile.ZipFile, tmp_path: Path) -> None:
    data = zf.read(EVIL_SO)
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    assert phoff > len(data) and shoff > len(data)
    assert "extends past end of file" in member_readelf_errors(zf)
    assert record_problems(zf) == []


ZIP_CHECKS: dict[str, Callable[[zipfile.ZipFile], None]] = {
    "zipslip-dotdot": only_member("../evil.py"),
    "zipslip-absolute": only_member("/etc/evil.py"),
    "zipslip-drive": only_member("C:/evil.py"),
    "zipslip-backslash": only_member("pkg\\..\\..\\evil.py"),
    "duplicate-member": check_duplicate,
    "symlink-member": check_symlink,
    "bomb-ratio": check_bomb,
    "record-missing": check_record_missing,
    "record-malformed": check_record_malformed,
    "record-wrong-hash": exact_problems("hash evil/util.py"),
    "record-wrong-size": exact_problems("size evil/util.py"),
    "record-unlisted-member": exact_problems("unlisted evil/unlisted.py"),
    "record-lists-missing-file": exact_problems("missing evil/missing.py"),
    "two-dist-info": check_two_dist_info,
}

ELF_CHECKS: dict[str, Callable[[zipfile.ZipFile, Path], None]] = {
    "garbage-elf": check_garbage_elf,
    "truncated-elf": check_truncated_elf,
    "elf-bad-offsets": check_elf_bad_offsets,
}


def test_hostile_names_covered() -> None:
    assert set(generate.HOSTILE) == {"not-a-zip", "truncated-zip", *ZIP_CHECKS, *ELF_CHECKS}


def test_hostile_not_zips(hostile: dict[str, Path]) -> None:
    assert not zipfile.is_zipfile(hostile["not-a-zip"])
    truncated = hostile["truncated-zip"]
    assert truncated.read_bytes().startswith(b"PK\x03\x04")
    assert not zipfile.is_zipfile(truncated)


@pytest.mark.parametrize("name", sorted(ZIP_CHECKS))
def test_hostile_zip(hostile: dict[str, Path], name: str) -> None:
    assert hostile[name].parent.name == name
    with zipfile.ZipFile(hostile[name]) as zf:
        ZIP_CHECKS[name](zf)


@pytest.mark.parametrize("name", sorted(ELF_CHECKS))
def test_hostile_elf(hostile: dict[str, Path], name: str, tmp_path: Path) -> None:
    with zipfile.ZipFile(hostile[name]) as zf:
        ELF_CHECKS[name](zf, tmp_path)

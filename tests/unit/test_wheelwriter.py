"""wheelwriter: unchanged members copied compressed byte for byte, replaced members and RECORD rewritten,
reproducible, atomic, ZIP64 only when needed."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wheelfix.wheel import writer as wheelwriter
from wheelfix.wheel.writer import write_wheel

from tests.support import synthetic as generate
from tests.support.cli import RunCli
from tests.support.prereq import require_tool, unavailable
from tests.support.wheels import record_hash

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
DEMO_RECORD = "demo-1.0.dist-info/RECORD"
DEMO_WHEEL = "demo-1.0.dist-info/WHEEL"


# --- helpers ----------------------------------------------------------------------------------------


def raw_members(path: Path) -> dict[str, bytes]:
    """Each member's stored (compressed) bytes, found through its local header - read independently of
    the module under test."""
    data = path.read_bytes()
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            pos = info.header_offset
            assert data[pos : pos + 4] == b"PK\x03\x04", info.filename
            name_len, extra_len = struct.unpack_from("<HH", data, pos + 26)
            start = pos + 30 + name_len + extra_len
            out[info.filename] = data[start : start + info.compress_size]
    return out


def local_header(path: Path, name: str) -> dict[str, Any]:
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        pos = zf.getinfo(name).header_offset
    (sig, version, flags, method, time, date, crc, csize, usize, name_len, extra_len) = struct.unpack_from(
        "<IHHHHHIIIHH", data, pos
    )
    assert sig == 0x04034B50
    return {
        "version": version,
        "flags": flags,
        "method": method,
        "time": time,
        "date": date,
        "crc": crc,
        "compress_size": csize,
        "file_size": usize,
        "name": data[pos + 30 : pos + 30 + name_len],
        "extra": data[pos + 30 + name_len : pos + 30 + name_len + extra_len],
    }


def extra_ids(extra: bytes) -> list[int]:
    ids, pos = [], 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        ids.append(tag)
        pos += 4 + size
    return ids


def assert_valid_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
    proc = subprocess.run([sys.executable, "-m", "zipfile", "-t", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("unzip"):
        proc = subprocess.run(["unzip", "-tqq", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_inspect_accepts(run_cli: RunCli, path: Path) -> None:
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def out_path(tmp_path: Path, source: Path, sub: str = "out") -> Path:
    """Same file name as the source (wheelfix inspect checks the name), in a fresh directory."""
    d = tmp_path / sub
    d.mkdir(exist_ok=True)
    return d / source.name


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


class Unseekable(io.RawIOBase):
    """A write-only stream without tell/seek: zipfile then writes data descriptors (flag bit 3)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += bytes(b)
        return len(b)


def build_wheel(
    directory: Path,
    files: list[tuple[zipfile.ZipInfo, bytes]],
    *,
    record: bytes | None = None,
    comment: bytes = b"",
    unseekable: bool = False,
    force_zip64: bool = False,
) -> Path:
    """pkg-1.0 with ``files`` (ZipInfos as given), WHEEL, and RECORD (generated unless given), RECORD last."""
    dist = "pkg-1.0.dist-info"
    wheel = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = [*files, (zinfo(f"{dist}/WHEEL"), wheel)]
    if record is None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        for info, data in members:
            writer.writerow([info.filename, record_hash(data), len(data)])
        writer.writerow([f"{dist}/RECORD", "", ""])
        record = text.getvalue().encode()
    members.append((zinfo(f"{dist}/RECORD"), record))
    sink = Unseekable() if unseekable else io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:
        for info, data in members:
            with zf.open(info, "w", force_zip64=force_zip64) as w:
                w.write(data)
        zf.comment = comment
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pkg-1.0-py3-none-any.whl"
    path.write_bytes(sink.buf if isinstance(sink, Unseekable) else sink.getvalue())
    return path


def zinfo(
    name: str, *, stored: bool = False, extra: bytes = b"", comment: bytes = b"", mode: int = 0o644
) -> zipfile.ZipInfo:
    i = zipfile.ZipInfo(name, (2021, 2, 3, 4, 5, 6))
    i.create_system = 3
    i.external_attr = mode << 16
    i.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    i.extra = extra
    i.comment = comment
    return i


@contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """A directory nobody can create files in - root included (chattr +i), since tests may run as root."""
    if os.geteuid() == 0:
        chattr = require_tool("chattr")
        proc = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            unavailable(f"cannot make a directory immutable here: {proc.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)


# --- the main case ----------------------------------------------------------------------------------


def test_replace_member(wheels: dict[str, Path], tmp_path: Path, run_cli: RunCli) -> None:
    source = wheels["demo"]
    before = snapshot(source)
    old = read_members(source)
    new = old[DEMO_EXT] + b"\0" * 4096  # still a valid ELF: trailing bytes are ignored
    dest = out_path(tmp_path, source)

    write_wheel(source, dest, {DEMO_EXT: new})

    assert snapshot(source) == before
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    with zipfile.ZipFile(source) as zs, zipfile.ZipFile(dest) as zd:
        assert zd.namelist() == zs.namelist()
        assert zd.comment == zs.comment
        for si, di in zip(zs.infolist(), zd.infolist(), strict=True):
            assert (di.date_time, di.external_attr, di.create_system, di.create_version) == (
                si.date_time,
                si.external_attr,
                si.create_system,
                si.create_version,
            )
            assert di.flag_bits & 0x08 == 0
            if si.filename not in (DEMO_EXT, DEMO_RECORD):
                assert (di.CRC, di.compress_size, di.file_size, di.compress_type, di.flag_bits) == (
                    si.CRC,
                    si.compress_size,
                    si.file_size,
                    si.compress_type,
                    si.flag_bits,
                )
        assert zd.read(DEMO_EXT) == new
        assert zd.getinfo(DEMO_EXT).compress_type == zipfile.ZIP_DEFLATED

    src_raw, dst_raw = raw_members(source), raw_members(dest)
    for name in src_raw:
        if name not in (DEMO_EXT, DEMO_RECORD):
            assert dst_raw[name] == src_raw[name], name
    assert zlib.decompress(dst_raw[DEMO_EXT], -15) == new

    # RECORD: only the replaced member's line differs, and it carries the new hash and size.
    old_lines = old[DEMO_RECORD].splitlines(keepends=True)
    new_lines = read_members(dest)[DEMO_RECORD].splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 1
    assert changed[0][1] == f"{DEMO_EXT},{record_hash(new)},{len(new)}\n".encode()

    # local headers carry the sizes (no data descriptor)
    head = local_header(dest, DEMO_EXT)
    assert head["flags"] & 0x08 == 0
    assert (head["compress_size"], head["file_size"]) == (len(dst_raw[DEMO_EXT]), len(new))
    assert head["crc"] == zlib.crc32(new)


@pytest.mark.parametrize("name", generate.WHEELS)
def test_every_test_wheel_with_every_elf_replaced(
    name: str, wheels: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    source = wheels[name]
    old = read_members(source)
    replacements = {m: data + b"\0" * 100 for m, data in old.items() if is_elf(data)}
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, replacements)
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    got = read_members(dest)
    for m, data in old.items():
        if m in replacements:
            assert got[m] == replacements[m]
        elif not m.endswith("/RECORD"):
            assert got[m] == data
    src_raw, dst_raw = raw_members(source), raw_members(dest)
    untouched = [m for m in src_raw if m not in replacements and not m.endswith("/RECORD")]
    assert all(dst_raw[m] == src_raw[m] for m in untouched)


def test_replacing_members_with_their_own_bytes(
    wheels: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    """Same bytes, same level (the test wheels are written by zipfile at zlib's default, 6): every member
    still verifies, RECORD keeps its exact bytes, and the archive comes out byte-identical."""
    source = wheels["demo"]
    old = read_members(source)
    replacements = {m: d for m, d in old.items() if m not in (DEMO_RECORD, DEMO_WHEEL)}
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, replacements, level=6)
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    assert read_members(dest) == old
    assert dest.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("name", generate.WHEELS)
def test_no_replacements_copies_the_wheel_exactly(name: str, wheels: dict[str, Path], tmp_path: Path) -> None:
    source = wheels[name]
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {})
    assert dest.read_bytes() == source.read_bytes()


def test_unchanged_members_are_never_inflated(
    wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = wheels["demo"]
    new = read_members(source)[DEMO_EXT] + b"x"
    inflaters: list[int] = []
    real = zlib.decompressobj

    def counting(*args: Any, **kwargs: Any) -> Any:
        inflaters.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zlib, "decompressobj", counting)
    write_wheel(source, out_path(tmp_path, source), {DEMO_EXT: new})
    assert len(inflaters) == 1  # RECORD, read once


# --- reproducibility --------------------------------------------------------------------------------


def test_reproducible(wheels: dict[str, Path], tmp_path: Path) -> None:
    source = wheels["demo"]
    old = read_members(source)
    lib = "demo.libs/libbar-1a2b3c4d.so.1"
    reps = {DEMO_EXT: old[DEMO_EXT] + b"\1" * 10, lib: old[lib][::-1]}
    outputs = []
    for i, (mapping, jobs) in enumerate(
        [(reps, None), (reps, None), (dict(reversed(list(reps.items()))), 1), (reps, 7)]
    ):
        dest = out_path(tmp_path, source, f"run{i}")
        write_wheel(source, dest, mapping, jobs=jobs)
        outputs.append(dest.read_bytes())
    assert all(o == outputs[0] for o in outputs)


def test_big_member_is_deflated_in_blocks_as_one_stream(
    wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement spanning many blocks (made small here) inflates back exactly; the result depends only
    on the block size, not on how many threads compressed it."""
    monkeypatch.setattr(wheelwriter, "_BLOCK", 40_000)
    source = wheels["demo"]
    rnd = hashlib.sha256(b"seed").digest() * 4000  # 128000 bytes, poorly compressible
    new = read_members(source)[DEMO_EXT] + rnd + bytes(100_001) + rnd[:7]
    results = []
    for jobs in (1, 2, 5):
        dest = out_path(tmp_path, source, f"jobs{jobs}")
        write_wheel(source, dest, {DEMO_EXT: new}, jobs=jobs)
        assert_valid_zip(dest)
        assert read_members(dest)[DEMO_EXT] == new
        results.append(dest.read_bytes())
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("level", [-1, 0, 1, 9])
def test_levels(level: int, wheels: dict[str, Path], tmp_path: Path, run_cli: RunCli) -> None:
    source = wheels["demo"]
    new = read_members(source)[DEMO_EXT] + bytes(70_000)
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {DEMO_EXT: new}, level=level)
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    assert read_members(dest)[DEMO_EXT] == new


def test_small_copy_chunks_give_the_same_bytes(
    wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = wheels["demo"]
    reference = out_path(tmp_path, source, "ref")
    write_wheel(source, reference, {})
    monkeypatch.setattr(wheelwriter, "_COPY_CHUNK", 7)
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {})
    assert dest.read_bytes() == reference.read_bytes() == source.read_bytes()


# --- zip details ------------------------------------------------------------------------------------


def test_metadata_of_members_is_kept(tmp_path: Path, run_cli: RunCli) -> None:
    """Extra fields (local and central), UTF-8 names, comments, stored members, modes survive; a replaced
    stored member becomes deflated."""
    ut = struct.pack("<HHBl", 0x5455, 5, 1, 1_600_000_000)
    files = [
        (zinfo("pkg/__init__.py", extra=ut, comment=b"member comment"), b"x = 1\n" * 50),
        (zinfo("pkg/donn\u00e9es.txt"), "caf\u00e9\n".encode() * 10),
        (zinfo("pkg/stored.bin", stored=True), bytes(range(256)) * 4),
        (zinfo("pkg/tool", mode=0o755), b"#!/bin/sh\necho hi\n"),
        (zinfo("pkg/replaced.bin", stored=True, extra=ut), b"old" * 100),
    ]
    source = build_wheel(tmp_path / "src", files, comment=b"archive comment")
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {"pkg/replaced.bin": b"new" * 200})
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    with zipfile.ZipFile(source) as zs, zipfile.ZipFile(dest) as zd:
        assert zd.comment == b"archive comment"
        for si, di in zip(zs.infolist(), zd.infolist(), strict=True):
            assert di.filename == si.filename
            assert di.extra == si.extra
            assert di.comment == si.comment
            assert di.external_attr == si.external_attr
            assert di.flag_bits & 0x800 == si.flag_bits & 0x800
            assert local_header(dest, di.filename)["extra"] == local_header(source, si.filename)["extra"]
        assert zd.getinfo("pkg/donn\u00e9es.txt").flag_bits & 0x800
        assert zd.getinfo("pkg/stored.bin").compress_type == zipfile.ZIP_STORED
        assert zd.getinfo("pkg/replaced.bin").compress_type == zipfile.ZIP_DEFLATED
        assert zd.read("pkg/replaced.bin") == b"new" * 200
        assert zd.getinfo("pkg/tool").external_attr == 0o755 << 16


def test_data_descriptors_in_the_source_are_not_written(tmp_path: Path, run_cli: RunCli) -> None:
    files = [(zinfo("pkg/a.py"), b"a = 1\n" * 100), (zinfo("pkg/b.bin"), bytes(5000))]
    source = build_wheel(tmp_path / "src", files, unseekable=True)
    with zipfile.ZipFile(source) as zf:
        assert all(i.flag_bits & 0x08 for i in zf.infolist())
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {"pkg/b.bin": bytes(6000)})
    assert_valid_zip(dest)
    assert_inspect_accepts(run_cli, dest)
    with zipfile.ZipFile(dest) as zf:
        for i in zf.infolist():
            assert i.flag_bits & 0x08 == 0
            head = local_header(dest, i.filename)
            assert (head["crc"], head["compress_size"], head["file_size"]) == (
                i.CRC,
                i.compress_size,
                i.file_size,
            )
    src_raw, dst_raw = raw_members(source), raw_members(dest)
    assert dst_raw["pkg/a.py"] == src_raw["pkg/a.py"]


def test_record_line_endings_and_quoting_are_kept(tmp_path: Path, run_cli: RunCli) -> None:
    files = [
        (zinfo("pkg/a,b.py"), b"a = 1\n"),
        (zinfo("pkg/c.py"), b"c = 3\n"),
        (zinfo("pkg/d.py"), b"d = 4\n"),
    ]
    wheel_data = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    lines = [
        f'"pkg/a,b.py",{record_hash(b"a = 1" + bytes([10]))},6\r\n',
        f'"pkg/c.py","{record_hash(b"c = 3" + bytes([10]))}","6"\n',
        f"pkg/d.py,{record_hash(b'd = 4' + bytes([10]))},6\r\n",
        f"pkg-1.0.dist-info/WHEEL,{record_hash(wheel_data)},{len(wheel_data)}\n",
        "pkg-1.0.dist-info/RECORD,,",  # no line ending at the end
    ]
    source = build_wheel(tmp_path / "src", files, record="".join(lines).encode())
    assert_inspect_accepts(run_cli, source)
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {"pkg/a,b.py": b"a = 2\n", "pkg/c.py": b"c = 33\n"})
    assert_inspect_accepts(run_cli, dest)
    got = read_members(dest)["pkg-1.0.dist-info/RECORD"].decode().splitlines(keepends=True)
    assert got == [
        f'"pkg/a,b.py",{record_hash(b"a = 2" + bytes([10]))},6\r\n',
        f"pkg/c.py,{record_hash(b'c = 33' + bytes([10]))},7\n",
        lines[2],
        lines[3],
        lines[4],
    ]


def test_edit_record_keeps_every_other_line() -> None:
    record = b'weird line "unterminated\nx/a.py,sha256=old,1\r\nnot,\xff,utf8\ny/b.py,sha256=old,2'
    digest = hashlib.sha256(b"new").digest()
    got = wheelwriter._edit_record(record, {"x/a.py": (digest, 3), "y/b.py": (digest, 4)})
    h = record_hash(b"new").encode()
    assert got == b'weird line "unterminated\nx/a.py,' + h + b",3\r\nnot,\xff,utf8\ny/b.py," + h + b",4"


def test_edit_record_refuses_missing_and_repeated_rows() -> None:
    digest = hashlib.sha256(b"").digest()
    with pytest.raises(ValueError, match=r"no row for x/c\.py"):
        wheelwriter._edit_record(b"x/a.py,sha256=a,1\n", {"x/c.py": (digest, 0)})
    with pytest.raises(ValueError, match="more than once"):
        wheelwriter._edit_record(b"x/a.py,sha256=a,1\nx/a.py,sha256=a,1\n", {"x/a.py": (digest, 0)})
    with pytest.raises(ValueError, match="fields"):
        wheelwriter._edit_record(b"x/a.py,sha256=a\n", {"x/a.py": (digest, 0)})


def test_zip64_only_when_needed(
    wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    """With the thresholds lowered, sizes, offsets and the member count take the ZIP64 forms; written back
    with the real thresholds, the archive is plain zip again with the same member data."""
    source = wheels["demo"]
    old = read_members(source)
    new = old[DEMO_EXT] + b"\0" * 10
    monkeypatch.setattr(wheelwriter, "ZIP64_LIMIT", 200)
    monkeypatch.setattr(wheelwriter, "ZIP64_COUNT_LIMIT", 3)
    big = out_path(tmp_path, source, "zip64")
    write_wheel(source, big, {DEMO_EXT: new})
    monkeypatch.undo()

    data = big.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # ZIP64 end record and locator
    assert_valid_zip(big)
    assert_inspect_accepts(run_cli, big)
    got = read_members(big)
    assert got[DEMO_EXT] == new
    assert all(got[m] == old[m] for m in old if m not in (DEMO_EXT, DEMO_RECORD))
    with zipfile.ZipFile(big) as zf:
        for i in zf.infolist():
            head = local_header(big, i.filename)
            if i.file_size >= 200 or i.compress_size >= 200:
                assert (head["compress_size"], head["file_size"]) == (0xFFFFFFFF, 0xFFFFFFFF)
                assert extra_ids(head["extra"])[0] == 0x0001
                assert head["version"] & 0xFF >= 45
            wide = i.header_offset >= 200 or i.file_size >= 200 or i.compress_size >= 200
            assert (0x0001 in extra_ids(i.extra)) == wide
    src_raw, big_raw = raw_members(source), raw_members(big)
    assert all(big_raw[m] == src_raw[m] for m in src_raw if m not in (DEMO_EXT, DEMO_RECORD))

    plain = out_path(tmp_path, source, "plain")
    write_wheel(big, plain, {})
    data = plain.read_bytes()
    assert b"PK\x06\x06" not in data
    assert_valid_zip(plain)
    with zipfile.ZipFile(plain) as zf:
        for i in zf.infolist():
            assert 0x0001 not in extra_ids(i.extra)
            assert 0x0001 not in extra_ids(local_header(plain, i.filename)["extra"])
    assert raw_members(plain) == big_raw


def test_zip64_extras_of_the_source_are_dropped(tmp_path: Path) -> None:
    files = [(zinfo("pkg/a.py"), b"a = 1\n" * 10)]
    source = build_wheel(tmp_path / "src", files, force_zip64=True)
    assert 0x0001 in extra_ids(local_header(source, "pkg/a.py")["extra"])
    dest = out_path(tmp_path, source)
    write_wheel(source, dest, {})
    assert_valid_zip(dest)
    for name in read_members(dest):
        assert 0x0001 not in extra_ids(local_header(dest, name)["extra"])
    assert raw_members(dest) == raw_members(source)


# --- safety -----------------------------------------------------------------------------------------


def test_refuses_to_overwrite_the_source(wheels: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "src" / wheels["demo"].name
    source.parent.mkdir()
    shutil.copyfile(wheels["demo"], source)
    before = snapshot(source)
    link = tmp_path / "src" / "link.whl"
    link.symlink_to(source)
    hard = tmp_path / "src" / "hard.whl"
    os.link(source, hard)
    new = read_members(source)[DEMO_EXT] + b"x"
    for dest in (source, link, hard, tmp_path / "src" / ".." / "src" / source.name):
        with pytest.raises(ValueError, match="source wheel itself"):
            write_wheel(source, dest, {DEMO_EXT: new})
    assert snapshot(source) == before
    assert files_in(source.parent) == sorted([source.name, "link.whl", "hard.whl"])


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("demo/missing.py", "not a file member"),
        ("demo", "not a file member"),
        (DEMO_RECORD, "cannot be replaced"),
        (DEMO_WHEEL, "cannot be replaced"),
    ],
)
def test_refuses_bad_replacements(member: str, message: str, wheels: dict[str, Path], tmp_path: Path) -> None:
    source = wheels["demo"]
    before = snapshot(source)
    dest = out_path(tmp_path, source)
    with pytest.raises(ValueError, match=message):
        write_wheel(source, dest, {DEMO_EXT: b"ok", member: b"bad"})
    assert files_in(dest.parent) == []
    assert snapshot(source) == before


def test_refuses_a_member_record_does_not_list(tmp_path: Path) -> None:
    files = [(zinfo("pkg/a.py"), b"a = 1\n")]
    record = b"pkg-1.0.dist-info/WHEEL,,\npkg-1.0.dist-info/RECORD,,\n"
    source = build_wheel(tmp_path / "src", files, record=record)
    dest = out_path(tmp_path, source)
    with pytest.raises(ValueError, match=r"no row for pkg/a\.py"):
        write_wheel(source, dest, {"pkg/a.py": b"a = 2\n"})
    assert files_in(dest.parent) == []


@pytest.mark.parametrize(("kwargs", "message"), [({"level": 10}, "level"), ({"jobs": 0}, "jobs")])
def test_refuses_bad_arguments(kwargs: Any, message: str, wheels: dict[str, Path], tmp_path: Path) -> None:
    dest = out_path(tmp_path, wheels["demo"])
    with pytest.raises(ValueError, match=message):
        write_wheel(wheels["demo"], dest, {}, **kwargs)
    assert files_in(dest.parent) == []


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_way_leaves_nothing(
    exception: type[BaseException], wheels: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second replacement's compression fails after the first member has been written: the temp file
    (which existed) is gone, and an existing dest keeps its old content."""
    source = wheels["demo"]
    old = read_members(source)
    lib = "demo.libs/libbar-1a2b3c4d.so.1"
    dest = out_path(tmp_path, source)
    dest.write_bytes(b"previous content")
    failing_data = old[DEMO_EXT] + b"!"
    seen_during: list[list[str]] = []
    real = wheelwriter._deflate_block
    lock = threading.Lock()

    def failing(data: memoryview, start: int, level: int) -> bytes:
        with lock:
            seen_during.append(files_in(dest.parent))
        if data.obj is failing_data:
            raise exception("compressor failed")
        return real(data, start, level)

    monkeypatch.setattr(wheelwriter, "_deflate_block", failing)
    with pytest.raises(exception, match="compressor failed"):
        write_wheel(source, dest, {lib: old[lib] + b"!", DEMO_EXT: failing_data})
    assert any(len(names) == 2 and any(n.endswith(".tmp") for n in names) for names in seen_during)
    assert files_in(dest.parent) == [dest.name]
    assert dest.read_bytes() == b"previous content"


def test_damaged_source_is_refused_before_writing(wheels: dict[str, Path], tmp_path: Path) -> None:
    """A local header that does not match the central directory (here: its name) is BadZipFile."""
    data = bytearray(wheels["demo"].read_bytes())
    with zipfile.ZipFile(wheels["demo"]) as zf:
        pos = zf.getinfo(DEMO_EXT).header_offset
    data[pos + 30] ^= 0x20  # first letter of the name: "demo" -> "Demo"
    source = tmp_path / "src" / wheels["demo"].name
    source.parent.mkdir()
    source.write_bytes(bytes(data))
    dest = out_path(tmp_path, source)
    with pytest.raises(zipfile.BadZipFile, match="local header"):
        write_wheel(source, dest, {})
    assert files_in(dest.parent) == []


def test_failure_at_the_rename_leaves_nothing(wheels: dict[str, Path], tmp_path: Path) -> None:
    """dest is a directory: everything is written, os.replace fails, the temp file is removed."""
    source = wheels["demo"]
    dest = tmp_path / "out" / source.name
    dest.mkdir(parents=True)
    with pytest.raises(OSError):
        write_wheel(source, dest, {DEMO_EXT: b"new"})
    assert files_in(dest.parent) == [source.name]
    assert dest.is_dir() and files_in(dest) == []


def test_read_only_output_directory(wheels: dict[str, Path], tmp_path: Path) -> None:
    source = wheels["demo"]
    dest = out_path(tmp_path, source)
    with read_only_dir(dest.parent), pytest.raises(PermissionError):
        write_wheel(source, dest, {DEMO_EXT: b"new"})
    assert files_in(dest.parent) == []


def test_source_is_only_read(wheels: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "ro" / wheels["demo"].name
    source.parent.mkdir()
    shutil.copyfile(wheels["demo"], source)
    source.chmod(0o444)
    before = snapshot(source)
    write_wheel(source, out_path(tmp_path, source), {DEMO_EXT: b"new"})
    assert snapshot(source) == before
    assert stat.S_IMODE(source.stat().st_mode) == 0o444


def test_file_mode(wheels: dict[str, Path], tmp_path: Path) -> None:
    """A new wheel gets 0666 & ~umask (not mkstemp's 0600); an existing one keeps its mode."""
    source = wheels["demo"]
    dest = out_path(tmp_path, source)
    umask = os.umask(0o022)
    os.umask(umask)
    write_wheel(source, dest, {})
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask
    dest.chmod(0o640)
    write_wheel(source, dest, {DEMO_EXT: b"new"})
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert read_members(dest)[DEMO_EXT] == b"new"

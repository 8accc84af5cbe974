"""Every member is inflated once per command (issue 16): the scan keeps what the patcher needs — binaries
spooled to files, with the deflate block index of the big ones — so ``repair`` never inflates a member a
second time. And the codec choice never changes a result: the same repaired bytes with the fast inflaters
and with the stdlib's zlib only (``WHEELFIX_CODECS=zlib``)."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import wheelfix
from wheelfix.analysis import scan as scan_mod
from wheelfix.analysis.scan import INDEX_MIN, SPOOL_MIN, Spool, scan_archive
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.wheel import codecs
from wheelfix.wheel.archive import WheelArchive
from wheelfix.wheel.splice import IndexedInflate, InflateError, inflate_indexed

from tests.support.wheels import make_wheel

EXT = "wheelfix_example/_example.cpython-311-x86_64-linux-gnu.so"


def _padding(n: int, seed: int) -> bytes:
    """Bytes that deflate into many blocks of every kind: random runs (stored) and text (Huffman)."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    size = 0
    while size < n:
        part = rng.randbytes(rng.randrange(1, 40_000)) if rng.random() < 0.4 else b"wheelfix %d " % size * 900
        parts.append(part)
        size += len(part)
    return b"".join(parts)[:n]


@pytest.fixture(scope="module")
def big_wheel(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example extension (needs libz.so.1) at three sizes: small (inflated in a batch), mid (above
    INDEX_MIN: indexed inflate) and big (above SPOOL_MIN: inflated to a file and parsed through a map); a
    big data file, a dlopen string past the first scan piece, and many small text members."""
    with zipfile.ZipFile(wheels["example"]) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if ".dist-info/" not in i.filename}
    ext = files[EXT]
    files |= {
        "wheelfix_example/libmid.so": ext + _padding(INDEX_MIN * 3, 1),
        "wheelfix_example/libbig.so": ext + _padding(SPOOL_MIN + (3 << 20), 2),
        "wheelfix_example/blob.bin": _padding(2 << 20, 3),
    }
    files.update({f"wheelfix_example/data/{i:03d}.txt": b"line %d\n" % i * (i + 1) for i in range(300)})
    out = tmp_path_factory.mktemp("big")
    return make_wheel(out, "wheelfix_example", "cp311-cp311-manylinux_2_17_x86_64", files)


def _data_offsets(wheel: Path) -> dict[int, str]:
    """Where each member's compressed data starts -> the member."""
    out: dict[int, str] = {}
    with open(wheel, "rb") as f, zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack_from("<HH", head, 26)
            out[info.header_offset + 30 + name_len + extra_len] = info.filename
    return out


@pytest.fixture
def inflates(monkeypatch: pytest.MonkeyPatch, big_wheel: Path) -> Iterator[Counter[str]]:
    """How many times each member of ``big_wheel`` is inflated, through every inflate wheelfix has."""
    counts: Counter[str] = Counter()
    starts = _data_offsets(big_wheel)
    iter_member, inflate_small = WheelArchive.iter_member, WheelArchive.inflate_small
    indexed_iter = IndexedInflate.__iter__

    def counted_iter_member(self: WheelArchive, info: zipfile.ZipInfo, **kw: bool) -> Iterator[bytes]:
        counts[info.filename] += 1
        return iter_member(self, info, **kw)

    def counted_inflate_small(self: WheelArchive, infos: list[zipfile.ZipInfo], check_crc: object) -> object:
        counts.update(i.filename for i in infos)
        return inflate_small(self, infos, check_crc)  # type: ignore[arg-type]

    def counted_indexed(self: IndexedInflate) -> Iterator[memoryview]:
        counts[starts[self._start]] += 1
        return indexed_iter(self)

    monkeypatch.setattr(WheelArchive, "iter_member", counted_iter_member)
    monkeypatch.setattr(WheelArchive, "inflate_small", counted_inflate_small)
    monkeypatch.setattr(IndexedInflate, "__iter__", counted_indexed)
    yield counts


@pytest.mark.parametrize("jobs", [1, 2])
def test_repair_inflates_every_member_once(
    big_wheel: Path, libz_dir: Path, tmp_path: Path, inflates: Counter[str], jobs: int
) -> None:
    with zipfile.ZipFile(big_wheel) as zf:
        names = {i.filename for i in zf.infolist()}
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    assert sizes["wheelfix_example/libbig.so"] >= SPOOL_MIN > sizes["wheelfix_example/libmid.so"] >= INDEX_MIN
    (result,) = wheelfix.repair([big_wheel], tmp_path / "out", lib_paths=[libz_dir], jobs=jobs)
    assert set(inflates) == names  # every member was read (the scan validates everything) ...
    assert [n for n, c in inflates.items() if c != 1] == []  # ... and none twice
    assert result.output is not None
    with zipfile.ZipFile(result.output) as zf:
        assert zf.testzip() is None
        for member in (EXT, "wheelfix_example/libmid.so", "wheelfix_example/libbig.so"):
            runpath = parse_elf(zf.read(member)).runpath or ""
            assert runpath.split(":")[-1] == str(libz_dir), member


def test_inspect_inflates_every_member_once(big_wheel: Path, inflates: Counter[str]) -> None:
    wheelfix.inspect([big_wheel])
    assert inflates and all(c == 1 for c in inflates.values())


def test_same_bytes_with_zlib_only(big_wheel: Path, libz_dir: Path, tmp_path: Path) -> None:
    """The optional codecs change speed, never output: a repair in a process with zlib only gives the
    same wheel, byte for byte, as one with ISA-L and zlib-ng."""
    assert codecs.inflater_name() == "isal"  # the suite runs with the fast codecs (the test extra)
    outs = []
    for mode in ("", "zlib"):
        out = tmp_path / (mode or "fast")
        env = {**os.environ, "WHEELFIX_CODECS": mode}
        cmd = [sys.executable, "-m", "wheelfix", "repair", "-v", "-o", str(out), "--lib-path", str(libz_dir)]
        proc = subprocess.run([*cmd, str(big_wheel)], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        said = "inflating with zlib, indexed inflate with zlib" in proc.stderr
        assert said == (mode == "zlib"), proc.stderr  # -v says which inflater, once, when not the fastest
        assert proc.stderr.count("inflating with") == (1 if mode else 0)
        outs.append(hashlib.sha256((out / big_wheel.name).read_bytes()).hexdigest())
    assert outs[0] == outs[1]


def test_batched_scan_equals_one_member_at_a_time(big_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small members are inflated in batches; the facts are the same as scanning each on its own."""
    with WheelArchive.open(big_wheel) as archive:
        batched = scan_archive(archive, jobs=2)
    monkeypatch.setattr(scan_mod, "BATCH_MEMBER_MAX", 0)  # every member its own task
    with WheelArchive.open(big_wheel) as archive:
        single = scan_archive(archive, jobs=2)
    assert batched == single
    assert {EXT, "wheelfix_example/libbig.so", "wheelfix_example/libmid.so"} <= {
        e.member for e in batched.elf
    }


def test_spool_keeps_binaries_with_their_block_index(big_wheel: Path) -> None:
    with WheelArchive.open(big_wheel) as archive, Spool() as spool:
        scan_archive(archive, spool=spool)
        small, mid, big = (
            spool.take(m) for m in (EXT, "wheelfix_example/libmid.so", "wheelfix_example/libbig.so")
        )
        assert spool.take("wheelfix_example/blob.bin") is None  # data files are not kept
        assert spool.take(EXT) is None  # single use: the patcher takes it
        with zipfile.ZipFile(big_wheel) as zf:
            for kept, name in (
                (small, EXT),
                (mid, "wheelfix_example/libmid.so"),
                (big, "wheelfix_example/libbig.so"),
            ):
                assert kept is not None and kept.path.read_bytes() == zf.read(name)
                assert kept.crc == zf.getinfo(name).CRC
        assert small is not None and small.boundaries is None  # below INDEX_MIN: recompressed if patched
        for kept in (mid, big):
            assert kept is not None and kept.boundaries is not None and len(kept.boundaries) > 3
            assert kept.boundaries[0] == (0, 0)
            outs = [o for _, o in kept.boundaries]
            assert outs == sorted(outs) and outs[-1] < kept.size
        where = spool.path
    assert not where.exists()  # closing the spool removes its files


@pytest.mark.parametrize("library", ["zlib", "zlib-ng"])
def test_indexed_inflate_matches_zlib_and_refuses_more_than_declared(library: str) -> None:
    import zlib

    data = _padding(3 << 20, 7)
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = co.compress(data) + co.flush()
    got = bytearray()
    boundaries, crc, size = inflate_indexed(
        lambda o, n: raw[o : o + n], 0, len(raw), got.extend, library=library
    )
    assert bytes(got) == data and crc == zlib.crc32(data) and size == len(data)
    assert boundaries[0] == (0, 0) and len(boundaries) > 3
    job = IndexedInflate(lambda o, n: raw[o : o + n], 0, len(raw), library=library, limit=len(data) - 1)
    with pytest.raises(InflateError):
        for _ in job:
            pass
    with pytest.raises(InflateError):  # a stream cut short
        inflate_indexed(lambda o, n: raw[o : o + n], 0, len(raw) // 2, lambda c: None, library=library)


def test_pipelined_hashing_gives_the_same_scan(big_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big members are hashed and written on a second thread while they inflate: same facts, same refusals."""
    with WheelArchive.open(big_wheel) as archive:
        serial = scan_archive(archive, jobs=1)
    monkeypatch.setattr(scan_mod, "PIPELINE_MIN", 0)
    with WheelArchive.open(big_wheel) as archive, Spool() as spool:
        assert scan_archive(archive, jobs=2) == serial
        scan_archive(archive, jobs=2, spool=spool)
        kept = spool.take("wheelfix_example/libbig.so")
        assert kept is not None and kept.path.read_bytes()[:4] == b"\x7fELF"


def test_pipelined_consumer_errors_reach_the_caller() -> None:
    class Broken:
        def update(self, data: bytes | memoryview, /) -> None:
            raise OSError("disk on fire")

    chunks = iter([b"x" * 10] * 100)  # more than the queue holds: the producer must not block
    with pytest.raises(OSError, match="disk on fire"):
        scan_mod._consume(chunks, None, Broken(), True)


def test_a_bad_record_hash_is_caught_when_pipelined(
    big_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_mod, "PIPELINE_MIN", 0)
    bad = tmp_path / big_wheel.name
    with zipfile.ZipFile(big_wheel) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "wheelfix_example/blob.bin":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    with pytest.raises(wheelfix.BadInput, match=r"blob\.bin"):
        wheelfix.inspect([bad])


def test_other_threads_yield_to_the_largest_member(big_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When one member dominates, the scan's other pool threads are made nicer (Linux: per thread), so the
    thread inflating it gets a core; never the caller's thread, and the facts do not change."""
    calls: list[tuple[int, int]] = []
    real = os.setpriority

    def record(which: int, who: int, prio: int) -> None:
        calls.append((who, prio))
        real(which, who, prio)

    with WheelArchive.open(big_wheel) as archive:
        serial = scan_archive(archive, jobs=1)
    monkeypatch.setattr(scan_mod, "PIPELINE_MIN", 0)
    monkeypatch.setattr(os, "setpriority", record)
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, me)
    with WheelArchive.open(big_wheel) as archive:
        assert scan_archive(archive, jobs=2) == serial
    assert calls and all(who != me and prio == before + scan_mod.CRITICAL_NICE for who, prio in calls)
    assert os.getpriority(os.PRIO_PROCESS, me) == before

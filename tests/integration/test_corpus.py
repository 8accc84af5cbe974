"""The real-wheel corpus (issue 6, item 1): the manifest's shape, and its CI subset run end to end.

The whole corpus runs with ``python tests/corpus/run.py``; here each ``ci: true`` wheel (<= 150 MB in all)
is inspected, its Nix fragment emitted and parsed, and repaired, exactly as ``run.py`` does: Linux wheels
against a fake store of Debian libraries, re-verified with readelf; macOS wheels against a fake store of
Mach-O libraries built with clang-15 + ld64.lld-15 (a fat libomp.dylib), re-verified with llvm-objdump-15
and hashlib (install names, LC_RPATHs, ad hoc signatures). Zero errors is the bar. Under CI=true a missing
nix-store, readelf, clang-15 or LLVM tool fails these tests (tests.support.prereq.unavailable), elsewhere it
skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.corpus import run as corpus
from tests.support.prereq import require_tool

ENTRIES = corpus.load_manifest()
CI = [e for e in ENTRIES if e["ci"]]


def test_manifest_covers_the_issue() -> None:
    assert len(ENTRIES) >= 40
    assert len({e["filename"] for e in ENTRIES}) == len(ENTRIES)
    assert len({e["sha256"] for e in ENTRIES}) == len(ENTRIES)
    names = {e["name"] for e in ENTRIES}
    for name in (
        "torch",
        "tensorflow-cpu",
        "jaxlib",
        "pyside6-essentials",
        "pygame",
        "opencv-python",
        "av",
        "pillow",
        "numpy",
        "scipy",
        "vtk",
        "pyarrow",
        "psycopg2-binary",
        "lxml",
        "cryptography",
    ):
        assert name in names, name
    assert any(e["domain"] == "gpu" for e in ENTRIES)
    mac = [e for e in ENTRIES if e["platform"].startswith("macos")]
    assert len(mac) >= 10
    assert {e["platform"] for e in mac} == {"macos-arm64", "macos-x86_64", "macos-universal2"}
    assert all(e["size"] <= 400_000_000 for e in ENTRIES)
    # macOS wheels that need a library from the store (Homebrew's @rpath/libomp.dylib), both architectures,
    # one of each in the CI subset: the Mach-O repair path runs in CI, not only in the full corpus
    omp = [e for e in mac if e["name"] in ("xgboost", "lightgbm")]
    assert {e["platform"] for e in omp} == {"macos-arm64", "macos-x86_64"}
    assert {e["platform"] for e in omp if e["ci"]} == {"macos-arm64", "macos-x86_64"}
    assert sum(e["size"] for e in CI) <= 150_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corpus.FakeStore]:
    require_tool("nix-store")
    require_tool("readelf")
    yield corpus.FakeStore(tmp_path_factory.mktemp("corpus-store"))


@pytest.fixture(scope="module")
def macho_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corpus.MachOStore]:
    require_tool("nix-store")
    for tool in corpus.mf.TOOLS:
        require_tool(tool)
    yield corpus.MachOStore(tmp_path_factory.mktemp("corpus-macho-store"))


@pytest.mark.network
@pytest.mark.parametrize("entry", CI, ids=[e["filename"] for e in CI])
def test_ci_wheel_has_no_errors(entry: dict[str, Any], request: pytest.FixtureRequest) -> None:
    linux = entry["platform"].startswith("linux")
    macos = entry["platform"].startswith("macos")
    # only the store this wheel's platform needs: a Linux wheel does not wait for clang-15, nor a macOS one
    # for readelf
    store = request.getfixturevalue("store") if linux else None
    macho_store = request.getfixturevalue("macho_store") if macos else None
    wheel = corpus.locate(entry, download=True)
    assert wheel is not None
    result = corpus.run_one(entry, wheel, store, corpus._has_nix_command(), macho_store)
    assert result.errors == []
    if linux or macos:
        assert result.repair == "ok"
        assert result.verified == result.patched
    if entry["name"] in ("xgboost", "lightgbm"):  # @rpath/libomp.dylib, from the Mach-O store
        assert (result.patched, result.store, result.allowed) == (1, 1, [])

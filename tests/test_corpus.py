"""The real-wheel corpus (issue 6, item 1): the manifest's shape, and its CI subset run end to end.

The whole corpus runs with ``python tests/corpus/run.py``; here each ``ci: true`` wheel (<= 150 MB in all)
is inspected, its Nix fragment emitted and parsed, and (Linux) repaired against a fake store of Debian
libraries and re-verified with readelf, exactly as ``run.py`` does. Zero errors is the bar.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import require_tool

_SPEC = importlib.util.spec_from_file_location(
    "wheelfix_corpus_run", Path(__file__).resolve().parent / "corpus" / "run.py"
)
assert _SPEC is not None and _SPEC.loader is not None
corpus = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = corpus  # dataclasses look their module up
_SPEC.loader.exec_module(corpus)

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
    assert sum(e["size"] for e in CI) <= 150_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corpus.FakeStore]:
    require_tool("nix-store")
    require_tool("readelf")
    yield corpus.FakeStore(tmp_path_factory.mktemp("corpus-store"))


@pytest.mark.network
@pytest.mark.parametrize("entry", CI, ids=[e["filename"] for e in CI])
def test_ci_wheel_has_no_errors(entry: dict[str, Any], store: corpus.FakeStore) -> None:
    wheel = corpus.locate(entry, download=True)
    assert wheel is not None
    result = corpus.run_one(entry, wheel, store, corpus._has_nix_command())
    assert result.errors == []
    if entry["platform"].startswith("linux"):
        assert result.repair == "ok"
        assert result.verified == result.patched

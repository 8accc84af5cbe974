from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import synthetic
from tests.support.cli import RunCli, run_wheelfix
from tests.support.prereq import require_tool


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every valid synthetic wheel, built once per session with gcc."""
    require_tool("gcc")
    require_tool("g++")
    return synthetic.build_all(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hostile")
    return {name: synthetic.build_wheel(name, out) for name in synthetic.HOSTILE}


@pytest.fixture
def run_cli() -> RunCli:
    """Run the real command line in a fresh interpreter."""
    return run_wheelfix


LIBZ = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")


@pytest.fixture
def libz_dir(tmp_path: Path) -> Path:
    """A lib directory holding (a copy of) the host's libz.so.1, which the example wheel needs."""
    d = tmp_path / "zlib" / "lib"
    d.mkdir(parents=True)
    shutil.copy2(LIBZ.resolve(), d / "libz.so.1")
    return d

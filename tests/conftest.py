from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testdata" / "wheels"))

import generate  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing: a failure in CI (never a silent skip), a skip elsewhere."""
    if IN_CI:
        pytest.fail(message + " (CI=true: what tests need must be there)")
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The tool's path; see :func:`unavailable` when it is not installed."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"required tool {name!r} is not installed")
    return path


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every valid synthetic wheel, built once per session with gcc."""
    require_tool("gcc")
    require_tool("g++")
    return generate.build_all(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hostile")
    return {name: generate.build_wheel(name, out) for name in generate.HOSTILE}


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Run the real command line in a fresh interpreter."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wheelfix", *map(str, args)], capture_output=True, text=True, check=False
        )

    return run


def fresh_venv(where: Path, wheels: Sequence[Path]) -> Path:
    """A new venv at ``where`` with exactly ``wheels`` installed (no dependencies, no index), by this
    interpreter's pip; returns its prefix."""
    venv.EnvBuilder(with_pip=False).create(where)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(where / "bin/python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--disable-pip-version-check",
            *map(str, wheels),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return where

"""The engineering standards, enforced where CI runs them: ruff (style, imports, bugbear, complexity: no
function above McCabe 25) over the source, the tests and the benchmarks, ruff's formatter, and mypy
--strict over the package and the test support code (pyproject.toml's [tool.mypy] files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )


def test_ruff_check() -> None:
    proc = _run("ruff", "check", "--no-cache", "src", "tests", "bench")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = _run("ruff", "format", "--check", "--no-cache", "src", "tests", "bench")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = _run("mypy", "--no-incremental")  # files and strictness from pyproject.toml
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""The command line in a subprocess, and fresh virtual environments to install wheels into."""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def run_wheelfix(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command line (``python -m wheelfix``) in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *map(str, args)], capture_output=True, text=True, check=False
    )


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

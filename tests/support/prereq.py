"""What a test needs from the machine: under ``CI=true`` a missing prerequisite is a failure (never a
silent skip), elsewhere the test is skipped."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

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

"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.support.prereq import require_tool
from tests.support.realnix import Flake, make_flake


@pytest.fixture(scope="module")
def flake(tmp_path_factory: pytest.TempPathFactory) -> Flake:
    """Copies of the repository's flake (only what it uses) and of the test nixpkgs built on nixpkgs' real
    files, with a host.nix naming this host's programs."""
    require_tool("nix")
    return make_flake(tmp_path_factory.mktemp("flake"))

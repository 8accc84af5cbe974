"""Files of the repository that the tests read."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
# the committed README example (regenerate: python -m tests.support.synthetic testdata/wheels example)
EXAMPLE_WHEEL = REPO / "testdata" / "wheels" / "wheelfix_example-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
NIX_HOOK = REPO / "nix" / "hook.sh"
STUB_NIXPKGS = TESTS / "nix" / "stub-nixpkgs"
GOLDEN = TESTS / "golden"

"""Assertions the tests share."""

from __future__ import annotations


def same_bytes(got: bytes, want: bytes, what: str = "bytes") -> None:
    """Equality without pytest's diff of megabytes (very slow, and untruncated under CI)."""
    if got != want:
        pairs = enumerate(zip(got, want, strict=False))
        at = next((i for i, (x, y) in pairs if x != y), min(len(got), len(want)))
        raise AssertionError(f"{what} differ at offset {at} (lengths {len(got)} and {len(want)})")

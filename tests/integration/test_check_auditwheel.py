"""Oracle test: wheelfix's ``consistent_with`` against ``auditwheel show``'s headline on real wheels.

auditwheel 6.8.2 was run once on each wheel of ``tests/support/auditwheel_show.json`` (by
``tests/support/record_auditwheel.py``); its verdict is stored there with the wheel's sha256. Here only the
recording is read: no auditwheel, nothing of the host. An entry whose ``difference`` is set records what
wheelfix says instead and why (the table in docs/checks.md). The wheels are fetched by name, version and
sha256 into the cache (``tests/support/realwheels.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import wheelfix
from wheelfix.analysis.check import consistent_with

from tests.support.paths import REPO
from tests.support.realwheels import fetch

RECORDING = REPO / "tests" / "support" / "auditwheel_show.json"
ENTRIES: list[dict[str, Any]] = json.loads(RECORDING.read_text())["wheels"]
CHECKS_MD = REPO / "docs" / "checks.md"


def _headline(tag: str | None) -> str | None:
    return None if tag is None or tag.startswith("linux_") else tag


def test_recording_is_large_and_explained() -> None:
    """At least 40 real wheels on which auditwheel gives a verdict; every difference is in the docs."""
    judged = [e for e in ENTRIES if e["auditwheel"]["overall_tag"]]
    assert len(judged) >= 40
    table = CHECKS_MD.read_text()
    for e in ENTRIES:
        if e["difference"] is None:
            assert e["consistent_with"] == _headline(e["auditwheel"]["overall_tag"]), e["filename"]
        else:
            assert f"`{e['filename']}`" in table, f"{e['filename']}: difference not in docs/checks.md"


@pytest.mark.network
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["filename"] for e in ENTRIES])
def test_consistent_with_matches_the_recording(entry: dict[str, Any]) -> None:
    analysis = wheelfix.inspect([fetch(entry)])
    (wheel,) = analysis.wheels
    assert consistent_with(wheel) == entry["consistent_with"], entry["difference"]
    auto = wheelfix.check(analysis, "auto")
    (verdict,) = auto.wheels
    assert verdict.consistent_with == entry["consistent_with"]
    if entry["auditwheel"]["error"] is None and entry["difference"] is None:
        # every manylinux/musllinux tag the wheel carries at or above auditwheel's headline is true of it
        claimed_false = {f.policy for f in auto.errors if f.code == "tag-mismatch"}
        head = entry["consistent_with"]
        if head is not None:
            assert head not in claimed_false

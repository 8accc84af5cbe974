"""The fuzz harnesses (fuzz/harnesses.py) run a few examples each, so they keep working between fuzz runs.
Long runs: ``python fuzz/run.py --minutes N``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz import harnesses

from tests.support.prereq import unavailable


@pytest.mark.parametrize("name", list(harnesses.HARNESSES))
def test_harness_runs(name: str) -> None:
    check, strategies = harnesses.HARNESSES[name]
    seeds = {"zip": harnesses.wheel_seeds, "elf": harnesses.elf_seeds, "elf-writer": harnesses.elf_seeds}
    try:
        seeds.get(name, harnesses.macho_seeds)()
    except RuntimeError as exc:  # no seed on this host (e.g. no Mach-O toolchain and no cached wheel)
        unavailable(str(exc))

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(**strategies)
    def run(**kwargs: object) -> None:
        check(**kwargs)

    run()


def test_elf_writer_property_holds_on_the_unmutated_seeds() -> None:
    for seed in harnesses.elf_seeds():
        harnesses.check_elf_writer(seed, "RUNPATH", "$ORIGIN/../lib:/nix/store/abc-z/lib", None)
        harnesses.check_elf_writer(seed, "RPATH", "$ORIGIN", "/nix/store/abc-glibc/lib/ld-linux-x86-64.so.2")

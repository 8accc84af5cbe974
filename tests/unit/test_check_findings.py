"""The checks in-process: ``run_check`` on scanned and analysed synthetic wheels, for the ``nix`` target and
manylinux targets. Each test asserts the exact findings: severity, code, soname, members and wheel (what
``wheelfix check`` reports and its exit code follows from)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from wheelfix.analysis.check import CheckResult, UnknownTarget, run_check
from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import scan_wheel

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"
CONSUMER_EXT = "consumer/_consumer.cpython-311-x86_64-linux-gnu.so"

Row = tuple[str, str, str | None, tuple[str, ...]]


def check(wheels: Sequence[Path], target: str = "nix", allow: Sequence[str] = ()) -> CheckResult:
    """What ``wheelfix check --target TARGET [--allow GLOB]... WHEEL...`` decides, in-process."""
    return run_check(analyze([scan_wheel(w) for w in wheels]), target, allow)


def rows(result: CheckResult) -> list[Row]:
    return [(f.severity, f.code, f.soname, f.members) for f in result.findings]


def test_nix_external_needs_are_errors_and_dlopen_hints_warnings(wheels: dict[str, Path]) -> None:
    result = check([wheels["demo"]])
    assert rows(result) == [
        ("error", "unresolved", "libfoo.so.1", (DEMO_EXT,)),
        ("error", "system-library", "libz.so.1", (DEMO_EXT,)),
        ("warning", "dlopen-unresolved", "libdlopened.so.2", (DEMO_EXT,)),  # a string in .rodata
        ("warning", "dlopen-unresolved", "libnoted.so.3", (DEMO_EXT,)),  # an FDO .note.dlopen entry
    ]
    assert {f.wheel for f in result.findings} == {str(wheels["demo"])}
    assert [f.code for f in result.errors] == ["unresolved", "system-library"]
    assert not result.passed
    assert (result.target, result.allow) == ("nix", ())
    hint = result.findings[3]
    assert hint.message == "libnoted.so.3 may be dlopen()ed (dlopen note) and is not provided"


def test_allow_globs(wheels: dict[str, Path]) -> None:
    result = check([wheels["demo"]], allow=["libfoo.*", "libz.so.1"])
    assert result.passed and result.allow == ("libfoo.*", "libz.so.1")
    assert rows(result) == [
        ("warning", "dlopen-unresolved", "libdlopened.so.2", (DEMO_EXT,)),
        ("warning", "dlopen-unresolved", "libnoted.so.3", (DEMO_EXT,)),
    ]
    # an allowed hint is not reported either; a glob that matches nothing changes nothing
    result = check([wheels["demo"]], allow=["libnoted.*", "libnothing.so.9"])
    assert rows(result) == [
        ("error", "unresolved", "libfoo.so.1", (DEMO_EXT,)),
        ("error", "system-library", "libz.so.1", (DEMO_EXT,)),
        ("warning", "dlopen-unresolved", "libdlopened.so.2", (DEMO_EXT,)),
    ]


def test_nix_another_given_wheel_provides(wheels: dict[str, Path]) -> None:
    alone = check([wheels["consumer"]])
    assert rows(alone) == [  # by soname
        ("error", "system-library", "libgcc_s.so.1", (CONSUMER_EXT,)),
        ("error", "unresolved", "libprov.so.1", (CONSUMER_EXT,)),
        ("error", "system-library", "libstdc++.so.6", (CONSUMER_EXT,)),
    ]
    together = check([wheels["consumer"], wheels["provider"]])
    assert rows(together) == [
        ("error", "system-library", "libgcc_s.so.1", (CONSUMER_EXT,)),
        ("error", "system-library", "libstdc++.so.6", (CONSUMER_EXT,)),
    ]
    assert {f.wheel for f in together.findings} == {str(wheels["consumer"])}  # the provider is clean


@pytest.mark.parametrize("name", ["provider", "pure"])
def test_nix_clean_wheels(wheels: dict[str, Path], name: str) -> None:
    """Only glibc needs (provider), no binaries (pure): nothing to report."""
    result = check([wheels[name]])
    assert result.findings == () and result.passed


def test_nix_a_manylinux_policy_library_is_an_error(wheels: dict[str, Path]) -> None:
    """example bundles libexdep and needs libz.so.1, which manylinux expects from the system: not on Nix."""
    result = check([wheels["example"]])
    ext = "wheelfix_example/_example.cpython-311-x86_64-linux-gnu.so"
    assert rows(result) == [("error", "system-library", "libz.so.1", (ext,))]
    assert result.findings[0].message == (
        "libz.so.1 is expected from the system (manylinux policy) but is not bundled"
    )


def test_manylinux_symbol_versions_beyond_the_policy(wheels: dict[str, Path]) -> None:
    """The consumer's C++ extension needs newer libstdc++ symbol versions than manylinux_2_17 allows: one
    finding for the library, naming the binary and every version beyond the policy; its system libraries are
    in the policy's allowlist (no unresolved/system-library findings there)."""
    result = check([wheels["consumer"], wheels["provider"]], "manylinux_2_17")
    assert rows(result) == [("error", "symbol-version", "libstdc++.so.6", (CONSUMER_EXT,))]
    assert [f.message for f in result.findings] == [
        "not manylinux_2_17: libstdc++.so.6: needs CXXABI_1.3.9, GLIBCXX_3.4.21; manylinux_2_17 allows up to "
        "CXXABI_1.3.7 and up to GLIBCXX_3.4.19"
    ]
    assert {f.wheel for f in result.findings} == {str(wheels["consumer"])}


def test_manylinux_newer_target_judges_the_wheels_own_tag(wheels: dict[str, Path]) -> None:
    result = check([wheels["consumer"], wheels["provider"]], "manylinux_2_28")
    assert rows(result) == [("error", "tag-mismatch", "libstdc++.so.6", (CONSUMER_EXT,))]
    assert [f.message for f in result.findings] == [
        "tag manylinux_2_17_x86_64 is wrong: libstdc++.so.6: needs CXXABI_1.3.9, GLIBCXX_3.4.21; "
        "manylinux_2_17 allows up to CXXABI_1.3.7 and up to GLIBCXX_3.4.19"
    ]


@pytest.mark.parametrize("target", ["manylinux_2_17", "manylinux2014", "manylinux_2_28"])
def test_manylinux_compliant_wheel(wheels: dict[str, Path], target: str) -> None:
    """example needs libz.so.1 (in every policy's allowlist) and old glibc symbols only."""
    result = check([wheels["example"]], target)
    assert result.findings == () and result.passed and result.target == target


def test_manylinux_platform_tags(wheels: dict[str, Path]) -> None:
    legacy = check([wheels["rpathlegacy"]], "manylinux_2_17")
    assert rows(legacy) == [("error", "platform-tag", None, ())]
    assert legacy.findings[0].message == "tagged linux_x86_64: not a manylinux tag"
    old = check([wheels["example"]], "manylinux_2_5")
    assert rows(old) == [("error", "platform-tag", None, ())]
    assert old.findings[0].message == (
        "tagged manylinux_2_17_x86_64, which needs glibc 2.17: newer than manylinux_2_5"
    )
    # a wheel without binaries has no platform to claim
    assert check([wheels["pure"]], "manylinux_2_17").findings == ()


def test_manylinux_external_needs_are_judged_by_the_allowlist(wheels: dict[str, Path]) -> None:
    """libfoo.so.1 is in no allowlist: an external-library finding (not "unresolved"); libz.so.1 is in it.
    demo-tool and the extension, linked against this host's glibc (2.34 or newer), need GLIBC_2.34 symbols
    (__libc_start_main): beyond manylinux_2_17, one finding naming both binaries. Errors come first."""
    glibc = "not manylinux_2_17: libc.so.6: needs GLIBC_2.34; manylinux_2_17 allows up to GLIBC_2.17"
    both = (DEMO_TOOL, DEMO_EXT)
    result = check([wheels["demo"]], "manylinux_2_17")
    assert rows(result) == [
        ("error", "external-library", "libfoo.so.1", (DEMO_EXT,)),
        ("error", "symbol-version", "libc.so.6", both),
        ("warning", "dlopen-unresolved", "libdlopened.so.2", (DEMO_EXT,)),
        ("warning", "dlopen-unresolved", "libnoted.so.3", (DEMO_EXT,)),
    ]
    assert [f.message for f in result.errors] == [
        "not manylinux_2_17: libfoo.so.1 is not bundled and not on manylinux_2_17's allowlist",
        glibc,
    ]
    allowed = check([wheels["demo"]], "manylinux_2_17", allow=["libfoo.so.1"])
    assert [f.message for f in allowed.errors] == [glibc]


def test_unknown_target(wheels: dict[str, Path]) -> None:
    with pytest.raises(UnknownTarget, match="unknown target 'windows'"):
        check([wheels["demo"]], "windows")

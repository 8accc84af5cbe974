"""check: exit codes, targets, --allow, output formats."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from wheelfix.render.jsondoc import load_schema

from tests.support.cli import RunCli


def codes(stdout: str) -> list[tuple[str, str | None]]:
    doc = json.loads(stdout)
    jsonschema.validate(doc, load_schema("check"))
    return [(f["code"], f["soname"]) for f in doc["findings"] if f["severity"] == "error"]


def test_nix_fails_on_unresolved_and_system_libs(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("check", "--format", "json", wheels["demo"])
    assert proc.returncode == 1, proc.stderr
    assert codes(proc.stdout) == [("unresolved", "libfoo.so.1"), ("system-library", "libz.so.1")]


def test_allow_globs_make_it_pass(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("check", "--allow", "libfoo.*", "--allow", "libz.so.1", wheels["demo"])
    assert proc.returncode == 0, proc.stdout
    assert "passed (0 errors, 2 warnings)" in proc.stdout  # the two dlopen hints stay visible


def test_other_wheel_counts_as_provided(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    alone = run_cli(
        "check", "--format", "json", "--allow", "lib*gcc_s*", "--allow", "libstdc++*", wheels["consumer"]
    )
    assert alone.returncode == 1 and codes(alone.stdout) == [("unresolved", "libprov.so.1")]
    both = run_cli(
        "check",
        "--allow",
        "libgcc_s.so.1",
        "--allow",
        "libstdc++.so.6",
        wheels["consumer"],
        wheels["provider"],
    )
    assert both.returncode == 0, both.stdout


def test_glibc_only_wheel_is_clean(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    assert run_cli("check", wheels["provider"]).returncode == 0
    assert run_cli("check", wheels["pure"]).returncode == 0


def test_manylinux_target_checks_symbol_versions_and_tags(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli(
        "check", "--target", "manylinux_2_17", "--format", "json", wheels["consumer"], wheels["provider"]
    )
    assert proc.returncode == 1
    messages = [f["message"] for f in json.loads(proc.stdout)["findings"]]
    assert any(
        "needs CXXABI_1.3.9, GLIBCXX_3.4.21; manylinux_2_17 allows up to CXXABI_1.3.7 and up to "
        "GLIBCXX_3.4.19" in m
        for m in messages
    )
    # a newer target accepts the same binaries, but not the wheel's own (too old) tag
    newer = run_cli(
        "check", "--target", "manylinux_2_28", "--format", "json", wheels["consumer"], wheels["provider"]
    )
    assert newer.returncode == 1
    assert {c for c, _ in codes(newer.stdout)} == {"tag-mismatch"}


def test_manylinux_target_accepts_a_compliant_wheel(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    assert run_cli("check", "--target", "manylinux_2_17", wheels["example"]).returncode == 0
    assert run_cli("check", "--target", "manylinux2014", wheels["example"]).returncode == 0


def test_manylinux_rejects_linux_tag_and_newer_tag(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    legacy = run_cli("check", "--target", "manylinux_2_17", "--format", "json", wheels["rpathlegacy"])
    assert ("platform-tag", None) in codes(legacy.stdout)
    old_target = run_cli("check", "--target", "manylinux_2_5", "--format", "json", wheels["example"])
    assert old_target.returncode == 1
    assert "newer than manylinux_2_5" in old_target.stdout


def test_github_annotations(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("check", "--format", "github", wheels["demo"])
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"::error file={wheels['demo']},title=wheelfix unresolved::libfoo.so.1 ")
    assert all(line.startswith(("::error ", "::warning ")) for line in lines)


def test_unknown_target_is_a_usage_error(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("check", "--target", "windows", wheels["demo"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown target 'windows'" in proc.stderr

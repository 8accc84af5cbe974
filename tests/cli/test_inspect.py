"""inspect end to end on synthetic wheels: JSON follows the shipped schema and says what ld.so would do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wheelfix.render.jsondoc import load_schema

from tests.support.cli import RunCli
from tests.support.paths import EXAMPLE_WHEEL

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"
DEMO_LIB = "demo.libs/libbar-1a2b3c4d.so.1"
CONSUMER_EXT = "consumer/_consumer.cpython-311-x86_64-linux-gnu.so"


def inspect_json(run_cli: RunCli, *paths: Path) -> dict[str, Any]:
    proc = run_cli("inspect", "--json", *paths)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc: dict[str, Any] = json.loads(proc.stdout)
    jsonschema.validate(doc, load_schema("inspect"))
    return doc


def binary(doc: dict[str, Any], member: str) -> dict[str, Any]:
    for w in doc["wheels"]:
        for b in w["binaries"]:
            if b["member"] == member:
                return b
    raise AssertionError(f"{member} not in report")


def need(b: dict[str, Any], soname: str) -> dict[str, Any]:
    matches = [n for n in b["needs"] if n["soname"] == soname]
    assert len(matches) == 1, (soname, b["needs"])
    return matches[0]


def test_every_valid_wheel_validates_against_schema(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, *wheels.values())
    assert [w["filename"] for w in doc["wheels"]] == [p.name for p in wheels.values()]
    assert doc["schema_version"] == 2


def test_demo_extension(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, wheels["demo"])
    ext = binary(doc, DEMO_EXT)
    assert ext["kind"] == "extension"
    assert ext["elf"]["needed"][:3] == ["libfoo.so.1", "libbar-1a2b3c4d.so.1", "libz.so.1"]
    assert ext["elf"]["runpath"] == "$ORIGIN/../demo.libs" and ext["elf"]["rpath"] is None
    assert ext["search_path"] == [
        {
            "kind": "RUNPATH",
            "entry": "$ORIGIN/../demo.libs",
            "path": "/@prefix/lib/python3.11/site-packages/demo.libs",
            "note": None,
        }
    ]
    assert need(ext, "libfoo.so.1")["outcome"] == "unresolved"
    assert need(ext, "libz.so.1")["outcome"] == "manylinux_policy"
    assert need(ext, "libc.so.6")["outcome"] == "glibc"
    bar = need(ext, "libbar-1a2b3c4d.so.1")
    assert (bar["outcome"], bar["member"], bar["via"], bar["reachable"]) == (
        "bundled",
        DEMO_LIB,
        "RUNPATH $ORIGIN/../demo.libs",
        True,
    )
    note = need(ext, "libnoted.so.3")
    assert (note["source"], note["required"], note["outcome"]) == ("dlopen_note", False, "unresolved")
    assert ext["elf"]["dlopen_notes"] == [
        {"sonames": ["libnoted.so.3"], "priority": "recommended", "feature": "noted", "description": "test"}
    ]
    hint = need(ext, "libdlopened.so.2")
    assert (hint["source"], hint["required"]) == ("dlopen_string", False)
    assert ext["elf"]["symbol_versions"]["GLIBC"].startswith("GLIBC_2.")


def test_executable_in_scripts_uses_rpath_and_passes_it_on(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, wheels["demo"])
    tool = binary(doc, DEMO_TOOL)
    assert tool["kind"] == "executable"
    assert tool["install"] == {"scheme": "scripts", "path": "demo-tool"}
    assert tool["elf"]["interpreter"] == "/lib64/ld-linux-x86-64.so.2"
    bar = need(tool, "libbar-1a2b3c4d.so.1")
    # $ORIGIN of {scripts}/demo-tool is <prefix>/bin; ../lib/python3.11/site-packages/demo.libs exists
    assert bar["outcome"] == "bundled" and bar["via"].startswith("RPATH $ORIGIN/../lib/python3.11")
    # DT_RPATH (not RUNPATH) is inherited by what the executable loads
    lib = binary(doc, DEMO_LIB)
    assert lib["search_path"][0]["kind"] == f"RPATH of {DEMO_TOOL}"


def test_unresolved_first_in_text_report(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("inspect", wheels["demo"])
    assert proc.returncode == 0
    lines = [line.split()[0] for line in proc.stdout.splitlines()[3:] if not line.startswith("    ")]
    assert lines[0] == "UNRESOLVED"  # the required need; the two unresolved dlopen hints are folded last
    assert lines.index("system") < lines.index("bundled") < lines.index("glibc") < lines.index("dlopen")


def test_wheels_resolve_against_each_other(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    alone = inspect_json(run_cli, wheels["consumer"])
    assert need(binary(alone, CONSUMER_EXT), "libprov.so.1")["outcome"] == "unresolved"
    together = inspect_json(run_cli, wheels["consumer"], wheels["provider"])
    prov = need(binary(together, CONSUMER_EXT), "libprov.so.1")
    assert prov["outcome"] == "other_wheel"
    assert prov["wheel"] == wheels["provider"].name
    assert prov["member"] == "provider/lib/libprov.so.1"
    assert prov["via"] == "RUNPATH $ORIGIN/../provider/lib"
    # the order of the inputs does not change any wheel's result
    reverse = inspect_json(run_cli, wheels["provider"], wheels["consumer"])
    assert reverse["wheels"][::-1] == together["wheels"]


def test_legacy_rpath(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, wheels["rpathlegacy"])
    (ext,) = [b for b in doc["wheels"][0]["binaries"] if b["kind"] == "extension"]
    assert ext["elf"]["rpath"] == "$ORIGIN/.libs" and ext["elf"]["runpath"] is None
    leg = need(ext, "libleg.so.0")
    assert leg["outcome"] == "bundled" and leg["via"] == "RPATH $ORIGIN/.libs"
    assert need(ext, "libm.so.6")["outcome"] == "glibc"


def test_pure_wheel_has_no_binaries(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    doc = inspect_json(run_cli, wheels["pure"])
    assert doc["wheels"][0]["binaries"] == [] and doc["wheels"][0]["libraries"] == []


@pytest.mark.parametrize("jobs", ["1", "2", "4"])
def test_result_does_not_depend_on_threads(run_cli: RunCli, wheels: dict[str, Path], jobs: str) -> None:
    base = inspect_json(run_cli, *wheels.values())
    proc = run_cli("inspect", "--json", "--jobs", jobs, *wheels.values())
    assert json.loads(proc.stdout) == base


def test_committed_example_wheel(run_cli: RunCli) -> None:
    example = EXAMPLE_WHEEL
    doc = inspect_json(run_cli, example)
    outcomes = {lib["soname"]: lib["outcome"] for lib in doc["wheels"][0]["libraries"]}
    assert outcomes == {"libz.so.1": "manylinux_policy", "libexdep.so.1": "bundled", "libc.so.6": "glibc"}


def test_every_wheel_result_is_independent_of_input_order(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    paths = list(wheels.values())
    forward = inspect_json(run_cli, *paths)["wheels"]
    backward = inspect_json(run_cli, *reversed(paths))["wheels"]
    assert backward[::-1] == forward


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["repair"], "wheelfix: error: Missing argument 'WHEELS...'. (see 'wheelfix repair --help')"),
        (["nosuch"], "wheelfix: error: No such command 'nosuch'. (see 'wheelfix --help')"),
        (
            ["check", "--target", "foo", "x.whl"],
            "wheelfix: error: Invalid value for --target: unknown target",
        ),
        (["inspect", "--bogus", "x.whl"], "wheelfix: error: No such option '--bogus'."),
    ],
)
def test_usage_errors_are_one_line(run_cli: RunCli, args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(message), line

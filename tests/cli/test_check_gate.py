"""check as a CI gate, end to end on synthetic wheels: wheels without ELF held to the tag rules, non-Linux
wheels refused under Linux targets, musllinux wheels and targets, ``--target auto`` and ``consistent_with``,
grouped findings in text/GitHub, and a JSON document / ``::error`` annotation for input that cannot be read.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wheelfix.render.jsondoc import load_schema

from tests.support import synthetic as generate
from tests.support.cli import RunCli
from tests.support.prereq import require_tool
from tests.support.stubbuild import extension, run, stub

# a minimal PE image: the DOS header's e_lfanew points at the PE signature
_PE = b"MZ" + b"\0" * 58 + struct.pack("<I", 64) + b"PE\0\0" + b"\0" * 64


@functools.cache
def _validator() -> Any:
    schema = load_schema("check")
    return jsonschema.validators.validator_for(schema)(schema)


def _doc(proc: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(proc.stdout)
    _validator().validate(doc)
    return doc


def _build(out: Path, name: str, platform: str, files: dict[str, bytes]) -> Path:
    dist = generate.Dist(name, "1.0", f"py3-none-{platform}")
    path = out / dist.filename
    path.write_bytes(generate._wheel(dist, files))
    return path


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("gcc")
    tmp = tmp_path_factory.mktemp("gate-cli")
    out = tmp / "wheels"
    out.mkdir()
    musl = _musl_libc(tmp)
    glibc = stub(tmp, "libc.so.6", {"GLIBC_2.2.5": ["malloc"]})
    musl_ext = extension(tmp, "mext", ["malloc"], [musl])
    glibc_ext = extension(tmp, "gext", ["malloc"], [glibc])
    return {
        "noelf2014": _build(out, "noelf", "manylinux2014_x86_64", {"noelf/__init__.py": b""}),
        "macos": _build(out, "macpkg", "macosx_11_0_arm64", {"macpkg/__init__.py": b""}),
        "win": _build(out, "winpkg", "win_amd64", {"winpkg/__init__.py": b"", "winpkg/_w.pyd": _PE}),
        "musl": _build(
            out, "muslpkg", "musllinux_1_2_x86_64", {f"muslpkg/{musl_ext.name}": musl_ext.read_bytes()}
        ),
        "linuxtag": _build(
            out, "linuxpkg", "linux_x86_64", {f"linuxpkg/{glibc_ext.name}": glibc_ext.read_bytes()}
        ),
        "anyelf": _build(out, "anyelf", "any", {f"anyelf/{glibc_ext.name}": glibc_ext.read_bytes()}),
        "foreign": _build(
            out, "foreign", "manylinux_2_17_aarch64", {f"foreign/{glibc_ext.name}": glibc_ext.read_bytes()}
        ),
    }


def _musl_libc(tmp: Path) -> Path:
    src = tmp / "musl.c"
    src.write_text("void malloc(void) {}\n")
    out = tmp / "libc.musl-x86_64.so.1"
    run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libc.musl-x86_64.so.1",
            "-o",
            str(out),
            str(src),
        ],
        tmp,
    )
    return out


def _errors(doc: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(f["code"], f["soname"]) for f in doc["findings"] if f["severity"] == "error"]


def test_wheel_without_elf_is_held_to_its_tags(run_cli: RunCli, gate: dict[str, Path]) -> None:
    older = run_cli("check", "--target", "manylinux_2_5", "--format", "json", gate["noelf2014"])
    assert older.returncode == 1
    doc = _doc(older)
    assert _errors(doc) == [("platform-tag", None)]
    assert (
        "tagged manylinux2014_x86_64, which needs glibc 2.17: newer than manylinux_2_5"
        in doc["findings"][0]["message"]
    )
    assert run_cli("check", "--target", "manylinux_2_17", gate["noelf2014"]).returncode == 0
    auto = _doc(run_cli("check", "--target", "auto", "--format", "json", gate["noelf2014"]))
    assert auto["passed"] and auto["wheels"][0]["consistent_with"] == "manylinux_2_5_x86_64"


@pytest.mark.parametrize("target", ["manylinux_2_28", "musllinux_1_2", "manylinux2014"])
def test_non_linux_wheel_fails_a_linux_target(run_cli: RunCli, gate: dict[str, Path], target: str) -> None:
    for name, tag in (("macos", "macosx_11_0_arm64"), ("win", "win_amd64")):
        proc = run_cli("check", "--target", target, "--format", "json", gate[name])
        assert proc.returncode == 1, proc.stdout
        (f,) = [f for f in _doc(proc)["findings"] if f["severity"] == "error"]
        assert (f["code"], f["message"]) == ("wrong-platform", f"{tag} wheel: not a Linux wheel")


def test_windows_wheel_fails_nix_and_auto(run_cli: RunCli, gate: dict[str, Path]) -> None:
    nix = _doc(run_cli("check", "--format", "json", gate["win"]))
    assert _errors(nix) == [("wrong-platform", None)]
    assert "not a Linux or macOS wheel" in nix["findings"][0]["message"]
    assert nix["findings"][0]["members"] == ["winpkg/_w.pyd"]
    assert run_cli("check", "--target", "auto", gate["win"]).returncode == 1
    assert run_cli("check", "--target", "auto", gate["macos"]).returncode == 0


def test_musllinux_wheel_and_targets(run_cli: RunCli, gate: dict[str, Path]) -> None:
    wheel = gate["musl"]
    auto = _doc(run_cli("check", "--target", "auto", "--format", "json", wheel))
    assert auto["passed"]
    assert auto["wheels"][0]["libc"] == "musl"
    # musl versions no symbol: the data cannot tell 1.1 from 1.2, so (as auditwheel off musl) the newest
    assert auto["wheels"][0]["consistent_with"] == "musllinux_1_2_x86_64"
    assert run_cli("check", "--target", "musllinux_1_2", wheel).returncode == 0
    assert run_cli("check", "--target", "musllinux_1_2_x86_64", wheel).returncode == 0
    older = _doc(run_cli("check", "--target", "musllinux_1_1", "--format", "json", wheel))
    assert _errors(older) == [("platform-tag", None)]  # tagged 1_2: newer than the target
    glibc = _doc(run_cli("check", "--target", "manylinux_2_28", "--format", "json", wheel))
    assert ("platform-tag", None) in _errors(glibc)
    assert ("external-library", "libc.musl-x86_64.so.1") in _errors(glibc)
    nix = _doc(run_cli("check", "--format", "json", wheel))
    assert _errors(nix) == [("musl", "libc.musl-x86_64.so.1")]  # named as such, not "unresolved"
    text = run_cli("inspect", wheel).stdout
    assert "musllinux wheel" in text and "UNRESOLVED" not in text
    inspected = json.loads(run_cli("inspect", "--json", wheel).stdout)
    assert inspected["wheels"][0]["libc"] == "musl"


def test_linux_tag_only_is_a_warning_under_auto(run_cli: RunCli, gate: dict[str, Path]) -> None:
    proc = run_cli("check", "--target", "auto", "--format", "json", gate["linuxtag"])
    assert proc.returncode == 0
    doc = _doc(proc)
    (f,) = doc["findings"]
    assert f["severity"] == "warning" and f["code"] == "platform-tag"
    assert "consistent with manylinux_2_5_x86_64" in f["message"]
    assert doc["wheels"][0]["consistent_with"] == "manylinux_2_5_x86_64"
    assert run_cli("check", "--target", "manylinux_2_17", gate["linuxtag"]).returncode == 1


def test_binaries_under_an_any_tag_or_another_arch(run_cli: RunCli, gate: dict[str, Path]) -> None:
    anyelf = _doc(run_cli("check", "--target", "manylinux_2_17", "--format", "json", gate["anyelf"]))
    assert _errors(anyelf) == [("platform-tag", None)]
    foreign = _doc(run_cli("check", "--target", "auto", "--format", "json", gate["foreign"]))
    assert _errors(foreign) == [("arch-mismatch", None)]
    assert "x86_64 ELF binaries in a wheel tagged for aarch64" in foreign["findings"][0]["message"]


def test_target_with_architecture(run_cli: RunCli, gate: dict[str, Path], wheels: dict[str, Path]) -> None:
    assert run_cli("check", "--target", "manylinux_2_17_x86_64", wheels["example"]).returncode == 0
    other = _doc(
        run_cli("check", "--target", "manylinux_2_17_aarch64", "--format", "json", wheels["example"])
    )
    assert ("platform-tag", None) in _errors(other)


def test_bad_input_json_document_and_annotation(run_cli: RunCli, hostile: dict[str, Path]) -> None:
    wheel = hostile["zipslip-dotdot"]
    proc = run_cli("check", "--format", "json", wheel)
    assert proc.returncode == 2
    assert "wheelfix: error:" in proc.stderr
    doc = _doc(proc)
    assert doc["exit_code"] == 2 and not doc["passed"] and doc["wheels"] == []
    assert doc["findings"] and {f["code"] for f in doc["findings"]} == {"bad-input"}
    assert all(f["wheel"] == str(wheel) for f in doc["findings"])
    gh = run_cli("check", "--format", "github", wheel)
    assert gh.returncode == 2
    assert gh.stdout.startswith(f"::error file={wheel},title=wheelfix bad-input::")


def test_unknown_target_json_document(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("check", "--target", "windows", "--format", "json", wheels["demo"])
    assert proc.returncode == 2
    doc = _doc(proc)
    assert [f["code"] for f in doc["findings"]] == ["usage"]
    assert "unknown target 'windows'" in doc["findings"][0]["message"]


def test_text_lists_required_needs_first_and_folds_hints(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    out = run_cli("check", wheels["demo"]).stdout.splitlines()
    assert out[0].startswith(f"{wheels['demo']}: ")
    kinds = [line.split()[1] for line in out[1:-1] if line.startswith("  ") and not line.startswith("   ")]
    assert kinds == ["[unresolved]", "[system-library]", "[dlopen-unresolved]"]
    hints = out.index("  warning: [dlopen-unresolved] 2 dlopen hints that nothing provides:")
    assert "libdlopened.so.2" in out[hints + 1] and "libnoted.so.3" in out[hints + 3]
    inspect = run_cli("inspect", wheels["demo"]).stdout
    assert inspect.index("dlopen hints (2;") > inspect.index("glibc       libc.so.6")


def test_github_groups_hints_and_names_binaries(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    lines = run_cli("check", "--format", "github", wheels["demo"]).stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["::error", "::error", "::warning"]
    assert "(in demo/_demo.cpython-311-x86_64-linux-gnu.so)" in lines[0]
    assert "2 dlopen hints nothing provides:%0Alibdlopened.so.2" in lines[2]
    auto = run_cli("check", "--target", "auto", "--format", "github", wheels["example"]).stdout.splitlines()
    notice = f"::notice file={wheels['example']},title=wheelfix consistent-with::"
    assert auto == [notice + "consistent with manylinux_2_5_x86_64"]


def test_every_json_finding_names_code_soname_binaries_wheel(
    run_cli: RunCli, wheels: dict[str, Path]
) -> None:
    for target in ("nix", "auto", "manylinux_2_5", "manylinux_2_17", "musllinux_1_2"):
        doc = _doc(run_cli("check", "--target", target, "--format", "json", *wheels.values()))
        assert len(doc["wheels"]) == len(wheels)
        for f in doc["findings"]:
            assert {"code", "soname", "members", "wheel", "policy", "symbols", "cause"} <= f.keys()
            if f["code"] in ("unresolved", "system-library", "symbol-version", "external-library"):
                assert f["soname"] and f["members"], f

"""The repair manifest (``<dist-info>/wheelfix.json``) with real ``/nix/store`` paths: checks believe only
what a repair recorded. A need left unresolved with ``--allow`` fails ``check --target nix`` afterwards
(naming it), although the binary names store directories; a fully repaired wheel passes; a second repair
merges into the manifest; a bundled library that is not on a binary's search path gets an ``$ORIGIN`` entry
and loads."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support import synthetic as generate
from tests.support.cli import RunCli, fresh_venv
from tests.support.nix import nix_add
from tests.support.prereq import require_tool
from tests.support.wheels import record_hash, repack_wheel

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
EXAMPLE_EXT = "wheelfix_example/_example.cpython-311-x86_64-linux-gnu.so"
MANIFEST = "demo-1.0.dist-info/wheelfix.json"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("nix-store")
    root = tmp_path_factory.mktemp("store-src")
    foo = root / "wheelfix-manifest-foo"
    generate.build_libfoo(foo / "lib")
    z = root / "wheelfix-manifest-zlib" / "lib"
    z.mkdir(parents=True)
    (z / "libz.so.1").write_bytes(Path("/usr/lib/x86_64-linux-gnu/libz.so.1").resolve().read_bytes())
    g = root / "wheelfix-manifest-glibc" / "lib"
    g.mkdir(parents=True)
    (g / "ld-linux-x86-64.so.2").write_bytes(Path("/lib64/ld-linux-x86-64.so.2").resolve().read_bytes())
    return {
        "foo": nix_add(foo) + "/lib",
        "zlib": nix_add(root / "wheelfix-manifest-zlib") + "/lib",
        "glibc": nix_add(root / "wheelfix-manifest-glibc") + "/lib",
    }


def check_json(run_cli: RunCli, wheel: Path, *extra: str) -> tuple[int, dict[str, object]]:
    proc = run_cli("check", "--target", "nix", "--format", "json", *extra, wheel)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def errors(doc: dict[str, object]) -> list[tuple[str, str | None]]:
    findings = doc["findings"]
    assert isinstance(findings, list)
    return sorted((f["code"], f["soname"]) for f in findings if f["severity"] == "error")


def needs_of(run_cli: RunCli, wheel: Path, member: str) -> dict[str, tuple[str, str]]:
    proc = run_cli("inspect", "--json", wheel)
    assert proc.returncode == 0, proc.stderr
    (w,) = json.loads(proc.stdout)["wheels"]
    (b,) = [b for b in w["binaries"] if b["member"] == member]
    return {n["soname"]: (n["outcome"], n["detail"]) for n in b["needs"] if n["required"]}


def manifest_of(wheel: Path) -> dict[str, object]:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MANIFEST)
        record = zf.read("demo-1.0.dist-info/RECORD").decode()
    assert f"{MANIFEST},{record_hash(data)},{len(data)}" in record.splitlines()
    doc: dict[str, object] = json.loads(data)
    return doc


def without_manifest(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if i.filename != MANIFEST}
    return repack_wheel(dest, files, "demo-1.0.dist-info")


def test_allowed_need_fails_the_nix_check_and_a_full_repair_passes(
    wheels: dict[str, Path], store: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    demo = wheels["demo"]
    half = tmp_path / "half"
    proc = run_cli(
        "repair",
        demo,
        "-o",
        half,
        "--lib-path",
        store["foo"],
        "--lib-path",
        store["glibc"],
        "--allow",
        "libz.so.1",
    )
    assert proc.returncode == 0, proc.stderr
    repaired = half / demo.name
    doc = manifest_of(repaired)
    binaries = doc["binaries"]
    assert isinstance(binaries, dict)
    ext = binaries[DEMO_EXT]
    assert ext["archs"]["x86_64"] == {"provides": {"libfoo.so.1": store["foo"]}, "allowed": ["libz.so.1"]}
    assert ext["search_path"] == {"kind": "RUNPATH", "added": [store["foo"]]}

    needs = needs_of(run_cli, repaired, DEMO_EXT)
    assert needs["libfoo.so.1"][0] == "nix_store" and "repair manifest" in needs["libfoo.so.1"][1]
    assert needs["libz.so.1"][0] == "manylinux_policy"
    assert "left unresolved with --allow" in needs["libz.so.1"][1]
    code, report = check_json(run_cli, repaired)
    assert code == 1 and errors(report) == [("system-library", "libz.so.1")]
    assert check_json(run_cli, repaired, "--allow", "libz.so.1")[0] == 0

    # the same wheel without its manifest: the binary's word is taken (and said so) - the old false pass
    bare = without_manifest(repaired, tmp_path / "bare" / demo.name)
    assert "no repair manifest" in needs_of(run_cli, bare, DEMO_EXT)["libz.so.1"][1]
    assert check_json(run_cli, bare)[0] == 0

    # repairing the half-repaired wheel with libz now found: the manifest is merged, the check passes
    full = tmp_path / "full"
    proc = run_cli("repair", repaired, "-o", full, "--lib-path", store["zlib"])
    assert proc.returncode == 0, proc.stderr
    doc = manifest_of(full / demo.name)
    ext = doc["binaries"][DEMO_EXT]  # type: ignore[index]
    assert ext["archs"]["x86_64"] == {
        "provides": {"libfoo.so.1": store["foo"], "libz.so.1": store["zlib"]},
        "allowed": [],
    }
    assert ext["search_path"] == {"kind": "RUNPATH", "added": [store["foo"], store["zlib"]]}
    code, report = check_json(run_cli, full / demo.name)
    assert (code, errors(report)) == (0, [])
    # and once more: nothing to change, the wheel is copied byte for byte
    again = tmp_path / "again"
    assert run_cli("repair", full / demo.name, "-o", again).returncode == 0
    assert (again / demo.name).read_bytes() == (full / demo.name).read_bytes()


def test_bundled_library_off_the_search_path_gets_an_origin_entry(
    wheels: dict[str, Path], store: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    """Like torch's bin/test_shim and lib/libtorch.so: the library is in the wheel, but not where the binary
    looks. autoPatchelf adds the directory; so does the repair, relative to $ORIGIN."""
    require_tool("gcc")
    with zipfile.ZipFile(wheels["example"]) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist()}
    files["wheelfix_example/deps/libexdep.so.1"] = files.pop("wheelfix_example.libs/libexdep.so.1")
    moved = repack_wheel(tmp_path / "in" / wheels["example"].name, files, "wheelfix_example-1.0.dist-info")
    before = needs_of(run_cli, moved, EXAMPLE_EXT)
    assert (
        before["libexdep.so.1"][0] == "bundled"
        and "not on this binary's search path" in before["libexdep.so.1"][1]
    )
    proc = run_cli("check", "--target", "nix", "--allow", "libz.so.1", moved)
    assert "libexdep.so.1 is in the wheel set but not on the search path" in proc.stdout

    out = tmp_path / "out"
    proc = run_cli("repair", moved, "-o", out, "--lib-path", store["zlib"])
    assert proc.returncode == 0, proc.stderr
    repaired = out / moved.name
    after = needs_of(run_cli, repaired, EXAMPLE_EXT)
    assert after["libexdep.so.1"] == ("bundled", "found through RUNPATH $ORIGIN/deps")
    proc = run_cli("check", "--target", "nix", repaired)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors, 0 warnings" in proc.stdout

    venv = fresh_venv(tmp_path / "venv", [repaired])
    (site,) = venv.glob("lib/python3*/site-packages")
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); import wheelfix_example; "
        "print(wheelfix_example.value()); print(open('/proc/self/maps').read())"
    )
    run = subprocess.run(
        [str(venv / "bin/python"), "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    value, maps = run.stdout.split("\n", 1)
    assert value == "11"  # exdep_value(), from the bundled library found through $ORIGIN/deps
    assert f"{site}/wheelfix_example/deps/libexdep.so.1" in maps
    assert f"{store['zlib']}/libz.so.1" in maps

"""``wheelfix nix`` fragments and ``--nixpkgs`` store paths, checked with real Nix (Debian's nix-bin).

Every fragment is parsed with ``nix-instantiate --parse`` and evaluated with ``nix-instantiate --eval
--strict`` against a stub ``pkgs`` generated from the shipped soname table and preferences: every nixpkgs
output the knowledge base can answer exists there (as an attrset with ``outPath``), so a misspelt attribute
or output fails. Golden files: ``tests/golden/nix-<flavor>.nix`` (Linux wheels), ``nix-darwin-<flavor>.nix``
(macOS wheels built with clang-15/lld-15, tests/support/machobuild.py) and ``nix-mixed-<flavor>.nix``
(a Linux and a macOS wheel of one project: one guarded fragment); rewrite them with
``WHEELFIX_REGEN_GOLDEN=1``. Fragments with a darwin part are evaluated twice, against the stub with
``stdenv.hostPlatform`` of Linux and of darwin and nixpkgs' real ``lib`` (nix-sources,
tests/support/realnix.py).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import scan_wheel
from wheelfix.nixkb.kb import Candidate, KnowledgeBase
from wheelfix.render.nix import (
    FLAVORS,
    Flavor,
    NixPlan,
    PackagePlan,
    linux_names,
    nix_attr_path,
    nix_ref,
    nix_string,
    plan_nix,
    referenced,
    render_nix,
)

from tests.support import machobuild as mf
from tests.support.nix import nix_env
from tests.support.paths import GOLDEN
from tests.support.prereq import require_tool
from tests.support.realwheels import MACOS_WHEELS, fetch, load_manifest
from tests.support.wheels import make_wheel

REGEN = bool(os.environ.get("WHEELFIX_REGEN_GOLDEN"))
HOOKS = ("autoPatchelfHook", "autoAddDriverRunpath", "addDriverRunpath", "wheelfixHook")


def _nix(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = require_tool("nix-instantiate")
    return subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, env=nix_env(), timeout=300, check=False
    )


# --- the stub pkgs ----------------------------------------------------------------------------------------


def _known_outputs(kb: KnowledgeBase) -> set[tuple[str, str]]:
    outs: set[tuple[str, str]] = set()
    for line in kb.table.text.splitlines():
        if line.startswith("P\t"):
            _, attr, output, _base = line.split("\t")
            outs.add((attr, output))
    for pref in kb.preferences.rows():
        if pref.attr is not None and pref.output is not None:
            outs.add((pref.attr, pref.output))
    outs.update((hook, "out") for hook in HOOKS)
    return outs


def _render_tree(node: dict[str, Any], path: str) -> str:
    parts = []
    if node.pop("__drv__", False):
        parts.append(f"outPath = {nix_string('/nix/store/' + 'x' * 32 + '-' + path)};")
    for name in sorted(node):
        parts.append(f"{nix_string(name)} = {_render_tree(node[name], path + '.' + name)};")
    return "{ " + " ".join(parts) + " }"


@functools.cache
def stub_pkgs(tmp: Path) -> Path:
    """A Nix file: every (attribute path, output) the knowledge base knows, as nested attrsets, with
    nixpkgs' lib and a Linux stdenv.hostPlatform."""
    tree: dict[str, Any] = {}
    for attr, output in sorted(_known_outputs(KnowledgeBase.load())):
        node = tree
        for part in attr.split("."):
            node = node.setdefault(part, {})
        node["__drv__"] = True
        node.setdefault(output, {})["__drv__"] = True
        node.setdefault("out", {})["__drv__"] = True
    from tests.support.realnix import nix_sources

    raw = tmp / "stub-pkgs-tree.nix"
    raw.write_text(_render_tree(tree, "pkgs") + "\n", encoding="utf-8")
    # nixpkgs' real lib, and a Linux stdenv.hostPlatform (platform_stubs makes a darwin one too)
    path = tmp / "stub-pkgs.nix"
    path.write_text(
        f"let base = import {raw}; in base // {{ lib = import {nix_sources()}/nixpkgs-lib/lib; "
        "stdenv = base.stdenv // { hostPlatform = { isLinux = true; isDarwin = false; }; }; }\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def pkgs_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_pkgs(tmp_path_factory.mktemp("nixstub"))


PLATFORMS = ("linux", "darwin")


@pytest.fixture(scope="module")
def platform_stubs(pkgs_stub: Path) -> dict[str, Path]:
    """The stub pkgs plus ``lib`` and ``stdenv.hostPlatform`` of Linux / darwin."""
    from tests.support.realnix import nix_sources

    lib_nix = nix_sources() / "nixpkgs-lib" / "lib"
    out = {}
    for platform in PLATFORMS:
        path = pkgs_stub.with_name(f"stub-pkgs-{platform}.nix")
        linux, darwin = ("true", "false") if platform == "linux" else ("false", "true")
        path.write_text(
            f"let base = import {pkgs_stub}; in base // {{ lib = import {lib_nix}; stdenv = base.stdenv // "
            f"{{ hostPlatform = {{ isLinux = {linux}; isDarwin = {darwin}; }}; }}; }}\n",
            encoding="utf-8",
        )
        out[platform] = path
    return out


def _prev(plan: NixPlan) -> str:
    entries = " ".join(
        f"{nix_string(p.name)} = {{ overrideAttrs = f: f {{ }}; overridePythonAttrs = f: f {{ }}; }};"
        for p in plan.packages
    )
    return "{ " + entries + " }"


def _final(plan: NixPlan) -> str:
    """The package set after the overlay: every package of the plan (for `final.<sibling>`)."""
    siblings = {n for p in plan.packages for _, ns in p.other_packages for n in ns}
    names = {p.name for p in plan.packages} | siblings
    entries = " ".join(f"{nix_string(n)} = {{ outPath = {nix_string(FINAL + n)}; }};" for n in sorted(names))
    return "{ " + entries + " }"


FINAL = "/nix/store/" + "f" * 32 + "-final."


def evaluate(fragment: str, plan: NixPlan, flavor: Flavor, pkgs: Path, tmp: Path) -> Any:
    """Parse the fragment, then evaluate it fully against the stub; the JSON value."""
    frag = tmp / f"fragment-{flavor}.nix"
    frag.write_text(fragment, encoding="utf-8")
    parsed = _nix("--parse", str(frag))
    assert parsed.returncode == 0, parsed.stderr
    call = f"(import {frag}) {{ pkgs = import {pkgs}; }}"
    if flavor in ("uv2nix", "poetry2nix"):
        call = f"({call}) {_final(plan)} {_prev(plan)}"
    elif flavor == "nixpkgs":  # per package, a function of buildPythonPackage's arguments
        call = f"builtins.mapAttrs (name: f: f {{ }}) ({call})"
    proc = _nix("--eval", "--strict", "--json", "--expr", call)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- the synthetic wheels ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(wheels: dict[str, Path]) -> tuple[Path, ...]:
    return tuple(sorted(wheels.values()))


@functools.cache
def _plan(paths: tuple[Path, ...]) -> NixPlan:
    return plan_nix(analyze([scan_wheel(p) for p in paths]), KnowledgeBase.load())


def _wheelfix(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *map(str, args)],
        capture_output=True,
        text=True,
        env=nix_env(),
        timeout=900,
        check=False,
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_golden_and_evaluates(
    flavor: Flavor, synthetic: tuple[Path, ...], pkgs_stub: Path, tmp_path: Path
) -> None:
    plan = _plan(synthetic)
    text = render_nix(plan, flavor)
    golden = GOLDEN / f"nix-{flavor}.nix"
    if REGEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), (
        f"rerun with WHEELFIX_REGEN_GOLDEN=1 to update {golden}"
    )
    value = evaluate(text, plan, flavor, pkgs_stub, tmp_path)
    zlib = "/nix/store/" + "x" * 32 + "-pkgs.zlib"
    if flavor == "plain":
        assert zlib in value
    else:
        demo = value["demo"]
        assert zlib in demo["buildInputs"]
        assert demo["dontStrip"] is True
        assert "purepkg" not in value
        assert "libprov.so.1" not in json.dumps(value)  # another wheel's: a comment, not a package


def test_demo_needs(synthetic: tuple[Path, ...]) -> None:
    plan = _plan(synthetic)
    by_name = {p.name: p for p in plan.packages}
    assert plan.unknown == ("libfoo.so.1",)
    assert [c.attr for c, _ in by_name["demo"].inputs] == ["zlib"]
    assert by_name["consumer"].other_packages == (("libprov.so.1", ("provider",)),)
    assert {c.ref for c, _ in by_name["consumer"].inputs} == {"stdenv.cc.cc.lib"}
    assert not by_name["purepkg"].has_binaries


def test_cli_order_independent_and_exit(synthetic: tuple[Path, ...], tmp_path: Path) -> None:
    forward = _wheelfix("nix", "--flavor", "uv2nix", *synthetic)
    backward = _wheelfix("nix", "--flavor", "uv2nix", *reversed(synthetic))
    assert forward.returncode == backward.returncode == 1, forward.stderr  # libfoo.so.1 is unknown
    assert forward.stdout == backward.stdout
    assert "# UNKNOWN" in forward.stdout and "libfoo.so.1" in forward.stderr
    out = tmp_path / "wheelfix.nix"
    written = _wheelfix("nix", "--flavor", "uv2nix", "-o", out, *synthetic)
    assert written.returncode == 1
    assert written.stdout == ""
    assert out.read_text(encoding="utf-8") == forward.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["wheelfix.nix"]  # no temp file left


def test_cli_known_only_exits_0(wheels: dict[str, Path]) -> None:
    proc = _wheelfix("nix", "--flavor", "plain", wheels["example"], wheels["pure"])
    assert proc.returncode == 0, proc.stderr
    assert "pkgs.zlib" in proc.stdout


# --- every feature of the rendering, on a hand-made plan ---------------------------------------------------


def _everything() -> NixPlan:
    zlib = Candidate("zlib", "out", None)
    gcc = Candidate("stdenv.cc.cc", "lib", None)
    nvrtc = Candidate("cudaPackages.cuda_nvrtc", "lib", None)
    gl = Candidate("libGL", "out", None)
    full = PackagePlan(
        name="3d-viewer",
        wheels=("3d_viewer-1.0-cp311-cp311-linux_x86_64.whl",),
        manylinux=False,
        has_binaries=True,
        inputs=((gcc, ("libstdc++.so.6",)), (zlib, ("libz.so.1",))),
        runpaths=((nvrtc, ("libnvrtc.so.12",)),),
        driver_ignore=("libcuda.so.1", 'lib"odd${x}.so'),
        driver=True,
        other_packages=(("libtorch_cpu.so", ("torch",)),),
        hints=(("libGL.so.1", gl), ("libmystery.so", None)),
        unknown=("libfoo.so.1",),
    )
    keyword = PackagePlan(
        "if", ("if-1-py3-none-manylinux_2_17_x86_64.whl",), True, True, (), (), (), False, (), (), ()
    )
    return NixPlan((full, keyword), tuple(sorted((*full.wheels, *keyword.wheels))), "test data", "test prefs")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_feature_evaluates(flavor: Flavor, pkgs_stub: Path, tmp_path: Path) -> None:
    plan = _everything()
    text = render_nix(plan, flavor)
    value = evaluate(text, plan, flavor, pkgs_stub, tmp_path)
    store = "/nix/store/" + "x" * 32 + "-pkgs."
    if flavor == "plain":
        assert sorted(value) == [
            store + s for s in ("cudaPackages.cuda_nvrtc.lib", "stdenv.cc.cc.lib", "zlib")
        ]
        assert "libcuda.so.1" in text
        return
    pkg = value["3d-viewer"]
    assert pkg["autoPatchelfIgnoreMissingDeps"] == ["libcuda.so.1", 'lib"odd${x}.so']
    assert pkg["appendRunpaths"] == [store + "cudaPackages.cuda_nvrtc.lib/lib"]
    assert store + "autoAddDriverRunpath" in pkg["nativeBuildInputs"]
    assert (store + "autoPatchelfHook" in pkg["nativeBuildInputs"]) == (flavor != "uv2nix")
    assert value["if"] == {"dontStrip": True} or flavor == "nixpkgs"
    if flavor in ("uv2nix", "poetry2nix"):  # working code: the package of the set, and its search path
        assert "final.torch # libtorch_cpu.so" in text and "searchPath wheels" in text
        assert value["3d-viewer"]["buildInputs"][-1] == FINAL + "torch"
    else:
        assert "libtorch_cpu.so: shipped by the Python package torch" in text
    assert "libmystery.so" in text and "UNKNOWN: libfoo.so.1" in text
    if flavor == "nixpkgs":
        assert value["if"]["nativeBuildInputs"] == [store + "autoPatchelfHook"]


def test_attr_quoting() -> None:
    assert nix_attr_path("stdenv.cc.cc") == "stdenv.cc.cc"
    assert nix_attr_path("python3Packages.7zip") == 'python3Packages."7zip"'
    assert nix_attr_path("let.in") == '"let"."in"'
    assert nix_ref(Candidate("gst_all_1.gst-plugins-base", "out", "/x")) == "pkgs.gst_all_1.gst-plugins-base"
    assert nix_ref(Candidate("stdenv.cc.cc", "lib", None)) == "pkgs.stdenv.cc.cc.lib"
    assert nix_string('a"b${c}\\') == '"a\\"b\\${c}\\\\"'


# --- macOS wheels -----------------------------------------------------------------------------------------

MAC_EXT = "demo/_mac.cpython-311-darwin.so"
MAC_BUNDLED = "demo/.dylibs/libbundled.dylib"
STORE = "/nix/store/" + "x" * 32 + "-pkgs."
OMP = STORE + "llvmPackages.openmp"
ZLIB = STORE + "zlib"


def _build_mac(work: Path, arch: str, min_os: str) -> dict[str, bytes]:
    """demo's extension for macOS: a bundled dylib, Homebrew's libomp through @rpath, a leaked Homebrew
    zstd, a Fortran runtime next to it that the wheel does not ship, a weak libzmq, libSystem, a /System
    framework and the Python framework."""
    w = work / arch
    ext = mf.build(
        w / "_mac.cpython-311-darwin.so",
        arch=arch,
        kind="bundle",
        min_os=min_os,
        rpaths=["@loader_path/.dylibs", "/opt/homebrew/opt/libomp/lib"],
        deps=[
            mf.Dep("@rpath/libbundled.dylib"),
            mf.Dep("@rpath/libomp.dylib"),
            mf.Dep("/opt/homebrew/opt/zstd/lib/libzstd.1.dylib"),
            mf.Dep("@loader_path/../x/libgfortran.5.dylib"),
            mf.Dep("@rpath/libzmq.5.dylib", mode="weak"),
            mf.Dep("/usr/lib/libSystem.B.dylib"),
            mf.Dep("/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation"),
            mf.Dep("@rpath/Python.framework/Versions/3.11/Python"),
        ],
    )
    bundled = mf.build(
        w / "libbundled.dylib", arch=arch, min_os=min_os, install_name="@rpath/libbundled.dylib"
    )
    return {MAC_EXT: ext.read_bytes(), MAC_BUNDLED: bundled.read_bytes()}


def _build_odd(work: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """macodd: a framework outside /System, a library nobody provides, and a dylib of the macprov wheel."""
    ext = mf.build(
        work / "odd" / "_odd.cpython-311-darwin.so",
        kind="bundle",
        rpaths=["@loader_path/../macprov"],
        deps=[
            mf.Dep("@rpath/QtCore.framework/Versions/5/QtCore"),
            mf.Dep("@rpath/libwheelfixnosuch.2.dylib"),
            mf.Dep("@rpath/libprov.1.dylib"),
        ],
    )
    prov = mf.build(work / "odd" / "libprov.1.dylib", install_name="@rpath/libprov.1.dylib")
    return (
        {"macodd/_odd.cpython-311-darwin.so": ext.read_bytes()},
        {"macprov/libprov.1.dylib": prov.read_bytes()},
    )


@pytest.fixture(scope="module")
def mac_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in mf.TOOLS:
        require_tool(tool)
    work = tmp_path_factory.mktemp("nix-macho")
    out = work / "wheels"
    out.mkdir()
    odd, prov = _build_odd(work)
    return {
        "arm64": make_wheel(out, "demo", "cp311-cp311-macosx_11_0_arm64", _build_mac(work, "arm64", "11.0")),
        "x86_64": make_wheel(
            out, "demo", "cp311-cp311-macosx_10_13_x86_64", _build_mac(work, "x86_64", "10.13")
        ),
        "odd": make_wheel(out, "macodd", "cp311-cp311-macosx_11_0_arm64", odd),
        "prov": make_wheel(out, "macprov", "cp311-cp311-macosx_11_0_arm64", prov),
    }


def _mac_set(mac_wheels: dict[str, Path]) -> tuple[Path, ...]:
    return tuple(sorted(mac_wheels.values()))


def _mixed_set(mac_wheels: dict[str, Path], wheels: dict[str, Path]) -> tuple[Path, ...]:
    return tuple(sorted((wheels["demo"], mac_wheels["arm64"], mac_wheels["x86_64"])))


def test_linux_names() -> None:
    assert linux_names("@rpath/libomp.dylib") == ("libomp.so",)
    assert linux_names("@loader_path/../x/libgfortran.5.dylib") == ("libgfortran.so.5", "libgfortran.so")
    assert linux_names("/opt/homebrew/lib/libgcc_s.1.1.dylib") == (
        "libgcc_s.so.1.1",
        "libgcc_s.so.1",
        "libgcc_s.so",
    )
    assert linux_names("@rpath/libpng16.16.dylib") == ("libpng16.so.16", "libpng16.so")
    assert linux_names("@rpath/libgtk-3.0.dylib") == ("libgtk-3.so.0", "libgtk-3.so")
    assert linux_names("@rpath/libfoo.so.2") == ("libfoo.so.2",)
    assert linux_names("@rpath/QtCore.framework/Versions/5/QtCore") == ()


def test_macos_plan(mac_wheels: dict[str, Path]) -> None:
    plan = _plan(_mac_set(mac_wheels))
    by_name = {p.name: p for p in plan.packages}
    demo = by_name["demo"]
    assert demo.macos and not demo.elf and demo.has_binaries
    assert demo.inputs == demo.runpaths == () and demo.unknown == ()
    assert {c.ref: names for c, names in demo.darwin_inputs} == {
        "llvmPackages.openmp.out": (("@rpath/libomp.dylib", "libomp.so"),),
        "zstd.out": (("/opt/homebrew/opt/zstd/lib/libzstd.1.dylib", "libzstd.so.1"),),
        "gfortran.cc.lib": (("@loader_path/../x/libgfortran.5.dylib", "libgfortran.so.5"),),
    }
    (weak,) = demo.darwin_weak
    assert weak[:2] == ("@rpath/libzmq.5.dylib", "libzmq.so.5") and weak[2] is not None
    assert weak[2].attr == "zeromq"
    assert demo.darwin_unknown == ()
    odd = by_name["macodd"]
    assert odd.darwin_unknown == (
        "@rpath/QtCore.framework/Versions/5/QtCore",
        "@rpath/libwheelfixnosuch.2.dylib",
    )
    assert odd.darwin_other == (("@rpath/libprov.1.dylib", ("macprov",)),)
    assert plan.unknown == odd.darwin_unknown
    assert by_name["macprov"].darwin_inputs == ()


def _check_platforms(
    text: str, plan: NixPlan, flavor: Flavor, stubs: dict[str, Path], tmp: Path
) -> dict[str, Any]:
    """Evaluate on both platforms: the value per platform."""
    return {platform: evaluate(text, plan, flavor, stubs[platform], tmp) for platform in PLATFORMS}


def _golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if REGEN:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), (
        f"rerun with WHEELFIX_REGEN_GOLDEN=1 to update {golden}"
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_macos_golden_and_evaluates(
    flavor: Flavor, mac_wheels: dict[str, Path], platform_stubs: dict[str, Path], tmp_path: Path
) -> None:
    plan = _plan(_mac_set(mac_wheels))
    text = render_nix(plan, flavor)
    _golden(f"nix-darwin-{flavor}.nix", text)
    assert "x86_64-linux data" in text and "(as libomp.so)" in text and "wheelfixHook" in text
    assert "UNKNOWN (macOS): @rpath/QtCore.framework/Versions/5/QtCore" in text
    assert "@rpath/libprov.1.dylib: shipped by the Python package macprov" in text
    assert "autoPatchelf" not in text.split("{ pkgs, ... }:", 1)[1]  # nothing for Linux: no Linux wheels
    assert "libSystem" not in text and "CoreFoundation" not in text and "Python.framework" not in text
    values = _check_platforms(text, plan, flavor, platform_stubs, tmp_path)
    darwin_inputs = {OMP, STORE + "zstd", STORE + "gfortran.cc.lib"}
    if flavor == "plain":
        assert set(values["darwin"]) == darwin_inputs and len(values["darwin"]) == 3
        assert values["linux"] == []
        return
    assert set(values["darwin"]["demo"]["buildInputs"]) == darwin_inputs
    assert values["linux"]["demo"]["buildInputs"] == []
    # darwin: wheelfixHook points the install names at the buildInputs (nothing else would)
    assert values["darwin"]["demo"]["nativeBuildInputs"] == [STORE + "wheelfixHook"]
    assert values["linux"]["demo"]["nativeBuildInputs"] == []
    for platform in PLATFORMS:
        demo = values[platform]["demo"]
        assert demo["dontStrip"] is True
        assert "autoPatchelfIgnoreMissingDeps" not in demo
        assert values[platform]["macodd"] == {"dontStrip": True}
        assert STORE + "zeromq" not in json.dumps(values[platform])  # weak: a comment


@pytest.mark.parametrize("flavor", FLAVORS)
def test_mixed_golden_and_evaluates(
    flavor: Flavor,
    mac_wheels: dict[str, Path],
    wheels: dict[str, Path],
    platform_stubs: dict[str, Path],
    tmp_path: Path,
) -> None:
    plan = _plan(_mixed_set(mac_wheels, wheels))
    (demo_plan,) = plan.packages
    assert demo_plan.macos and demo_plan.elf and demo_plan.manylinux
    assert len(demo_plan.wheels) == 3
    text = render_nix(plan, flavor)
    _golden(f"nix-mixed-{flavor}.nix", text)
    assert "lib.optionals stdenv.hostPlatform.isLinux [" in text
    assert "lib.optionals stdenv.hostPlatform.isDarwin [" in text
    assert "inherit (pkgs) lib stdenv;" in text
    values = _check_platforms(text, plan, flavor, platform_stubs, tmp_path)
    if flavor == "plain":
        assert values["linux"] == [ZLIB]
        assert set(values["darwin"]) == {OMP, STORE + "zstd", STORE + "gfortran.cc.lib"}
        return
    linux, darwin = values["linux"]["demo"], values["darwin"]["demo"]
    assert linux["buildInputs"] == [ZLIB]
    assert ZLIB not in darwin["buildInputs"] and OMP in darwin["buildInputs"]
    assert darwin["nativeBuildInputs"] == [STORE + "wheelfixHook"]
    if flavor == "nixpkgs":
        assert linux["nativeBuildInputs"] == [STORE + "autoPatchelfHook"]
    else:  # manylinux: uv2nix and poetry2nix patch it themselves
        assert linux["nativeBuildInputs"] == []


def _everything_mac() -> NixPlan:
    """_everything()'s packages with macOS wheels too: every Linux attribute guarded."""
    plan = _everything()
    omp = Candidate("llvmPackages.openmp", "out", None)
    zmq = Candidate("zeromq", "out", None)
    full = replace(
        plan.packages[0],
        macos=True,
        darwin_inputs=((omp, (("@rpath/libomp.dylib", "libomp.so"),)),),
        darwin_other=(("@rpath/libtorch_cpu.dylib", ("torch",)),),
        darwin_weak=(("@rpath/libzmq.5.dylib", "libzmq.so.5", zmq), ("@rpath/libx.dylib", None, None)),
        darwin_unknown=('@rpath/Odd "name".framework/Odd',),
    )
    keyword = replace(plan.packages[1], macos=True)
    return replace(plan, packages=(full, keyword))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_feature_guarded(flavor: Flavor, platform_stubs: dict[str, Path], tmp_path: Path) -> None:
    plan = _everything_mac()
    text = render_nix(plan, flavor)
    values = _check_platforms(text, plan, flavor, platform_stubs, tmp_path)
    assert "UNKNOWN (macOS)" in text and "libtorch_cpu.dylib: shipped by the Python package torch" in text
    assert "libzmq.5.dylib: pkgs.zeromq (as libzmq.so.5)" in text
    assert plan.unknown == ('@rpath/Odd "name".framework/Odd', "libfoo.so.1")
    linux_inputs = [STORE + s for s in ("cudaPackages.cuda_nvrtc.lib", "stdenv.cc.cc.lib", "zlib")]
    if flavor == "plain":
        assert sorted(values["linux"]) == linux_inputs
        assert values["darwin"] == [OMP]
        return
    linux, darwin = values["linux"]["3d-viewer"], values["darwin"]["3d-viewer"]
    assert linux["autoPatchelfIgnoreMissingDeps"] == ["libcuda.so.1", 'lib"odd${x}.so']
    assert linux["appendRunpaths"] == [STORE + "cudaPackages.cuda_nvrtc.lib/lib"]
    assert STORE + "autoAddDriverRunpath" in linux["nativeBuildInputs"]
    assert (STORE + "autoPatchelfHook" in linux["nativeBuildInputs"]) == (flavor != "uv2nix")
    assert darwin["buildInputs"] == [OMP]
    assert darwin["nativeBuildInputs"] == [STORE + "wheelfixHook"]
    assert darwin["autoPatchelfIgnoreMissingDeps"] == darwin["appendRunpaths"] == []
    if flavor == "nixpkgs":
        assert values["linux"]["if"]["nativeBuildInputs"] == [STORE + "autoPatchelfHook"]
        assert values["darwin"]["if"]["nativeBuildInputs"] == []


def test_cli_macos(mac_wheels: dict[str, Path]) -> None:
    proc = _wheelfix("nix", "--flavor", "uv2nix", mac_wheels["arm64"], mac_wheels["x86_64"])
    assert proc.returncode == 0, proc.stderr
    assert "pkgs.llvmPackages.openmp # @rpath/libomp.dylib (as libomp.so)" in proc.stdout
    odd = _wheelfix("nix", "--flavor", "plain", *_mac_set(mac_wheels))
    assert odd.returncode == 1
    assert "@rpath/QtCore.framework/Versions/5/QtCore" in odd.stderr


# pinned like tests/integration/test_macho_repair.py's: needs Homebrew's @rpath/libomp.dylib, nothing else
# from outside
XGBOOST_ARM64 = {
    "name": "xgboost",
    "version": "3.2.0",
    "filename": "xgboost-3.2.0-py3-none-macosx_12_0_arm64.whl",
    "sha256": "eabbd40d474b8dbf6cb3536325f9150b9e6f0db32d18de9914fb3227d0bef5b7",
    "size": 2328527,
}


@pytest.mark.network
def test_real_macos_wheels(platform_stubs: dict[str, Path], tmp_path: Path) -> None:
    xgboost = fetch(XGBOOST_ARM64)
    plan = plan_nix(analyze([scan_wheel(xgboost)]), KnowledgeBase.load())
    (pkg,) = plan.packages
    assert pkg.darwin_inputs == (
        (Candidate("llvmPackages.openmp", "out", None), (("@rpath/libomp.dylib", "libomp.so"),)),
    )
    assert plan.unknown == () and pkg.inputs == ()
    for flavor in FLAVORS:
        values = _check_platforms(render_nix(plan, flavor), plan, flavor, platform_stubs, tmp_path)
        darwin = values["darwin"] if flavor == "plain" else values["darwin"]["xgboost"]["buildInputs"]
        assert darwin == [OMP]
    # numpy bundles OpenBLAS and the Fortran runtime; the rest is macOS: nothing to add, nothing unknown
    (numpy,) = (
        e for e in MACOS_WHEELS if e["filename"].endswith("macosx_11_0_arm64.whl") and e["name"] == "numpy"
    )
    plan = plan_nix(analyze([scan_wheel(fetch(numpy))]), KnowledgeBase.load())
    (pkg,) = plan.packages
    assert pkg.has_binaries and pkg.darwin_inputs == () and plan.unknown == ()
    for flavor in FLAVORS:
        _check_platforms(render_nix(plan, flavor), plan, flavor, platform_stubs, tmp_path)


# --- a real wheel -----------------------------------------------------------------------------------------


@pytest.mark.network
def test_real_opencv(pkgs_stub: Path, tmp_path: Path) -> None:
    (entry,) = (e for e in load_manifest() if e["name"] == "opencv-python-headless")
    wheel = fetch(entry)
    analysis = analyze([scan_wheel(wheel)])
    kb = KnowledgeBase.load()
    plan = plan_nix(analysis, kb)
    (pkg,) = plan.packages
    named = {s for _, sonames in (*pkg.inputs, *pkg.runpaths) for s in sonames}
    for lib in analysis.wheels[0].libraries():
        if lib.required and lib.outcome.value in ("unresolved", "manylinux_policy"):
            answer = kb.lookup(lib.soname)
            if answer.kind == "nixpkgs":
                assert lib.soname in named, lib.soname
        if lib.outcome.value == "gpu_driver":
            assert lib.soname not in named
    assert {"libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} <= named
    assert plan.unknown == ()
    known = _known_outputs(kb)
    assert all((c.attr, c.output) in known for c in referenced(plan))
    for flavor in FLAVORS:
        evaluate(render_nix(plan, flavor), plan, flavor, pkgs_stub, tmp_path)


# --- --nixpkgs: store paths by evaluation ------------------------------------------------------------------

STUB_NIXPKGS = """{ }:
let
  drv = name: outputs: builtins.listToAttrs (map (o: {
    name = o;
    value = { outPath = "/nix/store/00000000000000000000000000000000-${name}-${o}"; };
  }) outputs) // { outPath = "/nix/store/00000000000000000000000000000000-${name}-out"; };
in
{
  zlib = drv "zlib-1.3" [ "out" "dev" ];
  stdenv.cc.cc = drv "gcc-15" [ "out" "lib" ];
  libGL = throw "broken here";
}
"""


def test_lookup_nixpkgs_store_paths(tmp_path: Path) -> None:
    require_tool("nix-instantiate")
    nixpkgs = tmp_path / "nixpkgs"
    nixpkgs.mkdir()
    (nixpkgs / "default.nix").write_text(STUB_NIXPKGS, encoding="utf-8")
    proc = _wheelfix(
        "lookup", "libz.so.1", "libstdc++.so.6", "libGL.so.1", "libcuda.so.1", "--json", "--nixpkgs", nixpkgs
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    paths = {a["soname"]: (a["chosen"] or {}).get("store_path") for a in doc["answers"]}
    prefix = "/nix/store/00000000000000000000000000000000-"
    assert paths == {
        "libz.so.1": prefix + "zlib-1.3-out",
        "libstdc++.so.6": prefix + "gcc-15-lib",
        "libGL.so.1": None,  # throws in this nixpkgs
        "libcuda.so.1": None,  # never a package
    }
    text = _wheelfix("lookup", "-v", "libz.so.1", "--nixpkgs", nixpkgs)  # -v: with the provenance
    assert prefix + "zlib-1.3-out" in text.stdout and "evaluated store path" in text.stdout


def test_lookup_nixpkgs_failure_is_bad_input(tmp_path: Path) -> None:
    require_tool("nix-instantiate")
    (tmp_path / "default.nix").write_text('{ }: builtins.abort "no"', encoding="utf-8")
    proc = _wheelfix("lookup", "libz.so.1", "--nixpkgs", tmp_path)
    assert proc.returncode == 2
    assert "nix-instantiate failed" in proc.stderr

"""``wheelfix nix`` fragments and ``--nixpkgs`` store paths, checked with real Nix (Debian's nix-bin).

Every fragment is parsed with ``nix-instantiate --parse`` and evaluated with ``nix-instantiate --eval
--strict`` against a stub ``pkgs`` generated from the shipped soname table and preferences: every nixpkgs
output the knowledge base can answer exists there (as an attrset with ``outPath``), so a misspelt attribute
or output fails. Golden files: ``tests/golden/nix-<flavor>.nix``; rewrite them with
``WHEELFIX_REGEN_GOLDEN=1``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wheelfix.emit.nix import (
    FLAVORS,
    Flavor,
    NixPlan,
    PackagePlan,
    nix_attr_path,
    nix_ref,
    nix_string,
    plan_nix,
    referenced,
    render_nix,
)
from wheelfix.nixdb.kb import Candidate, KnowledgeBase
from wheelfix.resolve import analyze
from wheelfix.scan import scan_wheel

from .conftest import require_tool

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = bool(os.environ.get("WHEELFIX_REGEN_GOLDEN"))
NIX_CONFIG = (
    "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command flakes"
)
HOOKS = ("autoPatchelfHook", "autoAddDriverRunpath", "addDriverRunpath")


def _nix_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NIX_CONFIG"] = NIX_CONFIG
    return env


def _nix(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = require_tool("nix-instantiate")
    return subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, env=_nix_env(), timeout=300, check=False
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
    """A Nix file: every (attribute path, output) the knowledge base knows, as nested attrsets."""
    tree: dict[str, Any] = {}
    for attr, output in sorted(_known_outputs(KnowledgeBase.load())):
        node = tree
        for part in attr.split("."):
            node = node.setdefault(part, {})
        node["__drv__"] = True
        node.setdefault(output, {})["__drv__"] = True
        node.setdefault("out", {})["__drv__"] = True
    path = tmp / "stub-pkgs.nix"
    path.write_text(_render_tree(tree, "pkgs") + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pkgs_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_pkgs(tmp_path_factory.mktemp("nixstub"))


def _prev(plan: NixPlan) -> str:
    entries = " ".join(
        f"{nix_string(p.name)} = {{ overrideAttrs = f: f {{ }}; overridePythonAttrs = f: f {{ }}; }};"
        for p in plan.packages
    )
    return "{ " + entries + " }"


def evaluate(fragment: str, plan: NixPlan, flavor: Flavor, pkgs: Path, tmp: Path) -> Any:
    """Parse the fragment, then evaluate it fully against the stub; the JSON value."""
    frag = tmp / f"fragment-{flavor}.nix"
    frag.write_text(fragment, encoding="utf-8")
    parsed = _nix("--parse", str(frag))
    assert parsed.returncode == 0, parsed.stderr
    call = f"(import {frag}) {{ pkgs = import {pkgs}; }}"
    if flavor in ("uv2nix", "poetry2nix"):
        call = f"({call}) {{ }} {_prev(plan)}"
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
        env=_nix_env(),
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


# --- a real wheel -----------------------------------------------------------------------------------------


@pytest.mark.network
def test_real_opencv(pkgs_stub: Path, tmp_path: Path) -> None:
    from .realwheels.fetch import fetch, load_manifest

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
    text = _wheelfix("lookup", "libz.so.1", "--nixpkgs", nixpkgs)
    assert prefix + "zlib-1.3-out" in text.stdout and "evaluated store path" in text.stdout


def test_lookup_nixpkgs_failure_is_bad_input(tmp_path: Path) -> None:
    require_tool("nix-instantiate")
    (tmp_path / "default.nix").write_text('{ }: builtins.abort "no"', encoding="utf-8")
    proc = _wheelfix("lookup", "libz.so.1", "--nixpkgs", tmp_path)
    assert proc.returncode == 2
    assert "nix-instantiate failed" in proc.stderr

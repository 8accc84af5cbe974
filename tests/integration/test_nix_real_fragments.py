"""Fragments and flake outputs checked against what real nixpkgs does (issue 17, items 2, 6, 7; Deliver 4).

* Renamed attributes: a fragment naming the X.org libraries evaluates against a package set with only the
  new top-level names (nixpkgs 26.05 / unstable: ``libx11``) and against one with only the old ones
  (the stable channel before the by-name move: ``xorg.libX11``), with nixpkgs' real lib.
* dlopen hints: names found in a binary are given a package only from a curated preference or a
  version-matching soname; the pairs the issue reports (libcublas.so -> zluda, libEGL.so -> angle,
  libc.so -> musl, libcrypto.so.1.0.0 -> mailspring) never appear.
* The nixpkgs flavor is a function of the user's arguments: their own lists are extended, not replaced.
* The flake on darwin: the package evaluates without auditwheel (the test nixpkgs throws for it on darwin,
  as check-meta does for platforms.linux); formatter and app meta; the package source.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import scan_wheel
from wheelfix.nixkb.kb import Candidate, KnowledgeBase
from wheelfix.nixkb.renames import OLD_NAMES, old_name
from wheelfix.render.nix import FLAVORS, Flavor, nix_ref, plan_nix, render_nix

from tests.support import realnix
from tests.support.paths import REPO as ROOT
from tests.support.prereq import require_tool
from tests.support.realnix import SYSTEM, Flake

BAD_HINTS = {
    "libcublas.so": "zluda",
    "libEGL.so": "angle",
    "libc.so": "musl",
    "libcrypto.so.1.0.0": "mailspring",
}


def nix_eval(expr: str) -> Any:
    require_tool("nix-instantiate")
    proc = realnix.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def hinty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel needing two X.org libraries, with library names in its data (dlopen hints)."""
    return realnix.needs_wheel(
        tmp_path_factory.mktemp("hinty"),
        "hinty",
        ["libX11.so.6", "libxcb.so.1", "libXext.so.6"],
        strings=[*BAD_HINTS, "libGL.so.1", "libzstd.so.1"],
    )


# --- renamed attributes ----------------------------------------------------------------------------------


def test_the_renames_are_the_xorg_by_name_move() -> None:
    assert old_name("libx11") == "xorg.libX11" and old_name("libxcb-util") == "xorg.xcbutil"
    assert old_name("zlib") is None
    assert all(old.startswith("xorg.") for old in OLD_NAMES.values())
    # every renamed attribute is one the knowledge base can answer with (nixpkgs 26.05 names)
    kb = KnowledgeBase.load()
    known = {line.split("\t")[1] for line in kb.table.text.splitlines() if line.startswith("P\t")}
    assert {"libx11", "libxcb", "libxext", "libxrender", "libsm", "libice"} <= known & set(OLD_NAMES)
    assert nix_ref(Candidate("libx11", "out", None)) == "(pkgs.libx11 or pkgs.xorg.libX11)"
    assert nix_ref(Candidate("libx11", "dev", None)) == "(pkgs.libx11 or pkgs.xorg.libX11).dev"


def _pkgs(names: str) -> str:
    """A package set with the X.org libraries under ``new`` or ``old`` names only, nixpkgs' real lib."""
    lib = realnix.nix_sources() / "nixpkgs-lib" / "lib"
    drv = 'name: { outPath = "/nix/store/00000000000000000000000000000000-" + name; out = drv name; }'
    entries = [(n, n) for n in ("zlib", "zstd", "libGL", "autoPatchelfHook")]
    for new, old in OLD_NAMES.items():
        entries.append((new if names == "new" else old, new))
    body = "; ".join(f'{path} = drv "{label}"' for path, label in entries)
    return (
        f"(let lib = import {lib}; drv = {drv}; in lib.recursiveUpdate {{ {body}; }} {{ inherit lib; "
        "stdenv.hostPlatform = { isLinux = true; isDarwin = false; }; })"
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_fragments_evaluate_on_stable_and_unstable_names(flavor: Flavor, hinty: Path, tmp_path: Path) -> None:
    plan = plan_nix(analyze([scan_wheel(hinty)]), KnowledgeBase.load())
    text = render_nix(plan, flavor)
    assert "(pkgs.libx11 or pkgs.xorg.libX11)" in text and "(pkgs.libxext or pkgs.xorg.libXext)" in text
    fragment = tmp_path / "wheelfix.nix"
    fragment.write_text(text)
    prev = "{ hinty = { overrideAttrs = f: f { }; overridePythonAttrs = f: f { }; }; }"
    results = {}
    for names in ("new", "old"):
        call = f"(import {fragment}) {{ pkgs = {_pkgs(names)}; }}"
        if flavor in ("uv2nix", "poetry2nix"):
            call = f"(({call}) {{ }} {prev}).hinty.buildInputs"
        elif flavor == "nixpkgs":
            call = f"(({call}).hinty {{ buildInputs = [ ]; }}).buildInputs"
        results[names] = nix_eval(call)
    assert results["new"] == results["old"]  # the same packages, whichever name the channel has
    assert {p.rsplit("-", 1)[-1] for p in results["new"]} == {"libx11", "libxcb", "libxext"}


# --- dlopen hints ----------------------------------------------------------------------------------------


def test_dlopen_hints_only_curated_or_version_matching(hinty: Path) -> None:
    kb = KnowledgeBase.load()
    for soname, wrong in BAD_HINTS.items():
        chosen = kb.lookup(soname).chosen  # the table alone would name one...
        if soname.endswith(".so"):  # ...lookup no longer does for an unversioned name (issue 14)
            assert chosen is None or chosen.attr != wrong
        else:  # a versioned name only an unrelated package ships is still its answer in lookup
            assert chosen is not None and chosen.attr == wrong
        assert kb.hint(soname) is None  # ...which a hint never does
    assert kb.hint("libGL.so.1") == Candidate("libGL", "out", kb.hint("libGL.so.1").store_path)  # curated
    assert kb.hint("libzstd.so.1").attr == "zstd"  # versioned, from a store path named after it
    plan = plan_nix(analyze([scan_wheel(hinty)]), KnowledgeBase.load())
    for flavor in FLAVORS:
        text = render_nix(plan, flavor)
        for wrong in BAD_HINTS.values():
            assert f"pkgs.{wrong}" not in text, (flavor, wrong)
        assert "libcublas.so: no curated nixpkgs package for this name" in text
        assert '"${pkgs.zstd.out}/lib" in appendRunpaths' in text


# --- the nixpkgs flavor keeps the user's lists -----------------------------------------------------------


def test_nixpkgs_flavor_extends_the_users_lists(hinty: Path, tmp_path: Path) -> None:
    plan = plan_nix(analyze([scan_wheel(hinty)]), KnowledgeBase.load())
    fragment = tmp_path / "wheelfix.nix"
    fragment.write_text(render_nix(plan, "nixpkgs"))
    mine = '{ pname = "hinty"; buildInputs = [ "mine" ]; nativeBuildInputs = [ "my-hook" ]; }'
    got = nix_eval(f"((import {fragment}) {{ pkgs = {_pkgs('new')}; }}).hinty {mine}")
    assert got["pname"] == "hinty" and got["dontStrip"] is True
    assert got["buildInputs"][0] == "mine" and len(got["buildInputs"]) == 4
    assert got["nativeBuildInputs"][0] == "my-hook" and len(got["nativeBuildInputs"]) == 2


# --- the flake -------------------------------------------------------------------------------------------


def test_darwin_package_evaluates_without_auditwheel(flake: Flake) -> None:
    for system in ("aarch64-darwin", "x86_64-darwin"):
        deps = flake.eval(f"packages.{system}.wheelfix", "p: map (d: d.pname) p.stubArgs.dependencies")
        assert sorted(deps) == ["click", "isal", "packaging", "zlib-ng"]  # auditwheel: Linux only
        drv = flake.eval(f"packages.{system}.wheelfix.drvPath")
        assert drv.endswith("-wheelfix-0.1.0.drv")
        shell = flake.eval(f"devShells.{system}.default.drvPath")
        assert shell.endswith(".drv")
    # the test nixpkgs refuses auditwheel on darwin, as nixpkgs' check-meta does (platforms.linux)
    body = f"""
      let
        darwin = import {flake.stub}/pkgs.nix {{
          lib = import {flake.sources}/nixpkgs-lib/lib; system = "aarch64-darwin";
          nixSources = {flake.sources}; host = import {flake.stub}/host.nix;
        }};
      in (builtins.tryEval darwin.python3Packages.auditwheel.drvPath).success"""
    assert nix_eval(body) is False
    linux = flake.eval(f"packages.{SYSTEM}.wheelfix", "p: map (d: d.pname) p.stubArgs.dependencies")
    assert "auditwheel" in linux


def test_flake_formatter_app_meta_and_lib(flake: Flake) -> None:
    shown = json.loads(flake.nix("flake", "show", "--json", flake.ref, *flake.flags).stdout)
    for system in ("x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin"):
        assert shown["formatter"][system]["type"] == "derivation"
    meta = flake.eval(f"apps.{SYSTEM}.default.meta")
    assert "wheel" in meta["description"]
    assert sorted(flake.eval("lib", "l: builtins.attrNames l")) == ["patchWheel", "uv2nixOverrides"]


def test_package_source_is_what_the_wheel_is_built_from(flake: Flake) -> None:
    """nix/package.nix: lib.fileset on a Nix with builtins.readFileType (>= 2.14), the same files through
    builtins.path on an older one (Debian's 2.8 here): pyproject.toml, README.md, LICENSE, src/ without
    bytecode."""
    src = Path(flake.eval(f"packages.{SYSTEM}.wheelfix", 'p: "${p.stubArgs.src}"'))
    got = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "LICENSE", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert got == sorted(tracked)

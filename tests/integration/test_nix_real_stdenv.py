"""The stdenv of nixpkgs' real files, and what its fixupPhase does to a repaired wheel (issue 17, Deliver 1).

tests/nix/stub-nixpkgs/stdenv.nix builds a stdenv whose builder sources nixpkgs' unmodified setup.sh with
the default setup hooks of a Linux stdenv and patchelf's setup hook (nix-sources, never copied here), with
this host's tools as store paths. Oracles: the build log, readelf on the outputs, ``nix-store -q
--references``, and an import of the installed package in a fresh interpreter (``-I -S``) whose extension
reports where ``dlopen()`` found its library (``dlinfo``).

The defect: patchelf's setup hook runs ``patchelf --shrink-rpath`` over every ELF file of every output in
fixupPhase, keeping only directories that hold a DT_NEEDED library, so the store directory wheelfix adds
for a library a binary only dlopen()s is deleted again, and a DT_RPATH it shortens becomes DT_RUNPATH. The
fix (nix/hook.sh): the hook sets dontPatchELF unless wheelfixAllowPatchELF, and its wheelfixVerifyPhase (a
postPhase) fails the build when an installed binary lost what wheelfix wrote.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import realnix
from tests.support.paths import REPO as ROOT
from tests.support.prereq import require_tool
from tests.support.realnix import built_path, clean_import, nix_build, search_path

EXT = "_dl.cpython-311-x86_64-linux-gnu.so"


class Env:
    def __init__(self, root: Path) -> None:
        require_tool("nix-build")
        self.sources = realnix.nix_sources()
        self.stub = realnix.stub_nixpkgs(root / "stub")
        self.root = root
        # a library only dlopen()ed, in a store path of its own, and a wheel whose extension needs it
        self.dlonly = realnix.nix_store_add(realnix.build_dlonly(root / "wheelfix-test-dlonly"))
        self.wheel = realnix.dl_wheel(root, "dlmod", "libdlonly.so.1")

    def expr(self, body: str) -> str:
        # a build whose output is already valid prints no log: every expression builds anew
        return f"""
let
  nonce = "{uuid.uuid4()}";
  pkgs = {realnix.pkgs_expr(self.stub, self.sources)};
  inherit (pkgs) lib;
  wheelfix = pkgs.callPackage {ROOT}/nix/package.nix {{ }};
  wheelfixHook = pkgs.callPackage {ROOT}/nix/hook.nix {{ inherit wheelfix; }};
  patchWheel = import {ROOT}/nix/patch-wheel.nix;
  dlonly = builtins.storePath "{self.dlonly}";
  wheel = {self.wheel};
  site = "lib/python3.11/site-packages";
  # a wheel build as the Python builders lay it out: dist/ in buildPhase, installed in installPhase, then
  # stdenv's fixupPhase (strip off: prebuilt binaries)
  install = args: pkgs.stdenv.mkDerivation ({{
    name = "dlmod-installed";
    src = wheel;
    dontUnpack = true;
    buildPhase = ''mkdir dist; cp "$src" "dist/$(stripHash "$src")"'';
    installPhase = ''${{pkgs.python3.interpreter}} -I -m zipfile -e dist/*.whl "$out/${{site}}"'';
    dontStrip = true;
    inherit nonce;
  }} // args);
in
{body}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("realstdenv"))


def where(out: Path) -> str | None:
    """Where the installed dlmod's extension finds libdlonly.so.1 with dlopen(), in a fresh interpreter."""
    proc = clean_import(out / "lib/python3.11/site-packages", "import dlmod; print(dlmod.where())")
    assert proc.returncode == 0, proc.stderr
    found = proc.stdout.strip()
    return None if found == "None" else found


def test_the_stdenv_runs_nixpkgs_setup_sh_and_its_default_hooks(env: Env) -> None:
    """Phases, a setup hook's env hook, propagation into the dev output, two outputs, and the fixup hooks
    (patch-shebangs, strip, audit-tmpdir, patchELF's shrink) all come from nixpkgs' files."""
    require_tool("gcc")
    lib_dir = env.root / "wheelfix-test-unused"
    (lib_dir / "lib").mkdir(parents=True)
    unused = realnix.nix_store_add(lib_dir)
    body = f"""
    let
      hooked = pkgs.makeSetupHook {{ name = "env-hook-probe"; }} (builtins.toFile "probe.sh" ''
        probe() {{ echo "$1" >> "$NIX_BUILD_TOP/probed"; }}
        addEnvHooks "$targetOffset" probe
      '');
    in pkgs.stdenv.mkDerivation {{
      name = "real-stdenv-probe";
      inherit nonce;
      outputs = [ "out" "dev" ];
      dontUnpack = true;
      nativeBuildInputs = [ hooked ];
      buildInputs = [ pkgs.zlib ];
      propagatedBuildInputs = [ pkgs.zstd ];
      buildPhase = ''
        printf 'int main(void) {{ return 0; }}\\n' > main.c
        cc -o probe main.c -Wl,--enable-new-dtags,-rpath,{unused}/lib:${{pkgs.zlib}}/lib
        printf '#!/bin/sh\\necho hi\\n' > script
      '';
      installPhase = ''
        mkdir -p "$out/bin" "$dev"
        cp probe script "$out/bin/"
        chmod +x "$out/bin/script"
        cp "$NIX_BUILD_TOP/probed" "$out/probed"
      '';
    }}"""
    proc = nix_build(env.expr(body))
    out = built_path(proc)
    log = proc.stderr
    for line in (
        "shrinking RPATHs of ELF executables and libraries in",
        "patching script interpreter paths in",
        "checking for references to",
        "stripping (with command strip and flags -S)",
    ):
        assert line in log, line
    # shrink-rpath dropped the directory no DT_NEEDED library is in
    assert search_path(out / "bin" / "probe") is None or unused not in search_path(out / "bin" / "probe")[1]
    # patch-shebangs: /bin/sh -> a store path
    assert re.match(r"#!/nix/store/[0-9a-z]{32}-tools-host/bin/sh", (out / "bin" / "script").read_text())
    # the env hook saw the host dependencies; propagation went to the dev output (multiple-outputs.sh)
    probed = (out / "probed").read_text()
    assert "-zlib-stub" in probed and "-zstd-host" in probed
    deriver = realnix.run(["nix-store", "-q", "--deriver", out]).stdout.strip()
    outputs = realnix.run(["nix-store", "-q", "--outputs", deriver]).stdout.split()
    (dev,) = (Path(o) for o in outputs if o.endswith("-real-stdenv-probe-dev"))
    assert "-zstd-host" in (dev / "nix-support" / "propagated-build-inputs").read_text()


def test_shrink_rpath_undoes_a_dlopen_repair(env: Env, tmp_path: Path) -> None:
    """The reproduction: wheelfix's repair finds libdlonly.so.1 in the store and the extension loads it;
    stdenv's fixupPhase (patchelf --shrink-rpath) deletes that directory again."""
    # by hand: `wheelfix repair`, then patchelf --shrink-rpath as patchELF runs it
    repaired = realnix.run(
        [
            realnix.host_values()["python"],
            "-m",
            "wheelfix",
            "repair",
            env.wheel,
            "-o",
            tmp_path / "out",
            "--lib-path",
            f"{env.dlonly}/lib",
        ]
    )
    assert repaired.returncode == 0, repaired.stderr
    site = tmp_path / "site"
    shutil.unpack_archive(tmp_path / "out" / env.wheel.name, site, "zip")
    (site / "dlmod" / EXT).chmod(0o755)
    proc = clean_import(site, "import dlmod; print(dlmod.where())")
    assert proc.stdout.strip() == f"{env.dlonly}/lib/libdlonly.so.1", proc.stderr
    patchelf = realnix.host_values()["patchelf"]
    subprocess.run([patchelf, "--shrink-rpath", site / "dlmod" / EXT], check=True)
    assert search_path(site / "dlmod" / EXT) == ("RUNPATH", "$ORIGIN")
    assert clean_import(site, "import dlmod; print(dlmod.where())").stdout.strip() == "None"

    # in a Nix build through the real fixupPhase, with the hook's default turned off and its check too
    body = """install {
      nativeBuildInputs = [ wheelfixHook ];
      buildInputs = [ dlonly ];
      wheelfixAllowPatchELF = true;
      dontWheelfixVerify = true;
    }"""
    proc = nix_build(env.expr(body))
    out = built_path(proc)
    assert "shrinking RPATHs of ELF executables and libraries in" in proc.stderr
    assert f"RUNPATH $ORIGIN -> RUNPATH $ORIGIN:{env.dlonly}/lib" in proc.stderr  # the repair happened
    assert search_path(out / "lib/python3.11/site-packages/dlmod" / EXT) == ("RUNPATH", "$ORIGIN")
    assert where(out) is None


def test_a_dlopened_store_library_is_found_after_the_whole_build(env: Env) -> None:
    """The fix: with wheelfixHook (and nothing else set) the directory survives fixupPhase, the verify
    phase confirms it, the output references the library, and the installed extension loads it."""
    body = """install {
      nativeBuildInputs = [ wheelfixHook ];
      buildInputs = [ dlonly ];
    }"""
    proc = nix_build(env.expr(body))
    out = built_path(proc)
    assert "shrinking RPATHs" not in proc.stderr  # dontPatchELF, set by the hook
    assert "wheelfixVerifyPhase: 1 installed binaries keep the search paths wheelfix wrote" in proc.stderr
    ext = out / "lib/python3.11/site-packages/dlmod" / EXT
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN:{env.dlonly}/lib")
    assert env.dlonly in realnix.run(["nix-store", "-q", "--references", out]).stdout.split()
    assert where(out) == f"{env.dlonly}/lib/libdlonly.so.1"


def test_the_verify_phase_fails_the_build_when_fixup_undid_the_repair(env: Env) -> None:
    body = """install {
      nativeBuildInputs = [ wheelfixHook ];
      buildInputs = [ dlonly ];
      wheelfixAllowPatchELF = true;
    }"""
    proc = nix_build(env.expr(body))
    assert proc.returncode != 0
    assert (
        "wheelfix: the search paths wheelfix wrote were changed after the wheel was installed:" in proc.stderr
    )
    assert re.search(rf"dlmod/{re.escape(EXT)}: lost {env.dlonly}/lib \(wheelfix wrote RUNPATH", proc.stderr)
    assert "wheelfixAllowPatchELF" in proc.stderr


def test_patch_wheel_install_attrs_keep_the_repair_through_fixup(env: Env) -> None:
    """lib.patchWheel's output installed by another derivation: with .installAttrs (dontPatchELF, ...)
    the directory survives; installed without them, fixupPhase deletes it."""
    patched = "patchWheel { inherit pkgs wheelfix wheelfixHook wheel; buildInputs = [ dlonly ]; }"
    kept = built_path(nix_build(env.expr(f"install ({patched}).installAttrs")))
    assert where(kept) == f"{env.dlonly}/lib/libdlonly.so.1"
    lost = built_path(nix_build(env.expr(f"install {{ src = ({patched}).wheel; }}")))
    assert where(lost) is None

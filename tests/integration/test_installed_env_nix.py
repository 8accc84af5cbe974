"""``wheelfix nix --flavor devshell`` and ``--flavor nix-ld`` for an installed venv, evaluated with real Nix.

The fragments are parsed and evaluated with ``nix-instantiate --eval --strict`` against the stub package set
of the other fragment tests (tests/integration/test_nix_emit.py: every nixpkgs output the knowledge base
knows, as an attrset with an ``outPath``) and nixpkgs' real ``lib`` (``makeLibraryPath``, ``evalModules``,
``types.package``) from the shared nix-sources (``$WHEELFIX_NIX_SOURCES``, default ``../shared/nix-sources``
beside the repository). The nix-ld fragment is evaluated as a NixOS module next to a declaration of
``programs.nix-ld`` with NixOS's types and a default list, and its shell form (``NIX_LD_LIBRARY_PATH``, as its
header prints it) on its own.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wheelfix.render.nix_impure import NIX_LD_SHELL

from tests.integration.test_nix_emit import stub_pkgs
from tests.support.cli import RunCli, fresh_venv
from tests.support.nix import nix_env
from tests.support.prereq import require_tool
from tests.support.realnix import nix_sources

STORE = "/nix/store/" + "x" * 32 + "-pkgs."


@pytest.fixture(scope="module")
def nixpkgs_lib() -> Path:
    return nix_sources() / "nixpkgs-lib" / "lib"


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory, nixpkgs_lib: Path) -> Path:
    """The stub package set with nixpkgs' real lib, and a mkShell that returns what it was given."""
    tmp = tmp_path_factory.mktemp("env-nix")
    path = tmp / "pkgs.nix"
    path.write_text(
        f"(import {stub_pkgs(tmp)}) // {{ lib = import {nixpkgs_lib}; "
        'mkShell = args: { stubFunction = "mkShell"; inherit args; }; }\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo (libz, and libfoo that nixpkgs does not have), consumer (libstdc++, libgcc_s), provider."""
    where = tmp_path_factory.mktemp("env-nix-venv") / "venv"
    return fresh_venv(where, [wheels["demo"], wheels["provider"], wheels["consumer"], wheels["pure"]])


def nix(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("nix-instantiate")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, env=nix_env(), timeout=300, check=False
    )


def evaluate(expr: str) -> Any:
    proc = nix("--eval", "--strict", "--json", "--expr", expr)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fragment(run_cli: RunCli, venv: Path, flavor: str, where: Path) -> tuple[str, Path]:
    proc = run_cli("nix", "--flavor", flavor, "-o", where, venv)
    assert proc.returncode == 1, proc.stderr  # libfoo.so.1: no known package, listed in a comment
    assert "libfoo.so.1" in proc.stderr
    text = where.read_text(encoding="utf-8")
    parsed = nix("--parse", str(where))
    assert parsed.returncode == 0, parsed.stderr
    return text, where


def test_devshell_fragment_evaluates(run_cli: RunCli, venv: Path, pkgs: Path, tmp_path: Path) -> None:
    text, path = fragment(run_cli, venv, "devshell", tmp_path / "wheelfix-shell.nix")
    assert "UNKNOWN" in text and "Why this is impure" in text
    assert "env.LD_LIBRARY_PATH = lib.makeLibraryPath libraries;" in text
    shell = evaluate(
        f"let pkgs = import {pkgs}; in import {path} {{ inherit pkgs; packages = [ pkgs.zlib ]; }}"
    )
    assert shell["stubFunction"] == "mkShell"
    args = shell["args"]
    # nixpkgs' makeLibraryPath takes each package's lib output, else out: stdenv.cc.cc.lib, zlib.out
    assert args["env"]["LD_LIBRARY_PATH"] == f"{STORE}stdenv.cc.cc.lib/lib:{STORE}zlib.out/lib"
    assert args["packages"] == [f"{STORE}zlib"]
    assert args["passthru"]["libraries"] == [f"{STORE}stdenv.cc.cc.lib", f"{STORE}zlib"]


NIX_LD_OPTIONS = """
{ lib, pkgs, ... }:
{
  # as nixos/modules/programs/nix-ld.nix declares them
  options.programs.nix-ld = {
    enable = lib.mkEnableOption "nix-ld";
    libraries = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ pkgs.zstd ];
    };
  };
}
"""


def test_nix_ld_fragment_evaluates_as_a_module_and_a_shell(
    run_cli: RunCli, venv: Path, pkgs: Path, nixpkgs_lib: Path, tmp_path: Path
) -> None:
    text, path = fragment(run_cli, venv, "nix-ld", tmp_path / "wheelfix-nix-ld.nix")
    options = tmp_path / "nix-ld-options.nix"
    options.write_text(NIX_LD_OPTIONS, encoding="utf-8")
    value = evaluate(
        f"let lib = import {nixpkgs_lib}; pkgs = import {pkgs}; "
        f"eval = lib.evalModules {{ modules = [ {options} {path} {{ _module.args.pkgs = pkgs; }} ]; }}; "
        "in { inherit (eval.config.programs.nix-ld) enable; "
        "libraries = map toString eval.config.programs.nix-ld.libraries; }"
    )
    assert value["enable"] is True
    # nix-ld's default libraries are kept, ours follow
    assert value["libraries"] == [f"{STORE}zstd", f"{STORE}stdenv.cc.cc.lib", f"{STORE}zlib"]

    # the shell form, exactly as the header prints it, with the file where it was saved
    shown = [line.strip("# ").strip() for line in text.splitlines() if "NIX_LD_LIBRARY_PATH =" in line]
    assert shown == [NIX_LD_SHELL[0].replace("FILE", "./wheelfix-nix-ld.nix")]
    expr = re.fullmatch(r"NIX_LD_LIBRARY_PATH = (.*);", shown[0])
    assert expr is not None
    shell_path = evaluate(
        f"let pkgs = import {pkgs}; inherit (pkgs) lib; in "
        + expr.group(1).replace("./wheelfix-nix-ld.nix", str(path))
    )
    assert shell_path == f"{STORE}stdenv.cc.cc.lib/lib:{STORE}zlib.out/lib"
    assert 'NIX_LD = lib.fileContents "${pkgs.stdenv.cc}/nix-support/dynamic-linker";' in text

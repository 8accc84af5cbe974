"""Store paths of nixpkgs outputs by evaluation: ``--nixpkgs PATH_OR_FLAKE`` with ``nix-instantiate`` on PATH.

All outputs are evaluated in one ``nix-instantiate --eval --strict --json`` call. A path (a nixpkgs checkout,
or any directory / file whose ``default.nix`` takes ``{}``) is imported; anything else is a flake reference
read with ``builtins.getFlake`` (its ``legacyPackages`` or ``packages`` for the current system). An attribute
that is missing, or whose evaluation throws (unfree, broken, unsupported), gives None. Evaluation does not
build anything: the paths may not exist on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from wheelfix.errors import EXIT_BAD_INPUT, Error
from wheelfix.nixkb.kb import Candidate

__all__ = ["StorePathError", "nix_expression", "resolve_store_paths"]


class StorePathError(Error):
    """``nix-instantiate`` is missing or failed."""

    exit_code = EXIT_BAD_INPUT


def _nix_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _is_path(nixpkgs: str) -> bool:
    return nixpkgs.startswith(("/", "./", "../", "~")) or Path(nixpkgs).exists()


def nix_expression(nixpkgs: str, candidates: Sequence[Candidate]) -> str:
    """A Nix expression evaluating to the list of the candidates' store paths (null where unavailable)."""
    if _is_path(nixpkgs):
        path = Path(nixpkgs).expanduser().resolve()
        source = f"import (/. + {_nix_string(str(path))}) {{ }}"
    else:
        source = (
            f"let f = builtins.getFlake {_nix_string(nixpkgs)}; s = builtins.currentSystem; in "
            "f.legacyPackages.${s} or f.packages.${s}"
        )
    items = " ".join(
        f"(get [ {' '.join(_nix_string(p) for p in c.attr.split('.'))} ] {_nix_string(c.output)})"
        for c in candidates
    )
    return f"""let
  pkgs = {source};
  at = set: path: builtins.foldl'
    (s: n: if s != null && builtins.isAttrs s && s ? ${{n}} then s.${{n}} else null) set path;
  try = v: let r = builtins.tryEval v; in if r.success then r.value else null;
  get = path: output: try (
    let
      drv = at pkgs path;
      out = if drv == null then null else drv.${{output}} or null;
    in
    if out == null || !(out ? outPath) then null
    else let p = toString out.outPath; in builtins.seq p p
  );
in
[ {items} ]
"""


def resolve_store_paths(
    nixpkgs: str, candidates: Sequence[Candidate], *, timeout: float = 600
) -> dict[Candidate, str | None]:
    """The store path of each candidate's output in ``nixpkgs`` (None where it cannot be evaluated)."""
    unique = sorted(set(candidates))
    if not unique:
        return {}
    tool = shutil.which("nix-instantiate")
    if tool is None:
        raise StorePathError("--nixpkgs needs nix-instantiate on PATH")
    env = dict(os.environ)
    if not _is_path(nixpkgs):
        extra = "experimental-features = nix-command flakes"
        env["NIX_CONFIG"] = (env.get("NIX_CONFIG", "") + "\n" + extra).strip()
    try:
        proc = subprocess.run(
            [tool, "--eval", "--strict", "--json", "--expr", nix_expression(nixpkgs, unique)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StorePathError(f"nix-instantiate: evaluating {nixpkgs} took over {timeout:.0f}s") from None
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()
        raise StorePathError(f"nix-instantiate failed on {nixpkgs}: {' / '.join(message[-3:])}")
    try:
        values = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise StorePathError(f"nix-instantiate printed no JSON: {proc.stdout[:200]!r}") from None
    if not isinstance(values, list) or len(values) != len(unique):
        raise StorePathError(f"nix-instantiate returned {str(values)[:200]}, not {len(unique)} values")
    return {c: v if isinstance(v, str) else None for c, v in zip(unique, values, strict=True)}

"""Store paths of nixpkgs outputs by evaluation, and their realisation: ``--nixpkgs REF`` with Nix on PATH.

``REF`` is a path (a nixpkgs checkout, or any directory / file whose ``default.nix`` takes ``{ ... }``), a
lookup path such as ``<nixpkgs>`` (both imported and called with ``{ }``), or anything else, which is a flake
reference read with ``builtins.getFlake`` (``nixpkgs``, ``github:NixOS/nixpkgs/nixos-25.11``,
``path:/some/dir``; its ``legacyPackages`` or ``packages`` for the current system).

All outputs are evaluated in **one** ``nix-instantiate --eval --strict --json`` call: per output its store
path and, when it is a derivation's, the ``.drv`` file (written to the store: ``--read-write-mode``, only
when realising). An attribute that is missing, or whose evaluation throws (unfree, broken, unsupported),
gives None.
:func:`realise` then builds or substitutes the outputs with one ``nix-store --realise drv!output ...`` call; a
failure names the attributes whose outputs are still missing afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelfix.errors import EXIT_BAD_INPUT, Error
from wheelfix.nixkb.kb import Candidate
from wheelfix.nixkb.renames import old_name

__all__ = [
    "Evaluated",
    "StorePathError",
    "evaluate_outputs",
    "nix_expression",
    "realise",
    "resolve_store_paths",
]


class StorePathError(Error):
    """``nix-instantiate`` or ``nix-store`` is missing or failed, or an output could not be realised."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True, slots=True)
class Evaluated:
    """One output as ``nixpkgs`` evaluates it: its store path and the derivation that builds it (None for a
    plain store path, e.g. one made by ``nix-store --add``)."""

    candidate: Candidate
    store_path: str
    drv_path: str | None


def _nix_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _is_lookup_path(nixpkgs: str) -> bool:
    return nixpkgs.startswith("<") and nixpkgs.endswith(">") and len(nixpkgs) > 2


def _is_path(nixpkgs: str) -> bool:
    if _is_lookup_path(nixpkgs) or ":" in nixpkgs.split("/", 1)[0]:
        return False  # <nixpkgs>, or a flake reference with a scheme (path:, github:, git+https:)
    return nixpkgs.startswith(("/", "./", "../", "~")) or Path(nixpkgs).exists()


def _source(nixpkgs: str) -> str:
    if _is_lookup_path(nixpkgs):
        return f"import {nixpkgs} {{ }}"
    if _is_path(nixpkgs):
        path = Path(nixpkgs).expanduser().resolve()
        return f"import (/. + {_nix_string(str(path))}) {{ }}"
    return (
        f"let f = builtins.getFlake {_nix_string(nixpkgs)}; s = builtins.currentSystem; in "
        "f.legacyPackages.${s} or f.packages.${s}"
    )


def _path(attr: str) -> str:
    return f"[ {' '.join(_nix_string(p) for p in attr.split('.'))} ]"


def _item(c: Candidate) -> str:
    """``get [ "zlib" ] "out"``; a renamed attribute falls back to its old name, as the fragments do
    (``(pkgs.libx11 or pkgs.xorg.libX11)``)."""
    get = f"(get {_path(c.attr)} {_nix_string(c.output)})"
    old = old_name(c.attr)
    if old is None:
        return get
    return f"(let v = {get}; in if v != null then v else get {_path(old)} {_nix_string(c.output)})"


def nix_expression(nixpkgs: str, candidates: Sequence[Candidate], *, with_drv: bool = False) -> str:
    """A Nix expression evaluating to the list of the candidates' store paths (null where unavailable); with
    ``with_drv``, to a list of ``{ out; drv; }`` (``drv`` null for a store path that is no derivation's)."""
    items = " ".join(_item(c) for c in candidates)
    value = "{ out = p; drv = if out ? drvPath then toString out.drvPath else null; }" if with_drv else "p"
    return f"""let
  pkgs = {_source(nixpkgs)};
  at = set: path: builtins.foldl'
    (s: n: if s != null && builtins.isAttrs s && s ? ${{n}} then s.${{n}} else null) set path;
  try = v: let r = builtins.tryEval (builtins.deepSeq v v); in if r.success then r.value else null;
  get = path: output: try (
    let
      drv = at pkgs path;
      out = if drv == null then null else drv.${{output}} or null;
    in
    if out == null || !(out ? outPath) then null
    else let p = toString out.outPath; in {value}
  );
in
[ {items} ]
"""


def _tool(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        raise StorePathError(f"--nixpkgs needs {name} on PATH (Nix is not installed?)")
    return tool


def _env(nixpkgs: str) -> dict[str, str]:
    env = dict(os.environ)
    if not _is_path(nixpkgs) and not _is_lookup_path(nixpkgs):
        extra = "experimental-features = nix-command flakes"
        env["NIX_CONFIG"] = (env.get("NIX_CONFIG", "") + "\n" + extra).strip()
    return env


def _tail(stderr: str, lines: int = 3) -> str:
    kept = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith("warning: you did not specify '--add-root'")]
    return " / ".join(kept[-lines:]) or "no message"


def _evaluate(nixpkgs: str, unique: Sequence[Candidate], *, with_drv: bool, timeout: float) -> list[object]:
    cmd = [_tool("nix-instantiate"), "--eval", "--strict", "--json"]
    if with_drv:
        cmd.append("--read-write-mode")  # write the .drv files, so that nix-store can realise them
    cmd += ["--expr", nix_expression(nixpkgs, unique, with_drv=with_drv)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_env(nixpkgs), check=False
        )
    except subprocess.TimeoutExpired:
        raise StorePathError(f"nix-instantiate: evaluating {nixpkgs} took over {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise StorePathError(f"nix-instantiate failed on {nixpkgs}: {_tail(proc.stderr)}")
    try:
        values = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise StorePathError(f"nix-instantiate printed no JSON: {proc.stdout[:200]!r}") from None
    if not isinstance(values, list) or len(values) != len(unique):
        raise StorePathError(f"nix-instantiate returned {str(values)[:200]}, not {len(unique)} values")
    return values


def resolve_store_paths(
    nixpkgs: str, candidates: Sequence[Candidate], *, timeout: float = 600
) -> dict[Candidate, str | None]:
    """The store path of each candidate's output in ``nixpkgs`` (None where it cannot be evaluated). Builds
    nothing and writes nothing: the paths may not exist on this machine."""
    unique = sorted(set(candidates))
    if not unique:
        return {}
    values = _evaluate(nixpkgs, unique, with_drv=False, timeout=timeout)
    return {c: v if isinstance(v, str) else None for c, v in zip(unique, values, strict=True)}


def evaluate_outputs(
    nixpkgs: str, candidates: Sequence[Candidate], *, timeout: float = 600
) -> dict[Candidate, Evaluated | None]:
    """Each candidate's store path and derivation in ``nixpkgs``, in one evaluation that also writes the
    ``.drv`` files (None where the output cannot be evaluated)."""
    unique = sorted(set(candidates))
    if not unique:
        return {}
    values = _evaluate(nixpkgs, unique, with_drv=True, timeout=timeout)
    out: dict[Candidate, Evaluated | None] = {}
    for c, v in zip(unique, values, strict=True):
        if isinstance(v, dict) and isinstance(v.get("out"), str):
            drv = v.get("drv")
            out[c] = Evaluated(c, v["out"], drv if isinstance(drv, str) else None)
        else:
            out[c] = None
    return out


def _installable(e: Evaluated) -> str:
    return f"{e.drv_path}!{e.candidate.output}" if e.drv_path else e.store_path


def realise(
    outputs: Sequence[Evaluated], *, timeout: float = 3600, names: Mapping[Candidate, str] | None = None
) -> None:
    """Build or substitute every output that is not in the store yet, in one ``nix-store --realise`` call
    (``--keep-going``: what can be built is). Raises :class:`StorePathError` naming each output still
    missing afterwards (by ``names[candidate]``, e.g. ``pkgs.zlib``, else ``attr.output``)."""
    wanted = [e for e in outputs if not os.path.exists(e.store_path)]
    if not wanted:
        return
    cmd = [_tool("nix-store"), "--realise", "--keep-going", *sorted({_installable(e) for e in wanted})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise StorePathError(f"nix-store --realise took over {timeout:.0f}s") from None
    failed = [e for e in wanted if not os.path.exists(e.store_path)]
    if proc.returncode == 0 and not failed:
        return
    named = (names or {}).get
    which = ", ".join(f"{named(e.candidate) or e.candidate.ref} ({_installable(e)})" for e in failed)
    raise StorePathError(
        f"nix-store --realise could not build {which or 'the outputs'}: {_tail(proc.stderr)}"
    )

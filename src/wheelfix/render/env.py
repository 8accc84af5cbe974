"""The report of an installed environment: the interpreter, then one line per distribution with the
libraries it needs from outside the environment and the nixpkgs outputs that provide them::

    kiwisolver 1.5.1: libgcc_s.so.1, libstdc++.so.6 -> pkgs.stdenv.cc.cc.lib

The nixpkgs answers are the ones ``wheelfix nix`` uses (:func:`wheelfix.render.nix.plan_nix`), so the report
and the fragments agree. An interpreter that cannot start on this host (not from ``/nix/store``, loader
missing) is said first and once, with the nix-ld answer; the libraries are then what nix-ld must provide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wheelfix.analysis.model import Outcome, WheelAnalysis
from wheelfix.env.interpreter import Interpreter
from wheelfix.env.model import UNRECORDED, EnvAnalysis
from wheelfix.render.nix import NixPlan, PackagePlan, nix_ref
from wheelfix.render.text import render_inspect

__all__ = ["interpreter_advice", "render_env"]

_ARROW = "->"


def interpreter_advice(interp: Interpreter, env: str = "ENV") -> str:
    """What to do about an interpreter whose loader this host lacks (``env``: the environment, as given)."""
    return (
        f"its loader {interp.loader} is not on this host and it is not from /nix/store, so it cannot start "
        "here and nothing in this environment loads. On NixOS, enable nix-ld, which serves that loader "
        f"(`wheelfix nix --flavor nix-ld {env}` gives programs.nix-ld.libraries for the libraries below), or "
        'make the venv with a Nix Python: uv venv --python "$(command -v python3)" (and '
        "UV_PYTHON_DOWNLOADS=never)"
    )


def _interpreter_lines(interp: Interpreter | None, env: str) -> list[str]:
    if interp is None:
        return ["  interpreter: not known (a bare site-packages directory)"]
    if interp.problem is not None:
        return [f"  interpreter {interp.path}: {interp.problem}"]
    origin = "from /nix/store" if interp.in_store else "not from /nix/store"
    parts = [origin]
    if interp.loader is not None:
        parts.append(f"loader {interp.loader} ({'present' if interp.loader_present else 'MISSING'})")
    if interp.libpython is not None:
        where = interp.libpython_path or "not on its own search path"
        parts.append(f"{interp.libpython} at {where}")
    lines = [f"  interpreter {interp.real_path}: {'; '.join(parts)}"]
    if interp.cannot_start:
        lines.append(f"  CANNOT START: {interpreter_advice(interp, env)}")
    return lines


@dataclass(frozen=True, slots=True)
class _Row:
    label: str  # "kiwisolver 1.5.1"
    text: str  # what it needs, or "" when nothing from outside


def _label(env: EnvAnalysis, w: WheelAnalysis) -> str:
    d = env.owner(w)
    if d is None:
        return f"{UNRECORDED} ({len(w.elf) + len(w.macho)} binaries)"
    return f"{d.display_name} {d.version}" + (" (editable)" if d.editable else "")


def _needs_text(p: PackagePlan | None, w: WheelAnalysis) -> str:
    parts: list[str] = []
    if p is not None:
        if p.inputs:
            sonames = sorted({s for _, names in p.inputs for s in names})
            parts.append(f"{', '.join(sonames)} {_ARROW} {', '.join(nix_ref(c) for c, _ in p.inputs)}")
        if p.unknown:
            parts.append(f"{', '.join(p.unknown)} {_ARROW} UNKNOWN (no known nixpkgs package)")
        if p.driver_ignore:
            parts.append(f"{', '.join(p.driver_ignore)} {_ARROW} the GPU driver (/run/opengl-driver/lib)")
    darwin = [
        lib.soname
        for lib in WheelAnalysis(w.scan, (), w.macho).libraries()
        if lib.outcome is Outcome.UNRESOLVED
    ]
    if darwin:
        parts.append(f"{', '.join(darwin)} {_ARROW} unresolved (macOS)")
    return "; ".join(parts)


def _notes(env: EnvAnalysis, w: WheelAnalysis, label: str) -> list[str]:
    notes: list[str] = []
    for lib in w.libraries():
        r = lib.resolution
        if lib.outcome in (Outcome.BUNDLED, Outcome.OTHER_WHEEL) and not r.reachable and lib.required:
            notes.append(
                f"{label}: {lib.soname} ({r.member}) is not on the search path of "
                f"{', '.join(lib.needed_by[:2])}: it loads only if something loaded it first"
            )
    pinned = [lib.soname for lib in w.libraries() if lib.outcome is Outcome.NIX_STORE]
    if pinned:
        notes.append(f"{label}: from /nix/store (repaired): {', '.join(pinned)}")
    return notes


def render_env(env: EnvAnalysis, plan: NixPlan, *, verbose: bool = False) -> str:
    """The report of ``env``; ``plan`` is ``plan_nix(env.analysis, kb)``."""
    layout, interp = env.layout, env.interpreter
    made = f" made by {layout.config.creator}" if layout.config else ""
    version = f", Python {env.scan.python_version}" if env.scan.python_version != "3" else ""
    binaries = sum(len(w.elf) + len(w.macho) for w in env.analysis.wheels)
    with_binaries = sum(1 for w in env.analysis.wheels if env.owner(w) is not None)
    lines = [
        f"{layout.given}: {layout.kind}{made}{version}",
        *_interpreter_lines(interp, layout.given),
        f"  {len(env.distributions)} distributions, {with_binaries} with binaries; {binaries} binaries"
        + (f", {len(env.unrecorded)} not in any RECORD" if env.unrecorded else ""),
    ]
    by_name = {p.name: p for p in plan.packages}
    rows: list[_Row] = []
    notes: list[str] = []
    for w in env.analysis.wheels:
        label = _label(env, w)
        rows.append(_Row(label, _needs_text(by_name.get(_plan_name(w)), w)))
        notes += _notes(env, w, label)
    needing = [r for r in rows if r.text]
    fine = [r.label for r in rows if not r.text]
    if needing:
        cannot = interp is not None and interp.cannot_start
        head = "libraries nix-ld must provide" if cannot else "needs libraries from outside the environment"
        lines += ["", f"{head}:", *(f"  {r.label}: {r.text}" for r in needing)]
    if fine:
        lines += ["", "needs met (inside the environment, glibc, libpython):", f"  {', '.join(fine)}"]
    if notes:
        lines += ["", "notes:", *(f"  {n}" for n in notes)]
    text = "\n".join(lines) + "\n"
    if verbose and env.analysis.wheels:
        text += "\n" + render_inspect(env.analysis, verbose=True)
    return text


def _plan_name(w: WheelAnalysis) -> str:
    """The name :func:`~wheelfix.render.nix.plan_nix` files a distribution under."""
    return re.sub(r"[-_.]+", "-", w.scan.meta.name).lower()

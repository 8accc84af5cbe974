"""Text and JSON (``wheelfix/schema/lookup-v1.json``) renderings of lookup answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wheelfix import __version__
from wheelfix.nixkb.kb import Answer, Candidate

__all__ = ["SCHEMA_VERSION", "lookup_document", "render_lookup"]

SCHEMA_VERSION = 1

_KIND_TEXT = {
    "nixpkgs": "nixpkgs",
    "glibc": "glibc (nothing to add)",
    "gpu_driver": "GPU driver (never a package)",
    "python": "the Python interpreter (nothing to add)",
    "other_wheel": "another wheel",
    "unknown": "unknown",
}


def _candidate(c: Candidate) -> dict[str, Any]:
    return {"attr": c.attr, "output": c.output, "store_path": c.store_path}


def lookup_document(answers: Sequence[Answer], database: Mapping[str, str]) -> dict[str, Any]:
    return {
        "schema": "wheelfix-lookup",
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wheelfix", "version": __version__},
        "database": dict(sorted(database.items())),
        "unknown": [a.soname for a in answers if not a.known],
        "answers": [
            {
                "soname": a.soname,
                "kind": a.kind,
                "chosen": _candidate(a.chosen) if a.chosen else None,
                "alternatives": [_candidate(c) for c in a.alternatives],
                "wheels": list(a.wheels),
                "reason": a.reason,
                "provenance": a.provenance,
            }
            for a in answers
        ],
    }


def _nix(c: Candidate) -> str:
    from wheelfix.render.nix import nix_ref  # the same spelling as `wheelfix nix` fragments

    return nix_ref(c)


def _answer_lines(a: Answer, asked: str | None, verbose: bool, max_alternatives: int) -> list[str]:
    head = a.soname if asked is None or asked.strip() == a.soname else f"{a.soname} (from {asked.strip()!r})"
    lines: list[str] = []
    if a.chosen is not None:
        lines.append(f"{head}: {_nix(a.chosen)}")
        lines.append(f"  store path:   {a.chosen.store_path or '- (not in the nix-index data)'}")
    else:
        lines.append(f"{head}: {_KIND_TEXT[a.kind]}")
    if a.wheels:
        lines.append(f"  wheels:       {', '.join(a.wheels)}")
    lines.append(f"  why:          {a.reason}")
    if a.alternatives:
        shown = ", ".join(_nix(c) for c in a.alternatives[:max_alternatives])
        more = len(a.alternatives) - max_alternatives
        label = "alternatives:" if a.kind == "nixpkgs" else "in nixpkgs:  "
        lines.append(f"  {label} {shown}" + (f" and {more} more" if more > 0 else ""))
    if verbose:
        if a.chosen is not None:
            lines.append(f"  attribute:    {a.chosen.attr}, output {a.chosen.output}")
        lines.append(f"  provenance:   {a.provenance}")
    return lines


def render_lookup(
    answers: Sequence[Answer],
    database: str,
    *,
    max_alternatives: int = 6,
    asked: Sequence[str] | None = None,
    verbose: bool = False,
) -> str:
    """One block per answer, the chosen output written as Nix (``pkgs.stdenv.cc.cc.lib``). ``asked``: what
    the user typed, per answer (shown when it is not the name itself: a path, a pasted error line).
    ``verbose``: also the attribute and output, the provenance of each answer and the data's full line."""
    lines: list[str] = []
    for i, a in enumerate(answers):
        lines += _answer_lines(a, asked[i] if asked else None, verbose, max_alternatives)
    unknown = [a.soname for a in answers if not a.known]
    if verbose:
        lines.append("")
        lines.append(f"data: {database}")
    if unknown:
        lines.append(f"unknown: {', '.join(unknown)}")
    return "\n".join(lines) + "\n"

"""``wheelfix nix``: a Nix fragment that gives every Python package of the analysed wheels the nixpkgs
libraries its binaries need, in the shape a Nix Python tool takes (uv2nix/pyproject.nix, poetry2nix, nixpkgs'
``buildPythonPackage``, or a plain list).

:func:`plan_nix` decides, per Python package, what to add; :func:`render_nix` writes it. Both are pure and
deterministic: the same wheels in any order give the same text.

How nixpkgs outputs are written: the default output ``out`` as ``pkgs.<attr>`` (stdenv turns a build input
into its dev output, which propagates ``out``), any other output explicitly, ``pkgs.<attr>.<output>`` (e.g.
``pkgs.stdenv.cc.cc.lib``); a library directory in a string always names its output:
``"${pkgs.zlib.out}/lib"``.

What each outcome becomes:

* a required need (DT_NEEDED or a ``.note.dlopen``) that nixpkgs provides -> ``buildInputs`` (autoPatchelf
  resolves both kinds from the inputs' ``lib/``); a need that is only dlopen'd also -> ``appendRunpaths``;
* a GPU driver library -> ``autoPatchelfIgnoreMissingDeps`` plus ``autoAddDriverRunpath``;
* a library another Python package ships -> a comment naming that package;
* glibc, libpython, bundled libraries -> nothing;
* dlopen hints (``lib*.so*`` strings, not requirements) -> a comment with the package that would provide them;
* no known provider -> a comment; the caller exits 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import BadInput
from ..model import Analysis, Library, Outcome, Source
from ..nixdb.kb import Candidate, KnowledgeBase

__all__ = [
    "FLAVORS",
    "Flavor",
    "NixPlan",
    "PackagePlan",
    "nix_attr_path",
    "nix_ref",
    "nix_string",
    "plan_nix",
    "referenced",
    "render_nix",
]

Flavor = Literal["uv2nix", "poetry2nix", "nixpkgs", "plain"]
FLAVORS: tuple[Flavor, ...] = get_args(Flavor)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")
_KEYWORDS = frozenset({"assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with"})
_NEEDS_NOTHING = (Outcome.GLIBC, Outcome.PYTHON, Outcome.BUNDLED, Outcome.MACOS_SYSTEM)


def nix_string(text: str) -> str:
    """``text`` as a double-quoted Nix string literal."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _attr_name(name: str) -> str:
    """One attribute name, quoted when Nix needs quotes (leading digit, dots, keywords, ...)."""
    return name if _IDENT.fullmatch(name) and name not in _KEYWORDS else nix_string(name)


def nix_attr_path(attr: str) -> str:
    """``stdenv.cc.cc`` -> ``stdenv.cc.cc``; ``python3Packages.7zip`` -> ``python3Packages."7zip"``."""
    return ".".join(_attr_name(part) for part in attr.split("."))


def nix_ref(c: Candidate) -> str:
    """The build-input expression of a nixpkgs output: ``pkgs.zlib``, ``pkgs.stdenv.cc.cc.lib``."""
    base = f"pkgs.{nix_attr_path(c.attr)}"
    return base if c.output == "out" else f"{base}.{_attr_name(c.output)}"


def _lib_dir(c: Candidate) -> str:
    """A string with the output's lib directory: ``"${pkgs.zlib.out}/lib"``."""
    return f'"${{pkgs.{nix_attr_path(c.attr)}.{_attr_name(c.output)}}}/lib"'


def _comment(text: str) -> str:
    """Text safe for a ``#`` comment: one line, printable."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_project(filename: str | None) -> str:
    return _normalize(filename.split("-", 1)[0]) if filename else "?"


@dataclass(frozen=True, slots=True)
class PackagePlan:
    """What one Python package (PEP 503 name) gets. Tuples are sorted; each item names its sonames."""

    name: str
    wheels: tuple[str, ...]  # file names
    manylinux: bool  # every wheel has a manylinux tag (poetry2nix adds autoPatchelfHook itself then)
    has_binaries: bool
    inputs: tuple[tuple[Candidate, tuple[str, ...]], ...]  # buildInputs
    runpaths: tuple[tuple[Candidate, tuple[str, ...]], ...]  # required, only dlopen'd: appendRunpaths
    driver_ignore: tuple[str, ...]  # GPU driver sonames autoPatchelf would miss
    driver: bool  # some binary uses a GPU driver library: add the driver runpath
    other_packages: tuple[tuple[str, tuple[str, ...]], ...]  # soname -> Python packages that ship it
    hints: tuple[tuple[str, Candidate | None], ...]  # dlopen hints (not requirements)
    unknown: tuple[str, ...]  # required, no known provider


@dataclass(frozen=True, slots=True)
class NixPlan:
    packages: tuple[PackagePlan, ...]  # by name
    wheels: tuple[str, ...]  # file names, sorted
    database: str  # provenance of the answers
    preferences: str

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(sorted({s for p in self.packages for s in p.unknown}))


class _Acc:
    def __init__(self, name: str) -> None:
        self.name = name
        self.wheels: set[str] = set()
        self.manylinux = True
        self.has_binaries = False
        self.inputs: dict[Candidate, set[str]] = {}
        self.runpaths: dict[Candidate, set[str]] = {}
        self.driver_ignore: set[str] = set()
        self.driver = False
        self.other: dict[str, set[str]] = {}
        self.hints: dict[str, Candidate | None] = {}
        self.unknown: set[str] = set()
        self.needed: set[str] = set()  # sonames some binary has as DT_NEEDED / required note

    def plan(self) -> PackagePlan:
        def grouped(d: dict[Candidate, set[str]]) -> tuple[tuple[Candidate, tuple[str, ...]], ...]:
            return tuple(sorted((_key(c), tuple(sorted(s))) for c, s in d.items()))

        runpaths = {c: s for c, s in self.runpaths.items() if c not in self.inputs or s - self.needed}
        return PackagePlan(
            name=self.name,
            wheels=tuple(sorted(self.wheels)),
            manylinux=self.manylinux,
            has_binaries=self.has_binaries,
            inputs=grouped(self.inputs),
            runpaths=grouped(runpaths),
            driver_ignore=tuple(sorted(self.driver_ignore)),
            driver=self.driver,
            other_packages=tuple(sorted((s, tuple(sorted(p))) for s, p in self.other.items())),
            hints=tuple(
                sorted(
                    ((s, c) for s, c in self.hints.items() if s not in self.needed),
                    key=lambda item: item[0],
                )
            ),
            unknown=tuple(sorted(self.unknown)),
        )


def _key(c: Candidate) -> Candidate:
    """Store paths differ between data sets; the fragment only names attributes."""
    return Candidate(c.attr, c.output, None)


def _add_library(acc: _Acc, lib: Library, kb: KnowledgeBase) -> None:
    if lib.outcome in _NEEDS_NOTHING:
        return
    if lib.outcome is Outcome.OTHER_WHEEL:
        acc.other.setdefault(lib.soname, set()).add(_wheel_project(lib.resolution.wheel))
        return
    dlopen_only = Source.NEEDED not in lib.sources
    if lib.outcome is Outcome.GPU_DRIVER:
        acc.driver = True
        if lib.required or Source.DLOPEN_NOTE in lib.sources:
            acc.driver_ignore.add(lib.soname)
        return
    try:
        answer = kb.lookup(lib.soname)
    except BadInput:  # not a name a package could have (whitespace, '/')
        answer = None
    if not lib.required:
        if answer is None or answer.kind in ("nixpkgs", "unknown"):
            acc.hints.setdefault(lib.soname, answer.chosen if answer else None)
        elif answer.kind == "gpu_driver":
            acc.driver = True
        elif answer.kind == "other_wheel":
            acc.other.setdefault(lib.soname, set()).update(answer.wheels or ("?",))
        return
    acc.needed.add(lib.soname)
    if answer is None or answer.kind == "unknown":
        acc.unknown.add(lib.soname)
    elif answer.kind == "nixpkgs" and answer.chosen is not None:
        chosen = _key(answer.chosen)
        if dlopen_only:
            acc.runpaths.setdefault(chosen, set()).add(lib.soname)
        acc.inputs.setdefault(chosen, set()).add(lib.soname)
    elif answer.kind == "gpu_driver":
        acc.driver = True
        acc.driver_ignore.add(lib.soname)
    elif answer.kind == "other_wheel":
        acc.other.setdefault(lib.soname, set()).update(_normalize(w) for w in answer.wheels or ("?",))


def plan_nix(analysis: Analysis, kb: KnowledgeBase) -> NixPlan:
    """Per Python package, the nixpkgs outputs and settings its wheels' binaries need."""
    accs: dict[str, _Acc] = {}
    for wheel in analysis.wheels:
        meta = wheel.scan.meta
        name = _normalize(meta.name)
        acc = accs.setdefault(name, _Acc(name))
        acc.wheels.add(meta.filename)
        acc.manylinux = acc.manylinux and any(t.startswith("manylinux") for t in meta.platform_tags)
        acc.has_binaries = acc.has_binaries or bool(wheel.binaries)
        for lib in wheel.libraries():
            _add_library(acc, lib, kb)
    return NixPlan(
        packages=tuple(accs[n].plan() for n in sorted(accs)),
        wheels=tuple(sorted(w.scan.meta.filename for w in analysis.wheels)),
        database=kb.database_short,
        preferences=kb.preferences.name,
    )


# --- rendering ---------------------------------------------------------------------------------------------

_USAGE: dict[Flavor, tuple[str, ...]] = {
    "uv2nix": (
        "an overlay for a uv2nix / pyproject.nix package set, after the workspace overlay:",
        "  lib.composeManyExtensions [ pyproject-build-systems.overlays.wheel overlay",
        "    (import ./wheelfix.nix { inherit pkgs; }) ]",
        "(pyproject.nix adds autoPatchelfHook and dontStrip to wheels itself; dontStrip is repeated here)",
    ),
    "poetry2nix": (
        "poetry2nix overrides:",
        "  overrides = defaultPoetryOverrides.extend (import ./wheelfix.nix { inherit pkgs; });",
    ),
    "nixpkgs": (
        "attributes to merge into buildPythonPackage, per package:",
        '  python.pkgs.buildPythonPackage ({ pname = "NAME"; format = "wheel"; ... }',
        "    // (import ./wheelfix.nix { inherit pkgs; }).NAME)",
    ),
    "plain": (
        "the nixpkgs outputs every wheel here needs, as one list (e.g. buildInputs of wheelfixHook or",
        "lib.patchWheel): buildInputs = import ./wheelfix.nix { inherit pkgs; };",
    ),
}


def _header(plan: NixPlan, flavor: Flavor) -> list[str]:
    lines = [
        f"# Generated by `wheelfix nix --flavor {flavor}` for:",
        *(f"#   {_comment(w)}" for w in plan.wheels),
        f"# nixpkgs attributes from {_comment(plan.database)}, preferences {_comment(plan.preferences)}.",
        "# Use as " + _USAGE[flavor][0],
        *(f"# {line}" for line in _USAGE[flavor][1:]),
    ]
    unknown = [(p.name, p.unknown) for p in plan.packages if p.unknown]
    if unknown:
        lines.append(
            "# UNKNOWN: no nixpkgs package is known to provide these; add what provides them yourself:"
        )
        lines.extend(f"#   {p}: {_comment(', '.join(sonames))}" for p, sonames in unknown)
    return lines


def _list(indent: str, items: Sequence[tuple[str, str]]) -> list[str]:
    """``[ item # comment ... ]`` one item per line (the opening bracket goes on the caller's line)."""
    return [f"{indent}  {expr}" + (f" # {_comment(note)}" if note else "") for expr, note in items] + [
        f"{indent}]"
    ]


def _notes(indent: str, p: PackagePlan) -> list[str]:
    lines: list[str] = []
    for soname, packages in p.other_packages:
        lines.append(
            f"{indent}# {_comment(soname)}: shipped by the Python package {_comment(', '.join(packages))}; "
            "keep it installed"
        )
    if p.other_packages:
        lines.append(
            f"{indent}#   (autoPatchelf does not search other packages' site-packages: add the package to"
        )
        lines.append(
            f"{indent}#   buildInputs + addAutoPatchelfSearchPath, or the soname to "
            "autoPatchelfIgnoreMissingDeps)"
        )
    if p.hints:
        lines.append(f"{indent}# dlopen'd if present (names found in the binaries, not requirements):")
        for soname, c in p.hints:
            where = f"{_lib_dir(c)} in appendRunpaths" if c else "no known nixpkgs package"
            lines.append(f"{indent}#   {_comment(soname)}: {where}")
    for soname in p.unknown:
        lines.append(f"{indent}# UNKNOWN: {_comment(soname)}: no known nixpkgs package provides it")
    return lines


def _package_attrs(indent: str, p: PackagePlan, flavor: Flavor) -> list[str]:
    """The attributes of one override / buildPythonPackage argument set."""
    extend = flavor != "nixpkgs"

    def assign(attr: str, items: Sequence[tuple[str, str]]) -> list[str]:
        if not items:
            return []
        head = f"{indent}{attr} = (old.{attr} or [ ]) ++ [" if extend else f"{indent}{attr} = ["
        return [head, *_list(indent, items)[:-1], f"{indent}];"]

    native: list[tuple[str, str]] = []
    if flavor == "nixpkgs" or (flavor == "poetry2nix" and not p.manylinux):
        native.append(("pkgs.autoPatchelfHook", ""))
    if p.driver:
        native.append(("pkgs.autoAddDriverRunpath", "adds the GPU driver's lib dir (/run/opengl-driver/lib)"))
    lines = _notes(indent, p)
    lines += assign("buildInputs", [(nix_ref(c), ", ".join(s)) for c, s in p.inputs])
    lines += assign("nativeBuildInputs", native)
    lines += assign(
        "autoPatchelfIgnoreMissingDeps", [(nix_string(s), "the GPU driver's") for s in p.driver_ignore]
    )
    lines += assign("appendRunpaths", [(_lib_dir(c), "dlopen: " + ", ".join(s)) for c, s in p.runpaths])
    lines.append(f"{indent}dontStrip = true;")
    return lines


def _render_overlay(plan: NixPlan, flavor: Flavor) -> list[str]:
    method = "overrideAttrs" if flavor == "uv2nix" else "overridePythonAttrs"
    lines = ["{ pkgs, ... }:", "final: prev: {"]
    for p in plan.packages:
        if not p.has_binaries:
            lines.append(f"  # {_comment(p.name)}: no binaries, nothing to add")
            continue
        name = _attr_name(p.name)
        lines.append(f"  {name} = prev.{name}.{method} (old: {{")
        lines += _package_attrs("    ", p, flavor)
        lines.append("  });")
    lines.append("}")
    return lines


def _render_nixpkgs(plan: NixPlan) -> list[str]:
    lines = ["{ pkgs, ... }:", "{"]
    for p in plan.packages:
        if not p.has_binaries:
            lines.append(f"  # {_comment(p.name)}: no binaries, nothing to add")
            continue
        lines.append(f"  {_attr_name(p.name)} = {{")
        lines += _package_attrs("    ", p, "nixpkgs")
        lines.append("  };")
    lines.append("}")
    return lines


def _render_plain(plan: NixPlan) -> list[str]:
    users: dict[Candidate, dict[str, set[str]]] = {}
    for p in plan.packages:
        for c, sonames in (*p.inputs, *p.runpaths):
            users.setdefault(c, {}).setdefault(p.name, set()).update(sonames)
    lines = ["{ pkgs, ... }:"]
    for p in plan.packages:
        notes = _notes("", p)
        if p.driver:
            notes.append(
                "# GPU driver libraries: "
                + (", ".join(p.driver_ignore) or "dlopen'd")
                + " (ignore them when patching; add the driver's lib dir, /run/opengl-driver/lib, "
                "to the runpath)"
            )
        if notes:
            lines.append(f"# {_comment(p.name)}:")
            lines += [f"#  {line[1:]}" if line.startswith("#") else line for line in notes]
    items = [
        (
            nix_ref(c),
            "; ".join(f"{name}: {', '.join(sorted(s))}" for name, s in sorted(users[c].items())),
        )
        for c in sorted(users)
    ]
    lines += ["[", *_list("", items)] if items else ["[ ]"]
    return lines


def render_nix(plan: NixPlan, flavor: Flavor) -> str:
    """The fragment: a function of ``{ pkgs, ... }``, in ``flavor``'s shape."""
    if flavor == "plain":
        body = _render_plain(plan)
    elif flavor == "nixpkgs":
        body = _render_nixpkgs(plan)
    else:
        body = _render_overlay(plan, flavor)
    return "\n".join([*_header(plan, flavor), *body]) + "\n"


def referenced(plan: NixPlan) -> Iterable[Candidate]:
    """Every nixpkgs output the fragment names (for tests and store-path resolution)."""
    seen: set[Candidate] = set()
    for p in plan.packages:
        for c, _ in (*p.inputs, *p.runpaths):
            seen.add(c)
        for _, hint in p.hints:
            if hint is not None:
                seen.add(_key(hint))
    return sorted(seen)

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

macOS (Mach-O) wheels get a darwin part: macOS system libraries (``/usr/lib``, ``/System/Library``), the
Python framework / libpython and bundled dylibs need nothing, another wheel's dylib is a comment, and any
other install name is looked up by its file name mapped to the Linux name the knowledge base knows
(:func:`linux_names`: ``libomp.dylib`` -> ``libomp.so``, ``libgfortran.5.dylib`` -> ``libgfortran.so.5``).
The data is x86_64-linux only, so each darwin item says which Linux name answered. Darwin has no
autoPatchelfHook: darwin libraries go to ``buildInputs`` only. A package with macOS wheels gets its Linux
lists wrapped in ``lib.optionals stdenv.hostPlatform.isLinux`` and its darwin ones in ``...isDarwin``, so
one fragment serves both; fragments without macOS wheels are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from wheelfix.analysis.model import Analysis, Library, Outcome, Source, WheelAnalysis
from wheelfix.errors import BadInput
from wheelfix.nixkb.kb import Answer, Candidate, KnowledgeBase

__all__ = [
    "FLAVORS",
    "Flavor",
    "NixPlan",
    "PackagePlan",
    "linux_names",
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
# NIX_STORE: the binary already names the store path (a repaired wheel); Nix tracks it as a reference
_NEEDS_NOTHING = (Outcome.GLIBC, Outcome.PYTHON, Outcome.BUNDLED, Outcome.MACOS_SYSTEM, Outcome.NIX_STORE)


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
    # macOS: set when some wheel is a macOS wheel (or has Mach-O binaries); the Linux and darwin parts are
    # then guarded by stdenv.hostPlatform. Darwin items name (install name, Linux name that answered).
    macos: bool = False
    elf: bool = True  # some wheel has ELF binaries (with ``macos``: False means nothing for Linux)
    darwin_inputs: tuple[tuple[Candidate, tuple[tuple[str, str], ...]], ...] = ()
    darwin_other: tuple[tuple[str, tuple[str, ...]], ...] = ()  # install name -> Python packages
    darwin_weak: tuple[tuple[str, str | None, Candidate | None], ...] = ()  # weak: loaded if present
    darwin_unknown: tuple[str, ...] = ()  # required install names with no answer

    @property
    def all_unknown(self) -> tuple[str, ...]:
        return (*self.unknown, *self.darwin_unknown)


@dataclass(frozen=True, slots=True)
class NixPlan:
    packages: tuple[PackagePlan, ...]  # by name
    wheels: tuple[str, ...]  # file names, sorted
    database: str  # provenance of the answers
    preferences: str

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(sorted({s for p in self.packages for s in p.all_unknown}))

    @property
    def macos(self) -> bool:
        return any(p.macos for p in self.packages)


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
        self.macos = False
        self.elf = False
        self.d_inputs: dict[Candidate, set[tuple[str, str]]] = {}
        self.d_other: dict[str, set[str]] = {}
        self.d_weak: dict[str, tuple[str | None, Candidate | None]] = {}
        self.d_unknown: set[str] = set()
        self.d_needed: set[str] = set()

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
            macos=self.macos,
            elf=self.elf,
            darwin_inputs=tuple(sorted((c, tuple(sorted(s))) for c, s in self.d_inputs.items())),
            darwin_other=tuple(sorted((s, tuple(sorted(p))) for s, p in self.d_other.items())),
            darwin_weak=tuple(
                sorted(
                    ((s, linux, c) for s, (linux, c) in self.d_weak.items() if s not in self.d_needed),
                    key=lambda item: item[0],
                )
            ),
            darwin_unknown=tuple(sorted(self.d_unknown)),
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


_DYLIB = re.compile(r"(?P<stem>.+?)(?P<version>(?:\.\d+)*)\.dylib")


def linux_names(install_name: str) -> tuple[str, ...]:
    """The Linux sonames to look a Mach-O install name up by, best first: its file name with
    ``libX.N.M.dylib`` -> ``libX.so.N.M``, ``libX.so.N``, ``libX.so``; ``libX.dylib`` -> ``libX.so``. A
    ``.so`` file name is taken as it is; anything else (a framework's binary) has none."""
    base = install_name.rsplit("/", 1)[-1]
    m = _DYLIB.fullmatch(base)
    if m is None:
        return (base,) if base.endswith(".so") or ".so." in base else ()
    stem, parts = m["stem"], m["version"].split(".")[1:]
    names = [f"{stem}.so." + ".".join(parts[:k]) for k in range(len(parts), 0, -1)]
    names.append(f"{stem}.so")
    return tuple(names)


def _darwin_answer(install_name: str, kb: KnowledgeBase) -> tuple[str | None, Answer | None]:
    """The first Linux name the knowledge base knows, with its answer; (None, None) when none is known."""
    for name in linux_names(install_name):
        try:
            answer = kb.lookup(name)
        except BadInput:
            continue
        if answer.known:
            return name, answer
    return None, None


def _add_darwin_library(acc: _Acc, lib: Library, kb: KnowledgeBase) -> None:
    if lib.outcome in _NEEDS_NOTHING:
        return
    if lib.outcome is Outcome.OTHER_WHEEL:
        acc.d_other.setdefault(lib.soname, set()).add(_wheel_project(lib.resolution.wheel))
        return
    linux, answer = _darwin_answer(lib.soname, kb)
    if answer is not None and answer.kind == "python":
        return
    if not lib.required:
        chosen = answer.chosen if answer is not None and answer.kind == "nixpkgs" else None
        acc.d_weak.setdefault(lib.soname, (linux if chosen else None, _key(chosen) if chosen else None))
        return
    acc.d_needed.add(lib.soname)
    if answer is not None and answer.kind == "nixpkgs" and answer.chosen is not None and linux is not None:
        acc.d_inputs.setdefault(_key(answer.chosen), set()).add((lib.soname, linux))
    elif answer is not None and answer.kind == "other_wheel":
        acc.d_other.setdefault(lib.soname, set()).update(_normalize(w) for w in answer.wheels or ("?",))
    else:  # no answer, or one that means nothing on macOS (glibc, a GPU driver library)
        acc.d_unknown.add(lib.soname)


def _is_macos(wheel: WheelAnalysis) -> bool:
    return bool(wheel.macho) or any(t.startswith("macosx") for t in wheel.scan.meta.platform_tags)


def plan_nix(analysis: Analysis, kb: KnowledgeBase) -> NixPlan:
    """Per Python package, the nixpkgs outputs and settings its wheels' binaries need."""
    accs: dict[str, _Acc] = {}
    for wheel in analysis.wheels:
        meta = wheel.scan.meta
        name = _normalize(meta.name)
        acc = accs.setdefault(name, _Acc(name))
        acc.wheels.add(meta.filename)
        macos = _is_macos(wheel)
        acc.macos = acc.macos or macos
        if not macos:  # poetry2nix patches manylinux wheels itself; a macOS wheel says nothing about that
            acc.manylinux = acc.manylinux and any(t.startswith("manylinux") for t in meta.platform_tags)
        acc.elf = acc.elf or bool(wheel.elf)
        acc.has_binaries = acc.has_binaries or bool(wheel.elf) or bool(wheel.macho)
        for lib in WheelAnalysis(wheel.scan, wheel.elf).libraries():
            _add_library(acc, lib, kb)
        for lib in WheelAnalysis(wheel.scan, (), wheel.macho).libraries():
            _add_darwin_library(acc, lib, kb)
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


_MACOS_HEADER = (
    "# macOS wheels: an install name that is not part of macOS, the Python framework or a wheel is looked up",
    "#   by its file name mapped to a Linux name (libX.N.dylib -> libX.so.N, then libX.so); the attribute is",
    '#   the answer of the x86_64-linux data for that name ("as libX.so.N" below): check that nixpkgs',
    "#   builds it for darwin.",
    "# darwin has no autoPatchelfHook: darwin libraries are only buildInputs, and the install names",
    "#   (@rpath/libomp.dylib, leaked /opt/homebrew/... paths) must be pointed at them. wheelfixHook",
    "#   (overlays.default of wheelfix's flake, nix/hook.sh) in nativeBuildInputs does that before",
    "#   installPhase: `wheelfix repair` with the buildInputs' lib dirs points each at the store dylib of",
    "#   that file name and re-signs (by hand: `wheelfix repair --from-env`).",
)
_IS_LINUX = "stdenv.hostPlatform.isLinux"
_IS_DARWIN = "stdenv.hostPlatform.isDarwin"
_LET = ("let", "  inherit (pkgs) lib stdenv;", "in")


def _header(plan: NixPlan, flavor: Flavor) -> list[str]:
    lines = [
        f"# Generated by `wheelfix nix --flavor {flavor}` for:",
        *(f"#   {_comment(w)}" for w in plan.wheels),
        f"# nixpkgs attributes from {_comment(plan.database)}, preferences {_comment(plan.preferences)}.",
        "# Use as " + _USAGE[flavor][0],
        *(f"# {line}" for line in _USAGE[flavor][1:]),
    ]
    if plan.macos:
        lines.extend(_MACOS_HEADER)
    unknown = [(p.name, p.all_unknown) for p in plan.packages if p.all_unknown]
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
    for name, packages in p.darwin_other:
        shipped = f"shipped by the Python package {_comment(', '.join(packages))}; keep it installed"
        lines.append(f"{indent}# macOS: {_comment(name)}: {shipped}")
    if p.darwin_weak:
        lines.append(f"{indent}# macOS: weak dylibs (loaded if present, not requirements):")
        for name, linux, c in p.darwin_weak:
            where = f"{nix_ref(c)} (as {linux})" if c and linux else "no known nixpkgs package"
            lines.append(f"{indent}#   {_comment(name)}: {_comment(where)}")
    for name in p.darwin_unknown:
        tried = linux_names(name)
        how = f"looked up as {', '.join(tried)}" if tried else "no Linux name to look it up by: not a *.dylib"
        unknown = f"{_comment(name)}: no known nixpkgs package provides it ({_comment(how)})"
        lines.append(f"{indent}# UNKNOWN (macOS): {unknown}")
    return lines


def _darwin_items(p: PackagePlan) -> list[tuple[str, str]]:
    return [
        (nix_ref(c), ", ".join(f"{name} (as {linux})" for name, linux in names))
        for c, names in p.darwin_inputs
    ]


def _package_attrs(indent: str, p: PackagePlan, flavor: Flavor) -> list[str]:
    """The attributes of one override / buildPythonPackage argument set."""
    extend = flavor != "nixpkgs"

    def assign(
        attr: str, items: Sequence[tuple[str, str]], darwin: Sequence[tuple[str, str]] = ()
    ) -> list[str]:
        if not p.macos:
            if not items:
                return []
            head = f"{indent}{attr} = (old.{attr} or [ ]) ++ [" if extend else f"{indent}{attr} = ["
            return [head, *_list(indent, items)[:-1], f"{indent}];"]
        # guarded: the Linux list on Linux, the darwin list on darwin
        parts = [(cond, part) for cond, part in ((_IS_LINUX, items), (_IS_DARWIN, darwin)) if part]
        if not parts:
            return []
        lines = []
        for i, (cond, part) in enumerate(parts):
            opener = f"lib.optionals {cond} ["
            if i == 0:
                lines.append(f"{indent}{attr} = " + (f"(old.{attr} or [ ]) ++ " if extend else "") + opener)
            else:
                lines.append(f"{indent}] ++ {opener}")
            lines += _list(indent, part)[:-1]
        return [*lines, f"{indent}];"]

    native: list[tuple[str, str]] = []
    linux = p.elf or not p.macos
    if linux and (flavor == "nixpkgs" or (flavor == "poetry2nix" and not p.manylinux)):
        native.append(("pkgs.autoPatchelfHook", ""))
    if p.driver:
        native.append(("pkgs.autoAddDriverRunpath", "adds the GPU driver's lib dir (/run/opengl-driver/lib)"))
    lines = _notes(indent, p)
    lines += assign("buildInputs", [(nix_ref(c), ", ".join(s)) for c, s in p.inputs], _darwin_items(p))
    lines += assign("nativeBuildInputs", native)
    lines += assign(
        "autoPatchelfIgnoreMissingDeps", [(nix_string(s), "the GPU driver's") for s in p.driver_ignore]
    )
    lines += assign("appendRunpaths", [(_lib_dir(c), "dlopen: " + ", ".join(s)) for c, s in p.runpaths])
    lines.append(f"{indent}dontStrip = true;")
    return lines


def _render_overlay(plan: NixPlan, flavor: Flavor) -> list[str]:
    method = "overrideAttrs" if flavor == "uv2nix" else "overridePythonAttrs"
    lines = ["{ pkgs, ... }:", *(_LET if plan.macos else ()), "final: prev: {"]
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
    lines = ["{ pkgs, ... }:", *(_LET if plan.macos else ()), "{"]
    for p in plan.packages:
        if not p.has_binaries:
            lines.append(f"  # {_comment(p.name)}: no binaries, nothing to add")
            continue
        lines.append(f"  {_attr_name(p.name)} = {{")
        lines += _package_attrs("    ", p, "nixpkgs")
        lines.append("  };")
    lines.append("}")
    return lines


def _users(pairs: Iterable[tuple[str, Candidate, str]]) -> list[tuple[str, str]]:
    """(package, output, what it covers) -> one item per output, naming every package's sonames."""
    users: dict[Candidate, dict[str, list[str]]] = {}
    for name, c, what in pairs:
        users.setdefault(c, {}).setdefault(name, []).append(what)
    return [
        (
            nix_ref(c),
            "; ".join(f"{name}: {', '.join(sorted(set(s)))}" for name, s in sorted(users[c].items())),
        )
        for c in sorted(users)
    ]


def _render_plain(plan: NixPlan) -> list[str]:
    items = _users(
        (p.name, c, soname)
        for p in plan.packages
        for c, sonames in (*p.inputs, *p.runpaths)
        for soname in sonames
    )
    lines = ["{ pkgs, ... }:", *(_LET if plan.macos else ())]
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
    if not plan.macos:
        lines += ["[", *_list("", items)] if items else ["[ ]"]
        return lines
    darwin = _users(
        (p.name, c, f"{name} (as {linux})")
        for p in plan.packages
        for c, names in p.darwin_inputs
        for name, linux in names
    )
    parts = [(cond, part) for cond, part in ((_IS_LINUX, items), (_IS_DARWIN, darwin)) if part]
    if not parts:
        return [*lines, "[ ]"]
    for i, (cond, part) in enumerate(parts):
        lines.append(("" if i == 0 else "++ ") + f"lib.optionals {cond} [")
        lines += _list("", part)
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
        for c, _names in p.darwin_inputs:
            seen.add(c)
        for _, _linux, weak in p.darwin_weak:
            if weak is not None:
                seen.add(weak)
        for _, hint in p.hints:
            if hint is not None:
                seen.add(_key(hint))
    return sorted(seen)

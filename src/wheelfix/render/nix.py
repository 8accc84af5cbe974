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
* a required need that wheels of the same set may ship (the knowledge base names them: the nvidia-* wheels
  for CUDA, cmeel-*, torch's libc10.so, ...) -> in the uv2nix/poetry2nix flavors the first of those
  packages the set has (``sibling [ "nvidia-cublas-cu12" ] pkgs.cudaPackages.libcublas.lib``: nixpkgs'
  output only when the set has none, so one CUDA runtime ends up in the closure), in ``buildInputs`` and
  on autoPatchelf's search path; in the other flavors the nixpkgs output, noting the wheel;
* a library another Python package of the call ships -> in the uv2nix/poetry2nix flavors ``final.<pkg>``
  in ``buildInputs`` plus ``addAutoPatchelfSearchPath`` (preFixup), which is what the builders need; a
  comment naming that package in the others;
* a GPU driver library -> ``autoPatchelfIgnoreMissingDeps`` plus ``autoAddDriverRunpath``;
* glibc, libpython, bundled libraries -> nothing;
* dlopen hints (``lib*.so*`` strings, not requirements) -> a comment, naming a package only when a curated
  preference or a version-matching soname says which (:meth:`KnowledgeBase.hint`);
* no known provider -> a comment; the caller exits 1.

Lists are extended with ``append``, which copes with what other overrides leave there: poetry2nix's
default overrides set ``autoPatchelfIgnoreMissingDeps = true`` for torch, cupy, vllm, ... (``true`` stays
``true``). The nixpkgs flavor gives per package a function of buildPythonPackage's arguments (``old:
old // { ... }``), never a set to ``//`` over the user's own lists. Renamed nixpkgs attributes are written
with their old path as a fallback (``(pkgs.libx11 or pkgs.xorg.libX11)``, :mod:`wheelfix.nixkb.renames`)
so the fragment evaluates on the stable channel and on unstable. A fragment that names an unfree
``cudaPackages`` output says so in its header (allowUnfree / cudaSupport).

macOS (Mach-O) wheels get a darwin part: macOS system libraries (``/usr/lib``, ``/System/Library``), the
Python framework / libpython and bundled dylibs need nothing, another wheel's dylib is a comment, and any
other install name is looked up by its file name mapped to the Linux name the knowledge base knows
(:func:`linux_names`: ``libomp.dylib`` -> ``libomp.so``, ``libgfortran.5.dylib`` -> ``libgfortran.so.5``).
The data is x86_64-linux only, so each darwin item says which Linux name answered. Darwin has no
autoPatchelfHook: darwin libraries go to ``buildInputs``, and ``wheelfixHook`` to ``nativeBuildInputs``
(it points the install names at them). A package with macOS wheels gets its Linux
lists wrapped in ``lib.optionals stdenv.hostPlatform.isLinux`` and its darwin ones in ``...isDarwin``, so
one fragment serves both; fragments without macOS wheels are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from wheelfix.analysis.model import Analysis, Library, Outcome, Source, WheelAnalysis
from wheelfix.analysis.policy import is_musl_libc
from wheelfix.errors import BadInput
from wheelfix.nixkb.kb import Answer, Candidate, KnowledgeBase
from wheelfix.nixkb.renames import old_name

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


def _package(attr: str) -> str:
    """``pkgs.zlib``; for a renamed attribute the old path as the fallback, so that the fragment evaluates
    on a nixpkgs from before the rename too: ``(pkgs.libx11 or pkgs.xorg.libX11)``."""
    new = f"pkgs.{nix_attr_path(attr)}"
    old = old_name(attr)
    return f"({new} or pkgs.{nix_attr_path(old)})" if old else new


def nix_ref(c: Candidate) -> str:
    """The build-input expression of a nixpkgs output: ``pkgs.zlib``, ``pkgs.stdenv.cc.cc.lib``,
    ``(pkgs.libx11 or pkgs.xorg.libX11)``."""
    base = _package(c.attr)
    return base if c.output == "out" else f"{base}.{_attr_name(c.output)}"


def _lib_dir(c: Candidate) -> str:
    """A string with the output's lib directory: ``"${pkgs.zlib.out}/lib"``."""
    return f'"${{{_package(c.attr)}.{_attr_name(c.output)}}}/lib"'


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
    # required needs that wheels of the same set may provide: (PyPI projects best first, the nixpkgs output
    # to use when the set has none of them or None, sonames). The KB knows them: CUDA libraries (the
    # nvidia-* wheels, else unfree cudaPackages.*), cmeel-* builds, torch's libc10.so, ...
    wheel_inputs: tuple[tuple[tuple[str, ...], Candidate | None, tuple[str, ...]], ...] = ()
    # musllinux wheels (file names): no nixpkgs input makes nixpkgs' glibc Python load them
    musl: tuple[str, ...] = ()

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

    @property
    def musl(self) -> tuple[str, ...]:
        """musllinux wheels: built for musl libc, never loadable into nixpkgs' (glibc) Python."""
        return tuple(sorted({w for p in self.packages for w in p.musl}))


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
        self.wheel_inputs: dict[tuple[tuple[str, ...], Candidate | None], set[str]] = {}
        self.musl: set[str] = set()

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
            wheel_inputs=tuple(
                sorted(
                    ((names, c, tuple(sorted(sonames))) for (names, c), sonames in self.wheel_inputs.items()),
                    key=lambda item: (item[0], item[2]),
                )
            ),
            musl=tuple(sorted(self.musl)),
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
            # a name found in the binary: only a curated or a version-matching answer (KnowledgeBase.hint)
            acc.hints.setdefault(lib.soname, kb.hint(lib.soname))
        elif answer.kind == "gpu_driver":
            acc.driver = True
        elif answer.kind == "other_wheel":
            acc.other.setdefault(lib.soname, set()).update(answer.wheels or ("?",))
        return
    acc.needed.add(lib.soname)
    wheels = tuple(_normalize(w) for w in answer.wheels) if answer is not None else ()
    if wheels and acc.name not in wheels and answer is not None and answer.kind in ("nixpkgs", "other_wheel"):
        fallback = _key(answer.chosen) if answer.kind == "nixpkgs" and answer.chosen is not None else None
        acc.wheel_inputs.setdefault((wheels, fallback), set()).add(lib.soname)
    elif answer is None or answer.kind == "unknown":
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
            if is_musl_libc(lib.soname):  # musl's libc: a musllinux wheel, not a need pkgs.musl meets
                acc.musl.add(meta.filename)
                continue
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
        "(uv2nix's builder adds autoPatchelfHook and dontStrip to every Linux wheel; dontStrip is repeated",
        "here)",
    ),
    "poetry2nix": (
        "poetry2nix overrides:",
        "  overrides = defaultPoetryOverrides.extend (import ./wheelfix.nix { inherit pkgs; });",
        "(poetry2nix adds autoPatchelfHook to manylinux wheels only: this adds it to the others)",
    ),
    "nixpkgs": (
        "functions, one per package, from buildPythonPackage's arguments to the same arguments with",
        "what the wheel needs added (the lists are extended, never replaced):",
        "  fix = import ./wheelfix.nix { inherit pkgs; };",
        '  python.pkgs.buildPythonPackage (fix.NAME { pname = "NAME"; format = "wheel"; ... })',
        "  # or: NAME.overridePythonAttrs fix.NAME",
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
    "# darwin has no autoPatchelfHook: darwin libraries are buildInputs, and wheelfixHook (overlays.default",
    "#   of wheelfix's flake, nix/hook.sh), added to nativeBuildInputs on darwin here, points the install",
    "#   names (@rpath/libomp.dylib, leaked /opt/homebrew/... paths) at them before installPhase: `wheelfix",
    "#   repair` with the buildInputs' lib dirs, then an ad-hoc re-signature.",
)
_CUDA_HEADER = (
    "# CUDA: nixpkgs' cudaPackages are unfree: import nixpkgs with config.allowUnfree = true (and",
    "#   config.cudaSupport = true for nixpkgs' own CUDA builds) where this fragment names them.",
)
_CUDA_WHEELS = (
    "#   A library an nvidia-* wheel ships comes from that wheel when the package set has it (`sibling`",
    "#   below): one CUDA runtime in the closure, the one the lock pins; cudaPackages only otherwise.",
)
# poetry2nix's default overrides define every nvidia-*-cu11/-cu12 attribute, locked or not, so the set
# cannot say which are there: the wheels given to `wheelfix nix` decide
_CUDA_WHEELS_POETRY = (
    "#   poetry2nix's package set cannot say which nvidia-* wheels are locked: give those wheels to",
    "#   `wheelfix nix` together with this one, and their packages are used instead of cudaPackages.",
)
_IS_LINUX = "stdenv.hostPlatform.isLinux"
_IS_DARWIN = "stdenv.hostPlatform.isDarwin"
_WHEELFIX_HOOK = (
    '(pkgs.wheelfixHook or (throw "wheelfix.nix: add overlays.default of the wheelfix flake to nixpkgs'
    ' (for wheelfixHook)"))'
)
# `old.X or [ ]` may be a Boolean (poetry2nix's default overrides set autoPatchelfIgnoreMissingDeps = true,
# or `old.src.isWheel or false`), a string or null: true stays true (everything is ignored already), false
# and null are empty, anything else becomes a list
_LET = (
    "let",
    "  inherit (pkgs) lib stdenv;",
    "  # an old list may be a Boolean (poetry2nix's default overrides set some to true), a string or null",
    "  append =",
    "    old: new:",
    "    if old == true then true else lib.optionals (old != false && old != null) (lib.toList old) ++ new;",
    "in",
)
_SIBLING_FN = (
    "  # the first of these Python packages the set has (their wheels ship a library), else `fallback`",
    "  sibling =",
    "    names: fallback:",
    "    let",
    "      present = lib.filter (name: final ? ${name}) names;",
    "    in",
    "    if present != [ ] then final.${lib.head present} else fallback;",
)
_SEARCH_PATH_FN = (
    "  # autoPatchelf searches only <input>/lib: the Python packages' own directories too",
    "  searchPath =",
    "    drvs:",
    '    lib.optionalString (drvs != [ ]) ("if declare -F addAutoPatchelfSearchPath >/dev/null; then\\n"',
    '      + lib.concatMapStrings (drv: "addAutoPatchelfSearchPath ${drv}\\n") drvs + "fi\\n");',
)


def _cuda(plan: NixPlan) -> tuple[bool, bool]:
    """(some nixpkgs output named is a cudaPackages one, some of them has nvidia-* wheels instead)."""
    named = any(
        c.attr.startswith("cudaPackages")
        for p in plan.packages
        for c in (*(c for c, _ in p.inputs), *(c for _, c, _ in p.wheel_inputs if c is not None))
    )
    wheels = any(
        c is not None and c.attr.startswith("cudaPackages")
        for p in plan.packages
        for _, c, _ in p.wheel_inputs
    )
    return named, wheels


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
    cuda, cuda_wheels = _cuda(plan)
    if cuda:
        lines.extend(_CUDA_HEADER)
        if cuda_wheels and flavor == "uv2nix":
            lines.extend(_CUDA_WHEELS)
        elif cuda_wheels and flavor == "poetry2nix":
            lines.extend(_CUDA_WHEELS_POETRY)
    if plan.musl:
        lines.append(
            "# MUSLLINUX: built for musl libc (a musl-based Python such as Alpine's); nixpkgs' Python uses "
            "glibc and cannot load them whatever is added here: use the manylinux wheels instead:"
        )
        lines.extend(f"#   {_comment(w)}" for w in plan.musl)
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


def _overlay(flavor: Flavor) -> bool:
    return flavor in ("uv2nix", "poetry2nix")


def _notes(indent: str, p: PackagePlan, flavor: Flavor = "plain") -> list[str]:
    lines: list[str] = []
    if not _overlay(flavor):
        for soname, packages in p.other_packages:
            shipped = f"shipped by the Python package {_comment(', '.join(packages))}"
            lines.append(f"{indent}# {_comment(soname)}: {shipped}; keep it installed")
        if p.other_packages:
            lines.append(
                f"{indent}#   (autoPatchelf does not search other packages' site-packages: add the package to"
            )
            lines.append(
                f"{indent}#   buildInputs + addAutoPatchelfSearchPath, or the soname to "
                "autoPatchelfIgnoreMissingDeps)"
            )
    if flavor != "uv2nix":
        for names, fallback, sonames in p.wheel_inputs:
            if fallback is None:
                shipped = f"shipped by the Python package {_comment(' or '.join(names))}"
                lines.append(f"{indent}# {_comment(', '.join(sonames))}: {shipped}; keep it installed")
    if p.hints:
        lines.append(f"{indent}# dlopen'd if present (names found in the binaries, not requirements):")
        for soname, c in p.hints:
            where = f"{_lib_dir(c)} in appendRunpaths" if c else "no curated nixpkgs package for this name"
            lines.append(f"{indent}#   {_comment(soname)}: {where}")
    for soname in p.unknown:
        lines.append(f"{indent}# UNKNOWN: {_comment(soname)}: no known nixpkgs package provides it")
    for wheel in p.musl:
        lines.append(f"{indent}# MUSLLINUX: {_comment(wheel)}: for musl libc; nixpkgs' Python cannot load it")
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


def _wheel_items(p: PackagePlan, flavor: Flavor) -> list[tuple[str, str]]:
    """Overlay flavors: the Python packages of the set that ship a library the package needs: those of
    the wheels given (``final.<pkg>``), and in the uv2nix flavor the ones the knowledge base names when
    the set has them (``sibling``; a uv2nix set holds only the lock's packages and build systems)."""
    by_package: dict[str, list[str]] = {}
    for soname, pkgs in p.other_packages:
        for pkg in pkgs:
            by_package.setdefault(pkg, []).append(soname)
    items = [(f"final.{_attr_name(pkg)}", ", ".join(sonames)) for pkg, sonames in sorted(by_package.items())]
    if flavor != "uv2nix":
        return items
    for names, fallback, sonames in p.wheel_inputs:
        choices = "[ " + " ".join(nix_string(n) for n in names) + " ]"
        if fallback is not None:
            otherwise = nix_ref(fallback)
        else:
            message = (
                f"wheelfix.nix: {p.name} needs {', '.join(sonames)}, which the Python package "
                f"{' or '.join(names)} ships: none is in this package set"
            )
            otherwise = f"(throw {nix_string(message)})"
        items.append((f"(sibling {choices} {otherwise})", ", ".join(sonames)))
    return items


def _fallback_items(p: PackagePlan) -> list[tuple[str, str]]:
    """Other flavors: the nixpkgs output of each need a wheel may provide."""
    return [
        (nix_ref(c), f"{', '.join(sonames)} (the wheel of {' or '.join(names)} has it too)")
        for names, c, sonames in p.wheel_inputs
        if c is not None
    ]


def _package_attrs(indent: str, p: PackagePlan, flavor: Flavor, wheels: bool) -> list[str]:
    """The attributes of one override / buildPythonPackage argument set. ``wheels``: a ``wheels`` list
    is bound (overlay flavors) and goes into buildInputs."""

    def assign(
        attr: str,
        items: Sequence[tuple[str, str]],
        darwin: Sequence[tuple[str, str]] = (),
        extra: str | None = None,
    ) -> list[str]:
        """``attr = append (old.attr or [ ]) (...)``: the Linux list (plus ``extra``) and, when the package
        has macOS wheels, both lists guarded by the platform."""
        parts: list[tuple[str | None, Sequence[tuple[str, str]]]]
        if p.macos:
            parts = [(cond, part) for cond, part in ((_IS_LINUX, items), (_IS_DARWIN, darwin)) if part]
        else:
            parts = [(None, items)] if items else []
        if not parts and extra is None:
            return []
        if not parts and extra is not None and not p.macos:
            return [f"{indent}{attr} = append (old.{attr} or [ ]) {extra};"]
        if len(parts) == 1 and parts[0][0] is None and extra is None:
            return [
                f"{indent}{attr} = append (old.{attr} or [ ]) [",
                *_list(indent, parts[0][1])[:-1],
                f"{indent}];",
            ]
        lines = [f"{indent}{attr} = append (old.{attr} or [ ]) ("]
        for i, (cond, part) in enumerate(parts):
            joiner = "  " if i == 0 else "  ++ "
            opener = f"lib.optionals {cond} [" if cond else "["
            lines.append(f"{indent}{joiner}{opener}")
            lines += [f"  {line}" for line in _list(indent, part)]
        if extra is not None:
            guard = f"lib.optionals {_IS_LINUX} " if p.macos else ""
            lines.append(f"{indent}{'  ++ ' if parts else '  '}{guard}{extra}")
        return [*lines, f"{indent});"]

    native: list[tuple[str, str]] = []
    linux = p.elf or not p.macos
    if linux and (flavor == "nixpkgs" or (flavor == "poetry2nix" and not p.manylinux)):
        native.append(("pkgs.autoPatchelfHook", ""))
    if p.driver:
        native.append(("pkgs.autoAddDriverRunpath", "adds the GPU driver's lib dir (/run/opengl-driver/lib)"))
    darwin_native = (
        [(_WHEELFIX_HOOK, "points the install names at the buildInputs")] if p.darwin_inputs else []
    )
    inputs = [(nix_ref(c), ", ".join(s)) for c, s in p.inputs]
    if flavor != "uv2nix":
        inputs += _fallback_items(p)
    lines = _notes(indent, p, flavor)
    lines += assign("buildInputs", inputs, _darwin_items(p), "wheels" if wheels else None)
    lines += assign("nativeBuildInputs", native, darwin_native)
    lines += assign(
        "autoPatchelfIgnoreMissingDeps", [(nix_string(s), "the GPU driver's") for s in p.driver_ignore]
    )
    lines += assign("appendRunpaths", [(_lib_dir(c), "dlopen: " + ", ".join(s)) for c, s in p.runpaths])
    if wheels:
        linux_wheels = f"(lib.optionals {_IS_LINUX} wheels)" if p.macos else "wheels"
        # toString: poetry2nix's overrides leave `lib.optionals cond "..."`, a list on darwin
        lines.append(f'{indent}preFixup = toString (old.preFixup or "") + searchPath {linux_wheels};')
    lines.append(f"{indent}dontStrip = true;")
    return lines


def _render_overlay(plan: NixPlan, flavor: Flavor) -> list[str]:
    method = "overrideAttrs" if flavor == "uv2nix" else "overridePythonAttrs"
    body: list[str] = []
    for p in plan.packages:
        if not p.has_binaries:
            body.append(f"  # {_comment(p.name)}: no binaries, nothing to add")
            continue
        name = _attr_name(p.name)
        items = _wheel_items(p, flavor)
        if not items:
            body.append(f"  {name} = prev.{name}.{method} (old: {{")
            body += _package_attrs("    ", p, flavor, wheels=False)
            body.append("  });")
            continue
        body.append(f"  {name} = prev.{name}.{method} (")
        body.append("    old:")
        if items:
            body += [
                "    let",
                "      # Python packages of this set whose wheels ship a library it needs",
                "      wheels = [",
            ]
            body += [*_list("      ", items)[:-1], "      ];", "    in"]
        body.append("    {")
        body += _package_attrs("      ", p, flavor, wheels=bool(items))
        body += ["    }", "  );"]
    used = [item for p in plan.packages if p.has_binaries for item, _ in _wheel_items(p, flavor)]
    helpers: list[str] = []
    if any(item.startswith("(sibling ") for item in used):
        helpers += _SIBLING_FN
    if used:
        helpers += _SEARCH_PATH_FN
    return [
        "{ pkgs, ... }:",
        *_LET,
        "final: prev:",
        *(("let", *helpers, "in") if helpers else ()),
        "{",
        *body,
        "}",
    ]


def _render_nixpkgs(plan: NixPlan) -> list[str]:
    lines = ["{ pkgs, ... }:", *_LET, "{"]
    for p in plan.packages:
        if not p.has_binaries:
            lines.append(f"  # {_comment(p.name)}: no binaries, nothing to add")
            continue
        lines.append(f"  {_attr_name(p.name)} =")
        lines.append("    old:")
        lines.append("    old")
        lines.append("    // {")
        lines += _package_attrs("      ", p, "nixpkgs", wheels=False)
        lines.append("    };")
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
        [
            *(
                (p.name, c, soname)
                for p in plan.packages
                for c, sonames in (*p.inputs, *p.runpaths)
                for soname in sonames
            ),
            *(
                (p.name, c, f"{soname} (or the wheel of {' or '.join(names)})")
                for p in plan.packages
                for names, c, sonames in p.wheel_inputs
                if c is not None
                for soname in sonames
            ),
        ]
    )
    lines = ["{ pkgs, ... }:", *(("let", "  inherit (pkgs) lib stdenv;", "in") if plan.macos else ())]
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
        for _projects, fallback, _needs in p.wheel_inputs:
            if fallback is not None:
                seen.add(fallback)
        for c, _names in p.darwin_inputs:
            seen.add(c)
        for _, _linux, weak in p.darwin_weak:
            if weak is not None:
                seen.add(weak)
        for _, hint in p.hints:
            if hint is not None:
                seen.add(_key(hint))
    return sorted(seen)

"""Which nixpkgs package provides a soname: the lookup behind ``wheelfix lookup``. Stdlib only.

An answer comes from the first of these that knows the soname:

1. :mod:`wheelfix.analysis.policy`: glibc (stdenv's libc, nothing to add), a GPU driver library (the host's
   driver, never a package) or libpython (the interpreter);
2. the curated preferences (``soname-preferences.tsv``): the canonical package when several ship the
   soname, packages nix-index cannot know (unfree CUDA), sonames only other wheels provide;
3. the soname table built from nix-index: the outputs that ship ``lib/<soname>``, ranked by a fixed rule;
4. otherwise ``unknown``.

An unversioned (development) name such as ``libcublas.so`` is what a linker or a ``dlopen("libfoo.so")``
asks for, and many unrelated packages ship a file of that name (zluda's ``libcublas.so``, angle's
``libEGL.so``, musl's ``libc.so``). Such a name is answered through the versioned names of the same library
(:meth:`KnowledgeBase._dev_name`): glibc's or a GPU driver's when one of them is, else the curated
preferences of its versioned names (``libcudart.so`` -> ``libcudart.so.12``'s ``cudaPackages.cuda_cudart``),
else the table only when a provider's store path is named after the library; otherwise the answer is
``unknown``, listing the packages that ship a file of that name.

Nothing is read until an answer needs it, and then only once per :class:`KnowledgeBase` instance.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from wheelfix.analysis import policy as sonames
from wheelfix.errors import BadInput, Problem
from wheelfix.nixkb.prefs import Preference, Preferences, read_preferences
from wheelfix.nixkb.table import Provider, SonameTable, read_table, soname_stem

__all__ = ["KINDS", "Answer", "Candidate", "Kind", "KnowledgeBase", "is_dev_name", "rank_providers"]

Kind = Literal["nixpkgs", "glibc", "gpu_driver", "python", "other_wheel", "unknown"]
KINDS: tuple[Kind, ...] = get_args(Kind)

_DRIVER_HOWTO = (
    "in Nix: list it in autoPatchelfIgnoreMissingDeps and add the driver's directory to the RUNPATH with "
    "addDriverRunpath / autoAddDriverRunpath (/run/opengl-driver/lib on NixOS)"
)
_SONAME_OK = re.compile(r"[^\s/\x00]+")


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    """A nixpkgs output: ``attr`` (attribute path) and ``output``; ``store_path`` when the data knows it."""

    attr: str
    output: str
    store_path: str | None

    @property
    def ref(self) -> str:
        """``attr.output`` (what ``lib.getOutput output attr`` selects)."""
        return f"{self.attr}.{self.output}"

    @classmethod
    def of(cls, p: Provider) -> Candidate:
        return cls(p.attr, p.output, p.store_path)


@dataclass(frozen=True, slots=True)
class Answer:
    soname: str
    kind: Kind
    chosen: Candidate | None  # the nixpkgs output to add; None unless kind is "nixpkgs"
    alternatives: tuple[Candidate, ...]  # other nixpkgs outputs that ship a file of that name
    wheels: tuple[str, ...]  # PyPI projects whose wheels ship it (other_wheel; also set for e.g. CUDA)
    reason: str
    provenance: str

    @property
    def known(self) -> bool:
        return self.kind != "unknown"


# --- ranking of table candidates -------------------------------------------------------------------------

# Scopes whose outputs are never what a user should add: bootstrap builds, cross/static/other-libc sets.
_BAD_SCOPES = (
    "minimal-bootstrap.",
    "pkgsStatic.",
    "pkgsMusl.",
    "pkgsi686Linux.",
    "pkgsCross.",
    "pkgsLLVM.",
    "pkgsExtraHardening.",
    "tests.",
)
_OUTPUT_RANK = {"lib": 0, "out": 1}


def _name_token(soname: str) -> str | None:
    """``libwayland-client.so.0`` -> ``wayland``: the library's leading name, if long enough to mean
    something when found in a store path name."""
    base = soname_stem(soname).removesuffix(".so").removeprefix("lib").lower()
    m = re.match(r"[a-z]+", base)
    return m.group(0) if m and len(m.group(0)) >= 3 else None


def _store_name(store_path: str) -> str:
    return store_path.rsplit("/", 1)[-1].partition("-")[2].lower()


def _rank_key(p: Provider, token: str | None) -> tuple[int, int, int, int, str, int, str]:
    return (
        int(p.attr.startswith(_BAD_SCOPES)),
        int(token is not None and token not in _store_name(p.store_path)),
        int("." in p.attr),
        len(p.attr),  # also puts the default (openssl, ffmpeg) before variants (openssl_3, ffmpeg-full)
        p.attr,
        _OUTPUT_RANK.get(p.output, 2),
        p.output,
    )


_RULES = (
    "not a bootstrap/static/cross build",
    "its store path is named after the library",
    "a top-level attribute rather than one in a package set",
    "the shortest attribute name",
    "alphabetical order",
    "the lib/out output",
    "alphabetical order",
)


def rank_providers(soname: str, providers: Iterable[Provider]) -> tuple[tuple[Provider, ...], str]:
    """Providers best first, and which rule put the first ahead of the second."""
    token = _name_token(soname)
    keyed = sorted((_rank_key(p, token), p) for p in set(providers))
    ranked = tuple(p for _, p in keyed)
    if len(keyed) < 2:
        return ranked, ""
    first, second = keyed[0][0], keyed[1][0]
    rule = next((r for a, b, r in zip(first, second, _RULES, strict=True) if a != b), "alphabetical order")
    return ranked, rule


def _python_package_names(providers: Sequence[Provider]) -> tuple[str, ...] | None:
    """When only nixpkgs Python package sets ship a library, the Python packages' names."""
    names = set()
    for p in providers:
        m = re.fullmatch(r"python3\d*Packages\.([^.]+)", p.attr)
        if m is None:
            return None
        names.add(m.group(1))
    return tuple(sorted(names))


@dataclass(frozen=True)
class KnowledgeBase:
    """Soname answers from the packaged data (or the given files). Create with :meth:`load`."""

    table_path: Path | None = None
    preferences_path: Path | None = None

    @classmethod
    def load(cls, table: Path | None = None, preferences: Path | None = None) -> KnowledgeBase:
        """A knowledge base over ``table``/``preferences`` (the packaged files when None). Lazy: the files
        are read at the first lookup that needs them, once per instance."""
        return cls(table, preferences)

    @cached_property
    def table(self) -> SonameTable:
        return read_table(self.table_path)

    @cached_property
    def preferences(self) -> Preferences:
        return read_preferences(self.preferences_path)

    @cached_property
    def database(self) -> str:
        """One line naming the nix-index data the table was built from."""
        m = self.table.meta
        sha = m.get("database_sha256", "?")[:16]
        return (
            f"{self.database_short}: {m.get('database', '?')} (sha256 {sha}...) from {m.get('source', '?')}, "
            f"nixpkgs revision {m.get('nixpkgs_revision', 'unknown')}; table by {m.get('builder', '?')}"
        )

    @cached_property
    def database_short(self) -> str:
        m = self.table.meta
        return (
            f"nix-index {m.get('database_date', 'unknown date')} "
            f"(nixpkgs {m.get('nixpkgs_version', '?')}, {m.get('system', '?')})"
        )

    def lookup_all(self, names: Iterable[str]) -> tuple[Answer, ...]:
        """Answers in the order given; every malformed name is reported at once."""
        names = tuple(names)
        bad = [
            Problem(n, None, "not a soname (empty, or has '/', whitespace or NUL)")
            for n in names
            if not _SONAME_OK.fullmatch(n)
        ]
        if bad:
            raise BadInput(bad)
        return tuple(self.lookup(n) for n in names)

    def lookup(self, soname: str) -> Answer:
        if not _SONAME_OK.fullmatch(soname):
            raise BadInput([Problem(soname, None, "not a soname (empty, or has '/', whitespace or NUL)")])
        if sonames.is_glibc(soname):
            return Answer(
                soname,
                "glibc",
                None,
                (),
                (),
                "part of glibc: the libc of stdenv provides it and autoPatchelf treats it as satisfied; "
                "nothing to add",
                "wheelfix.analysis.policy (glibc list)",
            )
        if sonames.is_gpu_driver(soname):
            return Answer(
                soname,
                "gpu_driver",
                None,
                (),
                (),
                "userspace half of the GPU kernel driver: it must match the running kernel module, so it "
                f"comes from the host, never from a package; {_DRIVER_HOWTO}",
                "wheelfix.analysis.policy (GPU driver patterns)",
            )
        if sonames.is_libpython(soname):
            return Answer(
                soname,
                "python",
                None,
                (),
                (),
                "the Python interpreter's own library: the interpreter the wheel is installed into provides "
                "it (nixpkgs' python3 packages ship it in lib/); nothing to add for extension modules",
                "wheelfix.analysis.policy (libpython pattern)",
            )
        providers = self.table.get(soname)
        for pref in self.preferences.candidates(soname):
            answer = self._from_preference(soname, pref, providers)
            if answer is not None:
                return answer
        if providers:
            return self._from_table(soname, providers)
        return self._unknown(soname)

    def hint(self, soname: str) -> Candidate | None:
        """The nixpkgs output to name for a library a binary may dlopen() (a name found in it, not a
        requirement), or None. Only a curated preference row answers, or a versioned soname
        (``libX.so.N``) that a table provider ships under exactly that name from a store path named after
        the library: the ranking rules alone would name an unrelated package that happens to ship a file
        of that name (unversioned ``libcublas.so`` is zluda's, ``libEGL.so`` angle's, ``libc.so`` musl's;
        ``libcrypto.so.1.0.0`` is bundled by mailspring)."""
        if not _SONAME_OK.fullmatch(soname) or sonames.is_glibc(soname) or sonames.is_gpu_driver(soname):
            return None
        providers = self.table.get(soname)
        for pref in self.preferences.candidates(soname):
            answer = self._from_preference(soname, pref, providers)
            if answer is not None:
                return answer.chosen  # None for other_wheel / unknown rows
        if ".so." not in soname:
            return None
        base = soname_stem(soname).removesuffix(".so").removeprefix("lib").lower()
        token = _name_token(soname) or (base if len(base) >= 3 else None)
        if token is None:
            return None
        named = [
            p
            for p in rank_providers(soname, providers)[0]
            if not p.attr.startswith(_BAD_SCOPES) and token in _store_name(p.store_path)
        ]
        return Candidate.of(named[0]) if named else None

    def _dev_name(self, soname: str, ranked: Sequence[Provider]) -> Answer | None:
        """An unversioned name answered through its versions (see the module docstring); None when
        ``soname`` is versioned or nothing is known of it."""
        if not is_dev_name(soname):
            return None
        siblings = self.table.other_versions(soname)
        return (
            _dev_policy(self, soname, siblings)
            or _dev_preferences(self, soname)
            or _dev_table(self, soname, ranked)
        )

    # -- the three sources ---------------------------------------------------------------------------

    def _pref_provenance(self, pref: Preference) -> str:
        return f"{self.preferences.name}:{pref.line} ({pref.source})"

    def _from_preference(self, soname: str, pref: Preference, providers: Sequence[Provider]) -> Answer | None:
        ranked = [Candidate.of(p) for p in rank_providers(soname, providers)[0]]
        if pref.kind != "nixpkgs":
            return Answer(
                soname,
                pref.kind,
                None,
                tuple(ranked),
                pref.wheels,
                pref.reason,
                self._pref_provenance(pref) + (f"; alternatives: {self.database_short}" if ranked else ""),
            )
        assert pref.attr is not None and pref.output is not None
        store: Provider | None = None
        if pref.indexed:
            store = next((p for p in providers if (p.attr, p.output) == (pref.db_attr, pref.db_output)), None)
            if store is None and pref.is_pattern:
                return None  # the preferred package does not ship this particular name
        chosen = Candidate(pref.attr, pref.output, store.store_path if store else None)
        reason = pref.reason
        if pref.indexed and store is None:
            reason += f" (warning: {pref.db_attr}.{pref.db_output} does not ship lib/{soname} in this data)"
        provenance = self._pref_provenance(pref)
        if store is not None:
            provenance += f"; store path: {self.database_short}"
        return Answer(
            soname,
            "nixpkgs",
            chosen,
            tuple(c for c in ranked if store is None or c.store_path != store.store_path),
            pref.wheels,
            reason,
            provenance,
        )

    def _from_table(self, soname: str, providers: Sequence[Provider]) -> Answer:
        ranked, rule = rank_providers(soname, providers)
        candidates = tuple(Candidate.of(p) for p in ranked)
        python_names = _python_package_names(ranked)
        if python_names is not None:
            return Answer(
                soname,
                "other_wheel",
                None,
                candidates,
                python_names,
                "only nixpkgs Python packages ship it, so it belongs to a Python package "
                f"({', '.join(python_names)}): install that package's wheel rather than a native library",
                self.database_short,
            )
        dev = self._dev_name(soname, ranked)
        if dev is not None:
            return dev
        if len(ranked) == 1:
            reason = f"the only top-level nixpkgs output with lib/{soname}"
        else:
            reason = (
                f"{len(ranked)} nixpkgs outputs ship lib/{soname}; {ranked[0].ref} is first by the default "
                f"rule ({rule}); add a row to soname-preferences.tsv if another is the canonical one"
            )
        return Answer(soname, "nixpkgs", candidates[0], candidates[1:], (), reason, self.database_short)

    def _unknown(self, soname: str) -> Answer:
        dev = self._dev_name(soname, ())
        if dev is not None:
            return dev
        reason = (
            f"no top-level nixpkgs output has lib/{soname} in the nix-index data (unfree and broken packages "
            "are not indexed; libraries outside lib/ are not either)"
        )
        others = self.table.other_versions(soname)
        if others:
            shown = []
            for other in others[:6]:
                best = rank_providers(other, self.table.get(other))[0]
                shown.append(f"{other} ({best[0].ref})" if best else other)
            more = f" and {len(others) - 6} more" if len(others) > 6 else ""
            reason += f"; other versions in nixpkgs: {', '.join(shown)}{more} (a different ABI)"
        return Answer(soname, "unknown", None, (), (), reason, self.database_short)


# --- unversioned (development) names: libfoo.so -------------------------------------------------------------


def is_dev_name(name: str) -> bool:
    """``libfoo.so``: a shared library name without a version (what ``-lfoo`` and ``dlopen("libfoo.so")``
    ask for; a development symlink in nixpkgs' ``dev``/``out`` outputs)."""
    return name.endswith(".so") and ".so." not in name and len(name) > 3


def _versioned(name: str, pattern: str) -> bool:
    """Whether a preference row's ``pattern`` names versions of the unversioned ``name``."""
    return ".so." in pattern and fnmatch.fnmatchcase(name, soname_stem(pattern))


def _default_set_first(c: Candidate) -> tuple[int, str, str]:
    """``cudaPackages.x`` before ``cudaPackages_13.x``: the shortest attribute (the default set) first."""
    return (len(c.attr), c.attr, c.output)


def _dev_policy(kb: KnowledgeBase, name: str, siblings: Sequence[str]) -> Answer | None:
    """glibc's or a GPU driver's development name (``libc.so``, ``libm.so``)."""
    glibc = [s for s in siblings if sonames.is_glibc(s)]
    if glibc:
        return Answer(
            name,
            "glibc",
            None,
            (),
            (),
            f"the development name of {', '.join(glibc)}, part of glibc: the libc of stdenv provides it; "
            "nothing to add",
            f"wheelfix.analysis.policy (glibc list); versions: {kb.database_short}",
        )
    driver = [s for s in siblings if sonames.is_gpu_driver(s)]
    if driver:
        return Answer(
            name,
            "gpu_driver",
            None,
            (),
            (),
            f"the development name of {', '.join(driver)}, a GPU driver library; {_DRIVER_HOWTO}",
            f"wheelfix.analysis.policy (GPU driver patterns); versions: {kb.database_short}",
        )
    return None


def _dev_preferences(kb: KnowledgeBase, name: str) -> Answer | None:
    """The answer of the versioned names the curated preferences know (``libcudart.so`` through
    ``libcudart.so.12`` and ``.13``): one package, or the default package set's when they differ."""
    answers: list[Answer] = []
    for pref in kb.preferences.rows():
        if not _versioned(name, pref.pattern):
            continue
        concrete = [s for s in kb.table.other_versions(name) if pref.matches(s)] if pref.is_pattern else []
        version = concrete[0] if concrete else pref.pattern
        answer = kb._from_preference(version, pref, kb.table.get(version))
        if answer is not None:
            answers.append(answer)
    nixpkgs = [a for a in answers if a.kind == "nixpkgs" and a.chosen is not None]
    chosen_from = nixpkgs or [a for a in answers if a.kind == "other_wheel"] or answers
    if not chosen_from:
        return None
    versions = ", ".join(dict.fromkeys(a.soname for a in chosen_from))
    provenance = "; ".join(dict.fromkeys(a.provenance for a in chosen_from))
    if nixpkgs:
        picks = sorted({a.chosen for a in nixpkgs if a.chosen is not None}, key=_default_set_first)
        best = next(a for a in nixpkgs if a.chosen == picks[0])
        reason = f"the development name of {versions}: {best.reason}"
        if len(picks) > 1:
            reason += (
                f" ({len(picks)} packages ship its versions; the default package set's is chosen: check the "
                "version the binary needs with `wheelfix inspect`)"
            )
        return Answer(name, "nixpkgs", picks[0], tuple(picks[1:]), best.wheels, reason, provenance)
    first = chosen_from[0]
    wheels = tuple(dict.fromkeys(w for a in chosen_from for w in a.wheels))
    return Answer(
        name, first.kind, None, (), wheels, f"the development name of {versions}: {first.reason}", provenance
    )


def _dev_table(kb: KnowledgeBase, name: str, ranked: Sequence[Provider]) -> Answer | None:
    """The table's providers of ``name`` when one of them is plausibly the library (its store path is named
    after it); else an ``unknown`` answer that lists them. None when the table has no provider."""
    if not ranked:
        return None
    token = _name_token(name)
    plausible = [
        p
        for p in ranked
        if token is not None and not p.attr.startswith(_BAD_SCOPES) and token in _store_name(p.store_path)
    ]
    if plausible:
        rest = [Candidate.of(p) for p in ranked if p is not plausible[0]]
        return Answer(
            name,
            "nixpkgs",
            Candidate.of(plausible[0]),
            tuple(rest),
            (),
            (
                f"the only nixpkgs output with lib/{name}, and named after the library"
                if len(ranked) == 1
                else f"{len(ranked)} nixpkgs outputs ship lib/{name}; {plausible[0].ref} is the first named "
                "after the library"
            ),
            kb.database_short,
        )
    shown = ", ".join(p.attr for p in ranked[:6]) + (
        f" and {len(ranked) - 6} more" if len(ranked) > 6 else ""
    )
    several = "several packages ship" if len(ranked) > 1 else "one package ships"
    reason = (
        f"{several} a file with this name ({shown}), none named after the library, so none is chosen: "
        "an unversioned name is a development symlink that unrelated packages ship too"
    )
    siblings = kb.table.other_versions(name)
    if siblings:
        reason += "; look up the versioned name the binary needs: " + _with_answers(kb, siblings)
    return Answer(
        name, "unknown", None, tuple(Candidate.of(p) for p in ranked), (), reason, kb.database_short
    )


def _with_answers(kb: KnowledgeBase, names: Sequence[str], limit: int = 4) -> str:
    """``libEGL.so.1 (pkgs.libGL)``: each name with its answer, as Nix."""
    from wheelfix.render.nix import nix_ref  # (render.nix imports this module)

    shown = []
    for other in names[:limit]:
        chosen = kb.lookup(other).chosen
        shown.append(f"{other} ({nix_ref(chosen)})" if chosen else other)
    return ", ".join(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")

"""The curated preference layer (``wheelfix/data/soname-preferences.tsv``), read with the stdlib only.

One row per soname or fnmatch pattern, tab-separated, with a header line; ``#`` lines are comments::

    soname  kind  attr  output  db_as  wheels  reason  source

* ``kind``: ``nixpkgs`` (use ``attr``/``output``), ``other_wheel`` (a PyPI wheel provides it: ``wheels``) or
  ``unknown`` (known to have no package; ``reason`` says what to do). glibc, GPU-driver and libpython
  sonames are never listed here: :mod:`wheelfix.analysis.policy` is the one place that classifies those.
* ``db_as``: where the soname table knows ``attr``'s store path: ``-`` (under ``attr``.``output`` itself),
  ``ATTR.OUTPUT`` (nix-index records the same store path under another attribute; it keeps one attribute per
  store path) or ``none`` (not in nix-index: unfree, or not a top-level output).
* ``wheels``: comma-separated PyPI project names that ship the library, or ``-``.

Exact rows win over patterns; patterns are tried in file order. A ``nixpkgs`` pattern row applies only to
sonames its package really ships (or to any match when ``db_as`` is ``none``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from wheelfix.errors import BadInput, Problem

__all__ = ["HEADER", "PACKAGED_NAME", "Preference", "PreferenceKind", "Preferences", "read_preferences"]

PACKAGED_NAME = "soname-preferences.tsv"
HEADER = ("soname", "kind", "attr", "output", "db_as", "wheels", "reason", "source")
PreferenceKind = Literal["nixpkgs", "other_wheel", "unknown"]
_KINDS: tuple[PreferenceKind, ...] = ("nixpkgs", "other_wheel", "unknown")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Preference:
    pattern: str
    kind: PreferenceKind
    attr: str | None
    output: str | None
    db_attr: str | None  # where the table has the store path; None with indexed=False
    db_output: str | None
    indexed: bool  # False: nix-index has no store path for it (unfree, not top-level)
    wheels: tuple[str, ...]
    reason: str
    source: str
    line: int

    @property
    def is_pattern(self) -> bool:
        return not _GLOB_CHARS.isdisjoint(self.pattern)

    def matches(self, soname: str) -> bool:
        return fnmatch.fnmatchcase(soname, self.pattern) if self.is_pattern else soname == self.pattern


@dataclass(frozen=True, slots=True)
class Preferences:
    exact: Mapping[str, Preference]
    patterns: tuple[Preference, ...]
    name: str

    def candidates(self, soname: str) -> tuple[Preference, ...]:
        """The rows that may decide ``soname``, best first: the exact row, then matching patterns."""
        exact = self.exact.get(soname)
        return ((exact,) if exact else ()) + tuple(p for p in self.patterns if p.matches(soname))

    def rows(self) -> tuple[Preference, ...]:
        return tuple(sorted((*self.exact.values(), *self.patterns), key=lambda p: p.line))


def _parse_row(fields: list[str], line: int, name: str) -> Preference:
    def bad(message: str) -> BadInput:
        return BadInput([Problem(name, f"line {line}", message)])

    if len(fields) != len(HEADER):
        raise bad(f"{len(fields)} fields, expected {len(HEADER)} ({', '.join(HEADER)})")
    soname, kind, attr, output, db_as, wheels, reason, source = (f.strip() for f in fields)
    if not soname or "/" in soname:
        raise bad(f"bad soname {soname!r}")
    if kind not in _KINDS:
        raise bad(f"kind {kind!r} is not one of {', '.join(_KINDS)}")
    if not reason or not source:
        raise bad("every row needs a reason and a source")
    wheel_names = () if wheels == "-" else tuple(w.strip() for w in wheels.split(","))
    if any(not w for w in wheel_names):
        raise bad(f"bad wheels list {wheels!r}")
    if kind == "nixpkgs":
        if attr == "-" or output == "-" or not attr or not output:
            raise bad("a nixpkgs row needs attr and output")
        if db_as == "none":
            db_attr, db_output, indexed = None, None, False
        elif db_as == "-":
            db_attr, db_output, indexed = attr, output, True
        else:
            db_attr, _, db_output = db_as.rpartition(".")
            if not db_attr or not db_output:
                raise bad(f"db_as {db_as!r} is not -, none or ATTR.OUTPUT")
            indexed = True
        return Preference(
            soname, "nixpkgs", attr, output, db_attr, db_output, indexed, wheel_names, reason, source, line
        )
    if (attr, output, db_as) != ("-", "-", "-"):
        raise bad(f"a {kind} row has no attr, output or db_as (use -)")
    if kind == "other_wheel" and not wheel_names:
        raise bad("an other_wheel row needs wheels")
    return Preference(soname, kind, None, None, None, None, False, wheel_names, reason, source, line)


def parse_preferences(text: str, name: str = "<preferences>") -> Preferences:
    exact: dict[str, Preference] = {}
    patterns: list[Preference] = []
    header_seen = False
    for line, raw in enumerate(text.split("\n"), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if not header_seen:
            if tuple(fields) != HEADER:
                raise BadInput([Problem(name, f"line {line}", f"expected the header {HEADER}")])
            header_seen = True
            continue
        pref = _parse_row(fields, line, name)
        if pref.is_pattern:
            patterns.append(pref)
        elif pref.pattern in exact:
            raise BadInput(
                [Problem(name, f"line {line}", f"{pref.pattern} already on line {exact[pref.pattern].line}")]
            )
        else:
            exact[pref.pattern] = pref
    if not header_seen:
        raise BadInput([Problem(name, None, "empty preferences file")])
    return Preferences(exact=MappingProxyType(exact), patterns=tuple(patterns), name=name)


def read_preferences(path: Path | None = None) -> Preferences:
    """Read a preferences file, or the packaged one when ``path`` is None."""
    if path is None:
        name = f"wheelfix/data/{PACKAGED_NAME}"
        try:
            text = resources.files("wheelfix.data").joinpath(PACKAGED_NAME).read_text("utf-8")
        except OSError as e:
            raise BadInput([Problem(name, None, f"packaged preferences missing: {e}")]) from None
    else:
        name = str(path)
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput([Problem(name, None, str(e))]) from None
    return parse_preferences(text, name)

"""The packaged soname table (``wheelfix/data/nixpkgs-sonames.tsv.gz``): which nixpkgs outputs ship a file
of a given name directly under ``lib/``. Written by :mod:`wheelfix.nixkb.build`, read at lookup time with
the stdlib only.

The file is gzip-compressed UTF-8 text, one record per line, fields separated by tabs, sorted, so
``zcat`` shows it and two builds from the same input are byte-identical::

    #   free-form comment lines
    M   key  value                      provenance (source file, hashes, date, nixpkgs version, ...)
    P   attr  output  hash-name         a provider; providers are numbered from 0 in file order
    S   soname  3,17                    the providers that ship lib/<soname>
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from wheelfix.errors import BadInput, Problem

__all__ = [
    "FORMAT",
    "PACKAGED_NAME",
    "Provider",
    "SonameTable",
    "read_table",
    "render_table",
    "soname_stem",
]

FORMAT = "wheelfix-nixpkgs-sonames/1"
PACKAGED_NAME = "nixpkgs-sonames.tsv.gz"
_DEFAULT_STORE_DIR = "/nix/store"


@dataclass(frozen=True, slots=True, order=True)
class Provider:
    """One nixpkgs output that ships a library file."""

    attr: str
    output: str
    store_path: str  # absolute: /nix/store/<hash>-<name>

    @property
    def ref(self) -> str:
        return f"{self.attr}.{self.output}"


def soname_stem(soname: str) -> str:
    """``libfoo.so.1.2`` -> ``libfoo.so``: the part shared by every version of a library."""
    head, sep, _ = soname.partition(".so.")
    return head + ".so" if sep else soname


@dataclass(frozen=True)
class SonameTable:
    """A table held as its text. Only the provenance lines are parsed up front; a lookup binary-searches
    the sorted ``S`` lines and decodes just its line and the providers it names, so loading costs one
    gunzip (the full index is built only by the methods that enumerate sonames)."""

    meta: Mapping[str, str]
    text: str = field(repr=False)
    providers_at: int = field(repr=False)  # offset of the first P line
    sonames_at: int = field(repr=False)  # offset of the "\n" before the first S line
    name: str = "<table>"

    def _corrupt(self, what: str) -> BadInput:
        return BadInput([Problem(self.name, None, f"corrupt soname table: {what}")])

    @cached_property
    def _provider_lines(self) -> list[str]:
        return self.text[self.providers_at : self.sonames_at].split("\n")

    def provider(self, number: int) -> Provider:
        try:
            tag, attr, output, base = self._provider_lines[number].split("\t")
        except (IndexError, ValueError):
            raise self._corrupt(f"no provider {number}") from None
        if tag != "P":
            raise self._corrupt(f"no provider {number}")
        return Provider(attr, output, f"{self.store_dir}/{base}")

    def _ids(self, soname: str) -> str | None:
        """Binary search of the sorted S lines for ``soname``: its provider numbers, or None."""
        text = self.text
        lo, hi = self.sonames_at + 1, len(text)  # lo is always the start of a line
        while lo < hi:
            mid = (lo + hi) // 2
            start = text.rfind("\n", lo, mid)
            start = lo if start < 0 else start + 1
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            tab = text.find("\t", start + 2, end)
            if tab < 0 or not text.startswith("S\t", start):
                raise self._corrupt(f"line {text[start : min(end, start + 120)]!r}")
            name = text[start + 2 : tab]
            if name == soname:
                return text[tab + 1 : end]
            if name < soname:
                lo = end + 1
            else:
                hi = start
        return None

    def get(self, soname: str) -> tuple[Provider, ...]:
        """The outputs that ship ``lib/<soname>`` (empty if none)."""
        if "\t" in soname or "\n" in soname:
            return ()
        ids = self._ids(soname)
        if ids is None:
            return ()
        try:
            return tuple(self.provider(int(i)) for i in ids.split(","))
        except ValueError:
            raise self._corrupt(f"bad entry for {soname}: {ids[:80]!r}") from None

    def __contains__(self, soname: object) -> bool:
        return isinstance(soname, str) and "\t" not in soname and self._ids(soname) is not None

    @cached_property
    def _index(self) -> Mapping[str, str]:
        index: dict[str, str] = {}
        for line in self.text[self.sonames_at + 1 :].split("\n"):
            if not line:
                continue
            tag, soname, ids = line.split("\t") if line.count("\t") == 2 else ("?", line, "")
            if tag != "S":
                raise self._corrupt(f"line {line[:120]!r}")
            index[soname] = ids
        return index

    def __len__(self) -> int:
        return len(self._index)

    def sonames(self) -> Iterable[str]:
        return self._index.keys()

    @cached_property
    def _by_stem(self) -> Mapping[str, tuple[str, ...]]:
        stems: dict[str, list[str]] = {}
        for soname in self._index:
            stems.setdefault(soname_stem(soname), []).append(soname)
        return {k: tuple(sorted(v)) for k, v in stems.items()}

    def other_versions(self, soname: str) -> tuple[str, ...]:
        """Sonames in the table with the same stem as ``soname`` but another version."""
        return tuple(s for s in self._by_stem.get(soname_stem(soname), ()) if s != soname)

    @property
    def store_dir(self) -> str:
        return self.meta.get("store_dir", _DEFAULT_STORE_DIR)

    @classmethod
    def parse(cls, text: str, name: str = "<table>") -> SonameTable:
        if not text.endswith("\n"):
            text += "\n"
        first_s = text.find("\nS\t")
        if first_s < 0:
            first_s = len(text) - 1  # no sonames
        p_line = text.find("\nP\t")
        first_p = p_line + 1 if 0 <= p_line < first_s else first_s + 1  # after the M lines
        meta: dict[str, str] = {}
        for line in text[: min(first_p, first_s)].split("\n"):
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3 or fields[0] != "M":
                raise BadInput([Problem(name, None, f"corrupt soname table: line {line[:120]!r}")])
            meta[fields[1]] = fields[2]
        if meta.get("format") != FORMAT:
            raise BadInput(
                [Problem(name, None, f"not a {FORMAT} soname table (format {meta.get('format')!r})")]
            )
        return cls(
            meta=MappingProxyType(meta), text=text, providers_at=first_p, sonames_at=first_s, name=name
        )


def read_table(path: Path | None = None) -> SonameTable:
    """Read a table file, or the packaged one when ``path`` is None."""
    if path is None:
        ref = resources.files("wheelfix.data").joinpath(PACKAGED_NAME)
        name = f"wheelfix/data/{PACKAGED_NAME}"
        try:
            raw = ref.read_bytes()
        except OSError as e:
            raise BadInput([Problem(name, None, f"packaged soname table missing: {e}")]) from None
    else:
        name = str(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise BadInput([Problem(name, None, e.strerror or str(e))]) from None
    try:
        text = gzip.decompress(raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise BadInput([Problem(name, None, f"not a gzip-compressed soname table: {e}")]) from None
    return SonameTable.parse(text, name)


_UNSAFE = re.compile(r"[\t\n\r]")


def render_table(
    meta: Mapping[str, str], entries: Mapping[str, Iterable[Provider]], *, comment: str = ""
) -> bytes:
    """The gzip bytes of a table; deterministic (sorted, gzip mtime 0). Fields must not contain tabs or line
    breaks (``ValueError``)."""
    store_dir = meta.get("store_dir", _DEFAULT_STORE_DIR)
    prefix = store_dir + "/"
    providers = sorted({p for ps in entries.values() for p in ps})
    number = {p: i for i, p in enumerate(providers)}
    rows: list[tuple[str, ...]] = [("M", "format", FORMAT)]
    rows += [("M", k, meta[k]) for k in sorted(meta) if k != "format"]
    for p in providers:
        if not p.store_path.startswith(prefix):
            raise ValueError(f"{p.store_path} is not under {store_dir}")
        rows.append(("P", p.attr, p.output, p.store_path[len(prefix) :]))
    for soname in sorted(entries):
        ids = sorted({number[p] for p in entries[soname]})
        rows.append(("S", soname, ",".join(map(str, ids))))
    for row in rows:
        if any(_UNSAFE.search(f) or not f for f in row):
            raise ValueError(f"empty field or a field with a tab or line break: {row!r}")
    lines = [f"# {c}" for c in comment.splitlines()] + ["\t".join(row) for row in rows]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)

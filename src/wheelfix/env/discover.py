"""The distributions installed in an environment, found through their ``*.dist-info/RECORD`` files, and the
files that no RECORD lists.

A RECORD path is relative to the site-packages directory the ``.dist-info`` sits in (``../../../bin/x`` for
a script); it is the distribution's name for the file, as a member name is a wheel's. Files that no RECORD
lists are found by walking each site-packages directory and the directories that ``.pth`` files add
(editable installs: ``pip install -e``, ``uv pip install -e``); they are scanned like the others and reported
as not in any RECORD.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelfix.env.layout import Layout
from wheelfix.errors import Problem
from wheelfix.wheel.archive import RecordEntry, parse_record
from wheelfix.wheel.manifest import MANIFEST_NAME, ManifestError, RepairManifest

__all__ = ["Distribution", "Installed", "find_distributions", "unrecorded_files"]

_MAX_METADATA = 16 << 20


@dataclass(frozen=True, slots=True)
class Distribution:
    """One installed distribution."""

    name: str  # canonical (PEP 503)
    display_name: str  # as METADATA spells it
    version: str
    site: str  # the site-packages directory its .dist-info is in
    dist_info: str  # the .dist-info directory (absolute)
    record: tuple[RecordEntry, ...]  # RECORD's rows, in file order
    record_stat: tuple[int, int, int]  # (size, mtime_ns, inode) of RECORD when read
    record_sha256: str
    tags: tuple[str, ...]  # WHEEL's Tag lines
    root_is_purelib: bool
    installer: str | None  # INSTALLER: pip, uv, ...
    editable: bool  # direct_url.json says so
    manifest: RepairManifest | None  # wheelfix.json of an earlier repair
    warnings: tuple[Problem, ...] = ()

    @property
    def dist_info_name(self) -> str:
        return posixpath.basename(self.dist_info)

    def path_of(self, record_path: str) -> str:
        """The absolute path of a RECORD path (normalized, symlinks kept)."""
        return posixpath.normpath(posixpath.join(self.site, record_path))

    def record_path(self, abspath: str) -> str:
        """The RECORD path of a file of this distribution (relative to its site-packages)."""
        return posixpath.relpath(abspath, self.site)


@dataclass(frozen=True, slots=True)
class Installed:
    """Every distribution found, with every file some RECORD lists (absolute, normalized)."""

    distributions: tuple[Distribution, ...]  # by site-packages directory, then name
    recorded: frozenset[str]
    problems: tuple[Problem, ...]  # distributions that could not be read (skipped)


def _read_small(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_METADATA)
    except OSError:
        return None


def _manifest(dist_info: Path, problems: list[Problem]) -> RepairManifest | None:
    data = _read_small(dist_info / MANIFEST_NAME)
    if data is None:
        return None
    try:
        return RepairManifest.from_json(data)
    except ManifestError as e:
        problems.append(Problem(str(dist_info), MANIFEST_NAME, f"repair manifest ignored: {e}"))
        return None


def _editable(dist_info: Path) -> bool:
    data = _read_small(dist_info / "direct_url.json")
    if data is None:
        return False
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("dir_info"), dict)
        and bool(doc["dir_info"].get("editable"))
    )


def _distribution(site: Path, dist_info: Path) -> tuple[Distribution | None, Problem | None]:
    record_file = dist_info / "RECORD"
    where = str(dist_info)
    try:
        st = record_file.stat()
        data = record_file.read_bytes()
    except OSError as e:
        return None, Problem(where, "RECORD", f"cannot read: {e.strerror} (distribution skipped)")
    entries, record_problems = parse_record(data, where, "RECORD")
    meta = BytesHeaderParser().parsebytes(_read_small(dist_info / "METADATA") or b"")
    wheel = BytesHeaderParser().parsebytes(_read_small(dist_info / "WHEEL") or b"")
    stem = dist_info.name[: -len(".dist-info")]
    fallback_name, _, fallback_version = stem.partition("-")
    display = (meta.get("Name") or fallback_name).strip()
    installer = _read_small(dist_info / "INSTALLER")
    warnings = list(record_problems)
    manifest = _manifest(dist_info, warnings)
    return (
        Distribution(
            name=canonicalize_name(display),
            display_name=display,
            version=(meta.get("Version") or fallback_version).strip(),
            site=str(site),
            dist_info=str(dist_info),
            record=tuple(entries.values()),
            record_stat=(st.st_size, st.st_mtime_ns, st.st_ino),
            record_sha256=hashlib.sha256(data).hexdigest(),
            tags=tuple(wheel.get_all("Tag") or ()),
            root_is_purelib=(wheel.get("Root-Is-Purelib") or "").strip().lower() == "true",
            installer=(installer.decode("utf-8", "replace").strip() or None) if installer else None,
            editable=_editable(dist_info),
            manifest=manifest,
            warnings=tuple(warnings),
        ),
        None,
    )


def find_distributions(layout: Layout) -> Installed:
    """Every ``*.dist-info`` with a RECORD in the environment's site-packages directories."""
    dists: list[Distribution] = []
    problems: list[Problem] = []
    for site_name in layout.site_packages:
        site = Path(site_name)
        try:
            children = sorted(c for c in site.iterdir() if c.name.endswith(".dist-info") and c.is_dir())
        except OSError as e:
            problems.append(Problem(site_name, None, f"cannot list: {e.strerror}"))
            continue
        for dist_info in children:
            dist, problem = _distribution(site, dist_info)
            if problem is not None:
                problems.append(problem)
            if dist is not None:
                dists.append(dist)
    recorded = frozenset(d.path_of(e.path) for d in dists for e in d.record)
    return Installed(tuple(dists), recorded, tuple(problems))


def pth_dirs(layout: Layout) -> list[str]:
    """Directories that ``.pth`` files in the site-packages directories add to ``sys.path`` (editable
    installs), outside the site-packages directories themselves."""
    out: list[str] = []
    sites = {os.path.realpath(s) for s in layout.site_packages}
    for site in layout.site_packages:
        try:
            names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            data = _read_small(Path(site) / name) or b""
            for line in data.decode("utf-8", "replace").splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                path = posixpath.normpath(posixpath.join(site, line))
                if os.path.isdir(path) and os.path.realpath(path) not in sites and path not in out:
                    out.append(path)
    return out


_SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", "node_modules", ".tox", ".nox", ".mypy_cache"})


def _walk(root: str, stop: Sequence[str]) -> Iterator[str]:
    """Regular files under ``root`` (symlinks are not followed or returned); directories in ``stop`` (other
    environments' site-packages, the environment itself) and caches are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP_DIRS and posixpath.join(dirpath, d) not in stop
        )
        for f in sorted(filenames):
            path = posixpath.join(dirpath, f)
            if not os.path.islink(path):
                yield path


def unrecorded_files(layout: Layout, installed: Installed) -> Iterator[tuple[str, str]]:
    """(root, path) of every regular file under the site-packages directories and the ``.pth``
    directories that no RECORD lists. ``root`` is the directory it was found under."""
    stop = [*layout.site_packages, layout.prefix] if layout.kind.value != "site-packages" else [layout.prefix]
    for site in layout.site_packages:
        for path in _walk(site, [s for s in stop if s != site]):
            if path not in installed.recorded:
                yield site, path
    for extra in pth_dirs(layout):
        for path in _walk(extra, stop):
            if path not in installed.recorded:
                yield extra, path

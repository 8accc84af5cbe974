"""What kind of installed environment a directory is, and where its parts are.

Three kinds are recognised, in this order:

* a **venv** (``python -m venv``, ``uv venv``, virtualenv): a directory with ``pyvenv.cfg``; its
  ``home`` names the directory of the interpreter it was made from;
* a **site-packages** directory (or ``dist-packages``, or any directory holding ``*.dist-info``
  directories, such as a ``pip install --target`` directory); when it sits at
  ``<prefix>/lib/pythonX.Y/site-packages`` of a venv, the venv is used;
* a **prefix**: a directory with ``lib/pythonX.Y/site-packages`` (a Python installation, a Nix
  ``python.withPackages`` environment, a conda environment).

Nothing here reads a binary; :mod:`wheelfix.env.interpreter` looks at the interpreter and
:mod:`wheelfix.env.discover` at the distributions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from wheelfix._enum import StrEnum
from wheelfix.errors import BadInput, Problem

__all__ = ["EnvKind", "Layout", "VenvConfig", "find_layout", "is_environment", "read_pyvenv_cfg"]

_SITE_NAMES = ("site-packages", "dist-packages")
_PYDIR = re.compile(r"python(\d+\.\d+)t?")


class EnvKind(StrEnum):
    VENV = "venv"
    SITE_PACKAGES = "site-packages"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class VenvConfig:
    """The keys of ``pyvenv.cfg`` that matter here (``raw`` keeps every key, in file order)."""

    home: str | None  # the directory of the interpreter the venv was made from
    executable: str | None  # Python 3.11+ venv and virtualenv: the interpreter itself
    version: str | None  # "3.11.7" (``version`` of venv, ``version_info`` of uv and virtualenv)
    creator: str  # "uv 0.13.9", "virtualenv 20.26.0" or "python -m venv"
    include_system_site_packages: bool
    raw: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where an environment's parts are. Paths are absolute, not resolved through symlinks (``$ORIGIN``
    is the directory a binary is loaded from, as Python names it)."""

    given: str  # the path as the user gave it
    kind: EnvKind
    prefix: str  # the venv or prefix; for a bare site-packages directory, that directory
    site_packages: tuple[str, ...]  # distinct directories (a lib64 -> lib symlink counted once)
    scripts: str  # <prefix>/bin
    python_version: str | None  # "3.11"
    config: VenvConfig | None  # pyvenv.cfg of a venv


def read_pyvenv_cfg(path: Path) -> VenvConfig:
    """Parse ``pyvenv.cfg`` (``key = value`` lines, as ``site.py`` reads them)."""
    raw: list[tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise BadInput([Problem(str(path), None, f"cannot read: {e.strerror}")]) from None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            raw.append((key.strip().lower(), value.strip()))
    keys = dict(raw)
    if "uv" in keys:
        creator = f"uv {keys['uv']}"
    elif "virtualenv" in keys:
        creator = f"virtualenv {keys['virtualenv']}"
    else:
        creator = "python -m venv"
    return VenvConfig(
        home=keys.get("home") or None,
        executable=keys.get("executable") or keys.get("base-executable") or None,
        version=keys.get("version") or keys.get("version_info") or None,
        creator=creator,
        include_system_site_packages=keys.get("include-system-site-packages", "false").lower() == "true",
        raw=tuple(raw),
    )


def _site_dirs(prefix: Path) -> list[Path]:
    found: list[Path] = []
    for lib in ("lib", "lib64"):
        base = prefix / lib
        try:
            children = sorted(base.iterdir())
        except OSError:
            continue
        for child in children:
            if _PYDIR.fullmatch(child.name):
                for name in _SITE_NAMES:
                    if (child / name).is_dir():
                        found.append(child / name)
    return _distinct(found)


def _distinct(dirs: list[Path]) -> list[Path]:
    """Each directory once (lib64 is often a symlink to lib), as first named."""
    seen: set[str] = set()
    out: list[Path] = []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            out.append(d)
    return out


def _version_of(site: Path) -> str | None:
    m = _PYDIR.fullmatch(site.parent.name)
    return m.group(1) if m else None


def _has_dist_info(path: Path) -> bool:
    try:
        return any(c.name.endswith(".dist-info") and c.is_dir() for c in path.iterdir())
    except OSError:
        return False


def is_environment(path: Path) -> bool:
    """Whether ``path`` is a directory wheelfix reads as an installed environment (not a wheel)."""
    return path.is_dir()


def _venv(prefix: Path, given: str) -> Layout:
    config = read_pyvenv_cfg(prefix / "pyvenv.cfg")
    sites = _site_dirs(prefix)
    version = next((v for v in map(_version_of, sites) if v), None)
    if version is None and config.version:
        version = ".".join(config.version.split(".")[:2])
    return Layout(
        given, EnvKind.VENV, str(prefix), tuple(map(str, sites)), str(prefix / "bin"), version, config
    )


def find_layout(path: Path) -> Layout:
    """The layout of the environment at ``path``; :class:`~wheelfix.errors.BadInput` when it is none."""
    given = str(path)
    if not path.exists():
        raise BadInput([Problem(given, None, "no such file or directory")])
    if not path.is_dir():
        raise BadInput([Problem(given, None, "not a directory")])
    here = Path(os.path.abspath(path))
    if (here / "pyvenv.cfg").is_file():
        return _venv(here, given)
    if here.name in _SITE_NAMES or _has_dist_info(here):
        owner = here.parent.parent.parent
        if _PYDIR.fullmatch(here.parent.name) and here.parent.parent.name in ("lib", "lib64"):
            if (owner / "pyvenv.cfg").is_file():
                return _venv(owner, given)
            sites = [here, *(s for s in _site_dirs(owner) if os.path.realpath(s) != os.path.realpath(here))]
            return Layout(
                given,
                EnvKind.PREFIX,
                str(owner),
                tuple(map(str, sites)),
                str(owner / "bin"),
                _version_of(here),
                None,
            )
        return Layout(given, EnvKind.SITE_PACKAGES, str(here), (str(here),), str(here / "bin"), None, None)
    sites = _site_dirs(here)
    if sites:
        version = next((v for v in map(_version_of, sites) if v), None)
        return Layout(
            given, EnvKind.PREFIX, str(here), tuple(map(str, sites)), str(here / "bin"), version, None
        )
    raise BadInput(
        [
            Problem(
                given,
                None,
                "is a directory, but not a wheel, a venv (no pyvenv.cfg), a site-packages directory (no "
                "*.dist-info) or a prefix (no lib/pythonX.Y/site-packages)",
            )
        ]
    )

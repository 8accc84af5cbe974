"""Build Mach-O fixtures at test time with Debian's clang-15 + ld64.lld-15, and read them with LLVM's tools.

Nothing here uses wheelfix: the builders drive the LLVM toolchain, and the ``otool_*``/``objdump_*``
functions turn ``llvm-otool-15`` / ``llvm-objdump-15`` output into plain data for the tests to compare
with wheelfix's reader. The fat-file writer (:func:`make_fat`) is independent code too, because
``llvm-lipo-15`` cannot write ``FAT_MAGIC_64`` nor choose the slice order.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLANG = "clang-15"
LIPO = "llvm-lipo-15"
OTOOL = "llvm-otool-15"
OBJDUMP = "llvm-objdump-15"
TOOLS = (CLANG, "ld64.lld-15", LIPO, OTOOL, OBJDUMP)

# Several pages of code and constant data, so a signature has more than one page hash to get right.
SOURCE = r"""
extern int dep_fn(void);
static const unsigned char table[12000] = { 1, 2, 3, 4, 5, 6, 7, 8, [11999] = 9 };
int foo(int i) { return table[i % sizeof table] + 42; }
int baz(void) { return dep_fn() + 1; }
"""
MAIN_SOURCE = SOURCE + "int main(void) { return foo(3); }\n"
DEP_SOURCE = "int dep_fn(void) { return 1; }\n"

# the architecture names lipo and clang use -> a clang target
TARGETS = {"arm64": "arm64-apple-macos{}", "x86_64": "x86_64-apple-macos{}", "i386": "i386-apple-macos{}"}
FAT_ALIGN = {"arm64": 14, "x86_64": 12, "i386": 12}  # what lipo uses: the segment page size


@dataclass(frozen=True)
class Dep:
    install_name: str
    mode: str = "l"  # "l", "weak" or "reexport": how the output links it
    current_version: str = "1.2.3"
    compatibility_version: str = "1.0"


def run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc.stdout


def build(
    out: Path,
    *,
    arch: str = "arm64",
    kind: str = "dylib",
    install_name: str | None = None,
    rpaths: Sequence[str] = (),
    deps: Sequence[Dep] = (),
    headerpad: int | None = None,
    sign: bool | None = None,
    min_os: str = "11.0",
) -> Path:
    """Link one thin Mach-O with lld. ``kind``: dylib, bundle or execute. ``sign``: None is lld's default
    (signed on arm64, not on x86_64). The file name matters: lld uses it as the signature identifier."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.build"
    work.mkdir(exist_ok=True)
    target = TARGETS[arch].format(min_os)
    base = [CLANG, "-target", target, "-fuse-ld=lld", "-nostdlib", "-Wl,-undefined,dynamic_lookup"]
    src = work / "src.c"
    src.write_text(MAIN_SOURCE if kind == "execute" else SOURCE)
    args: list[str | Path] = [*base, "-O1"]
    if kind == "dylib":
        args.append("-shared")
    elif kind == "bundle":
        args.append("-bundle")
    elif kind != "execute":
        raise ValueError(kind)
    if install_name is not None:
        args.append(f"-Wl,-install_name,{install_name}")
    for path in rpaths:
        args.append(f"-Wl,-rpath,{path}")
    if headerpad is not None:
        args.append(f"-Wl,-headerpad,{headerpad:#x}")
    if sign is True:
        args.append("-Wl,-adhoc_codesign")
    elif sign is False:
        args.append("-Wl,-no_adhoc_codesign")
    if deps:
        dep_src = work / "dep.c"
        dep_src.write_text(DEP_SOURCE)
        args.append(f"-L{work}")
        for i, dep in enumerate(deps):
            run(
                *base,
                "-shared",
                f"-Wl,-install_name,{dep.install_name}",
                f"-Wl,-current_version,{dep.current_version}",
                f"-Wl,-compatibility_version,{dep.compatibility_version}",
                dep_src,
                "-o",
                work / f"libdep{i}.dylib",
            )
            flag = {"l": "-l", "weak": "-Wl,-weak-l", "reexport": "-Wl,-reexport-l"}[dep.mode]
            args.append(f"{flag}dep{i}")
    run(*args, src, "-o", out)
    return out


def dylib_cmdsize(name: str) -> int:
    """cmdsize of a 64-bit dylib load command naming ``name``: 24 fixed bytes, the name, NUL, 8-aligned."""
    return (24 + len(name.encode()) + 1 + 7) & ~7


def rpath_cmdsize(path: str) -> int:
    """cmdsize of a 64-bit LC_RPATH: 12 fixed bytes, the path, NUL, 8-aligned."""
    return (12 + len(path.encode()) + 1 + 7) & ~7


def build_object(out: Path, arch: str = "i386", min_os: str = "10.9") -> Path:
    """A relocatable object (MH_OBJECT); the only way to a 32-bit Mach-O with this toolchain."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".c")
    src.write_text(SOURCE)
    run(CLANG, "-target", TARGETS[arch].format(min_os), "-c", src, "-o", out)
    return out


def lipo(out: Path, *thin: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    run(LIPO, "-create", *thin, "-output", out)
    return out


def lipo_thin(fat: Path, arch: str, out: Path) -> Path:
    run(LIPO, fat, "-thin", arch, "-output", out)
    return out


def make_fat(out: Path, slices: Sequence[tuple[Path, str]], *, fat64: bool = False) -> Path:
    """A fat file with the slices in the given order, each at the next offset aligned as lipo aligns it."""
    cputypes = {"arm64": (0x0100000C, 0), "x86_64": (0x01000007, 3), "i386": (7, 3)}
    entry_size = 32 if fat64 else 20
    cursor = 8 + entry_size * len(slices)
    header = struct.pack(">II", 0xCAFEBABF if fat64 else 0xCAFEBABE, len(slices))
    body: list[tuple[int, bytes]] = []
    for path, arch in slices:
        align = FAT_ALIGN[arch]
        offset = (cursor + (1 << align) - 1) & ~((1 << align) - 1)
        data = path.read_bytes()
        cputype, subtype = cputypes[arch]
        if fat64:
            header += struct.pack(">IIQQII", cputype, subtype, offset, len(data), align, 0)
        else:
            header += struct.pack(">IIIII", cputype, subtype, offset, len(data), align)
        body.append((offset, data))
        cursor = offset + len(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out_bytes = bytearray(cursor)
    out_bytes[: len(header)] = header
    for offset, data in body:
        out_bytes[offset : offset + len(data)] = data
    out.write_bytes(out_bytes)
    return out


# --- reading with LLVM's tools ------------------------------------------------------------------------


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
    return parse_dylibs_used(run(OTOOL, "-L", path))


def objdump_dylibs_used(path: Path, arch: str) -> list[OtoolDylib]:
    return parse_dylibs_used(run(OBJDUMP, "--macho", f"--arch={arch}", "--dylibs-used", path))


def otool_header(path: Path) -> dict[str, int]:
    """``otool -h`` of a thin file: magic, cputype, cpusubtype, caps, filetype, ncmds, sizeofcmds, flags."""
    lines = run(OTOOL, "-h", path).splitlines()
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


def parse_load_commands(text: str) -> list[dict[str, object]]:
    """``otool -l`` / ``objdump --macho --private-headers`` output as a list of load commands; the first
    value of each field wins (LC_BUILD_VERSION's tool version comes after its ``minos``), and each
    ``Section`` is a dict in the command's ``sections`` list."""
    commands: list[dict[str, object]] = []
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


def otool_l(path: Path) -> list[dict[str, object]]:
    return parse_load_commands(run(OTOOL, "-l", path))


def objdump_private_headers(path: Path, arch: str | None = None) -> list[dict[str, object]]:
    args = [OBJDUMP, "--macho", "--private-headers", str(path)]
    if arch is not None:
        args.insert(2, f"--arch={arch}")
    return parse_load_commands(run(*args))


@dataclass(frozen=True)
class FatArch:
    arch: str
    offset: int
    size: int
    align: int


def objdump_universal_headers(path: Path) -> tuple[str, list[FatArch]]:
    text = run(OBJDUMP, "--macho", "--universal-headers", path)
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

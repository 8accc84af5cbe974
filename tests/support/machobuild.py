"""Build Mach-O fixtures at test time with Debian's clang-15 + ld64.lld-15 (read them with
:mod:`tests.support.oracles`: ``llvm-otool-15`` / ``llvm-objdump-15``).

Nothing here uses wheelfix: the builders drive the LLVM toolchain. The fat-file writer (:func:`make_fat`)
is independent code too, because ``llvm-lipo-15`` cannot write ``FAT_MAGIC_64`` nor choose the slice order.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.oracles import OBJDUMP, OTOOL

CLANG = "clang-15"
LIPO = "llvm-lipo-15"
# what the Mach-O tests need: the toolchain, and the oracles they read its output with
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

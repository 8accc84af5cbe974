"""Hypothesis fuzz harnesses for wheelfix's parsers and writers (issue 6, item 3).

Each harness mutates a real seed (bytes overwritten with boundary values, bit flips, truncation, insertion)
and checks a property:

* ``zip``: ``WheelArchive.open`` on a mutated wheel, then reading every member, raises nothing but
  ``BadInput`` / ``CorruptMember``.
* ``elf``: ``parse_elf`` raises nothing but ``BinaryFormatError``.
* ``macho``: ``parse_macho`` raises nothing but ``BinaryFormatError``.
* ``elf-writer``: ``plan_patch`` on a (possibly mutated) ELF either refuses (``BinaryFormatError``) or gives
  a patch whose result ``parse_elf`` reads back with exactly the requested DT_RUNPATH/DT_RPATH and
  interpreter, and every other fact unchanged.
* ``macho-writer``: ``edit_macho`` either refuses (``BinaryFormatError``/``MachOEditError``) or gives a file
  that ``parse_macho`` reads back with the requested rpaths and install names.

Seeds: ELF from the host (libz, a small executable), Mach-O from ``tests/support/machobuild.py``
(clang-15/lld) or small macOS wheels in the wheel cache; the zip seed is a small valid wheel built here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.elf.editor import plan_patch
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.binfmt.macho.editor import MachOEditError, MachOEdits, edit_macho
from wheelfix.binfmt.macho.reader import parse_macho
from wheelfix.errors import BadInput
from wheelfix.wheel.archive import CorruptMember, WheelArchive

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("WHEELFIX_CACHE") or "~/.cache/wheelfix/wheels").expanduser()
HOST_ELFS = (
    Path("/usr/lib/x86_64-linux-gnu/libz.so.1"),
    Path("/usr/bin/true"),
    Path("/usr/lib/x86_64-linux-gnu/libffi.so.8"),
)
MACHO_WHEELS = (
    "msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl",
    "MarkupSafe-3.0.2-cp311-cp311-macosx_10_9_universal2.whl",
    "regex-2026.11.15-cp311-cp311-macosx_10_9_x86_64.whl",
)
INTERESTING = (
    0,
    1,
    2,
    7,
    8,
    0x7F,
    0x80,
    0xFF,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    1 << 63,
    (1 << 64) - 1,
)


# --- seeds --------------------------------------------------------------------------------------------


@cache
def elf_seeds() -> tuple[bytes, ...]:
    seeds = [p.resolve().read_bytes() for p in HOST_ELFS if p.exists()]
    if not seeds:
        raise RuntimeError("no ELF seed found on the host")
    return tuple(s for s in seeds if len(s) <= 4 << 20)


def _macho_from_fixtures() -> list[bytes]:
    sys.path.insert(0, str(ROOT))
    try:
        from tests.support import machobuild as machofixtures
    except ImportError:
        return []
    if not all(shutil.which(t) for t in machofixtures.TOOLS):
        return []
    out: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out.append(machofixtures.build(Path(tmp) / "a.dylib").read_bytes())  # type: ignore[call-arg]
        except Exception:
            return []
    return out


@cache
def macho_seeds() -> tuple[bytes, ...]:
    seeds: list[bytes] = []
    for name in MACHO_WHEELS:
        path = CACHE / name
        if not path.is_file():
            continue
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".so") and info.file_size <= 1 << 20:
                    seeds.append(zf.read(info))
    seeds += _macho_from_fixtures()
    if not seeds:
        raise RuntimeError(
            "no Mach-O seed: fetch a small macOS wheel (tests/corpus/run.py --ci) or install clang-15"
        )
    return tuple(seeds)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@cache
def wheel_seeds() -> tuple[bytes, ...]:
    """Small valid wheels: stored and deflated members, one ELF member."""
    out = []
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        files = {
            "fz/__init__.py": b"x = 1\n",
            "fz/_lib.cpython-311-x86_64-linux-gnu.so": elf_seeds()[0][:3000],
            "fz-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fz\nVersion: 1.0\n",
            "fz-1.0.dist-info/WHEEL": (
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n"
            ),
        }
        rows = (
            "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
            + "fz-1.0.dist-info/RECORD,,\n"
        )
        files["fz-1.0.dist-info/RECORD"] = rows.encode()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        out.append(buf.getvalue())
    return tuple(out)


# --- mutation -----------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seeds: Callable[[], tuple[bytes, ...]], hot: int = 4096) -> bytes:
    """A seed with 0-8 mutations; offsets favour the first ``hot`` bytes, where the headers are."""
    pool = seeds()
    data = bytearray(pool[draw(st.integers(0, len(pool) - 1))])
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        limit = len(data) - 1 if draw(st.integers(0, 3)) == 0 else min(len(data), hot) - 1
        pos = draw(st.integers(0, limit))
        op = draw(st.sampled_from(("int", "byte", "flip", "truncate", "insert", "copy")))
        if op == "int":
            width = draw(st.sampled_from((1, 2, 4, 8)))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << (8 * width)) - 1))
            order = draw(st.sampled_from(("little", "big")))
            data[pos : pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, order)
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # copy a block over another place (e.g. a header onto a table)
            src = draw(st.integers(0, len(data) - 1))
            length = draw(st.integers(1, 64))
            data[pos : pos + length] = data[src : src + length]
    return bytes(data)


# --- properties (each returns normally or raises an unexpected exception: a finding) -------------------


def check_zip(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="wheelfix-fuzz-") as tmp:
        path = Path(tmp) / "fz-1.0-cp311-cp311-linux_x86_64.whl"
        path.write_bytes(data)
        try:
            with WheelArchive.open(path) as archive:
                for info in archive.members:
                    for _ in archive.iter_member(info, check_crc=True):
                        pass
        except (BadInput, CorruptMember):
            pass


def check_elf(data: bytes) -> None:
    with contextlib.suppress(BinaryFormatError):
        parse_elf(data)


def check_macho(data: bytes) -> None:
    with contextlib.suppress(BinaryFormatError):
        parse_macho(data)


def _load_past_end(data: bytes) -> bool:
    """A PT_LOAD whose file range ends past the end of the file: a known finding (plan_patch pads the output
    up to it; tests/regressions/test_corpus_regressions.py), skipped here so the harness can find other
    things."""
    is64, little = data[4] == 2, data[5] == 1
    end = "<" if little else ">"
    if is64:
        phoff, phentsize, phnum = struct.unpack_from(end + "Q14xHH", data, 32)
        fmt = end + "I4xQ16xQ"  # p_type, p_offset, p_filesz
    else:
        phoff, phentsize, phnum = struct.unpack_from(end + "I10xHH", data, 28)
        fmt = end + "II8xI"
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + struct.calcsize(fmt) > len(data):
            return False
        p_type, p_offset, p_filesz = struct.unpack_from(fmt, data, at)
        if p_type == 1 and p_offset + p_filesz > len(data):
            return True
    return False


def check_elf_writer(data: bytes, kind: str, value: str, interpreter: str | None) -> None:
    try:
        before = parse_elf(data, scan_strings=False)
    except BinaryFormatError:
        return
    if not before.is_dynamic or _load_past_end(data):
        return
    wants_interp = interpreter if before.interpreter is not None else None
    try:
        patch = plan_patch(data, path=(kind, value), interpreter=wants_interp)
    except BinaryFormatError:
        return
    after = parse_elf(patch.apply(data), scan_strings=False)
    assert (after.runpath if kind == "RUNPATH" else after.rpath) == value, (kind, value, after)
    assert (after.rpath if kind == "RUNPATH" else after.runpath) is None, after
    if wants_interp is not None:
        assert after.interpreter == wants_interp, after.interpreter
    else:
        assert after.interpreter == before.interpreter
    assert after.needed == before.needed
    assert after.soname == before.soname
    assert after.version_needs == before.version_needs


def check_macho_writer(data: bytes, add: str, rename_to: str, choice: int) -> None:
    try:
        info = parse_macho(data)
    except BinaryFormatError:
        return
    names = sorted({d.name for sl in info.slices for d in sl.dylibs})
    change = {names[choice % len(names)]: rename_to} if names else {}
    # only rename what every slice has (edits apply to every slice)
    change = {
        old: new
        for old, new in change.items()
        if all(old in {d.name for d in sl.dylibs} for sl in info.slices)
    }
    edits = MachOEdits(change_names=change, add_rpaths=(add,))
    try:
        out = edit_macho(data, edits, name="fuzz.so")
    except (BinaryFormatError, MachOEditError):
        return
    again = parse_macho(out)
    assert again.archs == info.archs
    for old_sl, new_sl in zip(info.slices, again.slices, strict=True):
        assert add in new_sl.rpaths, new_sl.rpaths
        assert list(new_sl.rpaths) == [*old_sl.rpaths, add] or add in old_sl.rpaths
        want = [change.get(d.name, d.name) for d in old_sl.dylibs]
        assert [d.name for d in new_sl.dylibs] == want


PATH_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=40,
)
SEARCH_PATH = st.lists(
    st.sampled_from(("$ORIGIN", "$ORIGIN/../lib", "/nix/store/abc-z/lib")) | PATH_TEXT, min_size=1, max_size=6
).map(":".join)

HARNESSES: dict[str, tuple[Callable[..., None], dict[str, st.SearchStrategy[object]]]] = {
    "zip": (check_zip, {"data": mutated(wheel_seeds, hot=1 << 16)}),
    "elf": (check_elf, {"data": mutated(elf_seeds)}),
    "macho": (check_macho, {"data": mutated(macho_seeds)}),
    "elf-writer": (
        check_elf_writer,
        {
            "data": mutated(elf_seeds),
            "kind": st.sampled_from(("RUNPATH", "RPATH")),
            "value": SEARCH_PATH,
            "interpreter": st.none() | st.just("/nix/store/abc-glibc/lib/ld-linux-x86-64.so.2"),
        },
    ),
    "macho-writer": (
        check_macho_writer,
        {
            "data": mutated(macho_seeds),
            "add": st.sampled_from(("@loader_path/../lib", "/nix/store/abc-z/lib")) | PATH_TEXT,
            "rename_to": st.sampled_from(("/nix/store/abc-z/lib/libz.1.dylib", "@rpath/libx.dylib"))
            | PATH_TEXT,
            "choice": st.integers(0, 64),
        },
    ),
}

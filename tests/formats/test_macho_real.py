"""The Mach-O reader, editor and signer on real macOS wheels from PyPI (pinned, fetched into the cache).

For every Mach-O member of each wheel (every slice of the fat ones):

* the reader agrees with ``llvm-otool-15`` / ``llvm-objdump-15`` (the same checks as on the lld fixtures);
* the architectures are those the wheel's platform tag promises (universal2: both);
* our page hashes equal the ones Apple's ``ld``/``codesign`` wrote in the original signature;
* an edit a repair would make (a dependency to a /nix/store path, one more LC_RPATH) either reads back in
  ``llvm-objdump-15`` exactly as intended, with a signature verified page by page with hashlib, or is
  refused with the number of missing bytes that otool's numbers give.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from wheelfix.binfmt import detect_format
from wheelfix.binfmt.macho.codesign import page_hashes
from wheelfix.binfmt.macho.editor import MachOEdits, NoRoomError, edit_macho
from wheelfix.binfmt.macho.reader import MachOSlice, parse_macho

from tests.support import machobuild as mf
from tests.support.machochecks import check_against_llvm, first_content_offset, verify_signature
from tests.support.oracles import objdump_dylibs_used, objdump_private_headers, otool_header, otool_l
from tests.support.prereq import require_tool
from tests.support.realwheels import MACOS_WHEELS, fetch

pytestmark = pytest.mark.network

STORE = "/nix/store/7q5qkzm4jgavj5g6lrq2pi4wjhyzpbaw-dep-1.0/lib"
SYSTEM_PREFIXES = ("/usr/lib/", "/System/Library/")


def tag_archs(filename: str) -> set[str]:
    platform = filename[: -len(".whl")].rsplit("-", 1)[1]
    archs: set[str] = set()
    for tag in platform.split("."):
        arch = tag.split("_", 3)[-1]
        archs |= {"arm64", "x86_64"} if arch == "universal2" else {arch}
    return archs


def original_hashes(body: bytes, sl: MachOSlice) -> list[tuple[int, int, list[bytes]]]:
    """(page size, code limit, hashes) of each SHA-256 CodeDirectory, read with struct alone."""
    assert sl.code_signature is not None
    start = sl.code_signature.dataoff
    _magic, _length, count = struct.unpack_from(">III", body, start)
    out = []
    for i in range(count):
        slot, offset = struct.unpack_from(">II", body, start + 12 + 8 * i)
        if slot == 0 or 0x1000 <= slot < 0x1005:
            cd = start + offset
            fields = struct.unpack_from(">9I4B", body, cd)
            hash_offset, n_code, limit, hash_size, hash_type, page_log2 = (
                *fields[4:5],
                *fields[7:9],
                *fields[9:11],
                fields[12],
            )
            if hash_type == 2 and hash_size == 32:
                at = cd + hash_offset
                out.append(
                    (1 << page_log2, limit, [body[at + 32 * k : at + 32 * (k + 1)] for k in range(n_code)])
                )
    return out


@pytest.mark.parametrize("entry", MACOS_WHEELS, ids=[e["filename"] for e in MACOS_WHEELS])
def test_real_macos_wheel(entry: dict[str, Any], tmp_path: Path) -> None:
    for tool in mf.TOOLS:
        require_tool(tool)
    wheel = fetch({**entry, "ci": False, "bench": False})
    members = 0
    edited = refused = 0
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if detect_format(data[:4096]) not in ("macho", "macho-fat"):
                continue
            members += 1
            name = info.filename.rsplit("/", 1)[-1]
            macho = parse_macho(data)
            assert set(macho.archs) == tag_archs(entry["filename"]), info.filename
            for sl in macho.slices:
                body = data[sl.offset : sl.offset + sl.size]
                thin = tmp_path / f"{sl.arch}-{name}"
                thin.write_bytes(body)
                check_against_llvm(parse_macho(body).slices[0], thin)
                if sl.code_signature is not None:
                    for page, limit, hashes in original_hashes(body, sl):
                        assert page_hashes(body, limit, page) == hashes, f"{info.filename} {sl.arch}"
            edits = {}
            for sl in macho.slices:
                dep = next((d.name for d in sl.dylibs if not d.name.startswith(SYSTEM_PREFIXES)), None)
                changes = {dep: f"{STORE}/{dep.rsplit('/', 1)[-1]}"} if dep else {}
                edits[sl.arch] = MachOEdits(change_names=changes, add_rpaths=(STORE,))
            path = tmp_path / name
            try:
                out = edit_macho(data, edits, name=name)
            except NoRoomError as e:
                refused += 1
                sl = macho.slices[e.slice_index]
                thin = tmp_path / f"{sl.arch}-{name}"
                header = otool_header(thin)
                commands = otool_l(thin)
                available = first_content_offset(commands) - sl.header_size
                growth = sum(
                    ((24 + len(new.encode()) + 1 + 7) & ~7) - int(c["cmdsize"])
                    for old, new in edits[sl.arch].change_names.items()
                    for c in commands
                    if c["cmd"] != "LC_ID_DYLIB" and c.get("name") == old
                )
                growth += (12 + len(STORE) + 1 + 7) & ~7
                growth += 16 if sl.arch == "arm64" and sl.code_signature is None else 0
                assert e.missing == header["sizeofcmds"] + growth - available
                continue
            edited += 1
            path.write_bytes(out)
            for sl in macho.slices:
                used = objdump_dylibs_used(path, sl.arch)
                before = objdump_dylibs_used(tmp_path / f"{sl.arch}-{name}", sl.arch)
                changes = edits[sl.arch].change_names
                assert [(d.name, d.tags) for d in used] == [
                    (changes.get(d.name, d.name), d.tags) for d in before
                ]
                rpaths = [c["path"] for c in objdump_private_headers(path, sl.arch) if c["cmd"] == "LC_RPATH"]
                assert rpaths == [*sl.rpaths, STORE]
            for sl in parse_macho(out).slices:
                if sl.code_signature is not None:
                    body = out[sl.offset : sl.offset + sl.size]
                    old = next(s for s in macho.slices if s.arch == sl.arch).code_signature
                    verify_signature(body, old.identifier if old and old.identifier else name)
    assert members
    assert edited
    print(f"{entry['filename']}: {members} Mach-O files, {edited} edited, {refused} refused for room")

"""wheelfix's Mach-O reader against LLVM's tools, and code signatures checked without wheelfix's signer:
the assertions the Mach-O tests share (lld fixtures, real wheels, repaired wheels)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from wheelfix.binfmt.macho.reader import MachOSlice, parse_macho

from tests.support.oracles import OtoolDylib, objdump_private_headers, otool_header, otool_L, otool_l

OTOOL_TAGS = {
    "LC_LOAD_DYLIB": (),
    "LC_ID_DYLIB": (),
    "LC_LOAD_WEAK_DYLIB": ("weak",),
    "LC_REEXPORT_DYLIB": ("reexport",),
    "LC_LAZY_LOAD_DYLIB": ("lazy",),
    "LC_LOAD_UPWARD_DYLIB": ("upward",),
}
FILETYPE_NUMBERS = {"object": 1, "execute": 2, "dylib": 6, "bundle": 8}
ZEROFILL = {0x1, 0xC, 0x12}


def first_content_offset(commands: list[dict[str, Any]]) -> int:
    """The lowest file offset of any section with content, from otool's numbers."""
    return min(
        int(s["offset"])
        for c in commands
        for s in c["sections"]
        if int(s["offset"]) and int(s["size"], 16) and int(s["flags"], 16) & 0xFF not in ZEROFILL
    )


def check_against_llvm(sl: MachOSlice, thin: Path) -> None:
    """Everything the reader says about ``sl`` against otool/objdump on the same slice as a thin file."""
    header = otool_header(thin)
    assert (sl.cputype, sl.cpusubtype & 0xFFFFFF, sl.cpusubtype >> 24) == (
        header["cputype"],
        header["cpusubtype"],
        header["caps"],
    )
    assert FILETYPE_NUMBERS[sl.filetype] == header["filetype"]
    assert (sl.ncmds, sl.sizeofcmds, sl.flags) == (header["ncmds"], header["sizeofcmds"], header["flags"])
    assert sl.bits == (64 if header["magic"] == 0xFEEDFACF else 32)

    commands = otool_l(thin)
    detailed = objdump_private_headers(thin)
    assert len(commands) == len(detailed) == sl.ncmds
    assert [c["cmd"] for c in commands] == [lc.name for lc in sl.load_commands]
    assert [int(c["cmdsize"]) for c in commands] == [lc.size for lc in sl.load_commands]

    segments = [c for c in commands if c["cmd"] in ("LC_SEGMENT_64", "LC_SEGMENT")]
    assert len(segments) == len(sl.segments)
    for theirs, ours in zip(segments, sl.segments, strict=True):
        assert (theirs["segname"], int(theirs["vmaddr"], 16), int(theirs["vmsize"], 16)) == (
            ours.name,
            ours.vmaddr,
            ours.vmsize,
        )
        assert (int(theirs["fileoff"]), int(theirs["filesize"]), int(theirs["nsects"])) == (
            ours.fileoff,
            ours.filesize,
            len(ours.sections),
        )
        assert [
            (s["segname"], s["sectname"], int(s["offset"]), int(s["size"], 16)) for s in theirs["sections"]
        ] == [(s.segname, s.sectname, s.offset, s.size) for s in ours.sections]

    dylib_cmds = [(i, c) for i, c in enumerate(commands) if c["cmd"] in OTOOL_TAGS]
    ours_by_index = {d.index: d for d in (*sl.dylibs, *([sl.id_dylib] if sl.id_dylib else []))}
    assert sorted(ours_by_index) == [i for i, _ in dylib_cmds]
    for i, c in dylib_cmds:
        d = ours_by_index[i]
        assert (d.kind, d.name, d.current_version, d.compatibility_version) == (
            c["cmd"],
            c["name"],
            c["current version"],
            c["compatibility version"],
        )
        assert d.timestamp == int(str(c["time stamp"]).split()[0])
    assert list(sl.rpaths) == [c["path"] for c in commands if c["cmd"] == "LC_RPATH"]

    # otool -L: the id and the dylibs in load-command order, with weak/reexport/lazy/upward tags
    listed = otool_L(thin)
    expected = [
        OtoolDylib(d.name, d.compatibility_version, d.current_version, OTOOL_TAGS[d.kind])
        for _, d in sorted(ours_by_index.items())
    ]
    assert listed == expected

    platforms = [
        (c["cmd"], c["platform"] if c["cmd"] == "LC_BUILD_VERSION" else "macos")
        for c in detailed
        if c["cmd"] in ("LC_BUILD_VERSION", "LC_VERSION_MIN_MACOSX")
    ]
    assert [(p.kind, p.platform) for p in sl.platforms] == platforms
    versions = [
        (c["minos"] if c["cmd"] == "LC_BUILD_VERSION" else c["version"], c["sdk"])
        for c in detailed
        if c["cmd"] in ("LC_BUILD_VERSION", "LC_VERSION_MIN_MACOSX")
    ]
    assert [(p.minos, p.sdk) for p in sl.platforms] == [
        (minos, "0.0" if sdk == "n/a" else sdk) for minos, sdk in versions
    ]

    uuids = [c["uuid"] for c in commands if c["cmd"] == "LC_UUID"]
    assert [sl.uuid] == uuids if uuids else sl.uuid is None
    signatures = [
        (int(c["dataoff"]), int(c["datasize"])) for c in commands if c["cmd"] == "LC_CODE_SIGNATURE"
    ]
    assert (
        [(sl.code_signature.dataoff, sl.code_signature.datasize)] if sl.code_signature else []
    ) == signatures

    lc_end = (32 if sl.bits == 64 else 28) + header["sizeofcmds"]
    assert sl.header_padding == first_content_offset(commands) - lc_end


def verify_signature(data: bytes, identifier: str) -> list[int]:
    """Check every slice's signature without wheelfix: SuperBlob and CodeDirectory fields as lld writes
    them, and every page hash recomputed with hashlib. Returns the offsets of each slice's first hash."""
    slot0 = []
    for sl in parse_macho(data).slices:
        body = data[sl.offset : sl.offset + sl.size]
        cmds = [c for c in sl.load_commands if c.name == "LC_CODE_SIGNATURE"]
        if not cmds:
            continue
        dataoff, datasize = struct.unpack_from("<II", body, cmds[0].offset + 8)
        assert dataoff + datasize == len(body)
        magic, length, count = struct.unpack_from(">III", body, dataoff)
        assert (magic, length, count) == (0xFADE0CC0, datasize, 1)
        slot, cd = struct.unpack_from(">II", body, dataoff + 12)
        assert slot == 0
        cd += dataoff
        fields = struct.unpack_from(">9I4B", body, cd)
        cd_magic, _len, version, flags, hash_off, ident_off, n_special, n_code, limit = fields[:9]
        hash_size, hash_type, _platform, page_log2 = fields[9:]
        assert (cd_magic, version, flags, n_special) == (0xFADE0C02, 0x20400, 0x20002, 0)
        assert (hash_size, hash_type, page_log2, limit) == (32, 2, 12, dataoff)
        assert body[cd + ident_off : body.index(b"\0", cd + ident_off)] == identifier.encode()
        assert n_code == (dataoff + 4095) // 4096
        for i in range(n_code):
            page = body[i * 4096 : min((i + 1) * 4096, dataoff)]
            at = cd + hash_off + 32 * i
            assert body[at : at + 32] == hashlib.sha256(page).digest(), f"page {i} of {sl.arch}"
        slot0.append(sl.offset + cd + hash_off)
        linkedit = sl.segment("__LINKEDIT")
        assert linkedit is not None and linkedit.fileoff + linkedit.filesize == len(body)
        assert linkedit.vmsize >= linkedit.filesize
    return slot0

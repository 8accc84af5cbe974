"""Edit the load commands of Mach-O files (thin or fat) in pure Python, and re-sign them ad hoc.

What ``install_name_tool`` and ``codesign -s -`` do, for what a wheel repair needs, on any host:

* change the install name of a dependency (``LC_LOAD_DYLIB``, ``LC_LOAD_WEAK_DYLIB``, ``LC_REEXPORT_DYLIB``,
  ``LC_LAZY_LOAD_DYLIB``, ``LC_LOAD_UPWARD_DYLIB``), keeping the command kind, timestamp and versions;
* change ``LC_ID_DYLIB``;
* delete, replace and add ``LC_RPATH`` entries (added ones go after the last existing ``LC_RPATH``, or at the
  end of the load commands when there is none).

The new load-command area is computed first. It may grow into the header padding (the free bytes between
the load commands and the first section) and nothing else: file content never moves. When it does not fit,
:class:`NoRoomError` says which binary and slice and how many bytes are missing, and nothing is written.

Then every edited slice that was signed, and every edited arm64/arm64e slice, gets an ad-hoc signature
exactly as ``ld64.lld`` writes it (see :mod:`.codesign`): at the ``LC_CODE_SIGNATURE`` offset, with
``LC_CODE_SIGNATURE``'s size, ``__LINKEDIT``'s file size, and ``__LINKEDIT``'s vmsize (rounded up to the
segment page size: 16 KiB on arm64, 4 KiB elsewhere) updated when the signature's size changes. The
identifier of an existing signature is kept. An arm64 slice without ``LC_CODE_SIGNATURE`` gets one (16 more
bytes of load commands, so it needs that much header padding too), with the file name as identifier,
as lld would name it.

Edits on a fat file apply per slice; the fat file is re-assembled with every slice at its old offset when it
still fits there, else at the next offset with the slice's alignment. Slices that need no edit are copied
byte for byte. Big-endian (PowerPC) slices are read but never edited.

The result is parsed again before it is returned, and must say what the edits asked for.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from wheelfix.binfmt import BinaryFormatError, Buffer
from wheelfix.binfmt.macho.codesign import CS_EXECSEG_MAIN_BINARY, build_adhoc_signature, signature_size
from wheelfix.binfmt.macho.reader import (
    DYLIB_LOADS,
    LC_CODE_SIGNATURE,
    LC_ID_DYLIB,
    LC_RPATH,
    LC_SEGMENT_64,
    MachOInfo,
    MachOSlice,
    parse_macho,
    parse_slice,
)
from wheelfix.errors import EXIT_FINDINGS, Error

SignMode = Literal["auto", "always", "never"]

__all__ = [
    "MachOEditError",
    "MachOEdits",
    "NoRoomError",
    "SignMode",
    "SliceRoom",
    "dylib_command_size",
    "edit_macho",
    "header_room",
    "rpath_command_size",
    "sign_macho",
    "sign_slice",
    "slice_room",
    "wants_signature",
]

LC_CODE_SIGNATURE_SIZE = 16
SIGNATURE_ALIGN = 16  # lld puts the signature at a 16-byte boundary of __LINKEDIT


class MachOEditError(Error, ValueError):
    """An edit cannot be made as asked (a name missing, a duplicate, an unsupported layout)."""

    exit_code = EXIT_FINDINGS


class NoRoomError(MachOEditError):
    """The new load commands do not fit in the header padding of one slice."""

    def __init__(self, binary: str, arch: str, slice_index: int, needed: int, available: int) -> None:
        self.binary = binary
        self.arch = arch
        self.slice_index = slice_index
        self.needed = needed
        self.available = available
        self.missing = needed - available
        super().__init__(
            f"{binary} ({arch} slice): the load commands would need {needed} bytes but only {available} fit "
            f"before the first section: {self.missing} bytes missing "
            "(relink with -headerpad_max_install_names)"
        )


@dataclass(frozen=True, slots=True)
class SliceRoom:
    """Bytes the load commands of one slice would take after an edit, and the bytes there are for them."""

    arch: str
    slice_index: int
    needed: int  # the new load commands, plus 16 when an LC_CODE_SIGNATURE must be added
    available: int  # sizeofcmds + header padding

    @property
    def missing(self) -> int:
        """How many bytes short the header is (0 when the edit fits)."""
        return max(0, self.needed - self.available)


@dataclass(frozen=True)
class MachOEdits:
    """What to change in one slice. Every name an edit refers to must be there, or MachOEditError."""

    change_names: Mapping[str, str] = field(default_factory=dict)  # old dependency install name -> new
    id_dylib: str | None = None  # new LC_ID_DYLIB
    delete_rpaths: tuple[str, ...] = ()  # removes every LC_RPATH with this path
    replace_rpaths: Mapping[str, str] = field(default_factory=dict)  # old path -> new path
    add_rpaths: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.change_names
            or self.id_dylib is not None
            or self.delete_rpaths
            or self.replace_rpaths
            or self.add_rpaths
        )


def edit_macho(
    data: Buffer,
    edits: MachOEdits | Mapping[str, MachOEdits],
    *,
    name: str = "<binary>",
    sign: SignMode = "auto",
) -> bytes:
    """Apply ``edits`` (the same for every slice, or per architecture name) and return the new file.

    ``name`` is the binary's file name: it is used in error messages and as the identifier of a signature
    added where there was none. ``sign``: "auto" re-signs edited slices that were signed or are arm64,
    "always" every edited slice, "never" none (a signature left in place is then invalid).
    Raises BinaryFormatError for malformed input, MachOEditError (NoRoomError) for edits that cannot be made.
    """
    info = parse_macho(data)
    _check_arch_keys(info, edits, name)
    new_slices: list[bytes | None] = []
    for index, sl in enumerate(info.slices):
        slice_edits = edits if isinstance(edits, MachOEdits) else edits.get(sl.arch)
        if not slice_edits:
            new_slices.append(None)
            continue
        new_slices.append(_edit_slice(data, sl, index, slice_edits, name, sign))
    out = _assemble(data, info, new_slices, name)
    _verify(out, info, edits, name)
    return out


def header_room(
    data: Buffer,
    edits: MachOEdits | Mapping[str, MachOEdits],
    *,
    name: str = "<binary>",
    sign: SignMode = "auto",
) -> tuple[SliceRoom, ...]:
    """What :func:`edit_macho` would need per edited slice, without editing: lets a planner choose between
    edits (say, one LC_RPATH against rewriting every install name) before anything is written.
    Raises what edit_macho raises, except NoRoomError."""
    info = parse_macho(data)
    _check_arch_keys(info, edits, name)
    rooms = []
    for index, sl in enumerate(info.slices):
        slice_edits = edits if isinstance(edits, MachOEdits) else edits.get(sl.arch)
        if slice_edits:
            rooms.append(_plan_slice(data, sl, index, slice_edits, name, sign)[1])
    return tuple(rooms)


def slice_room(sl: MachOSlice, index: int, edits: MachOEdits, *, sign: SignMode = "auto") -> SliceRoom:
    """What :func:`header_room` says for one slice, from the parsed slice alone (no file bytes): what a
    planner that holds only the analysis uses to choose between edits. Names an edit refers to are not
    checked here (edit_macho checks them)."""
    delta = 0
    for d in sl.dylibs:
        if d.name in edits.change_names:
            delta += dylib_command_size(edits.change_names[d.name], sl.bits) - sl.load_commands[d.index].size
    if edits.id_dylib is not None and sl.id_dylib is not None:
        delta += dylib_command_size(edits.id_dylib, sl.bits) - sl.load_commands[sl.id_dylib.index].size
    rpath_commands = [c for c in sl.load_commands if c.cmd == LC_RPATH]
    for path, lc in zip(sl.rpaths, rpath_commands, strict=True):
        if path in edits.delete_rpaths:
            delta -= lc.size
        elif path in edits.replace_rpaths:
            delta += rpath_command_size(edits.replace_rpaths[path], sl.bits) - lc.size
    delta += sum(rpath_command_size(p, sl.bits) for p in edits.add_rpaths)
    will_sign = _will_sign(sl, sign)
    if will_sign and sl.code_signature is None:
        delta += LC_CODE_SIGNATURE_SIZE
    return SliceRoom(sl.arch, index, sl.sizeofcmds + delta, sl.sizeofcmds + sl.header_padding)


def dylib_command_size(name: str, bits: int = 64) -> int:
    """cmdsize of a dylib load command naming ``name`` (as lld and this module write it)."""
    return _aligned(24 + len(name.encode("utf-8")) + 1, bits)


def rpath_command_size(path: str, bits: int = 64) -> int:
    """cmdsize of an LC_RPATH for ``path``."""
    return _aligned(12 + len(path.encode("utf-8")) + 1, bits)


def _aligned(size: int, bits: int) -> int:
    align = 8 if bits == 64 else 4
    return (size + align - 1) & ~(align - 1)


def _check_arch_keys(info: MachOInfo, edits: MachOEdits | Mapping[str, MachOEdits], name: str) -> None:
    if not isinstance(edits, MachOEdits):
        unknown = sorted(set(edits) - set(info.archs))
        if unknown:
            raise MachOEditError(f"{name}: there is no {unknown[0]} slice to edit")


def sign_macho(
    data: Buffer,
    *,
    name: str = "<binary>",
    identifier: str | None = None,
    archs: tuple[str, ...] | None = None,
) -> bytes:
    """Ad-hoc sign (or re-sign) every slice that has a signature or is arm64 (or just ``archs``).

    A slice that lld signed comes back byte for byte as it was.
    """
    info = parse_macho(data)
    new_slices: list[bytes | None] = []
    for index, sl in enumerate(info.slices):
        wanted = sl.arch in archs if archs is not None else wants_signature(sl)
        if not wanted:
            new_slices.append(None)
            continue
        buf = bytearray(data[sl.offset : sl.offset + sl.size])
        _check_editable(sl, name)
        if sl.code_signature is None:
            buf = _with_code_signature_command(buf, sl, index, name)
        new_slices.append(bytes(sign_slice(buf, identifier=identifier, name=name)))
    out = _assemble(data, info, new_slices, name)
    parse_macho(out)
    return out


def sign_slice(buf: bytearray, *, identifier: str | None = None, name: str = "<binary>") -> bytearray:
    """Write lld's ad-hoc signature into a thin slice that has ``LC_CODE_SIGNATURE``; returns the slice.

    The signature goes at the command's ``dataoff`` and must end ``__LINKEDIT``, which must end the slice.
    ``identifier`` defaults to the existing signature's identifier, else to ``name``'s last path component.
    """
    sl = parse_slice(buf)
    _check_editable(sl, name)
    where = f"{name} ({sl.arch} slice)"
    cs = sl.code_signature
    if cs is None:
        raise MachOEditError(f"{where}: no LC_CODE_SIGNATURE to put a signature at")
    linkedit = sl.segment("__LINKEDIT")
    text = sl.segment("__TEXT")
    if linkedit is None or text is None:
        raise MachOEditError(f"{where}: no __LINKEDIT or __TEXT segment; cannot sign")
    linkedit_end = linkedit.fileoff + linkedit.filesize
    if linkedit_end != len(buf):
        raise MachOEditError(f"{where}: __LINKEDIT does not end the file; cannot place a signature")
    if cs.datasize and cs.dataoff + cs.datasize != linkedit_end:
        raise MachOEditError(f"{where}: the code signature is not at the end of __LINKEDIT")
    if not linkedit.fileoff <= cs.dataoff <= len(buf):
        raise MachOEditError(f"{where}: the code signature offset lies outside __LINKEDIT")
    if identifier is None:
        identifier = cs.identifier or name.replace("\\", "/").rsplit("/", 1)[-1]
    dataoff = cs.dataoff
    new_size = signature_size(identifier, dataoff)
    new_filesize = dataoff + new_size - linkedit.fileoff
    e = "<" if sl.endian == "little" else ">"
    lc = next(c for c in sl.load_commands if c.cmd == LC_CODE_SIGNATURE)
    struct.pack_into(e + "I", buf, lc.offset + 12, new_size)
    if new_filesize != linkedit.filesize:
        page = 0x4000 if sl.arch.startswith("arm64") else 0x1000
        vmsize = (new_filesize + page - 1) & ~(page - 1)
        seg_lc = sl.load_commands[linkedit.index]
        if seg_lc.cmd == LC_SEGMENT_64:
            struct.pack_into(e + "QQQ", buf, seg_lc.offset + 32, vmsize, linkedit.fileoff, new_filesize)
        else:
            if new_filesize > 0xFFFFFFFF:
                raise MachOEditError(f"{where}: __LINKEDIT would outgrow a 32-bit segment")
            struct.pack_into(e + "III", buf, seg_lc.offset + 28, vmsize, linkedit.fileoff, new_filesize)
    del buf[dataoff:]
    buf.extend(bytes(new_size))
    signature = build_adhoc_signature(
        buf,
        dataoff,
        identifier,
        exec_seg_base=text.fileoff,
        exec_seg_limit=text.filesize,
        exec_seg_flags=CS_EXECSEG_MAIN_BINARY if sl.filetype == "execute" else 0,
    )
    buf[dataoff:] = signature
    return buf


# --- one slice ---------------------------------------------------------------------------------------


def _will_sign(sl: MachOSlice, sign: SignMode) -> bool:
    return sign == "always" or (sign == "auto" and wants_signature(sl))


def wants_signature(sl: MachOSlice) -> bool:
    """Whether ``sign="auto"`` signs the slice once edited: it was signed, or it is arm64/arm64e."""
    return sl.code_signature is not None or sl.arch.startswith("arm64")


def _check_editable(sl: MachOSlice, name: str) -> None:
    if sl.endian != "little":
        raise MachOEditError(f"{name} ({sl.arch} slice): big-endian slices are not edited")


def _lc_string(raw: bytes, field_offset: int) -> str:
    (str_off,) = struct.unpack_from("<I", raw, field_offset)
    return raw[str_off : raw.index(b"\x00", str_off)].decode("utf-8", "backslashreplace")


def _string_command(head: bytes, text: str, align: int, what: str) -> bytes:
    """A load command: ``head`` (cmd, cmdsize placeholder, fixed fields), ``text``, NUL, zero padding."""
    encoded = text.encode("utf-8")
    if not encoded or b"\x00" in encoded:
        raise MachOEditError(f"{what}: a name must be non-empty and contain no NUL byte: {text!r}")
    size = (len(head) + len(encoded) + 1 + align - 1) & ~(align - 1)
    out = bytearray(head + encoded + bytes(size - len(head) - len(encoded)))
    struct.pack_into("<I", out, 4, size)
    return bytes(out)


def _dylib_command(raw: bytes, new_name: str, align: int, what: str) -> bytes:
    cmd, _size, _off, timestamp, current, compat = struct.unpack_from("<6I", raw, 0)
    return _string_command(struct.pack("<6I", cmd, 0, 24, timestamp, current, compat), new_name, align, what)


def _rpath_command(path: str, align: int, what: str) -> bytes:
    return _string_command(struct.pack("<3I", LC_RPATH, 0, 12), path, align, what)


def _plan_slice(
    data: Buffer, sl: MachOSlice, index: int, edits: MachOEdits, name: str, sign: SignMode
) -> tuple[list[bytes], SliceRoom, bool]:
    """The slice's new load commands, the room they need, and whether a signature will be written."""
    where = f"{name} ({sl.arch} slice)"
    _check_editable(sl, name)
    align = 8 if sl.bits == 64 else 4
    commands, changed, rpaths = _rewritten_commands(data, sl, edits, align, where)
    _check_names(sl, edits, changed, where)
    insert_at = max((i + 1 for i, (cmd, _) in enumerate(commands) if cmd == LC_RPATH), default=len(commands))
    for path in edits.add_rpaths:
        if path in rpaths:
            raise MachOEditError(f"{where}: LC_RPATH {path!r} is already there (dyld rejects duplicates)")
        rpaths.append(path)
        commands.insert(insert_at, (LC_RPATH, _rpath_command(path, align, where)))
        insert_at += 1

    will_sign = _will_sign(sl, sign)
    add_signature = will_sign and sl.code_signature is None
    needed = sum(len(raw) for _, raw in commands) + (LC_CODE_SIGNATURE_SIZE if add_signature else 0)
    room = SliceRoom(sl.arch, index, needed, sl.sizeofcmds + sl.header_padding)
    return [raw for _, raw in commands], room, will_sign


def _rewritten_commands(
    data: Buffer, sl: MachOSlice, edits: MachOEdits, align: int, where: str
) -> tuple[list[tuple[int, bytes]], set[str], list[str]]:
    """The slice's load commands as (cmd, bytes) with the renames, the new install id and the deleted and
    replaced LC_RPATHs applied; the dependency names that were renamed; the LC_RPATH paths now there."""
    commands: list[tuple[int, bytes]] = []
    changed: set[str] = set()
    rpaths: list[str] = []
    for lc in sl.load_commands:
        raw = bytes(data[sl.offset + lc.offset : sl.offset + lc.offset + lc.size])
        if lc.cmd in DYLIB_LOADS:
            old = _lc_string(raw, 8)
            if old in edits.change_names:
                changed.add(old)
                raw = _dylib_command(raw, edits.change_names[old], align, where)
        elif lc.cmd == LC_ID_DYLIB and edits.id_dylib is not None:
            raw = _dylib_command(raw, edits.id_dylib, align, where)
        elif lc.cmd == LC_RPATH:
            path = _lc_string(raw, 8)
            if path in edits.delete_rpaths:
                continue
            if path in edits.replace_rpaths:
                path = edits.replace_rpaths[path]
                raw = _rpath_command(path, align, where)
            rpaths.append(path)
        commands.append((lc.cmd, raw))
    return commands, changed, rpaths


def _check_names(sl: MachOSlice, edits: MachOEdits, changed: set[str], where: str) -> None:
    """Every name the edits refer to is in the slice, and no replaced LC_RPATH duplicates another."""
    missing = sorted(set(edits.change_names) - changed)
    if missing:
        raise MachOEditError(f"{where}: no dylib load command names {missing[0]!r}")
    if edits.id_dylib is not None and sl.id_dylib is None:
        raise MachOEditError(f"{where}: not a dylib (no LC_ID_DYLIB) but an install id was asked for")
    for path in (*edits.delete_rpaths, *edits.replace_rpaths):
        if path not in sl.rpaths:
            raise MachOEditError(f"{where}: no LC_RPATH {path!r}")
    for old, new in edits.replace_rpaths.items():
        if new != old and (new in sl.rpaths or list(edits.replace_rpaths.values()).count(new) > 1):
            raise MachOEditError(f"{where}: replacing LC_RPATH {old!r} would duplicate {new!r}")


def _edit_slice(
    data: Buffer, sl: MachOSlice, index: int, edits: MachOEdits, name: str, sign: SignMode
) -> bytes:
    commands, room, will_sign = _plan_slice(data, sl, index, edits, name, sign)
    assert room == slice_room(sl, index, edits, sign=sign), "slice_room disagrees with the edit"
    if room.missing > 0:
        raise NoRoomError(name, sl.arch, index, room.needed, room.available)
    buf = bytearray(data[sl.offset : sl.offset + sl.size])
    _write_commands(buf, sl, commands, f"{name} ({sl.arch} slice)")
    if will_sign and sl.code_signature is None:
        buf = _with_code_signature_command(buf, parse_slice(buf), index, name)
    if will_sign:
        buf = sign_slice(buf, name=name)
    return bytes(buf)


def _write_commands(buf: bytearray, sl: MachOSlice, commands: list[bytes], where: str) -> None:
    start = sl.header_size
    old_end = start + sl.sizeofcmds
    blob = b"".join(commands)
    new_end = start + len(blob)
    if new_end > old_end and any(buf[old_end:new_end]):
        raise MachOEditError(f"{where}: the header padding is not empty; refusing to overwrite it")
    buf[start:new_end] = blob
    if new_end < old_end:
        buf[new_end:old_end] = bytes(old_end - new_end)
    struct.pack_into("<II", buf, 16, len(commands), len(blob))


def _with_code_signature_command(buf: bytearray, sl: MachOSlice, index: int, name: str) -> bytearray:
    """Append an LC_CODE_SIGNATURE (empty, at the next 16-byte boundary after __LINKEDIT) to the slice."""
    where = f"{name} ({sl.arch} slice)"
    if sl.header_padding < LC_CODE_SIGNATURE_SIZE:
        raise NoRoomError(
            name, sl.arch, index, sl.sizeofcmds + LC_CODE_SIGNATURE_SIZE, sl.sizeofcmds + sl.header_padding
        )
    linkedit = sl.segment("__LINKEDIT")
    if linkedit is None or linkedit.fileoff + linkedit.filesize != len(buf):
        raise MachOEditError(f"{where}: __LINKEDIT does not end the file; cannot add a code signature")
    dataoff = (len(buf) + SIGNATURE_ALIGN - 1) & ~(SIGNATURE_ALIGN - 1)
    commands = [bytes(buf[c.offset : c.offset + c.size]) for c in sl.load_commands]
    commands.append(struct.pack("<4I", LC_CODE_SIGNATURE, LC_CODE_SIGNATURE_SIZE, dataoff, 0))
    _write_commands(buf, sl, commands, where)
    buf.extend(bytes(dataoff - len(buf)))
    e = "<"
    seg_lc = sl.load_commands[linkedit.index]
    filesize = dataoff - linkedit.fileoff
    if seg_lc.cmd == LC_SEGMENT_64:
        struct.pack_into(e + "Q", buf, seg_lc.offset + 48, filesize)
    else:
        struct.pack_into(e + "I", buf, seg_lc.offset + 36, filesize)
    return buf


# --- the whole file ----------------------------------------------------------------------------------


def _assemble(data: Buffer, info: MachOInfo, new_slices: list[bytes | None], name: str) -> bytes:
    if all(s is None for s in new_slices):
        return bytes(data)
    if info.fat is None:
        only = new_slices[0]
        assert only is not None
        return only
    is64 = info.fat == "FAT_MAGIC_64"
    entry_size = 32 if is64 else 20
    table_end = 8 + len(info.slices) * entry_size
    contents = [
        new if new is not None else bytes(data[sl.offset : sl.offset + sl.size])
        for sl, new in zip(info.slices, new_slices, strict=True)
    ]
    offsets = [0] * len(info.slices)
    cursor = table_end
    for i in sorted(range(len(info.slices)), key=lambda k: info.slices[k].offset):
        sl = info.slices[i]
        step = 1 << sl.align
        offsets[i] = sl.offset if sl.offset >= cursor else (cursor + step - 1) & ~(step - 1)
        cursor = offsets[i] + len(contents[i])
    if not is64 and cursor > 0xFFFFFFFF:
        raise MachOEditError(f"{name}: the fat file would outgrow 32-bit offsets")
    first = min(sl.offset for sl in info.slices)
    out = bytearray(cursor)
    out[:first] = data[:first]
    for i in range(len(info.slices)):
        at = 8 + i * entry_size
        if is64:
            struct.pack_into(">QQ", out, at + 8, offsets[i], len(contents[i]))
        else:
            struct.pack_into(">II", out, at + 8, offsets[i], len(contents[i]))
        out[offsets[i] : offsets[i] + len(contents[i])] = contents[i]
    return bytes(out)


def _verify(out: bytes, before: MachOInfo, edits: MachOEdits | Mapping[str, MachOEdits], name: str) -> None:
    """Parse the result and check it says what was asked; an internal error otherwise (never silent)."""
    try:
        after = parse_macho(out)
    except BinaryFormatError as e:  # pragma: no cover - a bug in this module
        raise AssertionError(f"{name}: edited file does not parse: {e}") from e
    for old, new in zip(before.slices, after.slices, strict=True):
        slice_edits = edits if isinstance(edits, MachOEdits) else edits.get(old.arch)
        if not slice_edits:
            continue
        expect_dylibs = [slice_edits.change_names.get(d.name, d.name) for d in old.dylibs]
        expect_rpaths = [
            slice_edits.replace_rpaths.get(p, p) for p in old.rpaths if p not in slice_edits.delete_rpaths
        ]
        expect_rpaths += slice_edits.add_rpaths
        expect_id = (
            slice_edits.id_dylib if slice_edits.id_dylib is not None else old.id_dylib and old.id_dylib.name
        )
        got_id = new.id_dylib and new.id_dylib.name
        if (
            [d.name for d in new.dylibs] != expect_dylibs
            or [d.kind for d in new.dylibs] != [d.kind for d in old.dylibs]
            or list(new.rpaths) != expect_rpaths
            or got_id != expect_id
        ):  # pragma: no cover - a bug in this module
            raise AssertionError(
                f"{name} ({old.arch} slice): edited load commands do not read back as intended"
            )

"""The Mach-O reader, editor and ad-hoc signer (``wheelfix.binfmt.macho``: reader, editor, codesign).

Oracles, all independent of wheelfix:

* Reading: fixtures linked at test time by ``ld64.lld-15`` (thin arm64 / x86_64 dylibs, bundles and
  executables, an i386 object, fat files by ``llvm-lipo-15`` and by our own independent fat writer for
  ``FAT_MAGIC_64``) must read as ``llvm-otool-15 -h/-l/-L`` and ``llvm-objdump-15 --macho --private-headers
  / --dylibs-used / --universal-headers`` read them.
* Signing: for every binary lld signed, our signature over the same bytes (given only what otool says: the
  code limit, ``__TEXT``, the file name) must equal lld's byte for byte.
* Editing: the edited binary must equal, byte for byte, what lld writes when it links the same inputs with
  the final install names and rpaths (and a header padding that puts ``__text`` at the same offset), except
  for the LC_UUID lld derives from the output's content and the first page's hash that covers it; every
  page hash of our signature is checked with hashlib. ``llvm-otool-15`` must read the edits as intended.
* Refusals: too little header padding gives NoRoomError with the number of bytes missing computed from
  otool's numbers; hostile and truncated inputs give BinaryFormatError (never another exception).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from wheelfix.binfmt import BinaryFormatError, detect_format
from wheelfix.binfmt.macho.codesign import build_adhoc_signature, page_hashes, parse_signature, signature_size
from wheelfix.binfmt.macho.editor import (
    MachOEditError,
    MachOEdits,
    NoRoomError,
    dylib_command_size,
    edit_macho,
    header_room,
    rpath_command_size,
    sign_macho,
)
from wheelfix.binfmt.macho.reader import MachOInfo, MachOSlice, parse_macho

from tests.support import machobuild as mf
from tests.support.machochecks import OTOOL_TAGS, check_against_llvm, first_content_offset, verify_signature
from tests.support.oracles import (
    OTOOL,
    OtoolDylib,
    objdump_dylibs_used,
    objdump_private_headers,
    objdump_universal_headers,
    otool_header,
    otool_L,
    otool_l,
)
from tests.support.prereq import require_tool

DEPS = (
    mf.Dep("/opt/homebrew/opt/libomp/lib/libomp.dylib", "l", "5.0.0", "5.0.0"),
    mf.Dep("/usr/lib/libSystem.B.dylib", "weak", "1319.0.0", "1.0"),
    mf.Dep("@rpath/libre.1.dylib", "reexport"),
)
RPATHS = ("@loader_path/../lib", "/Users/runner/work/build/lib")
STORE_OMP = "/nix/store/0c4pcbk4nbysk6p1b9iz8y5p5jz2d8wz-llvm-openmp-19.1.7/lib/libomp.dylib"
STORE_LIB = "/nix/store/q1sz0r0vq7kqxa5kgq4w9j8m6c0xz8d8-libre-1.0/lib"

# name -> (file name, build arguments). The file name is what lld puts in the signature as identifier.
SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "arm64_dylib": (
        "libfoo.dylib",
        {
            "arch": "arm64",
            "install_name": "@rpath/libfoo.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0x400,
        },
    ),
    "arm64_bundle": (
        "_ext.cpython-311-darwin.so",
        {"arch": "arm64", "kind": "bundle", "rpaths": RPATHS[:1], "deps": DEPS[:2], "headerpad": 0x200},
    ),
    "arm64_exe": (
        "tool",
        {"arch": "arm64", "kind": "execute", "rpaths": RPATHS, "deps": DEPS[:1], "headerpad": 0x200},
    ),
    "arm64_unsigned": (
        "libnosig.dylib",
        {
            "arch": "arm64",
            "install_name": "@rpath/libnosig.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0x200,
            "sign": False,
        },
    ),
    "arm64_tight": (
        "libtight.dylib",
        {
            "arch": "arm64",
            "install_name": "@rpath/libtight.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0,
        },
    ),
    "arm64_unsigned_tight": (
        "libtight2.dylib",
        {
            "arch": "arm64",
            "install_name": "@rpath/libtight2.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0,
            "sign": False,
        },
    ),
    "x86_64_dylib": (
        "libfoo.dylib",
        {
            "arch": "x86_64",
            "install_name": "@rpath/libfoo.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0x400,
        },
    ),
    "x86_64_signed": (
        "libxsigned.dylib",
        {
            "arch": "x86_64",
            "install_name": "@rpath/libxsigned.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0x200,
            "sign": True,
        },
    ),
    "x86_64_bundle": (
        "_ext.cpython-311-darwin.so",
        {"arch": "x86_64", "kind": "bundle", "rpaths": RPATHS[:1], "deps": DEPS[:2], "headerpad": 0x200},
    ),
    "x86_64_old": (
        "libold.dylib",
        {"arch": "x86_64", "install_name": "/usr/local/lib/libold.dylib", "min_os": "10.9"},
    ),
    "x86_64_tight": (
        "libtight.dylib",
        {
            "arch": "x86_64",
            "install_name": "@rpath/libtight.dylib",
            "rpaths": RPATHS,
            "deps": DEPS,
            "headerpad": 0,
        },
    ),
}
THIN = tuple(SPECS)
FAT = ("fat_dylib", "fat_bundle", "fat64_dylib", "fat_tight")
ALL = (*THIN, *FAT, "i386_object")


@dataclasses.dataclass(frozen=True)
class Fixtures:
    root: Path
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    def data(self, name: str) -> bytes:
        return self.paths[name].read_bytes()


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    for tool in mf.TOOLS:
        require_tool(tool)
    root = tmp_path_factory.mktemp("macho")
    paths = {name: mf.build(root / name / filename, **args) for name, (filename, args) in SPECS.items()}
    paths["fat_dylib"] = mf.lipo(
        root / "fat_dylib" / "libfoo.dylib", paths["arm64_dylib"], paths["x86_64_dylib"]
    )
    paths["fat_bundle"] = mf.lipo(
        root / "fat_bundle" / "_ext.cpython-311-darwin.so", paths["arm64_bundle"], paths["x86_64_bundle"]
    )
    paths["fat64_dylib"] = mf.make_fat(
        root / "fat64_dylib" / "libfoo.dylib",
        [(paths["arm64_dylib"], "arm64"), (paths["x86_64_dylib"], "x86_64")],
        fat64=True,
    )
    paths["fat_tight"] = mf.lipo(
        root / "fat_tight" / "libtight.dylib", paths["arm64_tight"], paths["x86_64_tight"]
    )
    paths["i386_object"] = mf.build_object(root / "i386_object" / "foo.o")
    return Fixtures(root, paths)


# --- reading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*THIN, "i386_object"])
def test_thin_reads_like_llvm(name: str, fx: Fixtures) -> None:
    data = fx.data(name)
    assert detect_format(data[:4096]) == "macho"
    info = parse_macho(data)
    assert info.fat is None and len(info.slices) == 1
    sl = info.slices[0]
    assert (sl.offset, sl.size, sl.align) == (0, len(data), 0)
    check_against_llvm(sl, fx[name])


def test_fixture_facts(fx: Fixtures) -> None:
    """The fixtures have what the other tests rely on (and the reader's summary says so)."""
    sl = parse_macho(fx.data("arm64_dylib")).slices[0]
    assert sl.arch == "arm64" and sl.filetype == "dylib" and sl.minos == "11.0"
    assert sl.id_dylib is not None and sl.id_dylib.name == "@rpath/libfoo.dylib"
    assert [(d.kind, d.name) for d in sl.dylibs][:2] == [
        ("LC_LOAD_DYLIB", DEPS[0].install_name),
        ("LC_LOAD_WEAK_DYLIB", DEPS[1].install_name),
    ]
    assert "LC_REEXPORT_DYLIB" in [d.kind for d in sl.dylibs]
    assert sl.dylibs[0].current_version == "5.0.0" and sl.dylibs[1].weak
    assert sl.rpaths == RPATHS
    assert sl.header_padding >= 0x400
    cs = sl.code_signature
    assert cs is not None and cs.adhoc and cs.linker_signed and cs.identifier == "libfoo.dylib"
    x86 = parse_macho(fx.data("x86_64_dylib")).slices[0]
    assert x86.arch == "x86_64" and x86.code_signature is None
    old = parse_macho(fx.data("x86_64_old")).slices[0]
    assert [(p.kind, p.minos) for p in old.platforms] == [("LC_VERSION_MIN_MACOSX", "10.9")]
    obj = parse_macho(fx.data("i386_object")).slices[0]
    assert (obj.arch, obj.bits, obj.filetype) == ("i386", 32, "object")
    exe = parse_macho(fx.data("arm64_exe")).slices[0]
    assert exe.filetype == "execute" and exe.code_signature is not None
    assert exe.code_signature.info.code_directories[0].exec_seg_flags == 1
    for tight in ("arm64_tight", "x86_64_tight", "arm64_unsigned_tight"):
        assert parse_macho(fx.data(tight)).slices[0].header_padding < 16


@pytest.mark.parametrize("name", FAT)
def test_fat_reads_like_llvm(name: str, fx: Fixtures, tmp_path: Path) -> None:
    data = fx.data(name)
    assert detect_format(data[:4096]) == "macho-fat"
    info = parse_macho(data)
    magic, archs = objdump_universal_headers(fx[name])
    assert info.fat == magic
    assert [(a.arch, a.offset, a.size, a.align) for a in archs] == [
        (s.arch, s.offset, s.size, s.align) for s in info.slices
    ]
    for sl in info.slices:
        assert objdump_dylibs_used(fx[name], sl.arch) == [
            OtoolDylib(d.name, d.compatibility_version, d.current_version, OTOOL_TAGS[d.kind])
            for d in sorted((*sl.dylibs, *([sl.id_dylib] if sl.id_dylib else [])), key=lambda d: d.index)
        ]
        thin = tmp_path / f"{sl.arch}-{fx[name].name}"
        thin.write_bytes(data[sl.offset : sl.offset + sl.size])
        check_against_llvm(parse_macho(thin.read_bytes()).slices[0], thin)
        # the slice read in place equals the slice read on its own, but for where it is
        alone = parse_macho(thin.read_bytes()).slices[0]
        assert dataclasses.replace(sl, offset=0, align=0) == alone
    if magic == "FAT_MAGIC":  # and lipo agrees on what a slice is
        for sl in info.slices:
            thin = mf.lipo_thin(fx[name], sl.arch, tmp_path / f"lipo-{sl.arch}")
            assert thin.read_bytes() == data[sl.offset : sl.offset + sl.size]


def patched(data: bytes, *changes: tuple[int, str, int]) -> bytes:
    out = bytearray(data)
    for offset, fmt, value in changes:
        struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_lazy_upward_and_arm64e(fx: Fixtures, tmp_path: Path) -> None:
    """Kinds lld cannot write: turn LC_LOAD_DYLIB/LC_LOAD_WEAK_DYLIB into LC_LAZY_LOAD_DYLIB and
    LC_LOAD_UPWARD_DYLIB, and the CPU subtype into arm64e (with its capability bits)."""
    data = fx.data("arm64_dylib")
    sl = parse_macho(data).slices[0]
    load = next(lc for lc in sl.load_commands if lc.name == "LC_LOAD_DYLIB")
    weak = next(lc for lc in sl.load_commands if lc.name == "LC_LOAD_WEAK_DYLIB")
    odd = patched(data, (load.offset, "<I", 0x20), (weak.offset, "<I", 0x80000023), (8, "<I", 0x80000002))
    path = tmp_path / "libfoo.dylib"
    path.write_bytes(odd)
    new = parse_macho(odd).slices[0]
    assert new.arch == "arm64e"
    assert [d.kind for d in new.dylibs][:2] == ["LC_LAZY_LOAD_DYLIB", "LC_LOAD_UPWARD_DYLIB"]
    check_against_llvm(new, path)
    # an edit keeps each command's kind, and llvm reads it back
    edited = edit_macho(odd, MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}), name="libfoo.dylib")
    path.write_bytes(edited)
    listed = otool_L(path)
    assert (listed[1].name, listed[1].tags) == (STORE_OMP, ("lazy",))
    assert listed[2].tags == ("upward",)
    verify_signature(edited, "libfoo.dylib")


def test_big_endian_is_read_and_not_edited(tmp_path: Path) -> None:
    """A PowerPC dylib (the only big-endian Mach-O there is), written by hand; otool reads it the same."""
    names = [(0xD, "/usr/lib/libppc.dylib", 0x10000), (0xC, "/opt/local/lib/libz.1.dylib", 0x10203)]
    commands = b""
    for cmd, name, version in names:
        raw = name.encode() + b"\0"
        size = (24 + len(raw) + 3) & ~3
        commands += struct.pack(">6I", cmd, size, 24, 0, version, 0x10000) + raw.ljust(size - 24, b"\0")
    data = struct.pack(">7I", 0xFEEDFACE, 18, 0, 6, 2, len(commands), 0) + commands + bytes(64)
    require_tool(OTOOL)
    path = tmp_path / "libppc.dylib"
    path.write_bytes(data)
    sl = parse_macho(data).slices[0]
    assert (sl.arch, sl.endian, sl.bits) == ("ppc", "big", 32)
    check_against_llvm_dylibs_only(sl, path)
    with pytest.raises(MachOEditError, match="big-endian"):
        edit_macho(data, MachOEdits(add_rpaths=("/x",)), name="libppc.dylib")


def check_against_llvm_dylibs_only(sl: MachOSlice, path: Path) -> None:
    assert otool_L(path) == [
        OtoolDylib(d.name, d.compatibility_version, d.current_version, OTOOL_TAGS[d.kind])
        for d in sorted((*sl.dylibs, *([sl.id_dylib] if sl.id_dylib else [])), key=lambda d: d.index)
    ]


def test_mmap_and_bytearray_inputs(fx: Fixtures) -> None:
    import mmap

    data = fx.data("fat_dylib")
    with fx["fat_dylib"].open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert parse_macho(m) == parse_macho(data) == parse_macho(bytearray(data))


# --- signing: lld's signature byte for byte -----------------------------------------------------------


SIGNED = (
    "arm64_dylib",
    "arm64_bundle",
    "arm64_exe",
    "arm64_tight",
    "x86_64_signed",
    "fat_dylib",
    "fat64_dylib",
)


@pytest.mark.parametrize("name", SIGNED)
def test_signature_equals_lld(name: str, fx: Fixtures) -> None:
    """Knowing only otool's numbers (code limit, __TEXT, file type) and the file name, our signature over
    lld's bytes is lld's signature."""
    data = fx.data(name)
    identifier = SPECS.get(name, ("libfoo.dylib",))[0]
    signed = 0
    for sl in parse_macho(data).slices:
        body = data[sl.offset : sl.offset + sl.size]
        thin = fx.root / f"{name}.{sl.arch}.thin"
        thin.write_bytes(body)
        commands = otool_l(thin)
        sig = [c for c in commands if c["cmd"] == "LC_CODE_SIGNATURE"]
        if not sig:
            continue
        dataoff, datasize = int(sig[0]["dataoff"]), int(sig[0]["datasize"])
        text = next(c for c in commands if c.get("segname") == "__TEXT" and c["cmd"].startswith("LC_SEGMENT"))
        ours = build_adhoc_signature(
            body[:dataoff],  # nothing of the old signature
            dataoff,
            identifier,
            exec_seg_base=int(text["fileoff"]),
            exec_seg_limit=int(text["filesize"]),
            exec_seg_flags=1 if otool_header(thin)["filetype"] == 2 else 0,
        )
        assert len(ours) == datasize == signature_size(identifier, dataoff)
        assert ours == body[dataoff:]
        signed += 1
    assert signed
    # and the whole-file signer changes nothing
    assert sign_macho(data, name=fx[name].name) == data
    # even when it has to find everything itself after the signature was wiped
    wiped = bytearray(data)
    for sl in parse_macho(data).slices:
        cs = sl.code_signature
        if cs is not None:
            start = sl.offset + cs.dataoff
            wiped[start : start + cs.datasize] = bytes(cs.datasize)
    with pytest.raises(BinaryFormatError, match="not an embedded signature"):
        parse_macho(bytes(wiped))


def test_parse_signature_summary(fx: Fixtures) -> None:
    data = fx.data("arm64_exe")
    sl = parse_macho(data).slices[0]
    assert sl.code_signature is not None
    info = parse_signature(data, sl.code_signature.dataoff, sl.code_signature.datasize)
    (cd,) = info.code_directories
    assert (cd.identifier, cd.hash_type, cd.page_size, cd.n_code_slots) == (
        "tool",
        "sha256",
        4096,
        cd.n_code_slots,
    )
    assert cd.code_limit == sl.code_signature.dataoff and cd.exec_seg_flags == 1
    assert info.adhoc and info.linker_signed and not info.has_cms_signature and not info.has_requirements


def test_page_hashes_short_last_page() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: two full pages and a short one
    assert page_hashes(data, len(data)) == [
        hashlib.sha256(data[:4096]).digest(),
        hashlib.sha256(data[4096:8192]).digest(),
        hashlib.sha256(data[8192:]).digest(),
    ]
    with pytest.raises(BinaryFormatError):
        page_hashes(data, len(data) + 1)


def test_sign_unsigned_arm64_like_lld(fx: Fixtures) -> None:
    """Signing an unsigned arm64 dylib adds LC_CODE_SIGNATURE; lld's signed build of the same inputs (with
    16 bytes less header padding) is the same file but for LC_UUID, the first page's hash and __LINKEDIT's
    vmsize, which we round up to the 16 KiB page and lld 15 leaves at the file size."""
    data = fx.data("arm64_unsigned")
    ours = sign_macho(data, name="libnosig.dylib")
    filename, args = SPECS["arm64_unsigned"]
    ref = mf.build(
        fx.root / "ref-sign" / filename, **{**args, "sign": True, "headerpad": args["headerpad"] - 16}
    )
    assert_like_lld(ours, ref, filename, vmsize_may_differ=True)
    # x86_64 slices without a signature are left alone; asked explicitly, they are signed too
    x86 = fx.data("x86_64_dylib")
    assert sign_macho(x86, name="libfoo.dylib") == x86
    verify_signature(sign_macho(x86, name="libfoo.dylib", archs=("x86_64",)), "libfoo.dylib")


def assert_like_lld(ours: bytes, ref_path: Path, identifier: str, *, vmsize_may_differ: bool = False) -> None:
    """``ours`` equals lld's ``ref_path`` except for LC_UUID (found from otool's printout) and, when the
    signature covers it, the first page hash; our signature is verified independently."""
    ref = ref_path.read_bytes()
    assert len(ours) == len(ref)
    allowed: set[int] = set()
    for slot0 in verify_signature(ours, identifier):
        allowed.update(range(slot0, slot0 + 32))
    ref_info = parse_macho(ref)
    for sl in ref_info.slices:
        if sl.uuid is not None:
            raw = bytes.fromhex(sl.uuid.replace("-", ""))
            at = ref.index(raw, sl.offset, sl.offset + sl.header_size + sl.sizeofcmds)
            allowed.update(range(at, at + 16))
        if vmsize_may_differ:
            linkedit = sl.segment("__LINKEDIT")
            assert linkedit is not None
            seg = sl.load_commands[linkedit.index]
            allowed.update(range(sl.offset + seg.offset + 32, sl.offset + seg.offset + 40))
    diffs = [i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert set(diffs) <= allowed, (
        f"unexpected differences at {[hex(i) for i in diffs if i not in allowed][:8]}"
    )
    if vmsize_may_differ:
        for sl in parse_macho(ours).slices:
            linkedit = sl.segment("__LINKEDIT")
            assert linkedit is not None
            page = 0x4000 if sl.arch == "arm64" else 0x1000
            assert (
                linkedit.vmsize % page == 0 and linkedit.vmsize - page < linkedit.filesize <= linkedit.vmsize
            )


# --- editing: what lld would have linked --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    fixture: str
    edits: MachOEdits
    sign: bool | None = None  # for the reference build; None: as the fixture was built


SCENARIOS = {
    "grow-dep-add-rpath": Scenario(
        "arm64_dylib", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}, add_rpaths=(STORE_LIB,))
    ),
    "shrink-delete-replace": Scenario(
        "arm64_dylib",
        MachOEdits(
            change_names={DEPS[0].install_name: "@rpath/libomp.dylib"},
            delete_rpaths=(RPATHS[1],),
            replace_rpaths={RPATHS[0]: "@loader_path"},
        ),
    ),
    "id-and-reexport": Scenario(
        "arm64_dylib",
        MachOEdits(
            id_dylib=STORE_LIB + "/libfoo.dylib",
            change_names={DEPS[2].install_name: STORE_LIB + "/libre.1.dylib"},
        ),
    ),
    "bundle": Scenario(
        "arm64_bundle", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}, add_rpaths=(STORE_LIB,))
    ),
    "executable": Scenario("arm64_exe", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP})),
    "x86_64-unsigned": Scenario(
        "x86_64_dylib", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}, add_rpaths=(STORE_LIB,))
    ),
    "x86_64-signed": Scenario("x86_64_signed", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP})),
    "arm64-unsigned-gets-signed": Scenario(
        "arm64_unsigned", MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}), sign=True
    ),
}


def reference_args(args: dict[str, Any], edits: MachOEdits, delta: int, sign: bool | None) -> dict[str, Any]:
    """The build arguments that make lld write what the edit should have made."""
    rpaths = [edits.replace_rpaths.get(p, p) for p in args.get("rpaths", ()) if p not in edits.delete_rpaths]
    deps = [
        dataclasses.replace(d, install_name=edits.change_names.get(d.install_name, d.install_name))
        for d in args.get("deps", ())
    ]
    out = {
        **args,
        "rpaths": [*rpaths, *edits.add_rpaths],
        "deps": deps,
        "headerpad": args["headerpad"] - delta,
    }
    if edits.id_dylib is not None:
        out["install_name"] = edits.id_dylib
    if sign is not None:
        out["sign"] = sign
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_edit_equals_lld(scenario: str, fx: Fixtures) -> None:
    sc = SCENARIOS[scenario]
    filename, args = SPECS[sc.fixture]
    data = fx.data(sc.fixture)
    ours = edit_macho(data, sc.edits, name=filename)
    out = fx.root / "edited" / scenario / filename
    out.parent.mkdir(parents=True)
    out.write_bytes(ours)
    delta = otool_header(out)["sizeofcmds"] - otool_header(fx[sc.fixture])["sizeofcmds"]
    ref = mf.build(fx.root / "ref" / scenario / filename, **reference_args(args, sc.edits, delta, sc.sign))
    assert_like_lld(ours, ref, filename, vmsize_may_differ=sc.sign is True)
    # llvm reads exactly the intended names back
    before, after = otool_L(fx[sc.fixture]), otool_L(out)
    expect = [dataclasses.replace(d, name=sc.edits.change_names.get(d.name, d.name)) for d in before]
    if sc.edits.id_dylib is not None:
        expect[0] = dataclasses.replace(expect[0], name=sc.edits.id_dylib)
    assert after == expect
    rpaths = [c["path"] for c in otool_l(out) if c["cmd"] == "LC_RPATH"]
    assert rpaths == reference_args(args, sc.edits, 0, None)["rpaths"]


def test_fat_edit_equals_lld(fx: Fixtures, tmp_path: Path) -> None:
    """The same edit on both slices of a lipo'd file: each slice is what lld links, the fat layout stays."""
    sc = SCENARIOS["grow-dep-add-rpath"]
    data = fx.data("fat_dylib")
    ours = edit_macho(data, sc.edits, name="libfoo.dylib")
    out = tmp_path / "libfoo.dylib"
    out.write_bytes(ours)
    assert objdump_universal_headers(out) == objdump_universal_headers(fx["fat_dylib"])
    info = parse_macho(ours)
    for sl in info.slices:
        name = f"{sl.arch}_dylib"
        filename, args = SPECS[name]
        edited_thin = tmp_path / sl.arch / filename
        edited_thin.parent.mkdir()
        edited_thin.write_bytes(ours[sl.offset : sl.offset + sl.size])
        delta = otool_header(edited_thin)["sizeofcmds"] - otool_header(fx[name])["sizeofcmds"]
        ref = mf.build(tmp_path / "ref" / sl.arch / filename, **reference_args(args, sc.edits, delta, None))
        assert_like_lld(edited_thin.read_bytes(), ref, filename)
        assert [d.name for d in objdump_dylibs_used(out, sl.arch)][1] == STORE_OMP


def test_fat64_edit_per_arch_and_slices_move(fx: Fixtures, tmp_path: Path) -> None:
    """Per-architecture edits on a FAT_MAGIC_64 file whose arm64 slice grows (a signature is added) into the
    next slice's place: that slice moves to its next aligned offset, byte for byte the same."""
    arm = fx["arm64_unsigned"]
    x86 = fx["x86_64_dylib"]
    fat = mf.make_fat(tmp_path / "in" / "libfoo.dylib", [(arm, "arm64"), (x86, "x86_64")], fat64=True)
    raw = bytearray(fat.read_bytes())
    # pack the x86_64 slice right after the arm64 one, 16-byte aligned, so that any growth moves it
    info = parse_macho(bytes(raw))
    a, b = info.slices
    new_b = (a.offset + a.size + 15) & ~15
    body = bytes(raw[b.offset : b.offset + b.size])
    raw = raw[: a.offset + a.size] + bytes(new_b - a.offset - a.size) + body
    struct.pack_into(">QQI", raw, 8 + 32 + 8, new_b, b.size, 4)
    fat.write_bytes(raw)
    edits = {
        "arm64": MachOEdits(add_rpaths=(STORE_LIB,)),
        "x86_64": MachOEdits(),  # nothing: copied as is
    }
    ours = edit_macho(bytes(raw), edits, name="libfoo.dylib")
    out = tmp_path / "libfoo.dylib"
    out.write_bytes(ours)
    magic, archs = objdump_universal_headers(out)
    assert magic == "FAT_MAGIC_64"
    new_a, new_x = archs
    assert (new_a.arch, new_a.offset, new_a.align) == ("arm64", a.offset, a.align)
    assert new_a.size > a.size
    assert new_x.offset == (new_a.offset + new_a.size + 15) & ~15 and new_x.offset > new_b
    assert ours[new_x.offset : new_x.offset + new_x.size] == body
    assert len(ours) == new_x.offset + new_x.size
    verify_signature(ours, "libfoo.dylib")
    assert [c["path"] for c in objdump_private_headers(out, "arm64") if c["cmd"] == "LC_RPATH"] == [
        *RPATHS,
        STORE_LIB,
    ]


@pytest.mark.parametrize("name", ["arm64_dylib", "x86_64_dylib", "arm64_bundle"])
def test_command_sizes_are_lds(name: str, fx: Fixtures) -> None:
    """The sizes the planner can ask for are the cmdsizes lld writes for the same names."""
    commands = otool_l(fx[name])
    sizes = [
        (int(c["cmdsize"]), dylib_command_size(str(c["name"]))) for c in commands if c["cmd"] in OTOOL_TAGS
    ] + [(int(c["cmdsize"]), rpath_command_size(str(c["path"]))) for c in commands if c["cmd"] == "LC_RPATH"]
    assert len(sizes) >= 3
    assert all(a == b for a, b in sizes), sizes
    assert rpath_command_size("/x", bits=32) == 16 and dylib_command_size("/x", bits=32) == 28


def test_header_room_fits(fx: Fixtures) -> None:
    data = fx.data("fat_dylib")
    rooms = header_room(data, MachOEdits(add_rpaths=(STORE_LIB,)))
    info = parse_macho(data)
    assert [(r.arch, r.slice_index) for r in rooms] == [(s.arch, i) for i, s in enumerate(info.slices)]
    for r, sl in zip(rooms, info.slices, strict=True):
        assert r.needed == sl.sizeofcmds + rpath_command_size(STORE_LIB) and r.missing == 0
        assert r.available == sl.sizeofcmds + sl.header_padding
    assert header_room(data, {"arm64": MachOEdits()}) == ()


def test_edit_nothing_is_identity(fx: Fixtures) -> None:
    for name in ("arm64_dylib", "fat_dylib", "x86_64_dylib"):
        data = fx.data(name)
        assert edit_macho(data, MachOEdits(), name=name) == data
        assert edit_macho(data, {}, name=name) == data


def test_delete_every_rpath_then_add(fx: Fixtures, tmp_path: Path) -> None:
    """With no LC_RPATH left the new one goes last (install_name_tool does the same); llvm reads it."""
    data = fx.data("arm64_dylib")
    ours = edit_macho(data, MachOEdits(delete_rpaths=RPATHS, add_rpaths=(STORE_LIB,)), name="libfoo.dylib")
    path = tmp_path / "libfoo.dylib"
    path.write_bytes(ours)
    commands = otool_l(path)
    assert [c["path"] for c in commands if c["cmd"] == "LC_RPATH"] == [STORE_LIB]
    assert commands[-1]["cmd"] == "LC_RPATH"
    verify_signature(ours, "libfoo.dylib")
    check_against_llvm(parse_macho(ours).slices[0], path)


def test_sign_never_leaves_the_signature_stale(fx: Fixtures) -> None:
    data = fx.data("arm64_dylib")
    out = edit_macho(data, MachOEdits(add_rpaths=(STORE_LIB,)), name="libfoo.dylib", sign="never")
    sl = parse_macho(out).slices[0]
    assert sl.code_signature is not None and sl.rpaths[-1] == STORE_LIB
    assert sign_macho(out, name="libfoo.dylib") == edit_macho(
        data, MachOEdits(add_rpaths=(STORE_LIB,)), name="x"
    )


# --- refusals -------------------------------------------------------------------------------------------


def otool_padding(path: Path) -> int:
    header = otool_header(path)
    return first_content_offset(otool_l(path)) - 32 - header["sizeofcmds"]


def test_no_room_names_the_bytes_missing(fx: Fixtures) -> None:
    path = fx["arm64_tight"]
    data = path.read_bytes()
    pad = otool_padding(path)
    old = next(c for c in otool_l(path) if c.get("name") == DEPS[0].install_name)
    new_size = (24 + len(STORE_OMP) + 1 + 7) & ~7
    with pytest.raises(NoRoomError) as err:
        edit_macho(data, MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}), name="libtight.dylib")
    e = err.value
    assert (e.binary, e.arch, e.slice_index) == ("libtight.dylib", "arm64", 0)
    assert e.missing == new_size - int(old["cmdsize"]) - pad > 0
    assert f"{e.missing} bytes missing" in str(e) and "libtight.dylib (arm64 slice)" in str(e)
    assert "\n" not in str(e)
    (room,) = header_room(data, MachOEdits(change_names={DEPS[0].install_name: STORE_OMP}))
    assert (room.arch, room.slice_index, room.missing) == ("arm64", 0, e.missing)
    assert (room.needed, room.available) == (e.needed, e.available)
    # an added rpath
    rpath_size = (12 + len(STORE_LIB) + 1 + 7) & ~7
    with pytest.raises(NoRoomError) as err:
        edit_macho(data, MachOEdits(add_rpaths=(STORE_LIB,)), name="libtight.dylib")
    assert err.value.missing == rpath_size - pad


def test_no_room_in_one_slice_of_a_fat_file(fx: Fixtures) -> None:
    path = fx["fat_tight"]
    data = path.read_bytes()
    info = parse_macho(data)
    x86 = next(s for s in info.slices if s.arch == "x86_64")
    thin = fx.root / "fat_tight.x86_64"
    thin.write_bytes(data[x86.offset : x86.offset + x86.size])
    pad = otool_padding_any(thin, 32)
    rpath_size = (12 + len(STORE_LIB) + 1 + 7) & ~7
    with pytest.raises(NoRoomError) as err:
        edit_macho(data, {"x86_64": MachOEdits(add_rpaths=(STORE_LIB,))}, name="libtight.dylib")
    assert (err.value.arch, err.value.slice_index, err.value.missing) == (
        "x86_64",
        info.slices.index(x86),
        rpath_size - pad,
    )


def otool_padding_any(path: Path, header_size: int) -> int:
    return first_content_offset(otool_l(path)) - header_size - otool_header(path)["sizeofcmds"]


def test_no_room_for_a_new_code_signature_command(fx: Fixtures) -> None:
    """An unsigned arm64 slice must get LC_CODE_SIGNATURE (16 bytes); with less padding, a clean refusal,
    even for an edit that does not grow the load commands."""
    path = fx["arm64_unsigned_tight"]
    pad = otool_padding(path)
    same_length = "@loader_path/../lip"
    assert len(same_length) == len(RPATHS[0])
    with pytest.raises(NoRoomError) as err:
        edit_macho(
            path.read_bytes(), MachOEdits(replace_rpaths={RPATHS[0]: same_length}), name="libtight2.dylib"
        )
    assert err.value.missing == 16 - pad
    with pytest.raises(NoRoomError):
        sign_macho(path.read_bytes(), name="libtight2.dylib")
    # without signing it fits
    out = edit_macho(
        path.read_bytes(), MachOEdits(replace_rpaths={RPATHS[0]: same_length}), name="x", sign="never"
    )
    assert parse_macho(out).slices[0].rpaths[0] == same_length


@pytest.mark.parametrize(
    ("edits", "pattern"),
    [
        (MachOEdits(change_names={"/nope.dylib": "/x.dylib"}), "no dylib load command names '/nope.dylib'"),
        (MachOEdits(delete_rpaths=("/nope",)), "no LC_RPATH '/nope'"),
        (MachOEdits(replace_rpaths={"/nope": "/x"}), "no LC_RPATH '/nope'"),
        (MachOEdits(add_rpaths=(RPATHS[0],)), "already there"),
        (MachOEdits(add_rpaths=("/x", "/x")), "already there"),
        (MachOEdits(replace_rpaths={RPATHS[0]: RPATHS[1]}), "would duplicate"),
        (MachOEdits(add_rpaths=("",)), "non-empty"),
        (MachOEdits(change_names={DEPS[0].install_name: "a\0b"}), "NUL"),
    ],
)
def test_edit_errors(edits: MachOEdits, pattern: str, fx: Fixtures) -> None:
    with pytest.raises(MachOEditError, match=pattern):
        edit_macho(fx.data("arm64_dylib"), edits, name="libfoo.dylib")


def test_edit_errors_for_slices(fx: Fixtures) -> None:
    with pytest.raises(MachOEditError, match="not a dylib"):
        edit_macho(fx.data("arm64_bundle"), MachOEdits(id_dylib="@rpath/x.so"), name="x.so")
    with pytest.raises(MachOEditError, match="no ppc slice to edit"):
        edit_macho(fx.data("fat_dylib"), {"ppc": MachOEdits(add_rpaths=("/x",))}, name="libfoo.dylib")
    # non-zero bytes in the padding are not ours to overwrite
    data = bytearray(fx.data("arm64_dylib"))
    sl = parse_macho(bytes(data)).slices[0]
    data[sl.load_commands_end + 8] = 0xAA
    with pytest.raises(MachOEditError, match="padding is not empty"):
        edit_macho(bytes(data), MachOEdits(add_rpaths=(STORE_LIB,)), name="libfoo.dylib")


# --- hostile input ------------------------------------------------------------------------------------


def outcome(data: bytes) -> MachOInfo | BinaryFormatError:
    try:
        return parse_macho(data)
    except BinaryFormatError as e:
        assert str(e) and "\n" not in str(e)
        return e


@pytest.mark.parametrize(
    "name", ["arm64_dylib", "x86_64_dylib", "arm64_exe", "fat_dylib", "fat64_dylib", "i386_object"]
)
def test_truncation(name: str, fx: Fixtures) -> None:
    """Cut at every load-command boundary, inside the header, at every section and segment start and in
    the signature: always a BinaryFormatError (the last segment, or the symbols, reach the end)."""
    data = fx.data(name)
    info = parse_macho(data)
    cuts = set(range(0, 40)) | {len(data) - 1, len(data) - 16}
    for sl in info.slices:
        base = sl.offset
        cuts.update(base + lc.offset for lc in sl.load_commands)
        cuts.update(base + lc.offset + lc.size for lc in sl.load_commands)
        cuts.update(base + lc.offset + 8 for lc in sl.load_commands)
        cuts.update(base + s.fileoff + k for s in sl.segments for k in (0, 1))
        cuts.update(base + s.offset for seg in sl.segments for s in seg.sections if s.offset)
        if sl.code_signature is not None:
            cuts.update(base + sl.code_signature.dataoff + k for k in (0, 12, 20, 64, 100))
        cuts.update((base, base + 4, base + 27, base + sl.size - 1))
    cuts = {c for c in cuts if 0 <= c < len(data)}
    assert len(cuts) > 40
    accepted = [c for c in sorted(cuts) if not isinstance(outcome(data[:c]), BinaryFormatError)]
    assert not accepted, f"truncated at {[hex(c) for c in accepted[:5]]} but accepted"


def lc(sl: MachOSlice, name: str, nth: int = 0) -> int:
    return [c.offset for c in sl.load_commands if c.name == name][nth]


def crafted(fx: Fixtures) -> list[tuple[str, bytes, str]]:
    """(what, bytes, message pattern) for hand-made malformations of real fixtures."""
    data = fx.data("arm64_dylib")
    sl = parse_macho(data).slices[0]
    uuid = lc(sl, "LC_UUID")
    dylib = lc(sl, "LC_LOAD_DYLIB")
    dylib_size = next(c.size for c in sl.load_commands if c.offset == dylib)
    rpath = lc(sl, "LC_RPATH")
    text = lc(sl, "LC_SEGMENT_64")
    sig = lc(sl, "LC_CODE_SIGNATURE")
    assert sl.code_signature is not None
    cs_off = sl.code_signature.dataoff
    grow = (sl.header_padding + 8 + 7) & ~7
    fat = fx.data("fat_dylib")
    fat_info = parse_macho(fat)
    s0, s1 = fat_info.slices
    x86 = fx["x86_64_dylib"]
    twice = mf.make_fat(fx.root / "twice.dylib", [(x86, "x86_64"), (x86, "x86_64")]).read_bytes()
    cases = [
        ("cmdsize not a multiple of 8", patched(data, (uuid + 4, "<I", 20)), "not a multiple of 8"),
        ("cmdsize zero", patched(data, (uuid + 4, "<I", 0)), "too small"),
        ("cmdsize past sizeofcmds", patched(data, (uuid + 4, "<I", 0x10000)), "runs past sizeofcmds"),
        ("ncmds huge", patched(data, (16, "<I", 0xFFFFFFFF)), "at most"),
        ("ncmds too many for sizeofcmds", patched(data, (16, "<I", 60000)), "cannot fit in sizeofcmds"),
        ("ncmds one too few", patched(data, (16, "<I", sl.ncmds - 1)), "but sizeofcmds says"),
        ("ncmds one too many", patched(data, (16, "<I", sl.ncmds + 1)), "runs past sizeofcmds"),
        ("sizeofcmds past the end", patched(data, (20, "<I", len(data))), "run past the end"),
        (
            "load commands into __text",
            patched(data, (20, "<I", sl.sizeofcmds + grow), (sig + 4, "<I", 16 + grow)),
            "overlap file content",
        ),
        ("name offset outside the command", patched(data, (dylib + 8, "<I", 4096)), "name offset"),
        ("name offset inside the fixed part", patched(data, (dylib + 8, "<I", 8)), "name offset"),
        ("rpath offset outside", patched(data, (rpath + 8, "<I", 200)), "name offset"),
        (
            "unterminated name",
            data[: dylib + 24] + b"x" * (dylib_size - 24) + data[dylib + dylib_size :],
            "not NUL-terminated",
        ),
        ("too many sections", patched(data, (text + 64, "<I", 1000)), "sections do not fit"),
        ("segment past the end", patched(data, (text + 48, "<Q", 1 << 40)), "runs past the end"),
        ("signature past the end", patched(data, (sig + 12, "<I", 1 << 20)), "run past the end"),
        ("signature magic", patched(data, (cs_off, ">I", 0xFADE0C02)), "not an embedded signature"),
        ("signature blob count", patched(data, (cs_off + 8, ">I", 1 << 30)), "cannot fit"),
        ("signature slot twice", patched(data, (cs_off + 8, ">I", 2)), "appears twice"),
        ("signature blob offset", patched(data, (cs_off + 16, ">I", 1 << 30)), "lies outside|does not fit"),
        ("code directory identifier", patched(data, (cs_off + 24 + 20, ">I", 1 << 20)), "identifier offset"),
        ("second LC_ID_DYLIB", patched(data, (dylib, "<I", 0xD)), "more than one LC_ID_DYLIB"),
        ("segment kind", patched(data, (text, "<I", 1)), "in a 64-bit file"),
        ("not Mach-O", b"\0" * 64, "not a Mach-O file"),
        ("tiny", data[:7], "only 7 bytes"),
        ("fat: no archs", patched(fat, (4, ">I", 0)), "no architectures"),
        ("fat: too many archs", patched(fat, (4, ">I", 1000)), "claims 1000"),
        ("fat: table past the end", fat[:30], "runs past the end"),
        ("fat: slice past the end", patched(fat, (8 + 20 + 12, ">I", len(fat))), "lies outside the file"),
        ("fat: slice in the header", patched(fat, (8 + 8, ">I", 0)), "lies outside the file"),
        ("fat: overlap", patched(fat, (8 + 12, ">I", s1.offset - s0.offset + 4096)), "overlap"),
        ("fat: misaligned", patched(fat, (8 + 8, ">I", s0.offset + 4)), "not aligned"),
        ("fat: align", patched(fat, (8 + 16, ">I", 40)), "implausible"),
        (
            "fat: cputype lies",
            patched(fat, (8, ">I", 0x0100000C), (12, ">I", 0)),
            "says arm64 but its slice is x86_64",
        ),
        ("fat: nested", patched(fat, (s0.offset, ">I", 0xCAFEBABE)), "nested"),
        ("fat: two of a kind", twice, "two x86_64 slices"),
    ]
    return cases


def test_hostile_inputs(fx: Fixtures) -> None:
    import re

    failures = []
    for what, data, pattern in crafted(fx):
        result = outcome(data)
        if not isinstance(result, BinaryFormatError):
            failures.append(f"{what}: accepted")
        elif not re.search(pattern, str(result)):
            failures.append(f"{what}: {result!s} (wanted /{pattern}/)")
    assert not failures, "\n".join(failures)


def test_load_command_budget() -> None:
    """65536 tiny load commands parse quickly; one more is refused before any is read."""
    n = 1 << 16
    body = struct.pack("<II", 0x7FFF, 8) * n
    head = struct.pack("<8I", 0xFEEDFACF, 0x0100000C, 0, 6, n, len(body), 0, 0)
    start = time.perf_counter()
    sl = parse_macho(head + body).slices[0]
    assert len(sl.load_commands) == n and sl.load_commands[0].name == "LC_0x7fff"
    assert time.perf_counter() - start < 3
    too_many = struct.pack("<8I", 0xFEEDFACF, 0x0100000C, 0, 6, n + 1, len(body) + 8, 0, 0) + body + body[:8]
    with pytest.raises(BinaryFormatError, match="at most 65536"):
        parse_macho(too_many)


INTERESTING = (0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(rng: random.Random, data: bytes, hot: list[tuple[int, int]]) -> tuple[bytes, str]:
    out = bytearray(data)
    what = []
    for _ in range(rng.choice((1, 1, 2, 3, 6))):
        lo, hi = rng.choice(hot) if rng.random() < 0.9 else (0, len(out))
        pos = rng.randrange(lo, max(lo + 1, min(hi, len(out))))
        kind = rng.random()
        if kind < 0.35:
            out[pos] ^= 1 << rng.randrange(8)
            what.append(f"flip@{pos:#x}")
        elif kind < 0.6:
            out[pos] = rng.randrange(256)
            what.append(f"byte@{pos:#x}")
        else:
            pos &= ~3
            value = rng.choice((*INTERESTING, len(out), len(out) // 2, rng.randrange(1 << 32)))
            order = rng.choice("<>")
            if pos + 4 <= len(out):
                struct.pack_into(order + "I", out, pos, value)
                what.append(f"u32{order}@{pos:#x}={value:#x}")
    return bytes(out), ",".join(what)


def hot_ranges(data: bytes) -> list[tuple[int, int]]:
    info = parse_macho(data)
    hot = [(0, 64)] if info.fat else []
    for sl in info.slices:
        hot.append((sl.offset, sl.offset + sl.load_commands_end))
        if sl.code_signature is not None:
            start = sl.offset + sl.code_signature.dataoff
            hot.append((start, start + 128))
    return hot


def test_random_mutations(fx: Fixtures) -> None:
    """~2000 seeded mutations aimed at the headers, load commands and signatures: the reader gives an
    answer or BinaryFormatError, and on what it accepts the signer and the editor give bytes,
    BinaryFormatError or MachOEditError. Nothing else, and nothing slow."""
    rng = random.Random(20250604)
    failures: list[str] = []
    total = 0
    targets = ("arm64_dylib", "x86_64_signed", "arm64_unsigned", "fat_dylib", "fat64_dylib", "i386_object")
    per_target = 2000 // len(targets) + 1
    edits = MachOEdits(add_rpaths=("/nix/store/x",))
    for name in targets:
        data = fx.data(name)
        hot = hot_ranges(data)
        for i in range(per_target):
            mutated, how = mutate(rng, data, hot)
            total += 1
            start = time.perf_counter()
            try:
                info = parse_macho(mutated)
                if rng.random() < 0.5:
                    sign_macho(mutated, name=name)
                else:
                    arch = info.slices[0].arch
                    edit_macho(mutated, {arch: edits}, name=name)
            except (BinaryFormatError, MachOEditError):
                pass
            except Exception as e:
                failures.append(f"{name}#{i} {how}: {type(e).__name__}: {e}")
            if time.perf_counter() - start > 2:
                failures.append(f"{name}#{i} {how}: took {time.perf_counter() - start:.1f}s")
    assert total >= 2000
    assert not failures, f"{len(failures)} of {total} failed:\n" + "\n".join(failures[:20])


def test_output_of_every_accepted_mutation_parses(fx: Fixtures) -> None:
    """Whatever the editor returns for odd-but-accepted input is itself a valid Mach-O with the edit."""
    rng = random.Random(99)
    data = fx.data("fat_dylib")
    hot = hot_ranges(data)
    checked = 0
    for _ in range(300):
        mutated, _how = mutate(rng, data, hot)
        try:
            out = edit_macho(mutated, MachOEdits(add_rpaths=("/nix/store/y",)), name="libfoo.dylib")
        except (BinaryFormatError, MachOEditError):
            continue
        checked += 1
        for sl in parse_macho(out).slices:
            assert sl.rpaths[-1] == "/nix/store/y"
    assert checked > 10

"""Regression tests for what the corpus run and the fuzzers found (issue 6). Each input is built here from
scratch (or from a host ELF), so the tests need no download.

* fuzz ``zip``: a RECORD whose deflate stream is corrupt escaped as ``zlib.error`` (exit 3, "internal
  error") instead of a one-line bad-input report (fixed in wheelfile._read_small).
* fuzz ``zip``: a wheel missing its first bytes gives its first member a negative local header offset
  (zipfile corrects every offset by the shift); ``os.pread`` then failed with EINVAL (reported, but as
  "[Errno 22] Invalid argument"; now named).
* fuzz ``elf-writer``: an ELF with a PT_LOAD whose file offset lies far past the end of the file is accepted
  by the reader, and ``plan_patch`` padded the output up to that offset: 256 GiB for the input below, a
  MemoryError (exit 3) or the OOM killer. Fixed: plan_patch refuses such a file (BinaryFormatError).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from wheelfix.errors import BadInput
from wheelfix.wheel.archive import WheelArchive

from tests.support.elfbuild import gcc_bytes
from tests.support.oracles import readelf
from tests.support.prereq import require_tool, unavailable
from tests.support.wheels import write_wheel

WHEEL_NAME = "evil-1.0-cp311-cp311-linux_x86_64.whl"
RECORD = "evil-1.0.dist-info/RECORD"
HOST_ELF = Path("/usr/bin/true")
TIMEOUT = 120
MAIN_C = "int main(void) { return 0; }\n"


def _phdr_offsets(data: bytes | bytearray, p_type: int) -> list[int]:
    """File offsets of the ELF64 LE program headers of type ``p_type``."""
    phoff, phnum = int.from_bytes(data[32:40], "little"), int.from_bytes(data[56:58], "little")
    return [
        phoff + i * 56
        for i in range(phnum)
        if int.from_bytes(data[phoff + i * 56 : phoff + i * 56 + 4], "little") == p_type
    ]


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def _data_start(raw: bytes, info: zipfile.ZipInfo) -> int:
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def test_corrupt_deflate_stream_in_record_is_bad_input(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"evil/__init__.py": b"x = 1\n" * 50})
    raw = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(RECORD)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    raw[_data_start(raw, info)] = 0x06  # BFINAL=0, BTYPE=11: a reserved (invalid) block type
    wheel.write_bytes(bytes(raw))
    with pytest.raises(BadInput) as err, WheelArchive.open(wheel):
        pass
    assert err.value.problems[0].member == RECORD
    run = _cli("inspect", wheel, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert run.stderr.startswith(f"wheelfix: error: {wheel}: {RECORD}: cannot read: "), run.stderr


def test_negative_local_header_offset_is_named(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"evil/__init__.py": b"x = 1\n"})
    # Cut the first 7 bytes: zipfile takes the missing bytes for a shift of the whole archive and corrects
    # every offset by -7, which is right for every member but the first (it would start at -7).
    wheel.write_bytes(wheel.read_bytes()[7:])
    run = _cli("inspect", wheel, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert "Invalid argument" not in run.stderr
    assert "local header offset -7 is negative" in run.stderr


def _far_load(data: bytes) -> bytes:
    """``data`` (an ELF64 LE) with its last PT_LOAD moved to file offset/vaddr 256 GiB + its page offset."""
    out = bytearray(data)
    phoff, phentsize, phnum = struct.unpack_from("<Q14xHH", out, 32)
    last = None
    for i in range(phnum):
        if struct.unpack_from("<I", out, phoff + i * phentsize)[0] == 1:
            last = phoff + i * phentsize
    assert last is not None
    offset, vaddr = struct.unpack_from("<QQ", out, last + 8)
    struct.pack_into("<QQQ", out, last + 8, (1 << 38) + offset % 4096, (1 << 38) + vaddr % 4096, 0)
    return bytes(out)


@pytest.fixture
def far_load_elf(tmp_path: Path) -> Path:
    if not HOST_ELF.is_file() or HOST_ELF.read_bytes()[:6] != b"\x7fELF\x02\x01":
        unavailable(f"{HOST_ELF} is not an ELF64 LE file")
    path = tmp_path / "far.elf"
    path.write_bytes(_far_load(HOST_ELF.read_bytes()))
    return path


# Fixed: plan_patch used to pad the output up to a PT_LOAD lying past the end of the file (256 GiB
# here); it now refuses such a file as malformed (BinaryFormatError; exit 2 from repair).


def test_plan_patch_refuses_a_load_segment_past_the_end(far_load_elf: Path) -> None:
    # in a subprocess with 2 GiB of address space, so a regression cannot take the machine's memory
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from wheelfix.binfmt import BinaryFormatError
        from wheelfix.binfmt.elf.editor import plan_patch
        data = open({str(far_load_elf)!r}, "rb").read()
        try:
            patch = plan_patch(data, path=("RUNPATH", "$ORIGIN"), interpreter="/nix/store/x-glibc/lib/ld.so")
        except BinaryFormatError as e:
            print("refused:", e)
            sys.exit(0)
        print("planned a", patch.size, "byte file from", len(data), "bytes")
        sys.exit(1 if patch.size > 1 << 30 else 0)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr[-500:]


def test_repair_refuses_a_load_segment_past_the_end(far_load_elf: Path, tmp_path: Path) -> None:
    require_tool("prlimit")  # caps the memory of the repair
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"evil-1.0.data/scripts/tool": far_load_elf.read_bytes()})
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(
        [
            "prlimit",
            f"--as={2 << 30}",
            sys.executable,
            "-m",
            "wheelfix",
            "repair",
            "-o",
            str(out),
            "--interpreter",
            "/nix/store/00000000000000000000000000000000-glibc/lib/ld-linux-x86-64.so.2",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
    )
    assert list(out.iterdir()) == []
    assert run.returncode == 2, run.stderr
    assert "internal error" not in run.stderr
    assert "evil-1.0.data/scripts/tool" in run.stderr


def test_plan_patch_refuses_values_that_do_not_fit_the_elf_class(tmp_path: Path) -> None:
    """Fuzz finding (elf-writer harness, a mutated /usr/bin/true): a PT_LOAD high in the address space
    makes the new segment's address overflow 64 bits; packing it raised struct.error (an internal
    error). It must be a BinaryFormatError (bad input)."""
    from wheelfix.binfmt import BinaryFormatError
    from wheelfix.binfmt.elf.editor import plan_patch

    data = gcc_bytes(tmp_path, MAIN_C)
    last = _phdr_offsets(data, 1)[-1]  # the last PT_LOAD
    memsz = int.from_bytes(data[last + 40 : last + 48], "little")
    # the last PT_LOAD ends just below 2**64: legal, but a segment above it cannot be addressed
    data[last + 16 : last + 24] = ((1 << 64) - memsz - 8).to_bytes(8, "little")
    with pytest.raises(BinaryFormatError):
        plan_patch(bytes(data), path=("RUNPATH", "$ORIGIN"), interpreter="/nix/store/" + "x" * 60 + "/ld.so")


def test_plan_patch_refuses_a_program_header_table_over_the_elf_header(tmp_path: Path) -> None:
    """Fuzz finding (elf-writer harness, 30-minute run): e_phoff = 8 puts the program header table over the
    ELF header (its first entry, read from e_ident's zero padding, is PT_NULL, so the reader accepts the
    file). Writing the table back overwrote the header, and the patched file no longer parsed ("bad
    section header size 0"). A table that overlaps the header is malformed input: BinaryFormatError."""
    from wheelfix.binfmt import BinaryFormatError
    from wheelfix.binfmt.elf.editor import plan_patch
    from wheelfix.binfmt.elf.reader import parse_elf

    data = gcc_bytes(tmp_path, "int f(void) { return 1; }\n", "-shared", "-fPIC")
    assert int.from_bytes(data[32:40], "little") == 64
    phnum = int.from_bytes(data[56:58], "little")
    data[32:40] = (8).to_bytes(8, "little")  # the table starts inside the header...
    data[56:58] = (phnum + 1).to_bytes(2, "little")  # ...and its entries 1.. are the real ones
    parse_elf(bytes(data), scan_strings=False)  # the reader accepts it
    with pytest.raises(BinaryFormatError, match="overlaps the ELF header"):
        plan_patch(bytes(data), path=("RUNPATH", "$ORIGIN"))


def test_interpreter_that_fits_in_place_while_the_table_grows_over_it(tmp_path: Path) -> None:
    """Fuzz finding (elf-writer harness, rerun after the fix above): in a gcc executable .interp follows
    the program header table directly. When the table grows by moving .interp (and the notes) into the
    new segment, a new interpreter short enough to fit in place was still written at the old .interp:
    two overlapping writes (an internal error). It now goes with the moved bytes' new segment, and the
    result reads back with the new interpreter, search path and unchanged needs."""
    from wheelfix.binfmt.elf.editor import plan_patch
    from wheelfix.binfmt.elf.reader import parse_elf

    data = bytes(gcc_bytes(tmp_path, MAIN_C))
    before = parse_elf(data, scan_strings=False)
    assert before.interpreter is not None
    short = "/nix/store/x/ld.so"
    assert len(short) < len(before.interpreter)
    runpath = "/nix/store/" + "r" * 200 + "/lib"  # too long for any in-place room: a new segment
    patch = plan_patch(data, path=("RUNPATH", runpath), interpreter=short)
    after = parse_elf(patch.apply(data), scan_strings=False)
    assert (after.interpreter, after.runpath, after.needed) == (short, runpath, before.needed)
    out = tmp_path / "m2"
    out.write_bytes(patch.apply(data))
    shown = readelf(out, "-l")
    assert f"[Requesting program interpreter: {short}]" in shown


def test_plan_patch_refuses_two_interpreters(tmp_path: Path) -> None:
    """Fuzz finding (elf-writer rerun): PT_PHDR turned into a second PT_INTERP (over the program header
    table). The writer edited the first PT_INTERP while the reader reported the last, so the edit
    "did not happen"; writing the interpreter there would also overwrite the table. The gABI allows one
    PT_INTERP (and one PT_DYNAMIC, one PT_PHDR): the writer refuses more as malformed, and the reader now
    reports the first, as the kernel uses it."""
    from wheelfix.binfmt import BinaryFormatError
    from wheelfix.binfmt.elf.editor import plan_patch
    from wheelfix.binfmt.elf.reader import parse_elf

    data = gcc_bytes(tmp_path, MAIN_C)
    phoff = int.from_bytes(data[32:40], "little")
    assert _phdr_offsets(data, 6)[:1] == [phoff] and _phdr_offsets(data, 3)  # PT_PHDR first, a PT_INTERP
    data[phoff : phoff + 4] = (3).to_bytes(4, "little")  # PT_PHDR -> a second PT_INTERP, first in order
    info = parse_elf(bytes(data), scan_strings=False)
    assert info.interpreter != "/lib64/ld-linux-x86-64.so.2"  # the first one: the table's bytes
    with pytest.raises(BinaryFormatError, match="more than one PT_INTERP"):
        plan_patch(bytes(data), path=("RUNPATH", "$ORIGIN"), interpreter="/nix/store/x/ld.so")


def test_moved_interpreter_takes_only_the_interp_section_header_along(tmp_path: Path) -> None:
    """Fuzz finding (elf-writer, third rerun): PT_INTERP's offset pointing at a note section. When the new
    interpreter moved into the new segment, the section header "at the interpreter's offset" was moved
    with it, the note section's: the result's notes no longer parsed. Only the PROGBITS .interp follows."""
    from wheelfix.binfmt.elf.editor import plan_patch
    from wheelfix.binfmt.elf.reader import parse_elf

    data = gcc_bytes(tmp_path, MAIN_C)
    shoff, shnum = int.from_bytes(data[40:48], "little"), int.from_bytes(data[60:62], "little")
    notes = [
        int.from_bytes(data[shoff + i * 64 + 24 : shoff + i * 64 + 32], "little")
        for i in range(shnum)
        if int.from_bytes(data[shoff + i * 64 + 4 : shoff + i * 64 + 8], "little") == 7  # SHT_NOTE
    ]
    (interp,) = _phdr_offsets(data, 3)
    data[interp + 8 : interp + 16] = notes[0].to_bytes(8, "little")  # PT_INTERP -> the first note's bytes
    parse_elf(bytes(data), scan_strings=False)  # still readable
    patch = plan_patch(
        bytes(data), path=("RUNPATH", "$ORIGIN"), interpreter="/nix/store/" + "i" * 60 + "/ld.so"
    )
    out = patch.apply(bytes(data))
    after = parse_elf(out, scan_strings=False)
    assert after.interpreter == "/nix/store/" + "i" * 60 + "/ld.so" and after.runpath == "$ORIGIN"
    patched = tmp_path / "m2"
    patched.write_bytes(out)
    shown = readelf(patched, "-S", allow_warnings=True, check=False)  # a crafted file: readelf may warn
    note_line = next(line for line in shown.splitlines() if "NOTE" in line)
    assert f"{notes[0]:06x}" in note_line  # the note section stayed where its bytes are


def test_plan_patch_refuses_an_interpreter_over_the_elf_header(tmp_path: Path) -> None:
    """Found while the editor was split into phases (a mutant the old and the new code both failed): a
    PT_INTERP whose bytes lie inside the ELF header, with a new interpreter to write, made two overwrites
    overlap (an AssertionError, exit 3). An interpreter over the header is malformed input."""
    from wheelfix.binfmt import BinaryFormatError
    from wheelfix.binfmt.elf.editor import plan_patch
    from wheelfix.binfmt.elf.reader import parse_elf

    data = gcc_bytes(tmp_path, MAIN_C)
    (interp,) = _phdr_offsets(data, 3)
    data[interp + 8 : interp + 16] = (0).to_bytes(8, "little")  # p_offset: the ELF header itself
    data[interp + 32 : interp + 48] = (0x1D).to_bytes(8, "little") * 2  # p_filesz, p_memsz: room for it
    assert data[0x1C] == 0  # (a byte of e_entry) ends the "interpreter" where its segment ends
    info = parse_elf(bytes(data), scan_strings=False)
    assert info.interpreter == bytes(data[:7]).decode("latin-1")
    with pytest.raises(BinaryFormatError, match="overlaps the ELF header"):
        plan_patch(bytes(data), path=("RPATH", "/x" * 100), interpreter="/lib64/ld-linux-x86-64.so.2")

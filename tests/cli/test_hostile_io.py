"""Hostile inputs the main hostile suite (test_hostile.py) does not cover (issue 6, item 2).

* Mach-O members with bad load command sizes, a fat header pointing past the end of the file, and too many
  load commands: the reader refuses them (``BinaryFormatError``) and the CLI exits 2 with one line naming the
  wheel and the member, no traceback, nothing on stdout, the input unchanged.
* ``repair -o`` into a directory that cannot be written (a read-only tmpfs, or a mode 0555 directory when
  not root) and onto a full disk (a 64 KiB tmpfs, or RLIMIT_FSIZE when mounting is not possible): no
  traceback, a non-zero exit, no output (not even a temp file), the input byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wheelfix.binfmt import BinaryFormatError
from wheelfix.binfmt.macho.reader import MAX_LOAD_COMMANDS, parse_macho

from tests.support.prereq import unavailable
from tests.support.wheels import write_wheel

WHEEL_NAME = "evil-1.0-cp311-cp311-linux_x86_64.whl"
MEMBER = "evil/_evil.cpython-311-darwin.so"
LC_UUID = 0x1B
TIMEOUT = 120


def _thin(ncmds: int, sizeofcmds: int, commands: bytes) -> bytes:
    """A 64-bit arm64 MH_BUNDLE header followed by ``commands``."""
    return struct.pack("<8I", 0xFEEDFACF, 0x0100000C, 0, 8, ncmds, sizeofcmds, 0, 0) + commands


MACHO: dict[str, tuple[bytes, str]] = {
    "lc-cmdsize-zero": (_thin(1, 16, struct.pack("<II", LC_UUID, 0) + bytes(8)), "cmdsize 0 is too small"),
    "lc-cmdsize-unaligned": (
        _thin(1, 24, struct.pack("<II", LC_UUID, 23) + bytes(16)),
        "cmdsize 23 is not a multiple of 8",
    ),
    "lc-past-sizeofcmds": (
        _thin(1, 24, struct.pack("<II", LC_UUID, 4096) + bytes(16)),
        "runs past sizeofcmds",
    ),
    "sizeofcmds-past-end": (
        _thin(1, 1 << 20, struct.pack("<II", LC_UUID, 24) + bytes(16)),
        "run past the end",
    ),
    "too-many-load-commands": (
        _thin(MAX_LOAD_COMMANDS + 1, 24, struct.pack("<II", LC_UUID, 24) + bytes(16)),
        "load commands (at most",
    ),
    "fat-slice-past-end": (
        struct.pack(">II", 0xCAFEBABE, 1) + struct.pack(">5I", 0x0100000C, 0, 4096, 1 << 20, 12) + bytes(64),
        "lies outside the file",
    ),
    "fat-header-truncated": (struct.pack(">II", 0xCAFEBABE, 3) + bytes(20), "fat"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelfix", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("name", list(MACHO))
def test_macho_reader_refuses(name: str) -> None:
    data, phrase = MACHO[name]
    with pytest.raises(BinaryFormatError) as info:
        parse_macho(data)
    assert phrase in str(info.value)


@pytest.mark.parametrize("name", list(MACHO))
@pytest.mark.parametrize("cmd", ["inspect", "check"])
def test_macho_member_in_a_wheel_is_refused_with_one_line(name: str, cmd: str, tmp_path: Path) -> None:
    data, phrase = MACHO[name]
    wheel = write_wheel(tmp_path / WHEEL_NAME, {MEMBER: data})
    before = _sha(wheel)
    run = _run(cmd, wheel, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"wheelfix: error: {wheel}: {MEMBER}: malformed Mach-O: "), lines[0]
    assert phrase in lines[0]
    assert _sha(wheel) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [WHEEL_NAME]


# --- output that cannot be written ------------------------------------------------------------------------


def _can_mount() -> bool:
    return os.geteuid() == 0 and sys.platform.startswith("linux")


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``where``; yields whether it worked (unmounted on exit)."""
    where.mkdir()
    opts = ",".join(("size=64k", *options))
    mounted = (
        _can_mount()
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def big_wheel(tmp_path: Path) -> Path:
    """A valid wheel of ~300 KB of incompressible data: more than the 64 KiB a full disk leaves."""
    src = tmp_path / "in"
    src.mkdir()
    blob = hashlib.shake_256(b"wheelfix").digest(300_000)
    return write_wheel(src / WHEEL_NAME, {"evil/__init__.py": b"x = 1\n", "evil/blob.bin": blob})


def _assert_clean_failure(run: subprocess.CompletedProcess[str], wheel: Path, before: str, out: Path) -> None:
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("wheelfix:")], run.stderr
    assert list(out.iterdir()) == [], "partial or temp output left behind"
    assert _sha(wheel) == before
    assert sorted(p.name for p in wheel.parent.iterdir()) == [WHEEL_NAME]


def _preexec_fsize() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


def _unwritable_run(big_wheel: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "ro"
    with _tmpfs(out, "ro") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                unavailable("root cannot be denied by a mode 0555 directory and tmpfs cannot be mounted")
            out.chmod(0o555)
        try:
            return _run("repair", "-o", out, big_wheel, cwd=tmp_path), out
        finally:
            if not mounted:
                out.chmod(0o755)


def _full_disk_run(big_wheel: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "full"
    with _tmpfs(out) as mounted:
        if mounted:
            return _run("repair", "-o", out, big_wheel, cwd=tmp_path), out
        run = subprocess.run(
            [sys.executable, "-m", "wheelfix", "repair", "-o", str(out), str(big_wheel)],
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
            cwd=tmp_path,
            preexec_fn=_preexec_fsize,
        )
        return run, out


def test_unwritable_output_dir_fails_cleanly(big_wheel: Path, tmp_path: Path) -> None:
    before = _sha(big_wheel)
    run, out = _unwritable_run(big_wheel, tmp_path)
    _assert_clean_failure(run, big_wheel, before, out)


def test_full_disk_fails_cleanly(big_wheel: Path, tmp_path: Path) -> None:
    before = _sha(big_wheel)
    run, out = _full_disk_run(big_wheel, tmp_path)
    _assert_clean_failure(run, big_wheel, before, out)


def test_unwritable_output_dir_is_a_reported_error_not_internal(big_wheel: Path, tmp_path: Path) -> None:
    run, out = _unwritable_run(big_wheel, tmp_path)
    assert run.returncode == 4  # EXIT_OUTPUT
    assert "internal error" not in run.stderr
    assert run.stderr.startswith("wheelfix: error: ") and str(out) in run.stderr


def test_full_disk_is_a_reported_error_not_internal(big_wheel: Path, tmp_path: Path) -> None:
    run, out = _full_disk_run(big_wheel, tmp_path)
    assert run.returncode == 4  # EXIT_OUTPUT
    assert "internal error" not in run.stderr
    assert run.stderr.startswith("wheelfix: error: ") and str(out) in run.stderr

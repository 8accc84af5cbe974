"""Output files are written to a temp name in the destination directory, fsynced, given their final mode and
renamed into place, so a reader never sees a partial file and a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_fd", "copy_atomically", "copy_range"]


def _new_file_mode() -> int:
    """``0666 & ~umask``, read without changing the umask (which is process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; best effort (the new file is already in place and complete)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_fd(dest: Path) -> Iterator[int]:
    """A file descriptor of a temp file next to ``dest``. On success it is fsynced, given ``dest``'s mode (an
    existing file keeps its mode; a new one gets ``0666 & ~umask``, not mkstemp's 0600) and renamed over
    ``dest``; on any exception, ``KeyboardInterrupt`` included, it is removed."""
    try:
        mode = stat.S_IMODE(dest.stat().st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp_name = tempfile.mkstemp(prefix="." + dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        yield fd
        os.fchmod(fd, mode)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp_name, dest)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def copy_atomically(source: Path | int, dest: Path) -> None:
    """Copy ``source`` (a path, or an open file descriptor read from offset 0 with ``pread``) to ``dest``."""
    if not isinstance(source, int):
        with source.open("rb") as src:
            copy_atomically(src.fileno(), dest)
        return
    with atomic_fd(dest) as fd:
        offset = 0
        while chunk := os.pread(source, 1 << 20, offset):
            offset += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]


def copy_range(src: int, dst: int, size: int, src_offset: int = 0, dst_offset: int = 0) -> int:
    """Copy ``size`` bytes of ``src`` at ``src_offset`` to ``dst`` at ``dst_offset``: by the kernel
    (``copy_file_range``) where it can, else read and written in pieces. Returns how many bytes were
    copied: fewer than ``size`` only when ``src`` ends first."""
    done = 0
    while done < size:
        n = 0
        if hasattr(os, "copy_file_range"):
            try:
                n = os.copy_file_range(src, dst, size - done, src_offset + done, dst_offset + done)
            except OSError:  # not across these file systems: copy by pieces
                n = 0
        if n == 0:
            chunk = os.pread(src, min(1 << 20, size - done), src_offset + done)
            if not chunk:
                break
            n = os.pwrite(dst, chunk, dst_offset + done)
        done += n
    return done

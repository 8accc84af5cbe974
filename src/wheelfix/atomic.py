"""Output files are written to a temp name in the destination directory and renamed into place, so a
reader never sees a partial file and a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "copy_atomically"]


@contextmanager
def atomic_output(dest: Path) -> Iterator[BinaryIO]:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def copy_atomically(source: Path, dest: Path) -> None:
    with source.open("rb") as src, atomic_output(dest) as out:
        shutil.copyfileobj(src, out, 1 << 20)

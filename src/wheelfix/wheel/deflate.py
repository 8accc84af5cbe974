"""Block-parallel raw deflate, shared by the wheel writer (replaced members, RECORD) and deflate splicing
(the fresh regions of a spliced member).

A member is deflated in independent blocks of :data:`BLOCK` bytes that concatenate into one deflate
stream, as pigz does: each block's compressor is primed with the :data:`WINDOW` bytes before it (``zdict``),
every block but the last ends with a sync flush (byte-aligned, not final), the last one finishes the stream.
Blocks can therefore be compressed on a thread pool (zlib releases the GIL); the output depends only on the
data, the level and the block size — never on how many threads ran. The block size is part of the output
format: changing it changes every repaired wheel's bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = ["BLOCK", "WINDOW", "block_starts", "deflate_block", "deflate_bound"]

WINDOW = 32 << 10  # deflate's window: a block is primed with the 32 KiB before it
BLOCK = 1 << 20  # bytes of input per independent block


def deflate_block(
    read: Callable[[int, int], bytes | memoryview], start: int, end: int, level: int, final: bool
) -> bytes:
    """Raw-deflate the input bytes ``[start, end)`` (``read(offset, n)`` returns input bytes) as one block of
    a block-parallel stream; ``final`` ends the stream, otherwise the block ends with a sync flush."""
    lo = max(0, start - WINDOW)
    if start > lo:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=read(lo, start - lo))
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    head = comp.compress(read(start, end - start))
    return head + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def block_starts(size: int, block: int = BLOCK) -> range:
    """Where the blocks of ``size`` input bytes start (one block for an empty input)."""
    return range(0, max(size, 1), block)


def deflate_bound(size: int, block: int = BLOCK) -> int:
    """More than the raw-deflate output of ``size`` bytes can be (stored blocks cost 5 bytes per 64 KiB; each
    sync flush at most 10 bytes)."""
    return size + (size >> 8) + 16 * len(block_starts(size, block)) + 64

"""Re-use a member's deflate stream around a small edit instead of recompressing the whole member.

A patched ``libtorch_cpu.so`` differs from the original in a few hundred bytes plus an appended segment,
yet deflating its 434 MB at level 6 takes seconds per core. A deflate stream is a sequence of blocks, each
decodable given the 32 KiB of output before it. So the new stream can be:

* the original stream's bits, copied, up to the start of the block holding the first changed byte;
* the changed region, deflated afresh (primed with the 32 KiB before it), ending in a sync flush;
* the original stream again from the first block that starts at least 32 KiB after the region (its back
  references then only reach unchanged bytes), and so on; the region holding the end of the file (the
  appended tail) is deflated to the end of the stream.

The original block boundaries come from zlib's ``inflate(Z_BLOCK)`` (called through ctypes; the stdlib
binding does not expose it), recorded while the member is inflated anyway for the patch. Copies keep their
bit alignment modulo 8 (a stored block's padding depends on it): a fresh region starts with an empty
stored block when needed (that byte-aligns it, as a sync flush does), and ends with 0-3 empty static
blocks (10 bits each) to reach the next copy's alignment — only boundaries at an even bit offset are
chosen as copy starts. The output is a valid single deflate stream that inflates to exactly the new
bytes; it depends only on the input stream, the edit, the level and the block size (reproducible).

Without a usable zlib shared library (``libz.so.1``), callers fall back to full recompression.
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import itertools
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wheelfix.errors import EXIT_BAD_INPUT, Error
from wheelfix.wheel.codecs import IndexedLibrary, ZStream, crc32, indexed_library
from wheelfix.wheel.deflate import BLOCK, WINDOW, deflate_block

__all__ = ["IndexedInflate", "SpliceError", "Spliced", "inflate_indexed", "splice", "zlib_available"]

_CHUNK = 1 << 20
Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_BLOCK = 0, 1, -5, 5

Piece = bytes | tuple[int, int]  # compressed bytes, or (offset, length) of bytes of the source file


def zlib_available() -> bool:
    """Whether an inflate that stops at block boundaries can be loaded (zlib-ng or the system zlib)."""
    return indexed_library() is not None


class InflateError(Error, ValueError):
    """A member's deflate stream does not inflate (damaged data)."""

    exit_code = EXIT_BAD_INPUT


class IndexedInflate:
    """Inflate the raw deflate stream at ``start`` (``length`` bytes, read with ``read(offset, n)``) in
    pieces, recording where each deflate block starts. Iterate to get the output; each piece is a view of
    a reused buffer, valid until the next one is asked for. Once iterated to the end, ``boundaries`` holds
    the block starts as (bit offset in the stream, output offset) pairs — the first is (0, 0) — and
    ``crc``/``size`` the CRC-32 and size of the output. Raises InflateError on damaged data."""

    def __init__(
        self,
        read: Callable[[int, int], bytes],
        start: int,
        length: int,
        *,
        library: str = "auto",
        limit: int | None = None,
    ) -> None:
        self._read, self._start, self._length, self._library = read, start, length, library
        self._limit = limit  # refuse to inflate to more than this many bytes
        self.boundaries: list[tuple[int, int]] = [(0, 0)]
        self.crc = 0
        self.size = 0

    def __iter__(self) -> Iterator[memoryview]:
        lib = indexed_library(self._library)
        if lib is None:
            raise InflateError("no zlib shared library to inflate with")
        strm = ZStream()
        ret = lib.init(ctypes.byref(strm))
        if ret != Z_OK:
            raise InflateError(f"inflateInit2 failed ({ret})")
        try:
            yield from self._run(lib, strm)
        finally:
            lib.end(ctypes.byref(strm))

    def _run(self, lib: IndexedLibrary, strm: ZStream) -> Iterator[memoryview]:
        out = ctypes.create_string_buffer(_CHUNK)
        out_base = ctypes.addressof(out)
        view = memoryview(out).cast("B")
        consumed, length, boundaries = 0, self._length, self.boundaries
        inbuf: bytes = b""
        used = 0  # bytes of ``out`` filled and not yet passed on
        strm.next_out, strm.avail_out = out_base, _CHUNK
        while True:
            if strm.avail_in == 0 and consumed < length:
                inbuf = self._read(self._start + consumed, min(_CHUNK, length - consumed))
                if not inbuf:
                    raise InflateError("the compressed data ends early")
                consumed += len(inbuf)
                strm.next_in = ctypes.cast(ctypes.c_char_p(inbuf), ctypes.c_void_p)
                strm.avail_in = len(inbuf)
            before_avail_out = strm.avail_out
            ret = lib.inflate(ctypes.byref(strm), Z_BLOCK)
            used += before_avail_out - strm.avail_out
            if ret not in (Z_OK, Z_STREAM_END, Z_BUF_ERROR):
                msg = strm.msg.decode("ascii", "replace") if strm.msg else str(ret)
                raise InflateError(f"corrupt deflate data ({msg})")
            if self._limit is not None and strm.total_out > self._limit:
                raise InflateError(f"inflates to more than its declared {self._limit} bytes")
            if ret == Z_STREAM_END or strm.avail_out < (_CHUNK >> 2):
                chunk = view[:used]
                self.crc = crc32(chunk, self.crc)
                yield chunk
                used = 0
                strm.next_out, strm.avail_out = out_base, _CHUNK
            if ret == Z_STREAM_END:
                break
            if strm.data_type & 128 and not strm.data_type & 64:
                boundaries.append((strm.total_in * 8 - (strm.data_type & 7), strm.total_out))
            if ret == Z_BUF_ERROR and strm.avail_in == 0 and consumed >= length:
                raise InflateError("the compressed data ends early")
        self.size = strm.total_out
        del inbuf


def inflate_indexed(
    read: Callable[[int, int], bytes],
    start: int,
    length: int,
    write: Callable[[memoryview], None],
    *,
    library: str = "auto",
) -> tuple[list[tuple[int, int]], int, int]:
    """Inflate the raw deflate stream at ``start`` (``length`` bytes, read with ``read(offset, n)``),
    passing the output to ``write`` in pieces. Returns the block starts as (bit offset in the stream,
    output offset) pairs — the first is (0, 0) — and the CRC-32 and size of the output."""
    job = IndexedInflate(read, start, length, library=library)
    for chunk in job:
        write(chunk)
    return job.boundaries, job.crc, job.size


# --- bit-level assembly ------------------------------------------------------------------------------


#: fresh bytes at least this long become a piece of their own instead of being joined to their neighbours
_OWN_PIECE = 64 << 10


class _Bits:
    """Pieces of a deflate stream being assembled, LSB-first as deflate packs bits."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self._pending = bytearray()
        self.acc = 0
        self.nbits = 0

    def bits(self, value: int, count: int) -> None:
        self.acc |= value << self.nbits
        self.nbits += count
        while self.nbits >= 8:
            self._pending.append(self.acc & 0xFF)
            self.acc >>= 8
            self.nbits -= 8

    def raw(self, data: bytes) -> None:
        assert self.nbits == 0
        if len(data) >= _OWN_PIECE:  # a compressed block: a piece of its own, not copied
            self._flush()
            self.pieces.append(data)
        else:
            self._pending += data

    def source(self, offset: int, length: int) -> None:
        assert self.nbits == 0
        if length:
            self._flush()
            self.pieces.append((offset, length))

    def _flush(self) -> None:
        if self._pending:
            self.pieces.append(bytes(self._pending))
            self._pending = bytearray()

    def mark(self) -> int:
        """The current byte offset in the stream (must be byte-aligned)."""
        assert self.nbits == 0
        done = sum(len(p) if isinstance(p, bytes) else p[1] for p in self.pieces)
        return done + len(self._pending)

    def empty_stored_block(self) -> None:
        """BFINAL=0, BTYPE=00, pad to a byte, LEN=0, NLEN=0xFFFF: what a sync flush writes."""
        self.bits(0, 3)
        if self.nbits:
            self.bits(0, 8 - self.nbits)
        self.raw(b"\x00\x00\xff\xff")

    def empty_static_block(self) -> None:
        """BFINAL=0, BTYPE=01, end-of-block (7 zero bits): 10 bits that decode to nothing."""
        self.bits(0b010, 3)
        self.bits(0, 7)

    def finish(self) -> tuple[Piece, ...]:
        if self.nbits:
            self.bits(0, 8 - self.nbits)
        self._flush()
        return tuple(self.pieces)


def _copy_bits(out: _Bits, read: Callable[[int, int], bytes], base: int, p: int, q: int) -> None:
    """Append bits [p, q) of the stream starting at file offset ``base``; out must be at bit p % 8."""
    assert out.nbits == p % 8
    if q <= p:
        return
    first_full = (p + 7) // 8
    last_full = q // 8
    if first_full >= last_full:  # no whole byte in between: bit by bit via an int
        lo, hi = p // 8, (q + 7) // 8
        value = int.from_bytes(read(base + lo, hi - lo), "little") >> (p % 8)
        out.bits(value & ((1 << (q - p)) - 1), q - p)
        return
    if p % 8:
        head = read(base + p // 8, 1)[0] >> (p % 8)
        out.bits(head, 8 - p % 8)
    out.source(base + first_full, last_full - first_full)
    if q % 8:
        out.bits(read(base + last_full, 1)[0] & ((1 << (q % 8)) - 1), q % 8)


@dataclass(frozen=True, slots=True)
class Spliced:
    """A member's new content as a deflate stream made of fresh bytes and pieces of the source file."""

    size: int
    crc: int
    sha256: bytes
    pieces: tuple[Piece, ...]

    @property
    def compressed_size(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p[1] for p in self.pieces)

    @property
    def copied(self) -> int:
        return sum(p[1] for p in self.pieces if not isinstance(p, bytes))

    def chunks(self, fd: int) -> Iterator[bytes]:
        for p in self.pieces:
            if isinstance(p, bytes):
                yield p
                continue
            offset, length = p
            end = offset + length
            while offset < end:
                data = os.pread(fd, min(_CHUNK, end - offset), offset)
                if not data:
                    raise InflateError("the source wheel ends inside a copied piece")
                yield data
                offset += len(data)


def _regions(
    boundaries: list[tuple[int, int]], changed: list[tuple[int, int]], old_size: int
) -> list[tuple[int, int | None]]:
    """(start boundary index, end boundary index or None for "to the end") for each fresh region."""
    outs = [b[1] for b in boundaries]
    regions: list[tuple[int, int | None]] = []
    for a, b in changed:
        s = bisect.bisect_right(outs, a) - 1
        e: int | None = None
        if b < old_size:
            i = bisect.bisect_left(outs, b + WINDOW)
            while i < len(boundaries) and boundaries[i][0] % 2:
                i += 1
            e = i if i < len(boundaries) else None
        prev_e = regions[-1][1] if regions else 0
        if regions and (prev_e is None or s < prev_e):
            regions[-1] = (regions[-1][0], None if e is None or prev_e is None else max(prev_e, e))
        else:
            regions.append((s, e))
    return regions


def splice(
    *,
    boundaries: list[tuple[int, int]],
    stream_offset: int,
    stream_length: int,
    read_source: Callable[[int, int], bytes],
    changed: list[tuple[int, int]],
    old_size: int,
    new_size: int,
    read_new: Callable[[int, int], bytes],
    level: int,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[Piece, ...]:
    """The pieces of the new deflate stream. ``boundaries`` come from :func:`inflate_indexed` on the
    stream at ``stream_offset`` of the source file; ``changed`` are the byte ranges of the new content
    that differ from the old (sorted, merged; the ones at or past ``old_size`` are the appended tail)."""
    if not changed:
        raise ValueError("nothing changed: copy the member instead")
    regions = _regions(boundaries, changed, old_size)
    out = _Bits()
    pos_bit = 0
    jobs: list[tuple[int, int, bool]] = []
    layout: list[tuple[int, int, int | None]] = []  # (bit to copy from, region start, region end bit)
    for s, e in regions:
        start_out = boundaries[s][1]
        end_out = boundaries[e][1] if e is not None else new_size
        for block_start in range(start_out, max(end_out, start_out + 1), BLOCK):
            block_end = min(block_start + BLOCK, end_out)
            jobs.append((block_start, block_end, e is None and block_end == end_out))
        layout.append((pos_bit, s, e))
        pos_bit = boundaries[e][0] if e is not None else -1

    def compress(j: tuple[int, int, bool]) -> bytes:
        return deflate_block(read_new, j[0], j[1], level, j[2])

    blocks = list(pool.map(compress, jobs)) if pool is not None else [compress(j) for j in jobs]
    k = 0
    checkpoints: list[tuple[int, int, int]] = []
    for copy_from, s, e in layout:
        _copy_bits(out, read_source, stream_offset, copy_from, boundaries[s][0])
        if out.nbits:
            out.empty_stored_block()
        start_out = boundaries[s][1]
        checkpoints.append((out.mark(), start_out, boundaries[e][1] if e is not None else new_size))
        end_out = boundaries[e][1] if e is not None else new_size
        for _ in range(start_out, max(end_out, start_out + 1), BLOCK):
            out.raw(blocks[k])
            blocks[k] = b""  # held once, by the pieces
            k += 1
        if e is not None:
            for _ in range((boundaries[e][0] % 8) // 2):
                out.empty_static_block()
    if pos_bit >= 0:  # the stream ends with original blocks
        _copy_bits(out, read_source, stream_offset, pos_bit, stream_length * 8)
    pieces = out.finish()
    _check_junctions(pieces, checkpoints, read_source, read_new, new_size)
    return pieces


class SpliceError(Error, ValueError):
    """A spliced stream failed its junction check: a bug, caught before anything is written."""


def _read_pieces(
    pieces: tuple[Piece, ...], read_source: Callable[[int, int], bytes], start: int
) -> Iterator[bytes]:
    """The stream's bytes from byte offset ``start`` on, in chunks."""
    pos = 0
    for p in pieces:
        length = len(p) if isinstance(p, bytes) else p[1]
        if pos + length <= start:
            pos += length
            continue
        skip = max(0, start - pos)
        if isinstance(p, bytes):
            yield p[skip:]
        else:
            for at in range(p[0] + skip, p[0] + length, _CHUNK):
                yield read_source(at, min(_CHUNK, p[0] + length - at))
        pos += length


def _check_junctions(
    pieces: tuple[Piece, ...],
    checkpoints: list[tuple[int, int, int]],
    read_source: Callable[[int, int], bytes],
    read_new: Callable[[int, int], bytes],
    new_size: int,
) -> None:
    """Decode each fresh region from its (byte-aligned) start with the new content's window, through the
    junction into the copied blocks after it (``2 * WINDOW`` bytes of them) or to the end of the stream,
    and compare with the new content. The copied blocks in between decode as they did in the original
    stream: they start where the 32 KiB before them are unchanged. A mismatch is a bug: raise."""
    for offset, start_out, end_out in checkpoints:
        try:
            _check_junction(pieces, offset, start_out, end_out, read_source, read_new, new_size)
        except zlib.error as e:  # garbage at a junction: as much a bug as a mismatch
            raise SpliceError(f"spliced stream does not decode after {start_out}: {e}") from None


def _check_junction(
    pieces: tuple[Piece, ...],
    offset: int,
    start_out: int,
    end_out: int,
    read_source: Callable[[int, int], bytes],
    read_new: Callable[[int, int], bytes],
    new_size: int,
) -> None:
    """One junction of _check_junctions."""
    lo = max(0, start_out - WINDOW)
    inflater = (
        zlib.decompressobj(-15, zdict=read_new(lo, start_out - lo)) if start_out else zlib.decompressobj(-15)
    )
    want = min(new_size, end_out + 2 * WINDOW) - start_out
    got = 0
    chunks = _read_pieces(pieces, read_source, offset)
    for chunk in chunks:
        data = inflater.decompress(chunk, want - got)
        if data != read_new(start_out + got, len(data)):
            raise SpliceError(f"spliced stream differs from the new content near {start_out + got}")
        got += len(data)
        while got < want and inflater.unconsumed_tail:
            data = inflater.decompress(inflater.unconsumed_tail, want - got)
            if not data:
                break
            if data != read_new(start_out + got, len(data)):
                raise SpliceError(f"spliced stream differs from the new content near {start_out + got}")
            got += len(data)
        if got >= want or inflater.eof:
            break
    if got != want:
        raise SpliceError(f"spliced stream ends early: {got} of {want} bytes after {start_out}")
    if end_out == new_size and want == new_size - start_out and not inflater.eof:
        # the rest of the stream (e.g. a copied empty final block, in a later piece) must add nothing
        for chunk in itertools.chain([inflater.unconsumed_tail], chunks):
            if inflater.decompress(chunk, 1):
                raise SpliceError("spliced stream decodes to more than the new content")
            if inflater.eof:
                break
        if not inflater.eof:
            raise SpliceError("spliced stream does not end where the new content ends")


def hash_fd(fd: int, size: int) -> tuple[int, bytes]:
    """CRC-32 and sha256 of the first ``size`` bytes of ``fd``, read in chunks (never mapped)."""
    crc = 0
    sha = hashlib.sha256()
    pos = 0
    while pos < size:
        data = os.pread(fd, min(4 * _CHUNK, size - pos), pos)
        if not data:
            raise OSError("file shorter than expected")
        crc = crc32(data, crc)
        sha.update(data)
        pos += len(data)
    return crc, sha.digest()

"""Streaming reader for nix-index's ``files`` database (the file nix-locate searches).

Layout, as written by nix-community/nix-index (``src/database.rs``, ``src/frcode.rs``, ``src/files.rs``,
``src/package.rs``):

* 4 bytes ``NIXI``, then the format version as a little-endian u64 (only version 1 exists);
* a zstd stream of *records*. A record is ``META \\0 DIFF SUFFIX \\n``: META is NUL-free bytes, DIFF the
  change of the shared-prefix length against the previous record's path (one signed byte, or ``0x80``
  followed by a big-endian i16 when the change does not fit in -126..126), SUFFIX the path bytes after the
  shared prefix. So each path is ``previous_path[:shared] + SUFFIX``, the locate(1) "frcode" idea;
* a store path's file records come first, then one record with META ``p`` whose path is the JSON of the
  store path (``store_dir``, ``hash``, ``name``, ``origin``: ``attr``, ``output``, ``toplevel``, ``system``).
  Its DIFF brings the shared length back to 0, so every store path starts afresh;
* a file record's META is ``<size>r`` (regular), ``<size>x`` (executable), ``<entries>d`` (directory) or
  ``<target>s`` (symlink); its path is relative to the store path (``/lib/libz.so.1``; ``""`` is the root).

This module is stdlib-only; only :func:`open_database` needs the third-party ``zstandard`` module (the
``db`` extra), imported when called. Nothing here is needed at lookup time.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from wheelfix.errors import EXIT_BAD_INPUT, BadInput, Error, Problem

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "FileEntry",
    "FileKind",
    "FrcodeDecoder",
    "MissingDependency",
    "Package",
    "StorePath",
    "iter_packages",
    "open_database",
    "read_header",
]

MAGIC = b"NIXI"
FORMAT_VERSION = 1
HEADER_SIZE = len(MAGIC) + 8
_COMPRESSED_BLOCK = 1 << 20  # compressed bytes per read
_MAX_RECORD = 64 << 20  # a single record longer than this means a corrupt stream, not a real file name


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class MissingDependency(Error):
    """An optional dependency a command needs is not installed."""

    exit_code = EXIT_BAD_INPUT


class FileKind(enum.Enum):
    REGULAR = "r"
    EXECUTABLE = "x"
    DIRECTORY = "d"
    SYMLINK = "s"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One node of a store path's file tree."""

    path: bytes  # relative to the store path: b"/lib/libz.so.1"; b"" is the store path itself
    kind: FileKind
    size: int | None  # bytes (files) or number of entries (directories); None for symlinks
    target: bytes | None  # symlink target, as stored (relative or absolute)

    @property
    def name(self) -> bytes:
        return self.path.rpartition(b"/")[2]


@dataclass(frozen=True, slots=True)
class StorePath:
    """A store path and how nix-index reached it (``origin`` in nix-index's JSON)."""

    store_dir: str
    hash: str
    name: str
    attr: str  # attribute path in nixpkgs, e.g. "zlib" or "python313Packages.torch"
    output: str  # derivation output, e.g. "out", "lib"
    toplevel: bool  # False: only reached as a dependency of ``attr``'s closure, not an output of it
    system: str | None

    @property
    def path(self) -> str:
        return f"{self.store_dir}/{self.hash}-{self.name}"


@dataclass(frozen=True, slots=True)
class Package:
    """A store path with the file entries a caller chose to keep."""

    store_path: StorePath
    files: tuple[FileEntry, ...]


def _corrupt(name: str, message: str) -> BadInput:
    return BadInput([Problem(name, None, f"not a valid nix-index database: {message}")])


def read_header(stream: IO[bytes], name: str = "<stream>") -> int:
    """Check the magic and version at the start of ``stream``; return the version."""
    head = stream.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
        raise _corrupt(name, f"expected the magic {MAGIC!r}, found {head[: len(MAGIC)]!r}")
    version = int.from_bytes(head[len(MAGIC) :], "little")
    if version != FORMAT_VERSION:
        raise _corrupt(name, f"format version {version} (only {FORMAT_VERSION} is supported)")
    return version


class FrcodeDecoder:
    """Incremental decoder of the record stream: feed decompressed bytes, get ``(meta, path)`` pairs.

    Records may straddle chunk boundaries; the incomplete tail is kept for the next :meth:`feed`.
    """

    __slots__ = ("_name", "_pending", "_prev", "_shared")

    def __init__(self, name: str = "<stream>") -> None:
        self._name = name
        self._pending = b""
        self._prev = b""
        self._shared = 0

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        data = self._pending + chunk if self._pending else chunk
        out: list[tuple[bytes, bytes]] = []
        append = out.append
        find = data.find
        end = len(data)
        pos = 0
        prev = self._prev
        shared = self._shared
        while True:
            nul = find(b"\0", pos)
            if nul < 0 or nul + 1 >= end:
                break
            first = data[nul + 1]
            if first == 0x80:
                if nul + 4 > end:
                    break
                diff = int.from_bytes(data[nul + 2 : nul + 4], "big", signed=True)
                start = nul + 4
            else:
                diff = first - 256 if first > 127 else first
                start = nul + 2
            newline = find(b"\n", start)
            if newline < 0:
                break
            shared += diff
            if shared < 0 or shared > len(prev):
                raise _corrupt(
                    self._name,
                    f"shared prefix length {shared} outside 0..{len(prev)} (previous path {prev!r})",
                )
            prev = prev[:shared] + data[start:newline]
            append((data[pos:nul], prev))
            pos = newline + 1
        self._prev = prev
        self._shared = shared
        self._pending = data[pos:]
        if len(self._pending) > _MAX_RECORD:
            raise _corrupt(self._name, f"a record longer than {_MAX_RECORD} bytes")
        return out

    def finish(self) -> None:
        """Call at the end of input: a partial record left over means the stream was cut short."""
        if self._pending:
            raise _corrupt(self._name, f"stream ends inside a record ({len(self._pending)} bytes left over)")


def _file_entry(meta: bytes, path: bytes, name: str) -> FileEntry:
    if not meta:
        raise _corrupt(name, f"file record without type for {path!r}")
    kind_byte = meta[-1:]
    body = meta[:-1]
    try:
        kind = FileKind(kind_byte.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(name, f"unknown file type {kind_byte!r} for {path!r}") from None
    if kind is FileKind.SYMLINK:
        return FileEntry(path, kind, None, body)
    if not body.isdigit():
        raise _corrupt(name, f"bad size {body!r} for {path!r}")
    return FileEntry(path, kind, int(body), None)


def _store_path(raw: bytes, name: str) -> StorePath:
    try:
        doc: Any = json.loads(raw)
        origin = doc["origin"]
        system = origin.get("system")
        sp = StorePath(
            store_dir=str(doc["store_dir"]),
            hash=str(doc["hash"]),
            name=str(doc["name"]),
            attr=str(origin["attr"]),
            output=str(origin["output"]),
            toplevel=bool(origin["toplevel"]),
            system=None if system is None else str(system),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise _corrupt(name, f"bad store path record {raw[:200]!r}: {e}") from None
    return sp


def iter_packages(
    chunks: Iterable[bytes],
    *,
    keep: Callable[[bytes], bool] | None = None,
    name: str = "<stream>",
) -> Iterator[Package]:
    """Decode the decompressed record stream (after the header) into packages.

    ``keep(path)`` selects the file entries to materialize (all when None); the others are decoded only as
    far as the prefix sharing requires, which is what makes a full pass over nixpkgs affordable.
    """
    decoder = FrcodeDecoder(name)
    files: list[FileEntry] = []
    for chunk in chunks:
        for meta, path in decoder.feed(chunk):
            if meta == b"p":
                yield Package(_store_path(path, name), tuple(files))
                files = []
            elif keep is None or keep(path):
                files.append(_file_entry(meta, path, name))
    decoder.finish()
    if files:
        raise _corrupt(name, f"{len(files)} file records after the last store path record")


@contextmanager
def open_database(path: Path | IO[bytes], name: str | None = None) -> Iterator[Iterator[bytes]]:
    """Check the header of the nix-index file ``path`` (a path or an open binary stream) and yield an
    iterator of its decompressed chunks, for :func:`iter_packages`. Needs ``zstandard``."""
    try:
        import zstandard  # optional dependency, builder only
    except ImportError:
        raise MissingDependency(
            "decoding a nix-index database needs the zstandard module: pip install 'wheelfix[db]'"
        ) from None
    label = name or (str(path) if isinstance(path, Path) else "<stream>")
    with _opened(path) as raw:
        read_header(raw, label)
        yield _decompressed(raw, zstandard, label)


def _decompressed(raw: _Readable, zstd: Any, label: str) -> Iterator[bytes]:
    """The concatenated content of every zstd frame in ``raw``. Unlike zstandard's stream reader, this
    notices a stream cut short inside a frame instead of ending quietly."""
    dctx = zstd.ZstdDecompressor()
    dobj = dctx.decompressobj()
    in_frame = False
    try:
        while block := raw.read(_COMPRESSED_BLOCK):
            while block:
                in_frame = True
                out = dobj.decompress(block)
                if out:
                    yield out
                if not dobj.eof:
                    break
                block = dobj.unused_data  # the next frame starts in this block
                dobj = dctx.decompressobj()
                in_frame = False
    except zstd.ZstdError as e:
        raise _corrupt(label, f"zstd: {e}") from None
    if in_frame:
        raise _corrupt(label, "the zstd stream ends inside a frame (truncated file?)")


@contextmanager
def _opened(path: Path | IO[bytes]) -> Iterator[IO[bytes]]:
    if isinstance(path, Path):
        try:
            f = path.open("rb")
        except OSError as e:
            raise BadInput([Problem(str(path), None, e.strerror or str(e))]) from None
        with f:
            yield f
    else:
        yield path

"""Which deflate implementation does which job, chosen by measurement (``bench/codecs.py``; the table is in
docs/performance.md).

* **Streaming inflate** (the scan of every member): ISA-L (PyPI ``isal``) when installed, else zlib-ng
  (PyPI ``zlib-ng``), else the stdlib's zlib. Inflating is checked by the CRC-32 or RECORD hash either way,
  so the choice cannot change a verdict.
* **Indexed inflate** (members a repair may patch; the deflate block boundaries are recorded for
  splicing): ``inflate(Z_BLOCK)`` through ctypes, from zlib-ng's native API (``zng_inflate``, exported by
  the ``zlib-ng`` package's extension) when installed, else the system ``libz.so.1``. ISA-L and libdeflate
  do not stop at block boundaries.
* **Deflate** (fresh regions of a spliced member, recompressed members, RECORD): always the stdlib's zlib,
  so a repaired wheel's bytes do not depend on which optional package is installed.

The optional packages come with ``pip install 'wheelfix[fast]'``; without them wheelfix runs with zlib and
says so once with ``-v`` (:func:`summary`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

__all__ = [
    "Decompressor",
    "IndexedLibrary",
    "crc32",
    "decompressobj",
    "indexed_library",
    "inflate_errors",
    "inflater_name",
    "summary",
]


class Decompressor(Protocol):
    def decompress(self, data: bytes | memoryview, max_length: int = ...) -> bytes: ...

    def flush(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unconsumed_tail(self) -> bytes: ...


def _disabled() -> set[str]:
    """Codecs turned off with ``WHEELFIX_CODECS=zlib`` (only zlib) — for tests and comparisons."""
    want = os.environ.get("WHEELFIX_CODECS", "").strip()
    return {"isal", "zlib-ng"} if want == "zlib" else set()


@cache
def _stream_module() -> tuple[str, Any]:
    disabled = _disabled()
    if "isal" not in disabled:
        try:
            from isal import isal_zlib

            return "isal", isal_zlib
        except ImportError:
            pass
    if "zlib-ng" not in disabled:
        try:
            from zlib_ng import zlib_ng

            return "zlib-ng", zlib_ng
        except ImportError:
            pass
    return "zlib", zlib


def inflater_name() -> str:
    """The streaming inflater in use: ``isal``, ``zlib-ng`` or ``zlib``."""
    return _stream_module()[0]


def inflate_errors() -> tuple[type[Exception], ...]:
    """What the streaming inflater raises on damaged data."""
    return (zlib.error, _stream_module()[1].error)


def decompressobj() -> Decompressor:
    """A raw-deflate (wbits -15) streaming decompressor from the fastest installed implementation."""
    obj: Decompressor = _stream_module()[1].decompressobj(wbits=-15)
    return obj


@cache
def _crc_function() -> Callable[[bytes | memoryview, int], int]:
    name, mod = _stream_module()
    fn: Callable[[bytes | memoryview, int], int] = mod.crc32 if name != "zlib" else zlib.crc32
    return fn


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32 (the zip one) with the streaming inflater's implementation (ISA-L's is several times zlib's)."""
    return _crc_function()(data, value)


# --- indexed inflate: inflate(Z_BLOCK) through ctypes ------------------------------------------------------


class ZStream(ctypes.Structure):
    """zlib's ``z_stream``; zlib-ng's ``zng_stream`` has the same layout on LP64 (``uLong`` is ``size_t``)."""

    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


@dataclass(frozen=True)
class IndexedLibrary:
    """An inflate that can stop at block boundaries: ``init(strm)`` (raw deflate), ``inflate(strm, flush)``,
    ``end(strm)``; all take ``ctypes.byref(ZStream)``."""

    name: str
    init: Callable[[Any], int]
    inflate: Callable[[Any, int], int]
    end: Callable[[Any], int]


def _load_zlib(soname: str) -> IndexedLibrary | None:
    try:
        lib = ctypes.CDLL(soname)
        lib.zlibVersion.restype = ctypes.c_char_p
        lib.inflateInit2_.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.inflate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.inflateEnd.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    version = lib.zlibVersion()
    size = ctypes.sizeof(ZStream)
    return IndexedLibrary(
        "zlib", lambda s: int(lib.inflateInit2_(s, -15, version, size)), lib.inflate, lib.inflateEnd
    )


def _system_zlib() -> IndexedLibrary | None:
    for soname in ("libz.so.1", ctypes.util.find_library("z")):
        found = _load_zlib(soname) if soname else None
        if found is not None:
            return found
    return None


def _zlib_ng() -> IndexedLibrary | None:
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return None
    try:
        lib = ctypes.CDLL(zlib_ng.__file__)
        lib.zng_inflateInit2.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.zng_inflate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.zng_inflateEnd.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return IndexedLibrary(
        "zlib-ng", lambda s: int(lib.zng_inflateInit2(s, -15)), lib.zng_inflate, lib.zng_inflateEnd
    )


@cache
def indexed_library(name: str = "auto") -> IndexedLibrary | None:
    """The library for indexed inflate: ``zlib-ng`` or ``zlib`` by name, or ``auto`` (zlib-ng when installed
    and not disabled); None when none can be loaded (callers then recompress instead of splicing)."""
    if name == "zlib-ng" or (name == "auto" and "zlib-ng" not in _disabled()):
        found = _zlib_ng()
        if found is not None or name == "zlib-ng":
            return found
    return _system_zlib()


def summary() -> str | None:
    """One line for ``-v`` when an optional codec is missing (None when the fast ones are in use)."""
    missing = []
    if inflater_name() != "isal":
        missing.append("isal")
    lib = indexed_library()
    if lib is None or lib.name != "zlib-ng":
        missing.append("zlib-ng")
    if not missing:
        return None
    indexed = lib.name if lib is not None else "none (patched members are recompressed)"
    why = (
        "turned off by WHEELFIX_CODECS=zlib"
        if _disabled()
        else "not installed (pip install 'wheelfix[fast]' is faster)"
    )
    return f"inflating with {inflater_name()}, indexed inflate with {indexed}: {' and '.join(missing)} {why}"

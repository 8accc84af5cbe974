"""Writes small nix-index ``files`` databases for the tests: the encoder side of the format that
wheelfix.nixkb.nixindex decodes (written from the format description, independently of the decoder)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

STORE = "/nix/store"


@dataclass(frozen=True)
class FakeFile:
    path: str  # "/lib/libz.so.1"; "" is the store path itself
    kind: str  # r, x, d, s
    size: int = 0
    target: str = ""  # symlinks

    def meta(self) -> bytes:
        if self.kind == "s":
            return self.target.encode() + b"s"
        return f"{self.size}{self.kind}".encode()


@dataclass(frozen=True)
class FakeStorePath:
    attr: str
    output: str
    name: str
    files: Sequence[FakeFile] = field(default_factory=tuple)
    hash: str = ""
    toplevel: bool = True
    system: str | None = "x86_64-linux"

    @property
    def store_hash(self) -> str:
        if self.hash:
            return self.hash
        alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
        seed = sum((i + 1) * ord(c) for i, c in enumerate(self.attr + "." + self.output + self.name))
        return "".join(alphabet[(seed * (i + 7) + i * i) % 32] for i in range(32))

    @property
    def path(self) -> str:
        return f"{STORE}/{self.store_hash}-{self.name}"

    def record(self) -> bytes:
        doc = {
            "store_dir": STORE,
            "hash": self.store_hash,
            "name": self.name,
            "origin": {
                "attr": self.attr,
                "output": self.output,
                "toplevel": self.toplevel,
                "system": self.system,
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def _diff(diff: int) -> bytes:
    if -127 < diff < 127:
        return bytes([diff & 0xFF])
    return b"\x80" + diff.to_bytes(2, "big", signed=True)


def encode_records(store_paths: Iterable[FakeStorePath]) -> bytes:
    """The decompressed record stream: per store path its file records, then its ``p`` record."""
    out = bytearray()
    for sp in store_paths:
        last = b""
        shared = 0
        for f in sp.files:
            path = f.path.encode()
            common = 0
            for a, b in zip(last, path, strict=False):
                if a != b:
                    break
                common += 1
            out += f.meta() + b"\0" + _diff(common - shared) + path[common:] + b"\n"
            last, shared = path, common
        out += b"p\0" + _diff(-shared) + sp.record() + b"\n"
    return bytes(out)


def header(version: int = 1, magic: bytes = b"NIXI") -> bytes:
    return magic + version.to_bytes(8, "little")


def compress(records: bytes, frames: int = 1) -> bytes:
    """zstd-compress ``records``, split over ``frames`` independent frames (nix-index may write several)."""
    step = max(1, -(-len(records) // frames))
    cctx = zstandard.ZstdCompressor(level=3)
    return b"".join(cctx.compress(records[i : i + step]) for i in range(0, len(records), step))


def write_database(path: Path, store_paths: Iterable[FakeStorePath], *, frames: int = 1) -> Path:
    path.write_bytes(header() + compress(encode_records(store_paths), frames))
    return path


def tree(*paths: str, size: int = 100) -> tuple[FakeFile, ...]:
    """Shorthand file list: "dir/" is a directory, "a -> b" a symlink, "x:path" an executable."""
    files = [FakeFile("", "d", len(paths))]
    for p in paths:
        if " -> " in p:
            src, dst = p.split(" -> ")
            files.append(FakeFile(src, "s", target=dst))
        elif p.endswith("/"):
            files.append(FakeFile(p.rstrip("/"), "d", 1))
        elif p.startswith("x:"):
            files.append(FakeFile(p[2:], "x", size))
        else:
            files.append(FakeFile(p, "r", size))
    return tuple(files)

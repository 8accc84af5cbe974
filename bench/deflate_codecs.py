"""Compare deflate codecs for the three jobs wheelfix gives them, on real wheel members.

* **stream inflate** of a big member in 1 MiB output pieces (the scan: hash, spool, parse);
* **indexed inflate**: the same, but stopping at every deflate block boundary to record it (``inflate`` with
  ``Z_BLOCK`` through ctypes), which deflate splicing needs; zlib and zlib-ng only (ISA-L and libdeflate
  do not expose block boundaries);
* **whole-buffer inflate** of the small members (most members of a wheel are a few KiB);
* **deflate** of 1 MiB regions at level 6, primed with a 32 KiB dictionary (what splicing and the block-
  parallel writer compress).

Usage: ``python bench/deflate_codecs.py [--repeat N] [WHEEL]`` (default: the pinned torch wheel). Codecs whose
package is missing are listed as such. Results go to ``bench/results/codecs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/inspect.py would shadow the stdlib module: this directory goes last on the path
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE] + [str(HERE)]

from wheelfix.wheel import codecs as wf_codecs  # noqa: E402
from wheelfix.wheel.splice import inflate_indexed  # noqa: E402

_MiB = 1 << 20


def _raw(path: Path, info: zipfile.ZipInfo) -> bytes:
    with path.open("rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
        n, m = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
        f.seek(info.header_offset + 30 + n + m)
        return f.read(info.compress_size)


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _stream(make: Callable[[], object]) -> Callable[[bytes], int]:
    def run(raw: bytes) -> int:
        d = make()
        total = 0
        view = memoryview(raw)
        for i in range(0, len(raw), _MiB):
            total += len(d.decompress(view[i : i + _MiB]))  # type: ignore[attr-defined]
        return total + len(d.flush())  # type: ignore[attr-defined]

    return run


def _codecs() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {"zlib": {"module": zlib}}
    for name, mod in (("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng"), ("libdeflate", "deflate")):
        try:
            out[name] = {"module": __import__(mod, fromlist=["x"])}
        except ImportError:
            out[name] = {"module": None}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wheel", nargs="?", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.wheel is None:
        from _runner import manifest_wheels

        args.wheel = next(w for w in manifest_wheels("bench") if w.name.startswith("torch-"))
    with zipfile.ZipFile(args.wheel) as zf:
        infos = [i for i in zf.infolist() if i.compress_type == zipfile.ZIP_DEFLATED]
    big = max(infos, key=lambda i: i.file_size)
    small = [i for i in infos if i.file_size < 256 << 10]
    big_raw = _raw(args.wheel, big)
    small_raw = [(_raw(args.wheel, i), i.file_size) for i in small]
    plain = zlib.decompress(big_raw, -15)
    regions = [plain[o : o + _MiB] for o in range(len(plain) // 2, len(plain) // 2 + 8 * _MiB, _MiB)]
    codecs = _codecs()
    rows: list[dict[str, object]] = []

    def row(job: str, codec: str, seconds: float | None, mib: float, note: str = "") -> None:
        rows.append({"job": job, "codec": codec, "seconds": seconds, "MiB": round(mib, 1), "note": note})
        rate = f"{mib / seconds:8.0f} MiB/s" if seconds else "       n/a"
        print(f"{job:18} {codec:11} {seconds if seconds is not None else float('nan'):7.3f} s {rate}  {note}")

    big_mib = big.file_size / _MiB
    for name, c in codecs.items():
        mod = c["module"]
        if mod is None:
            row("stream inflate", name, None, big_mib, "package not installed")
            continue
        if name == "libdeflate":
            t = _median(lambda m=mod: m.deflate_decompress(big_raw, big.file_size), args.repeat)  # type: ignore[attr-defined]
            row("stream inflate", name, t, big_mib, "whole buffer (libdeflate cannot stream)")
            continue
        run = _stream(lambda m=mod: m.decompressobj(-15))  # type: ignore[attr-defined]
        row("stream inflate", name, _median(lambda r=run: r(big_raw), args.repeat), big_mib)

    for name in ("zlib", "zlib-ng"):
        lib = wf_codecs.indexed_library(name)
        if lib is None:
            row("indexed inflate", name, None, big_mib, "library not available")
            continue

        def indexed(lib_name: str = name) -> None:
            inflate_indexed(
                lambda o, n: big_raw[o : o + n], 0, len(big_raw), lambda chunk: None, library=lib_name
            )

        row("indexed inflate", name, _median(indexed, args.repeat), big_mib)

    small_mib = sum(n for _, n in small_raw) / _MiB
    for name, c in codecs.items():
        mod = c["module"]
        if mod is None:
            continue
        if name == "libdeflate":
            fn: Callable[[], object] = lambda m=mod: [m.deflate_decompress(r, n) for r, n in small_raw]  # type: ignore[attr-defined]  # noqa: E731
        else:
            fn = lambda m=mod: [m.decompress(r, -15) for r, _ in small_raw]  # type: ignore[attr-defined]  # noqa: E731
        row("small inflate", name, _median(fn, args.repeat), small_mib, f"{len(small_raw)} members")

    for name, c in codecs.items():
        mod = c["module"]
        if mod is None:
            continue
        if name == "libdeflate":
            row("deflate 1 MiB", name, None, 8, "no preset dictionary: cannot prime a region")
            continue
        if name == "isal":
            row("deflate 1 MiB", name, None, 8, "levels 0-3 only: not level 6")
            continue

        def comp(m: object = mod) -> int:
            total = 0
            for r in regions:
                co = m.compressobj(6, zlib.DEFLATED, -15, zdict=r[:32768])  # type: ignore[attr-defined]
                total += len(co.compress(r) + co.flush(zlib.Z_SYNC_FLUSH))
            return total

        row("deflate 1 MiB", name, _median(comp, args.repeat), 8, f"level 6, {comp()} bytes out")

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    meta = {"wheel": args.wheel.name, "big_member": big.filename, "cpus": os.cpu_count()}
    meta["repeat"] = args.repeat
    (out / "codecs.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

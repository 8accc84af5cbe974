"""Measure wheelfix's Mach-O reader, editor and ad-hoc signer against lief on the same files and edit.

The edit is what a repair does: the first non-system dependency of each slice to a /nix/store path, plus one
LC_RPATH. For both tools the output is checked: the names read back (with wheelfix's reader, which
tests/formats/test_macho.py holds to llvm-otool), every slice's signature verified page by page with hashlib,
and whether the bytes outside the load commands and the signature are untouched.

Times are in-process medians of ``--repeat`` runs (default 5). lief is timed parsing with its default
(deep) configuration and with ``ParserConfig.quick``, editing, and writing to bytes; it does not sign.

Usage: python bench/macho.py [--repeat N] [--top N] WHEEL_OR_MACHO...
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ is sys.path[0] and bench/inspect.py would shadow the stdlib module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from wheelfix.binfmt import BinaryFormatError, detect_format  # noqa: E402
from wheelfix.binfmt.macho.editor import MachOEditError, MachOEdits, edit_macho  # noqa: E402
from wheelfix.binfmt.macho.reader import MachOInfo, parse_macho  # noqa: E402

STORE = "/nix/store/7q5qkzm4jgavj5g6lrq2pi4wjhyzpbaw-dep-1.0/lib"
SYSTEM = ("/usr/lib/", "/System/Library/")


@dataclass
class Row:
    name: str
    size: int
    archs: str
    ours_parse_ms: float
    ours_edit_ms: float | None  # parse + edit + sign + self-check, None when refused
    ours_ok: str
    lief_parse_ms: float
    lief_quick_ms: float
    lief_edit_ms: float | None  # parse (deep) + edit + write
    lief_ok: str


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, result


def plan(info: MachOInfo) -> dict[str, MachOEdits]:
    edits = {}
    for sl in info.slices:
        dep = next((d.name for d in sl.dylibs if not d.name.startswith(SYSTEM)), None)
        changes = {dep: f"{STORE}/{dep.rsplit('/', 1)[-1]}"} if dep else {}
        edits[sl.arch] = MachOEdits(change_names=changes, add_rpaths=(STORE,))
    return edits


def signature_state(data: bytes) -> str:
    """'signed' when every signed slice's SHA-256 page hashes match its bytes, 'unsigned', or 'STALE'."""
    states = []
    for sl in parse_macho(data).slices:
        cs = sl.code_signature
        if cs is None:
            states.append("unsigned")
            continue
        body = data[sl.offset : sl.offset + sl.size]
        start = cs.dataoff
        _m, _l, count = struct.unpack_from(">III", body, start)
        good = True
        for i in range(count):
            slot, off = struct.unpack_from(">II", body, start + 12 + 8 * i)
            if slot != 0 and not 0x1000 <= slot < 0x1005:
                continue
            cd = start + off
            f = struct.unpack_from(">9I4B", body, cd)
            hash_off, n_code, limit, hash_size, hash_type, page = f[4], f[7], f[8], f[9], f[10], 1 << f[12]
            if hash_type != 2 or hash_size != 32:
                continue
            for k in range(n_code):
                at = cd + hash_off + 32 * k
                if body[at : at + 32] != hashlib.sha256(body[k * page : min((k + 1) * page, limit)]).digest():
                    good = False
                    break
        states.append("signed" if good else "STALE")
    return "+".join(sorted(set(states)))


def check(before: bytes, after: bytes, edits: dict[str, MachOEdits]) -> str:
    """What the edited file says; whether code and data (everything from the first section up to
    __LINKEDIT) are byte for byte the same; whether __LINKEDIT up to the signature is; the signatures."""
    old, new = parse_macho(before), parse_macho(after)
    problems = []
    notes = set()
    for a, b in zip(old.slices, new.slices, strict=True):
        e = edits[a.arch]
        if [d.name for d in b.dylibs] != [e.change_names.get(d.name, d.name) for d in a.dylibs]:
            problems.append("WRONG NAMES")
        if list(b.rpaths) != [*a.rpaths, STORE]:
            problems.append("WRONG RPATHS")
        la, lb = a.segment("__LINKEDIT"), b.segment("__LINKEDIT")
        if la is None or lb is None:
            continue
        start = a.load_commands_end + a.header_padding
        if (
            before[a.offset + start : a.offset + la.fileoff]
            != after[b.offset + start : b.offset + lb.fileoff]
        ):
            problems.append("CODE/DATA CHANGED")
        end_a = a.code_signature.dataoff if a.code_signature else a.size
        end_b = b.code_signature.dataoff if b.code_signature else b.size
        if (
            before[a.offset + la.fileoff : a.offset + end_a]
            != after[b.offset + lb.fileoff : b.offset + end_b]
        ):
            notes.add(f"__LINKEDIT rebuilt ({(end_b - lb.fileoff) - (end_a - la.fileoff):+d} B)")
    return ", ".join([*problems, *sorted(notes), signature_state(after)])


def measure(name: str, data: bytes, repeat: int) -> Row | None:
    import lief

    try:
        info = parse_macho(data)
    except BinaryFormatError as e:
        print(f"skip {name}: {e}", file=sys.stderr)
        return None
    edits = plan(info)
    parse_ms, _ = median_ms(lambda: parse_macho(data), repeat)
    try:
        edit_ms, ours = median_ms(lambda: edit_macho(data, edits, name=name), repeat)
        ours_ok = check(data, ours, edits)
    except MachOEditError as e:
        edit_ms, ours_ok = None, f"refused: {str(e).split(': ', 1)[-1]}"

    deep_ms, _ = median_ms(lambda: lief.MachO.parse(data), repeat)
    quick_ms, _ = median_ms(lambda: lief.MachO.parse(data, lief.MachO.ParserConfig.quick), repeat)

    def lief_edit() -> bytes:
        # the default (deep) parse: with ParserConfig.quick, lief writes empty rebase/bind opcodes back
        fat = lief.MachO.parse(data)
        for i in range(fat.size):
            b = fat.at(i)
            arch = info.slices[i].arch
            for old, new in edits[arch].change_names.items():
                for lib in b.libraries:
                    if lib.name == old and lib.command != lief.MachO.LoadCommand.TYPE.ID_DYLIB:
                        lib.name = new
            b.add(lief.MachO.RPathCommand.create(STORE))
        if fat.size == 1:
            return bytes(fat.at(0).write_to_bytes())
        out = Path("/tmp/wheelfix-bench-lief.out")
        fat.write(str(out))
        return out.read_bytes()

    try:
        lief_ms, theirs = median_ms(lief_edit, repeat)
        lief_ok = check(data, theirs, edits)
    except Exception as e:
        lief_ms, lief_ok = None, f"failed: {type(e).__name__}: {str(e)[:60]}"
    return Row(
        name,
        len(data),
        "+".join(info.archs),
        parse_ms,
        edit_ms,
        ours_ok,
        deep_ms,
        quick_ms,
        lief_ms,
        lief_ok,
    )


def members(paths: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for p in paths:
        path = Path(p)
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    data = zf.read(info)
                    if detect_format(data[:4096]) in ("macho", "macho-fat"):
                        out.append((f"{path.name.split('-')[0]}:{info.filename.rsplit('/', 1)[-1]}", data))
        else:
            out.append((path.name, path.read_bytes()))
    return out


def fmt(ms: float | None) -> str:
    return "—" if ms is None else f"{ms:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="rows for the largest files (totals cover all)")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    import lief

    lief.logging.disable()
    rows = [r for name, data in members(args.paths) if (r := measure(name, data, args.repeat)) is not None]
    rows.sort(key=lambda r: -r.size)
    print(f"lief {lief.__version__}, Python {sys.version.split()[0]}, median of {args.repeat} runs\n")
    print(
        "| file | MB | archs | wheelfix parse ms | wheelfix edit+sign ms | wheelfix result "
        "| lief parse ms (deep / quick) | lief edit+write ms | lief result |"
    )
    print("|---|---:|---|---:|---:|---|---:|---:|---|")
    for r in rows[: args.top]:
        print(
            f"| {r.name} | {r.size / 1e6:.2f} | {r.archs} | {r.ours_parse_ms:.2f} | {fmt(r.ours_edit_ms)} "
            f"| {r.ours_ok} | {r.lief_parse_ms:.1f} / {r.lief_quick_ms:.1f} | {fmt(r.lief_edit_ms)} "
            f"| {r.lief_ok} |"
        )
    both = [r for r in rows if r.ours_edit_ms is not None and r.lief_edit_ms is not None]
    total_mb = sum(r.size for r in rows) / 1e6
    deep, quick = sum(r.lief_parse_ms for r in rows), sum(r.lief_quick_ms for r in rows)
    ours_edit, lief_edit = sum(r.ours_edit_ms or 0 for r in both), sum(r.lief_edit_ms or 0 for r in both)
    print(
        f"\nall {len(rows)} files ({total_mb:.1f} MB): "
        f"wheelfix parse {sum(r.ours_parse_ms for r in rows):.0f} ms, "
        f"lief parse {deep:.0f} ms deep / {quick:.0f} ms quick; on the {len(both)} files both edited: "
        f"wheelfix edit+sign {ours_edit:.0f} ms, lief edit+write (no signing) {lief_edit:.0f} ms"
    )
    outcomes: dict[str, int] = {}
    for r in rows:
        for tool, result in (("wheelfix", r.ours_ok), ("lief", r.lief_ok)):
            key = f"{tool}: {re.sub(r' [(][+-]?[0-9]+ B[)]', '', result)}"
            key = re.sub(r"refused: .*", "refused: no room in the header padding", key)
            outcomes[key] = outcomes.get(key, 0) + 1
    for key, n in sorted(outcomes.items()):
        print(f"- {n} x {key}")


if __name__ == "__main__":
    main()

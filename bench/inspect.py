"""Benchmark ``wheelfix inspect --json`` against ``auditwheel show`` and a zip-inflate floor.

Usage: python bench/inspect.py [--repeat N] [--tools floor,auditwheel,wheelfix] [--wheel PATH ...]

Each tool runs in its own fresh process per measurement (see ``_runner``) on the manifest's
bench wheels (torch CPU, tensorflow-cpu) plus any ``--wheel``. The floor is the cheapest thing a
streaming inspector could do: open the wheel with ``zipfile`` and inflate every member in 1 MiB
chunks. Prints markdown tables and writes ``bench/results/inspect.json``.
"""

# ruff: noqa: E402
# (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

# Run as a script, this file's directory is sys.path[0], so this file would shadow the stdlib
# ``inspect`` module (``dataclasses`` imports it). Move the directory to the end: the stdlib
# wins and ``_runner`` is still importable.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _runner import (
    MIB,
    Summary,
    distribution_version,
    manifest_wheels,
    markdown_table,
    repeat_interleaved,
    warm_page_cache,
    write_results,
)

TOOLS = ("floor", "auditwheel", "wheelfix")
RSS_TARGET_MIB = 256  # target: peak RSS at most this, whatever the largest member
TARGET_X_FLOOR = 0.6  # target: wheelfix wall time at most this many times the floor's
TARGET_VS_AUDITWHEEL = 30.0  # target: auditwheel show at least this many times slower than wheelfix
FLOOR_CODE = """\
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    for info in zf.infolist():
        with zf.open(info) as fh:
            while fh.read(1 << 20):
                pass
"""


def command(tool: str, wheel: Path) -> list[str]:
    if tool == "floor":
        return [sys.executable, "-c", FLOOR_CODE, str(wheel)]
    if tool == "auditwheel":
        return [sys.executable, "-m", "auditwheel", "show", str(wheel)]
    return [sys.executable, "-m", "wheelfix", "inspect", "--json", str(wheel)]


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    size: int
    members: int
    largest_member: str
    largest_member_size: int

    @property
    def label(self) -> str:
        return "-".join(self.path.name.split("-")[:2])

    @property
    def rss_target_mib(self) -> float:
        return float(RSS_TARGET_MIB)


def wheel_info(path: Path) -> WheelInfo:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    largest = max(infos, key=lambda info: info.file_size)
    return WheelInfo(path, path.stat().st_size, len(infos), largest.filename, largest.file_size)


def _ratio(numerator: Summary | None, denominator: Summary | None) -> float | None:
    if numerator is None or denominator is None or not (numerator.ok and denominator.ok):
        return None
    return numerator.median_wall_s / denominator.median_wall_s


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[tuple[WheelInfo, dict[str, Summary]]]) -> str:
    timing_rows = []
    memory_rows = []
    for info, summaries in results:
        floor = summaries.get("floor")
        for tool, summary in summaries.items():
            failed = f"error (exit {summary.runs[-1].returncode})"
            timing_rows.append(
                [
                    info.label,
                    tool,
                    _fmt(summary.median_wall_s, ".2f") if summary.ok else failed,
                    _fmt(summary.peak_rss_mib, ".0f") if summary.ok else "-",
                    _fmt(_ratio(summary, floor), ".2f"),
                    _fmt(_ratio(summaries.get("auditwheel"), summary), ".2f") if tool == "wheelfix" else "",
                ]
            )
        wheelfix = summaries.get("wheelfix")
        wheelfix_rss = wheelfix.peak_rss_mib if wheelfix is not None and wheelfix.ok else None
        memory_rows.append(
            [
                info.label,
                f"{info.size / MIB:.0f}",
                str(info.members),
                info.largest_member,
                f"{info.largest_member_size / MIB:.0f}",
                f"{info.rss_target_mib:.0f}",
                _fmt(wheelfix_rss, ".0f"),
                "-" if wheelfix_rss is None else ("yes" if wheelfix_rss <= info.rss_target_mib else "NO"),
            ]
        )
    timing = markdown_table(
        ["wheel", "tool", "wall s (median)", "peak RSS MiB", "x floor", "auditwheel/wheelfix"], timing_rows
    )
    memory = markdown_table(
        [
            "wheel",
            "wheel MiB",
            "members",
            "largest member",
            "largest MiB (uncompressed)",
            "RSS target MiB",
            "wheelfix peak RSS MiB",
            "within target",
        ],
        memory_rows,
    )
    goals = markdown_table(["wheel", "target", "value", "goal", "met"], target_rows(results))
    return f"{timing}\n\n{memory}\n\n{goals}"


def target_rows(results: list[tuple[WheelInfo, dict[str, Summary]]]) -> list[list[str]]:
    """The issue's targets, per wheel: x floor, auditwheel / wheelfix, peak RSS."""
    rows = []
    for info, summaries in results:
        wheelfix = summaries.get("wheelfix")
        x_floor = _ratio(wheelfix, summaries.get("floor"))
        vs_aw = _ratio(summaries.get("auditwheel"), wheelfix)
        rss = wheelfix.peak_rss_mib if wheelfix is not None and wheelfix.ok else None
        for name, value, goal, met in (
            (
                "wheelfix / floor",
                x_floor,
                f"<= {TARGET_X_FLOOR}",
                x_floor is not None and x_floor <= TARGET_X_FLOOR,
            ),
            (
                "auditwheel / wheelfix",
                vs_aw,
                f">= {TARGET_VS_AUDITWHEEL:g}",
                vs_aw is not None and vs_aw >= TARGET_VS_AUDITWHEEL,
            ),
            ("wheelfix peak RSS MiB", rss, f"<= {RSS_TARGET_MIB}", rss is not None and rss <= RSS_TARGET_MIB),
        ):
            rows.append(
                [
                    info.label,
                    name,
                    _fmt(value, ".2f"),
                    goal,
                    "-" if value is None else ("yes" if met else "**no**"),
                ]
            )
    return rows


def to_json(results: list[tuple[WheelInfo, dict[str, Summary]]], repeat: int) -> dict[str, Any]:
    wheels = []
    for info, summaries in results:
        floor = summaries.get("floor")
        tools = {
            tool: {
                "command": command(tool, info.path),
                **summary.to_json(),
                "x_floor": _ratio(summary, floor),
            }
            for tool, summary in summaries.items()
        }
        wheels.append(
            {
                "wheel": info.path.name,
                "size_bytes": info.size,
                "members": info.members,
                "largest_member": {"name": info.largest_member, "size_bytes": info.largest_member_size},
                "rss_target_mib": round(info.rss_target_mib, 1),
                "tools": tools,
                "auditwheel_over_wheelfix": _ratio(summaries.get("auditwheel"), summaries.get("wheelfix")),
            }
        )
    return {
        "repeat": repeat,
        "statistic": "median wall time; peak RSS is the maximum over repeats",
        "versions": {
            name: distribution_version(name) for name in ("wheelfix", "auditwheel", "isal", "zlib-ng")
        },
        "inflater": _inflater(),
        "wheels": wheels,
    }


def _inflater() -> str:
    """The streaming inflater ``wheelfix inspect`` uses in this environment (isal, zlib-ng or zlib)."""
    try:
        from wheelfix.wheel import codecs
    except ImportError:
        return "unknown"
    return codecs.inflater_name()


def _tool_list(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or not tools:
        raise argparse.ArgumentTypeError(f"tools must be a comma list of {', '.join(TOOLS)}")
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark wheelfix inspect vs auditwheel show.")
    parser.add_argument("--wheel", type=Path, action="append", default=[], help="extra wheel (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool and wheel (default 3)")
    parser.add_argument("--tools", type=_tool_list, default=list(TOOLS), help="default: %(default)s")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/inspect.json)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    results = []
    for wheel in [*manifest_wheels("bench"), *args.wheel]:
        info = wheel_info(wheel)
        print(f"{info.path.name}: {args.repeat} x {', '.join(args.tools)}", file=sys.stderr, flush=True)
        warm_page_cache(wheel)
        commands = {tool: command(tool, wheel) for tool in args.tools}
        results.append((info, repeat_interleaved(commands, args.repeat)))

    print(report(results))
    path = write_results("inspect", to_json(results, args.repeat), args.output)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0 if all(s.ok for _, summaries in results for s in summaries.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

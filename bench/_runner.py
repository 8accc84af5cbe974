"""Shared benchmark plumbing: measured child processes, manifest wheels, tables and JSON output.

Every measurement is one fresh process for the tool, reaped with ``os.wait4``; wall time covers
the tool's interpreter start-up and ``ru_maxrss`` (KiB on Linux) is its peak resident set.

The tool is not forked from this (possibly large) benchmark process: Linux carries the forking
process's RSS high-water mark into the child's ``ru_maxrss`` across exec, so even ``/bin/true``
forked from a process holding 600 MiB reports 613 MiB. A minimal ``python -I -S`` launcher
(about 5 MiB) forks, execs and ``wait4``s the tool instead and reports the numbers back.
Sizes are reported in MiB.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
MIB = 1 << 20

# Runs in a fresh, tiny interpreter: fork, exec the tool (stdout to /dev/null), wait4 it, and
# print "wall_s ru_maxrss_kib exit_code" on the launcher's stdout.
_LAUNCHER = """\
import os, sys, time
argv = sys.argv[1:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"cannot run {argv[0]}: {exc}\\n".encode())
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
print(wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    wall_s: float
    peak_rss_kib: int
    returncode: int
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Run:
    """Run ``argv`` with stdout discarded; return its wall time, peak RSS and exit code."""
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: the tool can never block on it
        launcher = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=cwd,
            env=env,
            check=False,
        )
        stderr.seek(0)
        tail = stderr.read()[-4000:].decode("utf-8", errors="replace")
    try:
        wall, maxrss, returncode = launcher.stdout.decode().split()
    except ValueError:
        raise RuntimeError(
            f"launcher failed (exit {launcher.returncode}) for {list(argv)}:\n{tail}"
        ) from None
    return Run(wall_s=float(wall), peak_rss_kib=int(maxrss), returncode=int(returncode), stderr_tail=tail)


@dataclass(frozen=True)
class Summary:
    """The repeated runs of one tool on one input: median wall time, worst peak RSS."""

    runs: tuple[Run, ...]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(run.ok for run in self.runs)

    @property
    def median_wall_s(self) -> float:
        return statistics.median(run.wall_s for run in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        return max(run.peak_rss_kib for run in self.runs) / 1024

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "median_wall_s": round(self.median_wall_s, 4) if self.ok else None,
            "peak_rss_mib": round(self.peak_rss_mib, 1) if self.ok else None,
            "runs": [
                {k: v for k, v in asdict(run).items() if k != "stderr_tail" or not run.ok}
                for run in self.runs
            ],
        }


def repeat_interleaved(
    commands: Mapping[str, Sequence[str]], repeat: int, *, log: bool = True
) -> dict[str, Summary]:
    """Run each named command ``repeat`` times, round-robin so drift hits all tools alike.

    A command that fails is not repeated; its summary then has ``ok == False``.
    """
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for round_no in range(1, repeat + 1):
        for name, argv in commands.items():
            if runs[name] and not runs[name][-1].ok:
                continue
            run = run_measured(argv)
            runs[name].append(run)
            os.sync()  # outside the measurement: the next run should not pay for this one's writeback
            if log:
                status = "ok" if run.ok else f"FAILED (exit {run.returncode})"
                print(
                    f"  [{round_no}/{repeat}] {name}: {run.wall_s:.2f} s, "
                    f"{run.peak_rss_kib / 1024:.0f} MiB, {status}",
                    file=sys.stderr,
                    flush=True,
                )
                if not run.ok:
                    print(_indent(run.stderr_tail.strip()[-1500:]), file=sys.stderr, flush=True)
    return {name: Summary(tuple(r)) for name, r in runs.items()}


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once so that no tool pays for cold disk reads that the others do not."""
    with path.open("rb") as fh:
        while fh.read(16 * MIB):
            pass


def manifest_wheels(flag: str) -> list[Path]:
    """Fetch (or reuse from the cache) the manifest wheels marked with ``flag`` ("ci"/"bench")."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    try:
        from realwheels import fetch, load_manifest
    finally:
        sys.path.remove(str(REPO / "tests" / "support"))
    return [fetch(entry) for entry in load_manifest() if entry[flag]]


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write ``payload`` plus a timestamp and machine description to ``bench/results/NAME.json``."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **payload,
    }
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return target


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())

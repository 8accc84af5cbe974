"""Run the fuzz harnesses in ``harnesses.py`` for a time budget each.

    python fuzz/run.py --minutes 30                  # every harness, 30 minutes each, one after another
    python fuzz/run.py --minutes 5 elf macho         # some harnesses
    python fuzz/run.py --minutes 5 --jobs 2          # two harnesses at a time (one process each)

Hypothesis generates and shrinks the inputs; a harness runs in rounds of ``--examples`` examples until its
budget is spent. A failure (any exception a harness does not allow) is shrunk, written to
``bench/results/fuzz-findings/<harness>-<sha12>.bin`` with the traceback in ``.txt``, and ends that
harness. A summary (harness, minutes, executions, findings) is printed and written as JSON to ``--results``
(default ``bench/results/fuzz.json``; bench/results is gitignored). Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FINDINGS = HERE.parent / "bench" / "results" / "fuzz-findings"  # gitignored


def fuzz_one(
    name: str, seconds: float, examples: int, seed: int | None, max_gb: float = 2.0
) -> dict[str, Any]:
    # A runaway allocation must become a MemoryError (a finding), not the OOM killer on a shared machine:
    # an unguarded run of this harness set was OOM-killed at 24 GB.
    limit = int(max_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import harnesses
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    check, strategies = harnesses.HARNESSES[name]
    executions = 0
    last: dict[str, Any] = {}

    def body(**kwargs: Any) -> None:
        nonlocal executions, last
        executions += 1
        last = kwargs
        check(**kwargs)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(given(**strategies)(body))
    if seed is not None:
        test = hseed(seed)(test)
    start = time.monotonic()
    rounds = 0
    findings: list[dict[str, str]] = []
    while time.monotonic() - start < seconds:
        rounds += 1
        try:
            test()
        except Exception as exc:
            exc.__notes__ = []  # hypothesis' "Falsifying example" repr: the input is in the .bin file
            data = last.get("data", b"")
            digest = hashlib.sha256(data).hexdigest()[:12]
            FINDINGS.mkdir(parents=True, exist_ok=True)
            stem = FINDINGS / f"{name}-{digest}"
            stem.with_suffix(".bin").write_bytes(data)
            extra = {k: v for k, v in last.items() if k != "data"}
            stem.with_suffix(".txt").write_text(
                f"harness {name}, other arguments {extra!r}\n\n"
                + "".join(traceback.format_exception(type(exc), exc.with_traceback(exc.__traceback__), None)),
                encoding="utf-8",
            )
            findings.append(
                {"file": str(stem.with_suffix(".bin")), "error": f"{type(exc).__name__}: {exc}"[:500]}
            )
            break
    minutes = (time.monotonic() - start) / 60
    return {
        "harness": name,
        "minutes": round(minutes, 2),
        "executions": executions,
        "rounds": rounds,
        "findings": findings,
    }


def _worker(args: tuple[str, float, int, int | None, float]) -> dict[str, Any]:
    return fuzz_one(*args)


def main(argv: list[str] | None = None) -> int:
    import harnesses

    parser = argparse.ArgumentParser(description="Run the wheelfix fuzz harnesses for a time budget each.")
    parser.add_argument(
        "names", nargs="*", help=f"harnesses (default: all): {', '.join(harnesses.HARNESSES)}"
    )
    parser.add_argument("--minutes", type=float, default=1.0, help="budget per harness [1]")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at the same time [1]")
    parser.add_argument("--examples", type=int, default=2000, help="examples per hypothesis round [2000]")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproducible runs)")
    parser.add_argument("--max-gb", type=float, default=2.0, help="address-space limit per harness [2]")
    parser.add_argument("--results", type=Path, default=HERE.parent / "bench" / "results" / "fuzz.json")
    args = parser.parse_args(argv)
    names = args.names or list(harnesses.HARNESSES)
    unknown = sorted(set(names) - set(harnesses.HARNESSES))
    if unknown:
        parser.error(f"unknown harness: {', '.join(unknown)}")
    work = [(n, args.minutes * 60, args.examples, args.seed, args.max_gb) for n in names]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(_worker, work)
    else:
        results = [_worker(w) for w in work]
    print(f"{'harness':<14}{'minutes':>9}{'executions':>12}{'findings':>10}")
    for r in results:
        print(f"{r['harness']:<14}{r['minutes']:>9.1f}{r['executions']:>12}{len(r['findings']):>10}")
        for f in r["findings"]:
            print(f"    {f['file']}: {f['error']}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

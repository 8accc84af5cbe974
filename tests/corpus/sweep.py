"""Run inspect, check (every target) and a dry-run repair over every binary wheel in a set of directories (by
default the local wheel mirror pip is configured with), each in a fresh ``wheelfix`` process, and tally the
exit codes. The input policy says: exit 2 only for truly unsafe input, exit 3 never.

    python tests/corpus/sweep.py [DIR...] [--jobs N] [--json OUT] [--limit N]

Prints one line per wheel that got exit 2 or 3 (with wheelfix's first error line) and a table of exit codes
per command. Not a test: it takes an hour over the 7 GB mirror on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MIRRORS = (Path("/opt/pypi/files"), Path("/opt/pypi-more/files"), Path("/opt/wheels"))
TARGETS = ("nix", "manylinux_2_17", "manylinux_2_28", "manylinux_2_5")


def binary_wheels(dirs: list[Path]) -> list[Path]:
    """Wheels whose platform tag is not ``any`` (the ones that can carry binaries), sorted, once each."""
    seen: dict[str, Path] = {}
    for d in dirs:
        for w in sorted(d.glob("*.whl")):
            if not w.name.endswith("-any.whl"):
                seen.setdefault(w.name, w)
    return sorted(seen.values())


def commands(wheel: Path, out: Path) -> dict[str, list[str]]:
    cmds = {"inspect": ["inspect", "--json", str(wheel)]}
    cmds.update({f"check:{t}": ["check", "--target", t, "--format", "json", str(wheel)] for t in TARGETS})
    cmds["repair --dry-run"] = ["repair", "--dry-run", "--allow", "*", "-o", str(out), str(wheel)]
    return cmds


def run_one(wheel: Path) -> dict[str, tuple[int, str]]:
    results: dict[str, tuple[int, str]] = {}
    with tempfile.TemporaryDirectory(prefix="wheelfix-sweep-") as tmp:
        for name, args in commands(wheel, Path(tmp) / "out").items():
            proc = subprocess.run(
                [sys.executable, "-m", "wheelfix", *args], capture_output=True, text=True, check=False
            )
            first = next((line for line in proc.stderr.splitlines() if "error" in line), "")
            results[name] = (proc.returncode, first)
            if name == "inspect" and proc.returncode == 2:
                break  # bad input is bad input for every command
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[d for d in MIRRORS if d.is_dir()])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    wheels = binary_wheels(args.dirs)
    if args.limit:
        wheels = wheels[: args.limit]
    print(f"{len(wheels)} binary wheels in {', '.join(map(str, args.dirs))}", flush=True)
    tally: dict[str, Counter[int]] = {}
    report: dict[str, dict[str, tuple[int, str]]] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for wheel, results in zip(wheels, pool.map(run_one, wheels), strict=True):
            report[wheel.name] = results
            for name, (code, first) in results.items():
                tally.setdefault(name, Counter())[code] += 1
                if code >= 2:
                    print(f"{name}: exit {code}: {wheel.name}: {first}", flush=True)
    print(f"\n{'command':<22} " + " ".join(f"exit {c:<4}" for c in range(5)))
    for name, counts in tally.items():
        print(f"{name:<22} " + " ".join(f"{counts.get(c, 0):<9}" for c in range(5)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if any(counts.get(3) for counts in tally.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the whole Nix route of a prebuilt wheel: wheelfix's hook against nixpkgs' autoPatchelfHook.

Usage: python bench/nix_route.py [--sets torch,ordinary | --wheels WHEEL...] [--runs N] [--output PATH]

What a wheel-based derivation does from "the wheel is in dist/" to "$out is fixed up", three ways:

* ``hook`` (nix/hook.sh's wheelfixPhase, then pypaInstallHook): ``wheelfix repair -v WHEEL -o DIR
  --lib-path LIBDIR... --interpreter LOADER`` (as ``wheelfixRepairWheels`` runs it), then ``python -m
  installer --prefix OUT DIR/WHEEL``.
* ``inplace`` (the other hook design: pypaInstallHook, then wheelfix on the installed tree): ``python -m
  installer --prefix OUT WHEEL``, then ``wheelfix repair -v --in-place OUT --lib-path LIBDIR... --interpreter
  LOADER``.
* ``autopatchelf`` (pypaInstallHook, then autoPatchelfHook in postFixup): ``python -m installer --prefix OUT
  WHEEL``, then nixpkgs' auto-patchelf.py over OUT with the arguments auto-patchelf.sh gives it (see
  repair.py's ``auto_patchelf_argv``).

OUT stands for ``$out``: installer runs as pypaInstallHook runs it (``--prefix "$out"``, bytecode compiled at
its default levels unless ``--no-compile-bytecode``). Both routes get the same library directories (the fake
store of repair.py: Debian's libstdc++/libgcc_s/libgomp/libz, each added with ``nix-store --add``; or
``--lib-path``), the same loader (a fake ``$NIX_BINTOOLS`` whose ``nix-support/dynamic-linker`` is
``--interpreter``; the hook passes that to wheelfix, auto-patchelf reads it), the same ignore globs
(``--allow``: wheelfixIgnoreMissing / autoPatchelfIgnoreMissingDeps), this Python (wheelfix, installer and
pyelftools installed in it) and the PyPI patchelf next to it, first on PATH.

Each run of a route is one fresh process tree: a tiny driver (``python -I -S``, like the bash of a build)
runs the two phases one after the other and times each (wall, ``ru_maxrss``). The tree is measured as in
repair.py: wall time, and peak RSS of the whole tree (the sum over its processes, sampled every
``--sample-ms``, never below the largest single process). Runs are interleaved: round after round, every
wheel, both routes. Between runs the outputs are removed and dirty pages written back (``sync``), outside the
measurement.

Sets: ``torch`` (the manifest's torch CPU wheel) and ``ordinary`` (ORDINARY below, 10 manifest wheels), or
one set of ``--wheels``. A set's time is, per round, the sum over its wheels; the median over rounds is
reported, for the whole route and for each phase. Peak RSS is the maximum over its wheels and runs. Target per
set: autopatchelf time / hook time >= 1.5. After the first round each installed tree is checked (unless
``--no-verify``) with repair.py's ``check_tree``: every ELF that needs a library of the lib dirs finds it
through its own RUNPATH/RPATH (``$ORIGIN`` expanded): in its store directory, or a copy the wheel ships (torch
bundles libgomp.so.1, and both routes point at that); every PT_INTERP is the loader. Prints markdown tables;
writes ``bench/results/nix_route.json``.
"""

# ruff: noqa: E402
# (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

# As in repair.py: this file's directory must not shadow the stdlib ``inspect`` module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import importlib.util
import json
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _runner import MIB, Summary, distribution_version, markdown_table, warm_page_cache, write_results
from repair import (
    HOST_LOADER,
    TreeCheck,
    TreeRun,
    _default_wheel,
    auto_patchelf_argv,
    auto_patchelf_env,
    auto_patchelf_info,
    check_tree,
    fake_bintools,
    fake_store,
    find_auto_patchelf,
    find_patchelf,
    remove,
    run_tree_measured,
)

ROUTES = {
    "hook": ("repair", "install"),
    "inplace": ("install", "repair"),
    "autopatchelf": ("install", "autopatchelf"),
}
TARGET_RATIO = 1.5  # autopatchelf time / hook time, per set
SETS = ("torch", "ordinary")

# The 10 ordinary wheels: the manifest's Linux x86_64 wheels whose ELFs need what the fake store provides
# (libstdc++, libgcc_s, libz; none of them needs libgomp) or the loader, plus lxml, the control that needs
# only glibc (both routes still read all of it). Left out of the manifest's Linux wheels: pyyaml, soundfile,
# glfw and patchelf (nothing to patch, under 1.3 MB each) and the bench-only tensorflow-cpu.
ORDINARY = {
    "numpy": "3 of 22 ELFs: libgcc_s, libstdc++, libz; bundled OpenBLAS/libgfortran via $ORIGIN RPATH",
    "pillow": "5 of 26 ELFs: libz (4 bundled codec libs), libstdc++/libgcc_s",
    "cryptography": "1 Rust ELF needing libgcc_s, no search path yet",
    "psycopg2-binary": "2 of 16 ELFs need libz; bundled libpq/openssl/krb5 chained via $ORIGIN RPATH",
    "scipy": "35 of 114 ELFs: libstdc++/libgcc_s/libz; bundled gfortran/openblas (34 MB)",
    "opencv-python-headless": "9 of 16 ELFs: libz, libstdc++, libgcc_s; largest ordinary wheel (60 MB)",
    "ninja": "an executable in .data/scripts: PT_INTERP plus libstdc++/libgcc_s",
    "pyarrow": "all 38 ELFs need libstdc++/libgcc_s, DT_RUNPATH $ORIGIN (53 MB)",
    "cmake": "3 executables under the package dir: PT_INTERP plus libstdc++/libgcc_s (30 MB)",
    "lxml": "control: 7 ELFs that need only glibc, nothing to patch",
}

# Runs the phases of one route in sequence, like the bash of a build: for each ``--phase=NAME CMD...``
# fork, exec, wait4; stop at the first failure. Writes [{phase, wall_s, max_rss_kib, returncode}] as JSON
# to argv[1] and exits with the last phase's exit code.
_DRIVER = """\
import json, os, sys, time
path, phases = sys.argv[1], []
for arg in sys.argv[2:]:
    if arg.startswith("--phase="):
        phases.append((arg[8:], []))
    else:
        phases[-1][1].append(arg)
done, code = [], 0
for name, argv in phases:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]}: {exc}\\n".encode())
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    done.append({"phase": name, "wall_s": wall, "max_rss_kib": usage.ru_maxrss, "returncode": code})
    if code != 0:
        break
with open(path, "w") as fh:
    json.dump(done, fh)
sys.exit(1 if code < 0 else code)
"""


@dataclass(frozen=True)
class Setup:
    """What both routes are given."""

    lib_dirs: tuple[str, ...]
    allow: tuple[str, ...]
    interpreter: str
    auto_patchelf: Path
    compile_bytecode: bool
    env: Mapping[str, str]


@dataclass(frozen=True)
class RouteRun:
    """One measured run of a route on a wheel: the whole tree, and each phase as the driver timed it."""

    tree: TreeRun
    phases: tuple[dict[str, Any], ...]

    def phase_wall(self, name: str) -> float | None:
        return next((p["wall_s"] for p in self.phases if p["phase"] == name and p["returncode"] == 0), None)


def _wheelfix_repair(setup: Setup, *target: str) -> list[str]:
    """``wheelfix repair -v TARGET...`` with the library directories, ignore globs and loader both routes get
    (as ``wheelfixRepairWheels`` runs it)."""
    argv = [sys.executable, "-m", "wheelfix", "repair", "-v", *target]
    argv += [a for d in setup.lib_dirs for a in ("--lib-path", d)]
    argv += [a for g in setup.allow for a in ("--allow", g)]
    return [*argv, "--interpreter", setup.interpreter]


def phases(route: str, wheel: Path, out: Path, dist: Path, setup: Setup) -> list[tuple[str, list[str]]]:
    """The commands of ``route`` on ``wheel``, installing into ``out`` (``dist``: where repair writes)."""
    install = [sys.executable, "-m", "installer", "--prefix", str(out)]
    install += [] if setup.compile_bytecode else ["--no-compile-bytecode"]
    if route == "hook":
        repair = _wheelfix_repair(setup, str(wheel), "-o", str(dist))
        return [("repair", repair), ("install", [*install, str(dist / wheel.name)])]
    if route == "inplace":
        return [
            ("install", [*install, str(wheel)]),
            ("repair", _wheelfix_repair(setup, "--in-place", str(out))),
        ]
    fix = auto_patchelf_argv(setup.auto_patchelf, [out], setup.lib_dirs, setup.allow)
    return [("install", [*install, str(wheel)]), ("autopatchelf", fix)]


def run_route(
    route: str, wheel: Path, work: Path, setup: Setup, sample_s: float, verify: bool
) -> tuple[RouteRun, TreeCheck | None]:
    """One fresh process tree for ``route`` on ``wheel``; its installed tree checked if ``verify``, then
    removed."""
    out, dist, timings = work / route / "out", work / route / "dist", work / route / "phases.json"
    dist.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-I", "-S", "-c", _DRIVER, str(timings)]
    for name, cmd in phases(route, wheel, out, dist, setup):
        argv += [f"--phase={name}", *cmd]
    tree = run_tree_measured(argv, sample_s, setup.env)
    done = tuple(json.loads(timings.read_text(encoding="utf-8"))) if timings.is_file() else ()
    check = check_tree(out, setup.lib_dirs, setup.interpreter) if verify and tree.ok else None
    for path in (out, dist, timings):
        remove(path)
    os.sync()  # the next run should not pay for writing back this one's files
    return RouteRun(tree, done), check


def measure(
    wheels: Sequence[Path], work: Path, setup: Setup, runs: int, sample_s: float, verify: bool
) -> tuple[dict[str, dict[str, list[RouteRun]]], dict[str, dict[str, TreeCheck]]]:
    """Round-robin over rounds, wheels and routes; a route that fails on a wheel is not run on it again."""
    results: dict[str, dict[str, list[RouteRun]]] = {w.name: {r: [] for r in ROUTES} for w in wheels}
    checks: dict[str, dict[str, TreeCheck]] = {w.name: {} for w in wheels}
    for round_no in range(1, runs + 1):
        for wheel in wheels:
            for route in ROUTES:
                done = results[wheel.name][route]
                if done and not done[-1].tree.ok:
                    continue
                run, check = run_route(route, wheel, work, setup, sample_s, verify and round_no == 1)
                done.append(run)
                phase_text = ", ".join(f"{p['phase']} {p['wall_s']:.2f} s" for p in run.phases)
                status = "ok" if run.tree.ok else f"FAILED (exit {run.tree.returncode})"
                print(
                    f"  [{round_no}/{runs}] {wheel.name[:40]} {route}: {run.tree.wall_s:.2f} s "
                    f"({phase_text}), {run.tree.peak_rss_kib / 1024:.0f} MiB, {status}",
                    file=sys.stderr,
                    flush=True,
                )
                if not run.tree.ok:
                    print(run.tree.stderr_tail.strip()[-1500:], file=sys.stderr, flush=True)
                if check is not None:
                    checks[wheel.name][route] = check
                    for problem in check.problems[:10]:
                        print(f"    wrong output: {problem}", file=sys.stderr, flush=True)
    return results, checks


# --- summarising ----------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if values and len(present) == len(values) else None


def set_totals(names: Sequence[str], results: Mapping[str, Mapping[str, list[RouteRun]]]) -> dict[str, Any]:
    """Per route: per round the sum over the set's wheels (None when a run failed), and the medians."""
    totals: dict[str, Any] = {}
    for route, phase_names in ROUTES.items():
        per_wheel = [results[name][route] for name in names]
        ok = all(runs and all(r.tree.ok for r in runs) for runs in per_wheel)
        rounds = min(len(runs) for runs in per_wheel) if ok else 0
        walls = [sum(runs[i].tree.wall_s for runs in per_wheel) for i in range(rounds)]
        phase_sums = {
            p: [_sum([runs[i].phase_wall(p) for runs in per_wheel]) for i in range(rounds)]
            for p in phase_names
        }
        trees = [r.tree for runs in per_wheel for r in runs]
        totals[route] = {
            "ok": ok,
            "median_wall_s": _median(walls),
            "round_wall_s": walls,
            "phases_median_s": {p: _median(v) for p, v in phase_sums.items()},
            "peak_rss_mib": max(t.peak_rss_kib for t in trees) / 1024 if ok else None,
            "largest_process_mib": max(t.max_process_rss_kib for t in trees) / 1024 if ok else None,
            "phases_largest_process_mib": {
                p: max(_phase_rss(per_wheel, p)) if ok else None for p in phase_names
            },
        }
    return totals


def _sum(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if len(present) == len(values) else None


def _phase_rss(per_wheel: Sequence[Sequence[RouteRun]], phase: str) -> list[float]:
    return [
        p["max_rss_kib"] / 1024 for runs in per_wheel for r in runs for p in r.phases if p["phase"] == phase
    ]


def ratio(totals: Mapping[str, Any], route: str = "hook") -> float | None:
    """autopatchelf's time over ``route``'s."""
    ours, autopatchelf = totals[route]["median_wall_s"], totals["autopatchelf"]["median_wall_s"]
    return None if ours is None or autopatchelf is None else autopatchelf / ours


# --- reporting ------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _check_text(checks: Sequence[TreeCheck | None]) -> str:
    if not checks or any(c is None for c in checks):
        return "not checked"
    problems = sum(len(c.problems) for c in checks if c is not None)
    linked = sum(c.linked for c in checks if c is not None)
    elfs = sum(c.elfs for c in checks if c is not None)
    return f"{problems} problems" if problems else f"ok ({linked} of {elfs} ELFs linked to the store)"


def set_report(
    name: str,
    wheels: Sequence[Path],
    totals: Mapping[str, Any],
    checks: Mapping[str, Mapping[str, TreeCheck]],
    runs: int,
) -> str:
    size = sum(w.stat().st_size for w in wheels)
    head = f"Set {name}: {len(wheels)} wheel(s), {size / MIB:.0f} MiB; per round the sum, median of {runs}"
    hook_s = totals["hook"]["median_wall_s"]
    rows = []
    for route, t in totals.items():
        phase_text = " + ".join(f"{p} {_fmt(s, '.2f')}" for p, s in t["phases_median_s"].items())
        rows.append(
            [
                route,
                _fmt(t["median_wall_s"], ".2f") if t["ok"] else "error",
                phase_text,
                _fmt(t["peak_rss_mib"], ".0f"),
                _fmt(t["largest_process_mib"], ".0f"),
                _fmt(
                    None if hook_s is None or t["median_wall_s"] is None else t["median_wall_s"] / hook_s,
                    ".2f",
                ),
                _check_text([checks[w.name].get(route) for w in wheels]),
            ]
        )
    table = markdown_table(
        ["route", "wall s", "phases s", "peak RSS MiB (tree)", "largest process MiB", "x hook", "installed"],
        rows,
    )
    return f"{head}\n\n{table}"


def wheel_rows(wheels: Sequence[Path], results: Mapping[str, Mapping[str, list[RouteRun]]]) -> str:
    rows = []
    for wheel in wheels:
        per = {}
        for route, phase_names in ROUTES.items():
            runs = results[wheel.name][route]
            ok = bool(runs) and all(r.tree.ok for r in runs)
            per[route] = (
                _median([r.tree.wall_s for r in runs]) if ok else None,
                [_median([r.phase_wall(p) for r in runs]) if ok else None for p in phase_names],
            )
        hook, inplace, ap = per["hook"][0], per["inplace"][0], per["autopatchelf"][0]
        rows.append(
            [
                wheel.name.split("-")[0],
                f"{wheel.stat().st_size / MIB:.1f}",
                _fmt(hook, ".2f"),
                " + ".join(_fmt(s, ".2f") for s in per["hook"][1]),
                _fmt(inplace, ".2f"),
                " + ".join(_fmt(s, ".2f") for s in per["inplace"][1]),
                _fmt(ap, ".2f"),
                " + ".join(_fmt(s, ".2f") for s in per["autopatchelf"][1]),
                _fmt(None if hook is None or ap is None else ap / hook, ".2f"),
                _fmt(None if inplace is None or ap is None else ap / inplace, ".2f"),
            ]
        )
    return markdown_table(
        [
            "wheel",
            "MiB",
            "hook s",
            "repair + install",
            "inplace s",
            "install + repair",
            "autopatchelf s",
            "install + autopatchelf",
            "ap / hook",
            "ap / inplace",
        ],
        rows,
    )


def targets(sets: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for name, totals in sets.items():
        for route in ("hook", "inplace"):
            value = ratio(totals, route)
            result.append(
                {
                    "target": f"autopatchelf time / {route} time ({name})",
                    "value": value,
                    "goal": f">= {TARGET_RATIO:g}",
                    "met": None if value is None else value >= TARGET_RATIO,
                }
            )
    return result


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def wheel_json(
    wheel: Path,
    results: Mapping[str, list[RouteRun]],
    checks: Mapping[str, TreeCheck],
    work: Path,
    setup: Setup,
) -> dict[str, Any]:
    routes = {}
    for route, phase_names in ROUTES.items():
        runs = results[route]
        summary = Summary(tuple(r.tree for r in runs))
        commands = phases(route, wheel, work / route / "out", work / route / "dist", setup)
        routes[route] = {
            **summary.to_json(),
            "phases_median_s": {p: _median([r.phase_wall(p) for r in runs]) for p in phase_names},
            "phase_runs": [list(r.phases) for r in runs],
            "commands": {name: cmd for name, cmd in commands},
            "check": checks[route].to_json() if route in checks else None,
        }
    return {"size_bytes": wheel.stat().st_size, "routes": routes}


# --- main -----------------------------------------------------------------------------------------


def _manifest(names: Sequence[str]) -> list[Path]:
    sys.path.insert(0, str(Path(_HERE).parent / "tests" / "support"))
    try:
        from realwheels import fetch, load_manifest
    finally:
        sys.path.pop(0)
    entries = {e["name"]: e for e in load_manifest()}
    missing = [n for n in names if n not in entries]
    if missing:
        raise SystemExit(f"bench/nix_route.py: not in the manifest: {', '.join(missing)}")
    return [Path(fetch(entries[n])) for n in names]


def _sets(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or set(names) - set(SETS):
        raise argparse.ArgumentTypeError(f"sets must be a comma list of {', '.join(SETS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the Nix route: wheelfix hook vs autoPatchelfHook."
    )
    parser.add_argument("--sets", type=_sets, default=list(SETS), help="default: torch,ordinary")
    parser.add_argument("--wheels", type=Path, nargs="+", help="one set of these wheels instead of --sets")
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--lib-path", action="append", default=[], help="store lib dir (repeatable; default: a fake store)"
    )
    parser.add_argument(
        "--allow", action="append", default=[], metavar="GLOB", help="needs both routes may leave unresolved"
    )
    parser.add_argument("--interpreter", default=HOST_LOADER, help="the loader (default: %(default)s)")
    parser.add_argument("--auto-patchelf", type=Path, help="nixpkgs' auto-patchelf.py (see repair.py)")
    parser.add_argument("--patchelf", help="patchelf for auto-patchelf (default: next to this Python)")
    parser.add_argument(
        "--no-compile-bytecode", action="store_true", help="passed to installer in both routes"
    )
    parser.add_argument("--sample-ms", type=float, default=20.0, help="RSS sampling interval (default 20)")
    parser.add_argument("--workdir", type=Path, help="where the installed trees go (default: a temp dir)")
    parser.add_argument("--no-verify", action="store_true", help="do not check the first round's trees")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/nix_route.json)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if importlib.util.find_spec("installer") is None:
        raise SystemExit("bench/nix_route.py: installer is not installed here (pip install installer)")
    script = find_auto_patchelf(args.auto_patchelf)
    patchelf = args.patchelf or find_patchelf()
    if args.wheels:
        sets = {"custom": [w.resolve() for w in args.wheels]}
    else:
        sets = {
            name: [_default_wheel().resolve()] if name == "torch" else _manifest(list(ORDINARY))
            for name in args.sets
        }
    wheels = list({w: None for ws in sets.values() for w in ws})

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="wheelfix-bench-nix-route-") as tmp:
        work = Path(tmp)
        lib_dirs = args.lib_path or fake_store(work / "store-src")
        bintools = fake_bintools(work, args.interpreter)
        setup = Setup(
            lib_dirs=tuple(lib_dirs),
            allow=tuple(args.allow),
            interpreter=args.interpreter,
            auto_patchelf=script,
            compile_bytecode=not args.no_compile_bytecode,
            env=auto_patchelf_env(bintools, patchelf),
        )
        print(
            f"{len(wheels)} wheel(s) in {', '.join(sets)}; {args.runs} round(s) x {', '.join(ROUTES)}",
            file=sys.stderr,
            flush=True,
        )
        for wheel in wheels:
            warm_page_cache(wheel)
        results, checks = measure(
            wheels, work / "run", setup, args.runs, args.sample_ms / 1000, not args.no_verify
        )
        totals = {name: set_totals([w.name for w in ws], results) for name, ws in sets.items()}
        for name, ws in sets.items():
            print(set_report(name, ws, totals[name], checks, args.runs) + "\n")
            if len(ws) > 1:
                print(wheel_rows(ws, results) + "\n")
        goals = targets(totals)
        print(
            markdown_table(
                ["target", "value", "goal", "met"],
                [
                    [
                        t["target"],
                        _fmt(t["value"], ".2f"),
                        t["goal"],
                        "-" if t["met"] is None else "yes" if t["met"] else "NO",
                    ]
                    for t in goals
                ],
            )
        )
        payload = {
            "runs": args.runs,
            "statistic": "per set: median over rounds of the sum over its wheels (wall, and per phase); "
            "peak RSS of the process tree (sampled, >= ru_maxrss), max over wheels and runs",
            "sample_ms": args.sample_ms,
            "compile_bytecode": setup.compile_bytecode,
            "versions": {
                n: distribution_version(n) for n in ("wheelfix", "installer", "patchelf", "pyelftools")
            },
            "python": sys.executable,
            "auto_patchelf": auto_patchelf_info(script),
            "interpreter": args.interpreter,
            "lib_paths": list(lib_dirs),
            "allow": list(args.allow),
            "routes": {route: list(p) for route, p in ROUTES.items()},
            "sets": {
                name: {
                    "wheels": [w.name for w in ws],
                    "totals": totals[name],
                    "ratio": ratio(totals[name]),
                    "ratio_inplace": ratio(totals[name], "inplace"),
                }
                for name, ws in sets.items()
            },
            "ordinary_why": ORDINARY if "ordinary" in sets else None,
            "wheels": {
                w.name: wheel_json(w, results[w.name], checks[w.name], work / "run", setup) for w in wheels
            },
            "targets": goals,
        }
        path = write_results("nix_route", _round(payload), args.output)
    print(f"\nwrote {path}", file=sys.stderr)
    ok = all(t["ok"] for totals_ in totals.values() for t in totals_.values())
    ok = ok and not any(c.problems for per in checks.values() for c in per.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

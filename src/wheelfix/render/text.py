"""Human-readable reports."""

from __future__ import annotations

from collections.abc import Sequence

from wheelfix.analysis.check import CheckResult, Finding, Severity, WheelVerdict, consistent_with, wheel_libc
from wheelfix.analysis.model import Analysis, Library, Outcome, WheelAnalysis
from wheelfix.analysis.policy import is_musl_libc
from wheelfix.repair.plan import WheelPlan

__all__ = ["render_check", "render_inspect", "render_missing", "render_plan"]

_LABEL = {
    Outcome.UNRESOLVED: "UNRESOLVED",
    Outcome.MANYLINUX: "system",
    Outcome.OTHER_WHEEL: "other wheel",
    Outcome.BUNDLED: "bundled",
    Outcome.GPU_DRIVER: "gpu driver",
    Outcome.PYTHON: "python",
    Outcome.GLIBC: "glibc",
    Outcome.MACOS_SYSTEM: "macos",
    Outcome.NIX_STORE: "nix store",
}
_MAX_MEMBERS = 4


def _members(members: tuple[str, ...]) -> str:
    shown = ", ".join(members[:_MAX_MEMBERS])
    more = len(members) - _MAX_MEMBERS
    return f"{shown} (+{more} more)" if more > 0 else shown


def _label(lib: Library) -> str:
    if lib.outcome is Outcome.UNRESOLVED and is_musl_libc(lib.soname):
        return "musl libc"
    return _LABEL[lib.outcome]


def _where(lib: Library) -> str:
    r = lib.resolution
    if lib.outcome is Outcome.UNRESOLVED and is_musl_libc(lib.soname):
        return "musl's C library: a musllinux binary, for a musl-based Python (Alpine), not a glibc one"
    if lib.outcome in (Outcome.BUNDLED, Outcome.OTHER_WHEEL):
        place = r.member if lib.outcome is Outcome.BUNDLED else f"{r.member} in {r.wheel}"
        if not r.reachable:
            return f"{place} -- NOT on the search path: loads only if already loaded"
        return f"{place} via {r.via}"
    return r.detail


def _library_lines(lib: Library, indent: str) -> list[str]:
    return [
        f"{indent}{_label(lib):<11} {lib.soname}: {_where(lib)}",
        f"{indent}{'':<11}   needed by {_members(lib.needed_by)}",
    ]


def _platform_line(w: WheelAnalysis) -> str | None:
    libc = wheel_libc(w)
    if libc == "musl":
        return (
            "  musllinux wheel: its binaries link musl's C library; they load only into a musl-based Python "
            "(Alpine), not into a glibc one such as nixpkgs'"
        )
    if libc is None:
        return None
    return f"  binaries consistent with {consistent_with(w) or 'no manylinux tag'}"


def _wheel(w: WheelAnalysis, verbose: bool) -> list[str]:
    meta = w.scan.meta
    libs = w.libraries()
    macho = f", {len(w.macho)} Mach-O binaries" if w.macho else ""
    lines = [
        f"{meta.filename}",
        f"  {meta.name} {meta.version}; tags {', '.join(meta.platform_tags)}; "
        f"{w.scan.member_count} members, {len(w.elf)} ELF binaries{macho}, {len(libs)} libraries needed",
    ]
    platform = _platform_line(w)
    if platform:
        lines.append(platform)
    hints = [lib for lib in libs if not lib.required]
    for lib in libs:
        if lib.required:
            lines.extend(_library_lines(lib, "  "))
    for u in w.scan.unsupported:
        lines.append(f"  {'unsupported':<11} {u.member}: {u.format} binary, not analysed")
    if hints:
        lines.append(f"  dlopen hints ({len(hints)}; not required: loaded only if the code asks for them):")
        for lib in hints:
            lines.extend(_library_lines(lib, "    "))
    if verbose:
        for b in w.elf:
            elf = b.binary.elf
            lines.append(f"  [{b.kind}] {b.binary.member} ({elf.machine}, {elf.type})")
            if elf.interpreter:
                lines.append(f"      interpreter: {elf.interpreter}")
            if elf.soname:
                lines.append(f"      soname: {elf.soname}")
            for label, value in (("rpath", elf.rpath), ("runpath", elf.runpath)):
                if value is not None:
                    lines.append(f"      {label}: {value}")
            for n in b.needs:
                lines.append(f"      {n.source.value:<13} {n.soname}: {_LABEL[n.resolution.outcome]}")
            versions = elf.symbol_versions()
            if versions:
                lines.append("      symbol versions: " + ", ".join(versions.values()))
        for m in w.macho:
            lines.append(
                f"  [{m.kind}] {m.binary.member} ({m.binary.format}, {', '.join(m.binary.macho.archs)})"
            )
            for sl, view in zip(m.binary.macho.slices, m.slices, strict=True):
                signed = "signed" if sl.code_signature is not None else "unsigned"
                lines.append(
                    f"    {sl.arch}: {sl.filetype}, minos {sl.minos or '?'}, {signed}, "
                    f"{sl.header_padding} bytes header padding"
                )
                if sl.id_dylib is not None:
                    lines.append(f"      id: {sl.id_dylib.name}")
                for rp in sl.rpaths:
                    lines.append(f"      rpath: {rp}")
                for n in view.needs:
                    weak = "" if n.required else " (weak)"
                    lines.append(f"      {n.soname}{weak}: {_LABEL[n.resolution.outcome]}")
    return lines


def render_inspect(analysis: Analysis, *, verbose: bool = False) -> str:
    blocks = ["\n".join(_wheel(w, verbose)) for w in analysis.wheels]
    return "\n\n".join(blocks) + "\n"


def _finding_lines(f: Finding) -> list[str]:
    lines = [f"  {f.severity}: [{f.code}] {f.message}"]
    if f.members:
        lines.append(f"      binaries: {_members(f.members)}")
    return lines


def _verdict_line(v: WheelVerdict, findings: Sequence[Finding], target: str) -> str:
    errors = sum(1 for f in findings if f.severity is Severity.ERROR)
    if target == "nix":
        what = "musllinux" if v.libc == "musl" else ", ".join(v.platform_tags)
    elif v.libc == "musl":
        what = f"musllinux, consistent with {v.consistent_with or 'no musllinux tag'}"
    elif v.consistent_with is not None or v.libc is not None:
        what = f"consistent with {v.consistent_with or 'no manylinux tag'}"
    else:
        what = ", ".join(v.platform_tags)
    return f"{v.path}: {what}: {errors} errors, {len(findings) - errors} warnings"


def render_check(result: CheckResult) -> str:
    """Per wheel: a verdict line, the findings about required needs and the binaries (errors first), then
    the dlopen hints folded under them; last, the summary."""
    lines = []
    verdicts = list(result.wheels)
    known = {v.path for v in verdicts}
    for f in result.findings:  # findings about wheels without a verdict (a result made by hand)
        if f.wheel not in known:
            known.add(f.wheel)
            verdicts.append(WheelVerdict(f.wheel, f.wheel, (), None, None))
    for v in verdicts:
        mine = result.of(v.path)
        lines.append(_verdict_line(v, mine, result.target))
        ordered = sorted(
            (f for f in mine if f.code != "dlopen-unresolved"), key=lambda f: f.severity is not Severity.ERROR
        )
        for f in ordered:
            lines.extend(_finding_lines(f))
        hints = [f for f in mine if f.code == "dlopen-unresolved"]
        if hints:
            lines.append(f"  warning: [dlopen-unresolved] {len(hints)} dlopen hints that nothing provides:")
            for f in hints:
                lines.append(f"      {f.message}")
                lines.append(f"        named by {_members(f.members)}")
    errors, warnings = len(result.errors), len(result.findings) - len(result.errors)
    verdict = "passed" if result.passed else "FAILED"
    lines.append(f"check --target {result.target}: {verdict} ({errors} errors, {warnings} warnings)")
    return "\n".join(lines) + "\n"


def render_plan(plans: Sequence[WheelPlan], *, dry_run: bool) -> str:
    lines = []
    for plan in plans:
        verb = "would patch" if dry_run else "patching"
        total = len(plan.wheel.elf) + len(plan.wheel.macho)
        counts = f"{len(plan.elf_edits) + len(plan.macho_edits)} of {total} binaries"
        lines.append(f"{plan.wheel.scan.meta.filename}: {verb} {counts}")
        for e in plan.elf_edits:
            if e.changes_path:
                old = f"{e.old_kind} {e.old_value}" if e.old_kind else "no search path"
                why = ", ".join(sorted({s for s, _ in e.added}))
                lines.append(
                    f"  {e.member}: {old} -> {e.kind} {e.new_value}" + (f"  (for {why})" if why else "")
                )
            if e.new_interpreter is not None:
                lines.append(f"  {e.member}: interpreter {e.old_interpreter} -> {e.new_interpreter}")
        for m in plan.macho_edits:
            for s in m.slices:
                where = f"  {m.member} ({s.arch})"
                for old_name, new_name in s.rename:
                    lines.append(f"{where}: {old_name} -> {new_name}")
                for path in s.delete_rpaths:
                    lines.append(f"{where}: delete LC_RPATH {path}")
                for path in s.add_rpaths:
                    lines.append(f"{where}: add LC_RPATH {path}")
                room = f"load commands {s.needed} of {s.available} bytes"
                lines.append(
                    f"{where}: {s.strategy} strategy, {room}" + (", re-signed ad hoc" if s.resign else "")
                )
    return "\n".join(lines) + "\n"


def render_missing(plans: Sequence[WheelPlan]) -> str:
    lines = []
    for plan in plans:
        for m in plan.missing:
            lines.append(f"missing: {m.soname} needed by {m.member} in {plan.wheel.scan.meta.filename}")
        for r in plan.no_room:
            lines.append(
                f"no room: {r.member} ({r.arch} slice) in {plan.wheel.scan.meta.filename}: "
                f"the new load commands need {r.needed} bytes, the header has {r.available}: "
                f"{r.missing} bytes missing (relink with -headerpad_max_install_names)"
            )
    if any(p.missing for p in plans):
        lines.append("repair stopped: give the directories with --lib-path, or accept them with --allow GLOB")
    else:
        lines.append("repair stopped: nothing was written")
    return "\n".join(lines) + "\n"

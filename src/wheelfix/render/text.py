"""Human-readable reports."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wheelfix.analysis.check import CheckResult, Finding, Severity, WheelVerdict, consistent_with, wheel_libc
from wheelfix.analysis.model import Analysis, Library, Outcome, WheelAnalysis
from wheelfix.analysis.policy import is_musl_libc
from wheelfix.nixkb.kb import Answer
from wheelfix.render.nix import nix_ref
from wheelfix.repair.plan import ElfEdit, Missing, WheelPlan

__all__ = ["MissingContext", "render_check", "render_inspect", "render_missing", "render_plan"]

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
    counts = f"{errors} errors, {len(findings) - errors} warnings"
    return f"{v.path}: {what}: {counts}" if what else f"{v.path}: {counts}"


def render_check(result: CheckResult) -> str:
    """Per wheel: a verdict line, the findings about required needs and the binaries (errors first), then
    the dlopen hints folded under them; last, the summary."""
    lines = []
    known = {v.path for v in result.wheels}
    others: list[WheelVerdict] = []  # findings about no wheel (an environment's interpreter), first
    for f in result.findings:
        if f.wheel not in known:
            known.add(f.wheel)
            others.append(WheelVerdict(f.wheel, f.wheel, (), None, None))
    for v in [*others, *result.wheels]:
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


def _entries(value: str | None) -> list[str]:
    return [e for e in (value or "").split(":") if e] if value else []


def _elf_change(e: ElfEdit, sources: Mapping[str, str]) -> tuple[str, ...]:
    """The lines of one ELF edit: ``+ DIR (needs; pkgs.x)`` per added entry, ``- ENTRY`` per removed one,
    the tag if it changes, the interpreter."""
    lines: list[str] = []
    if e.changes_path:
        old, new = _entries(e.old_value), _entries(e.new_value)
        if e.old_kind is None:
            lines.append(f"new {e.kind}")
        elif e.old_kind != e.kind:
            lines.append(f"{e.old_kind} -> {e.kind}")
        for entry in new:
            if entry not in old:
                why = sorted({s for s, d in e.added if d == entry})
                src = sources.get(entry)
                note = "; ".join(x for x in (", ".join(why), src) if x)
                lines.append(f"+ {entry}" + (f"  ({note})" if note else ""))
        lines.extend(f"- {entry}" for entry in old if entry not in new)
    if e.new_interpreter is not None:
        src = sources.get(posixpath.dirname(e.new_interpreter))
        lines.append(
            f"interpreter {e.old_interpreter} -> {e.new_interpreter}" + (f"  ({src})" if src else "")
        )
    return tuple(lines)


def _grouped(members: Sequence[str]) -> str:
    if len(members) == 1:
        return members[0]
    return f"{len(members)} binaries: {_members(tuple(members))}"


def render_plan(
    plans: Sequence[WheelPlan],
    *,
    dry_run: bool,
    verbose: bool = False,
    sources: Mapping[str, str] | None = None,
) -> str:
    """The planned edits, per wheel. ELF binaries with the same change are listed together, the change as
    the search-path entries added (``+ /nix/store/...-zlib/lib  (libz.so.1; pkgs.zlib)``) and removed
    (``- /build/lib``); ``verbose`` adds each binary's whole old and new search path (one line per binary,
    ``MEMBER: RUNPATH old -> RUNPATH new``). ``sources``: a label per directory (the nixpkgs output)."""
    labels = sources or {}
    lines = []
    for plan in plans:
        verb = "would patch" if dry_run else "patching"
        total = len(plan.wheel.elf) + len(plan.wheel.macho)
        counts = f"{len(plan.elf_edits) + len(plan.macho_edits)} of {total} binaries"
        lines.append(f"{plan.wheel.scan.meta.filename}: {verb} {counts}")
        if verbose:
            lines += [line for e in plan.elf_edits for line in _whole(e, labels)]
        else:
            groups: dict[tuple[str, ...], list[str]] = {}
            for e in plan.elf_edits:
                groups.setdefault(_elf_change(e, labels), []).append(e.member)
            for change, members in groups.items():
                lines.append(f"  {_grouped(members)}")
                lines.extend(f"    {c}" for c in change)
        lines += _macho_lines(plan)
    return "\n".join(lines) + "\n"


def _whole(e: ElfEdit, sources: Mapping[str, str]) -> list[str]:
    """``MEMBER: RUNPATH old -> RUNPATH new  (for needs)``, and the interpreter: one binary, whole values."""
    lines = []
    if e.changes_path:
        before = f"{e.old_kind} {e.old_value}" if e.old_kind else "no search path"
        why = ", ".join(sorted({s for s, _ in e.added}))
        lines.append(f"  {e.member}: {before} -> {e.kind} {e.new_value}" + (f"  (for {why})" if why else ""))
    if e.new_interpreter is not None:
        src = sources.get(posixpath.dirname(e.new_interpreter))
        change = f"interpreter {e.old_interpreter} -> {e.new_interpreter}" + (f"  ({src})" if src else "")
        lines.append(f"  {e.member}: {change}")
    return lines


def _macho_lines(plan: WheelPlan) -> list[str]:
    lines = []
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
    return lines


def _answer_text(answer: Answer | None) -> str:
    """A knowledge-base answer as the end of a ``missing:`` line."""
    if answer is None or answer.kind == "unknown":
        return "no known nixpkgs package"
    if answer.kind == "nixpkgs" and answer.chosen is not None:
        return nix_ref(answer.chosen)
    if answer.kind == "other_wheel":
        return f"shipped by the Python package {', '.join(answer.wheels)}: repair it together with that wheel"
    if answer.kind == "gpu_driver":
        return "the GPU driver's (from the host: /run/opengl-driver/lib on NixOS)"
    if answer.kind == "python":
        return "the Python interpreter's"
    return "part of glibc"


@dataclass(frozen=True, slots=True)
class MissingContext:
    """What a failed repair's report adds to each missing need: the knowledge base's answer, a
    ``--lib-path`` that is a store root whose ``lib/`` has it, and what ``--nixpkgs`` provided."""

    answers: Mapping[str, Answer | None] = field(default_factory=dict)
    lib_hints: Mapping[str, str] = field(default_factory=dict)
    nixpkgs: str | None = None
    realised: Mapping[str, str] = field(default_factory=dict)  # need -> "pkgs.x (/nix/store/...)"


def _missing_line(soname: str, items: list[tuple[str, Missing]], multi: bool, ctx: MissingContext) -> str:
    members = tuple(dict.fromkeys(m.member for _, m in items))
    wheels = tuple(dict.fromkeys(w for w, _ in items))
    interp = next((m.interpreter for _, m in items if m.interpreter is not None), None)
    few = ", ".join(members[:2]) + (f", +{len(members) - 2} more" if len(members) > 2 else "")
    needed = members[0] if len(members) == 1 else f"{len(members)} binaries ({few})"
    if interp:
        needed += f" as {'their' if len(members) > 1 else 'its'} interpreter (PT_INTERP {interp})"
        answer = "glibc's loader: pkgs.glibc (in its lib/), or give --interpreter PATH"
    else:
        answer = _answer_text(ctx.answers.get(soname))
    if soname in ctx.realised:
        answer = f"{ctx.realised[soname]} has no lib/{posixpath.basename(soname)}"
    where = f" in {', '.join(w.split('-', 1)[0] for w in wheels)}" if multi else ""
    hint = f" (did you mean --lib-path {ctx.lib_hints[soname]}?)" if soname in ctx.lib_hints else ""
    return f"missing: {soname} needed by {needed}{where}: {answer}{hint}"


def render_missing(plans: Sequence[WheelPlan], ctx: MissingContext | None = None) -> str:
    """Why a repair stopped: one line per missing need (the binaries that need it, counted and a few
    named, and the nixpkgs package that provides it as Nix, ``pkgs.libGL``), the Mach-O slices without
    room, and one line saying what to do."""
    ctx = ctx or MissingContext()
    lines = []
    for plan in plans:
        for r in plan.no_room:
            lines.append(
                f"no room: {r.member} ({r.arch} slice) in {plan.wheel.scan.meta.filename}: "
                f"the new load commands need {r.needed} bytes, the header has {r.available}: "
                f"{r.missing} bytes missing (relink with -headerpad_max_install_names)"
            )
    by_need: dict[str, list[tuple[str, Missing]]] = {}
    for plan in plans:
        for m in plan.missing:
            by_need.setdefault(m.soname, []).append((plan.wheel.scan.meta.filename, m))
    multi = len(plans) > 1
    lines += [_missing_line(soname, by_need[soname], multi, ctx) for soname in sorted(by_need)]
    if not by_need:
        lines.append("repair stopped: nothing was written")
    elif ctx.nixpkgs is not None:
        lines.append(
            f"repair stopped, nothing written: {ctx.nixpkgs} does not provide these; give their directories "
            "with --lib-path DIR, or accept them with --allow GLOB"
        )
    else:
        lines.append(
            "repair stopped, nothing written: let wheelfix build and use the packages named with --nixpkgs "
            "nixpkgs (a flake reference, <nixpkgs> or a path), or give their lib directories with "
            "--lib-path DIR; accept the others with --allow GLOB"
        )
    return "\n".join(lines) + "\n"

"""JSON documents for ``inspect --json`` and ``check --format json``, following the versioned schemas
shipped in ``wheelfix/schema/`` (version 2: version 1's keys, plus ``libc``/``consistent_with`` per wheel,
``policy``/``symbols``/``cause`` per finding, per-wheel verdicts, ``exit_code``, and a document for input
that could not be read)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from wheelfix import __version__
from wheelfix.analysis.check import CheckResult, Finding, Severity, consistent_with, wheel_libc
from wheelfix.analysis.model import (
    Analysis,
    ArchView,
    ElfAnalysis,
    MachOAnalysis,
    Need,
    Resolution,
    SearchDir,
    WheelAnalysis,
)
from wheelfix.binfmt.elf.extras import x86_isa_level
from wheelfix.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, Problem

__all__ = [
    "SCHEMA_VERSION",
    "check_document",
    "check_error_document",
    "dumps",
    "inspect_document",
    "load_schema",
]

SCHEMA_VERSION = 2


_CURRENT = {"inspect": SCHEMA_VERSION, "check": SCHEMA_VERSION, "lookup": 1}


def load_schema(kind: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema for ``kind`` ("inspect", "check" or "lookup"), of ``version`` (by default the one
    wheelfix writes)."""
    version = version if version is not None else _CURRENT.get(kind, SCHEMA_VERSION)
    text = resources.files("wheelfix.schema").joinpath(f"{kind}-v{version}.json").read_text("utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _header(kind: str) -> dict[str, Any]:
    return {
        "schema": f"wheelfix-{kind}",
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wheelfix", "version": __version__},
    }


def _resolution(r: Resolution) -> dict[str, Any]:
    return {
        "outcome": r.outcome.value,
        "detail": r.detail,
        "wheel": r.wheel,
        "member": r.member,
        "via": r.via,
        "reachable": r.reachable,
    }


def _search_dir(d: SearchDir) -> dict[str, Any]:
    return {"kind": d.label, "entry": d.entry, "path": d.path, "note": d.note}


def _binary(b: ElfAnalysis) -> dict[str, Any]:
    elf = b.binary.elf
    isa = b.binary.extras.isa_needed
    return {
        "member": b.binary.member,
        "install": {"scheme": b.binary.location.scheme, "path": b.binary.location.path},
        "format": "elf",
        "kind": b.kind,
        "size": b.binary.size,
        "elf": {
            "class": elf.elf_class,
            "endian": elf.endian,
            "machine": elf.machine,
            "osabi": elf.osabi,
            "type": elf.type,
            "interpreter": elf.interpreter,
            "soname": elf.soname,
            "needed": list(elf.needed),
            "rpath": elf.rpath,
            "runpath": elf.runpath,
            "symbol_versions": elf.symbol_versions(),
            "version_needs": [{"file": v.file, "versions": list(v.versions)} for v in elf.version_needs],
            "dlopen_notes": [
                {
                    "sonames": list(n.sonames),
                    "priority": n.priority,
                    "feature": n.feature,
                    "description": n.description,
                }
                for n in elf.dlopen_notes
            ],
            "dlopen_candidates": list(elf.dlopen_candidates),
            "isa_level": x86_isa_level(isa) if isa is not None and elf.machine == "x86_64" else None,
        },
        "search_path": [_search_dir(d) for d in b.search_path],
        "needs": [
            {
                "soname": n.soname,
                "source": n.source.value,
                "required": n.required,
                **_resolution(n.resolution),
            }
            for n in b.needs
        ],
    }


def _need(n: Need) -> dict[str, Any]:
    return {"soname": n.soname, "source": n.source.value, "required": n.required, **_resolution(n.resolution)}


def _macho_binary(m: MachOAnalysis) -> dict[str, Any]:
    slices = []
    for sl, view in zip(m.binary.macho.slices, m.slices, strict=True):
        v: ArchView = view
        slices.append(
            {
                "arch": sl.arch,
                "bits": sl.bits,
                "filetype": sl.filetype,
                "offset": sl.offset,
                "size": sl.size,
                "minos": sl.minos,
                "platforms": [
                    {"kind": p.kind, "platform": p.platform, "minos": p.minos, "sdk": p.sdk}
                    for p in sl.platforms
                ],
                "uuid": sl.uuid,
                "id_dylib": sl.id_dylib.name if sl.id_dylib is not None else None,
                "dylibs": [
                    {
                        "name": d.name,
                        "kind": d.kind,
                        "current_version": d.current_version,
                        "compatibility_version": d.compatibility_version,
                    }
                    for d in sl.dylibs
                ],
                "rpaths": list(sl.rpaths),
                "code_signature": sl.code_signature is not None,
                "header_padding": sl.header_padding,
                "search_path": [_search_dir(d) for d in v.search_path],
                "needs": [_need(n) for n in v.needs],
            }
        )
    return {
        "member": m.binary.member,
        "install": {"scheme": m.binary.location.scheme, "path": m.binary.location.path},
        "format": m.binary.format,
        "kind": m.kind,
        "size": m.binary.size,
        "slices": slices,
    }


def _wheel(w: WheelAnalysis) -> dict[str, Any]:
    meta = w.scan.meta
    libraries = w.libraries()
    outcomes: dict[str, int] = {}
    for lib in libraries:
        outcomes[lib.outcome.value] = outcomes.get(lib.outcome.value, 0) + 1
    doc: dict[str, Any] = {
        "path": w.scan.path,
        "filename": meta.filename,
        "name": meta.name,
        "version": meta.version,
        "tags": list(meta.tags),
        "platform_tags": list(meta.platform_tags),
        "wheel_tags": list(meta.wheel_tags),
        "root_is_purelib": meta.root_is_purelib,
        "dist_info": meta.dist_info,
        "libc": wheel_libc(w),
        "consistent_with": consistent_with(w),
        "file_size": w.scan.file_size,
        "member_count": w.scan.member_count,
        "uncompressed_size": w.scan.uncompressed_size,
        "binaries": [_binary(b) for b in w.elf],
        "unsupported_binaries": [{"member": u.member, "format": u.format} for u in w.scan.unsupported],
        "libraries": [
            {
                "soname": lib.soname,
                "required": lib.required,
                "sources": [s.value for s in lib.sources],
                "needed_by": list(lib.needed_by),
                **_resolution(lib.resolution),
            }
            for lib in libraries
        ],
        "summary": {"binaries": len(w.elf), "libraries": len(libraries), "outcomes": outcomes},
    }
    if w.macho:  # only present for wheels with Mach-O members, so ELF documents are unchanged
        doc["macho_binaries"] = [_macho_binary(m) for m in w.macho]
        summary: dict[str, Any] = doc["summary"]
        summary["macho_binaries"] = len(w.macho)
    return doc


def inspect_document(analysis: Analysis) -> dict[str, Any]:
    return {
        **_header("inspect"),
        "python_version": analysis.python_version,
        "wheels": [_wheel(w) for w in analysis.wheels],
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "severity": f.severity,
        "code": f.code,
        "wheel": f.wheel,
        "soname": f.soname,
        "members": list(f.members),
        "message": f.message,
        "policy": f.policy,
        "symbols": list(f.symbols),
        "cause": f.cause,
    }


def check_document(result: CheckResult) -> dict[str, Any]:
    wheels = []
    for v in result.wheels:
        mine = result.of(v.path)
        errors = sum(1 for f in mine if f.severity is Severity.ERROR)
        wheels.append(
            {
                "path": v.path,
                "filename": v.filename,
                "platform_tags": list(v.platform_tags),
                "libc": v.libc,
                "consistent_with": v.consistent_with,
                "passed": errors == 0,
                "errors": errors,
                "warnings": len(mine) - errors,
            }
        )
    return {
        **_header("check"),
        "target": result.target,
        "allow": list(result.allow),
        "passed": result.passed,
        "exit_code": EXIT_OK if result.passed else EXIT_FINDINGS,
        "errors": len(result.errors),
        "warnings": len(result.findings) - len(result.errors),
        "findings": [_finding(f) for f in result.findings],
        "wheels": wheels,
    }


def check_error_document(
    target: str,
    allow: tuple[str, ...] | list[str],
    problems: tuple[Problem, ...] | list[Problem],
    *,
    code: str,
) -> dict[str, Any]:
    """The check document for input that could not be checked at all (``code`` "bad-input": an unreadable
    or unsafe wheel; "usage": an unknown target): one error finding per problem, ``exit_code`` 2."""
    findings = [
        Finding(Severity.ERROR, code, p.file, None, (p.member,) if p.member else (), p.message)
        for p in problems
    ]
    return {
        **_header("check"),
        "target": target,
        "allow": list(allow),
        "passed": False,
        "exit_code": EXIT_BAD_INPUT,
        "errors": len(findings),
        "warnings": 0,
        "findings": [_finding(f) for f in findings],
        "wheels": [],
    }

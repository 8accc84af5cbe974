"""JSON documents for ``inspect --json`` and ``check --format json``, following the versioned schemas
shipped in ``wheelfix/schema/``."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from typing import Any

from .. import __version__
from ..check import CheckResult
from ..model import Analysis, BinaryAnalysis, Resolution, WheelAnalysis

__all__ = ["SCHEMA_VERSION", "check_document", "dumps", "inspect_document", "load_schema"]

SCHEMA_VERSION = 1


def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for ``kind`` ("inspect" or "check")."""
    text = resources.files("wheelfix.schema").joinpath(f"{kind}-v{SCHEMA_VERSION}.json").read_text("utf-8")
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


def _binary(b: BinaryAnalysis) -> dict[str, Any]:
    elf = b.binary.elf
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
        },
        "search_path": [asdict(d) for d in b.search_path],
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


def _wheel(w: WheelAnalysis) -> dict[str, Any]:
    meta = w.scan.meta
    libraries = w.libraries()
    outcomes: dict[str, int] = {}
    for lib in libraries:
        outcomes[lib.outcome.value] = outcomes.get(lib.outcome.value, 0) + 1
    return {
        "path": w.scan.path,
        "filename": meta.filename,
        "name": meta.name,
        "version": meta.version,
        "tags": list(meta.tags),
        "platform_tags": list(meta.platform_tags),
        "wheel_tags": list(meta.wheel_tags),
        "root_is_purelib": meta.root_is_purelib,
        "dist_info": meta.dist_info,
        "file_size": w.scan.file_size,
        "member_count": w.scan.member_count,
        "uncompressed_size": w.scan.uncompressed_size,
        "binaries": [_binary(b) for b in w.binaries],
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
        "summary": {"binaries": len(w.binaries), "libraries": len(libraries), "outcomes": outcomes},
    }


def inspect_document(analysis: Analysis) -> dict[str, Any]:
    return {
        **_header("inspect"),
        "python_version": analysis.python_version,
        "wheels": [_wheel(w) for w in analysis.wheels],
    }


def check_document(result: CheckResult) -> dict[str, Any]:
    return {
        **_header("check"),
        "target": result.target,
        "allow": list(result.allow),
        "passed": result.passed,
        "errors": len(result.errors),
        "warnings": len(result.findings) - len(result.errors),
        "findings": [
            {
                "severity": f.severity,
                "code": f.code,
                "wheel": f.wheel,
                "soname": f.soname,
                "members": list(f.members),
                "message": f.message,
            }
            for f in result.findings
        ],
    }

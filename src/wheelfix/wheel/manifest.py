"""The repair manifest: what a repair did, written into the repaired wheel as
``<name>.dist-info/wheelfix.json`` (listed in RECORD), and read back by ``inspect``/``check``.

A repaired binary names ``/nix/store`` directories, which do not exist where wheelfix runs. Taking the binary
at its word ("it names a store directory, so every need it has must be there") passes needs that nothing
provides: a need left unresolved with ``--allow`` would look pinned. The manifest says, per binary and
architecture, which store directory the repair chose for which need and which needs it accepted with
``--allow``; the resolver believes only that (:meth:`RepairManifest.provider`).

Format (``schema_version`` 1)::

    {"schema": "wheelfix-repair-manifest", "schema_version": 1,
     "tool": {"name": "wheelfix", "version": "0.1.0"},
     "binaries": {
       "pkg/_ext.cpython-311-x86_64-linux-gnu.so": {
         "format": "elf",
         "archs": {"x86_64": {"provides": {"libz.so.1": "/nix/store/...-zlib-1.3.1/lib"},
                               "allowed": ["libGL.so.1"]}},
         "search_path": {"kind": "RUNPATH", "added": ["/nix/store/...-zlib-1.3.1/lib"]},
         "interpreter": null}}}

``provides`` maps a need as the repaired binary names it (an ELF soname; a Mach-O install name, which the
repair may have rewritten to the library's absolute path) to the directory that holds the library. Later
repairs of the same wheel merge into the manifest (a binary's newer record replaces its older one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wheelfix.errors import EXIT_BAD_INPUT, Error

__all__ = ["MANIFEST_NAME", "ArchRecord", "BinaryRecord", "ManifestError", "RepairManifest"]

MANIFEST_NAME = "wheelfix.json"
_SCHEMA = "wheelfix-repair-manifest"
_VERSION = 1


class ManifestError(Error, ValueError):
    """The manifest is not one this version can read."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True, slots=True)
class ArchRecord:
    provides: Mapping[str, str] = field(default_factory=dict)  # need -> directory
    allowed: tuple[str, ...] = ()  # needs the repair left unresolved because --allow matched them


@dataclass(frozen=True, slots=True)
class BinaryRecord:
    format: str  # "elf" or "macho"
    archs: Mapping[str, ArchRecord]
    search_kind: str | None = None  # ELF: RUNPATH or RPATH, when the repair wrote one
    added: tuple[str, ...] = ()  # directories the repair added to the search path (ELF) or as LC_RPATHs
    interpreter: str | None = None  # ELF: the PT_INTERP the repair set


@dataclass(frozen=True, slots=True)
class RepairManifest:
    tool_version: str
    binaries: Mapping[str, BinaryRecord]

    def provider(self, member: str, arch: str, need: str) -> str | None:
        """The directory the repair chose for ``need`` of ``member`` (``arch`` slice), if any."""
        b = self.binaries.get(member)
        a = b.archs.get(arch) if b is not None else None
        return a.provides.get(need) if a is not None else None

    def allowed(self, member: str, arch: str, need: str) -> bool:
        b = self.binaries.get(member)
        a = b.archs.get(arch) if b is not None else None
        return a is not None and need in a.allowed

    def covers(self, member: str) -> bool:
        return member in self.binaries

    def merged(self, newer: RepairManifest) -> RepairManifest:
        """This manifest updated by a later repair's: per binary and arch, what the later one provides is
        added (a need it now provides is no longer "allowed"); directories and interpreter accumulate."""
        binaries = dict(self.binaries)
        for member, new in newer.binaries.items():
            old = binaries.get(member)
            binaries[member] = new if old is None else _merge_binary(old, new)
        return RepairManifest(newer.tool_version, binaries)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "schema": _SCHEMA,
            "schema_version": _VERSION,
            "tool": {"name": "wheelfix", "version": self.tool_version},
            "binaries": {
                member: {
                    "format": b.format,
                    "archs": {
                        arch: {"provides": dict(sorted(a.provides.items())), "allowed": sorted(a.allowed)}
                        for arch, a in sorted(b.archs.items())
                    },
                    "search_path": {"kind": b.search_kind, "added": list(b.added)},
                    "interpreter": b.interpreter,
                }
                for member, b in sorted(self.binaries.items())
            },
        }
        return (json.dumps(doc, indent=1, sort_keys=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> RepairManifest:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"not JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("schema") != _SCHEMA:
            raise ManifestError("not a wheelfix repair manifest")
        if doc.get("schema_version") != _VERSION:
            raise ManifestError(
                f"schema version {doc.get('schema_version')!r}, this wheelfix reads {_VERSION}"
            )
        try:
            binaries = {str(m): _binary(b) for m, b in dict(doc["binaries"]).items()}
            version = str(doc["tool"]["version"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"malformed: {e!r}") from None
        return cls(version, binaries)


def _merge_binary(old: BinaryRecord, new: BinaryRecord) -> BinaryRecord:
    archs = dict(old.archs)
    for arch, a in new.archs.items():
        before = archs.get(arch, ArchRecord())
        provides = {**before.provides, **a.provides}
        allowed = tuple(n for n in dict.fromkeys((*before.allowed, *a.allowed)) if n not in provides)
        archs[arch] = ArchRecord(provides, allowed)
    return BinaryRecord(
        format=new.format,
        archs=archs,
        search_kind=new.search_kind or old.search_kind,
        added=tuple(dict.fromkeys((*old.added, *new.added))),
        interpreter=new.interpreter or old.interpreter,
    )


def _binary(b: Any) -> BinaryRecord:
    archs = {
        str(arch): ArchRecord(
            {str(k): str(v) for k, v in dict(a["provides"]).items()}, tuple(str(x) for x in a["allowed"])
        )
        for arch, a in dict(b["archs"]).items()
    }
    sp = b.get("search_path") or {}
    kind = sp.get("kind")
    interp = b.get("interpreter")
    return BinaryRecord(
        format=str(b["format"]),
        archs=archs,
        search_kind=str(kind) if kind is not None else None,
        added=tuple(str(d) for d in sp.get("added", ())),
        interpreter=str(interp) if interp is not None else None,
    )

"""CI verdicts over an analysis.

Targets:

* ``nix``: every required need must be met without a system library directory (glibc and GPU driver
  libraries aside); the wheel must be for Linux or macOS, and not for musl.
* ``manylinux_2_X`` / ``musllinux_1_X`` (aliases such as ``manylinux2014``, optionally with an
  architecture: ``manylinux_2_28_aarch64``): auditwheel's policy data, independent of the host. Per
  policy, the binaries must need only allowlisted external libraries, only allowed symbol versions, no
  blacklisted symbols, no libpython, no x86-64 micro-architecture level beyond the baseline (GNU property
  notes), and architectures the policy covers; the wheel must carry a tag of the target's family that is
  not newer than the target, and every Linux tag it carries must be true of its binaries.
* ``auto``: every wheel against its own tags: each manylinux/musllinux tag must be true of its binaries
  (macOS tags as for every target). Each wheel's ``consistent_with`` is the most compatible manylinux or
  musllinux tag its binaries satisfy (auditwheel ``show``'s headline), for every target.

Findings are grouped: one per wheel, cause and soname, listing the binaries (``members``).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wheelfix._enum import StrEnum
from wheelfix.analysis.model import Analysis, BinaryKind, ElfAnalysis, Need, Outcome, Source, WheelAnalysis
from wheelfix.analysis.policy import (
    LinuxPolicy,
    LinuxTag,
    is_musl_libc,
    linux_policies,
    parse_linux_tag,
    policy_allowlist,
    tag_machine,
)
from wheelfix.binfmt.elf.extras import x86_isa_level
from wheelfix.errors import UsageError

__all__ = [
    "CheckResult",
    "Finding",
    "Severity",
    "Target",
    "UnknownTarget",
    "WheelVerdict",
    "consistent_with",
    "parse_target",
    "run_check",
    "wheel_libc",
]


class UnknownTarget(UsageError):
    """A target that is neither ``nix``, ``auto`` nor a known policy."""


class Severity(StrEnum):
    ERROR = "error"  # fails the check
    WARNING = "warning"  # reported only


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: a cause, for one soname (or None), in the binaries ``members`` of one wheel.
    ``policy``: the manylinux/musllinux tag the finding is judged against (None for the others);
    ``symbols``: the symbol versions or blacklisted symbols concerned; ``cause``: for ``tag-mismatch``, the
    rule the tag breaks (``symbol-version``, ``external-library``, ...)."""

    severity: Severity
    code: str  # short stable identifier, e.g. "unresolved", "symbol-version", "tag-mismatch", "minos"
    wheel: str  # the wheel's path as given
    soname: str | None
    members: tuple[str, ...]
    message: str
    policy: str | None = None
    symbols: tuple[str, ...] = ()
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class WheelVerdict:
    """What the check found about one wheel as a whole. ``libc``: "glibc", "musl", or None (no Linux
    binaries or tags); ``consistent_with``: the most compatible manylinux/musllinux tag its binaries are
    consistent with, None when there is none (or the wheel is not a Linux platform wheel)."""

    path: str
    filename: str
    platform_tags: tuple[str, ...]
    libc: str | None
    consistent_with: str | None


@dataclass(frozen=True, slots=True)
class CheckResult:
    target: str
    allow: tuple[str, ...]
    findings: tuple[Finding, ...]
    wheels: tuple[WheelVerdict, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def passed(self) -> bool:
        return not self.errors

    def of(self, wheel: str) -> tuple[Finding, ...]:
        """The findings about one wheel (by path as given)."""
        return tuple(f for f in self.findings if f.wheel == wheel)


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: ``kind`` "nix", "auto" or "policy" (then ``policy`` and maybe ``arch``)."""

    name: str
    kind: str
    policy: LinuxPolicy | None = None
    arch: str | None = None


_EXTERNAL = (Outcome.UNRESOLVED, Outcome.MANYLINUX)


def _allowed(soname: str, allow: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(soname, g) for g in allow)


def _grouped(pick: Iterable[tuple[str, Need]]) -> dict[str, tuple[Need, tuple[str, ...]]]:
    out: dict[str, tuple[Need, list[str]]] = {}
    for member, need in pick:
        out.setdefault(need.soname, (need, []))[1].append(member)
    return {k: (n, tuple(sorted(set(ms)))) for k, (n, ms) in sorted(out.items())}


def _needs(wheel: WheelAnalysis) -> Iterable[tuple[str, Need]]:
    for b in wheel.views():
        for n in b.needs():
            yield b.member, n


# --- macOS ------------------------------------------------------------------------------------------------

_MACOS_TAG = re.compile(r"macosx_(\d+)_(\d+)_([a-z0-9_]+)")
# the slices a macOS platform tag promises: every binary must carry each of these architectures
_TAG_ARCHS: dict[str, frozenset[str]] = {
    "arm64": frozenset({"arm64"}),
    "x86_64": frozenset({"x86_64"}),
    "universal2": frozenset({"x86_64", "arm64"}),
    "intel": frozenset({"x86_64", "i386"}),
    "i386": frozenset({"i386"}),
    "ppc": frozenset({"ppc"}),
    "ppc64": frozenset({"ppc64"}),
    "fat": frozenset({"i386", "ppc"}),
    "fat3": frozenset({"x86_64", "i386", "ppc"}),
    "fat64": frozenset({"x86_64", "ppc64"}),
    "universal": frozenset({"x86_64", "i386", "ppc", "ppc64"}),
}
_ARM64_FIRST = (11, 0)  # the first macOS for Apple silicon: arm64 code never runs on anything older


def _os_key(version: str) -> tuple[int, ...]:
    parts = tuple(int(x) for x in version.split(".") if x.isdigit())
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def _check_macos_tag(wheel: WheelAnalysis, tag: str, match: re.Match[str]) -> list[Finding]:
    path = wheel.scan.path
    tag_version = (int(match.group(1)), int(match.group(2)))
    tag_arch = match.group(3)
    wanted = _TAG_ARCHS.get(tag_arch)
    if wanted is None:
        return [
            Finding(
                Severity.WARNING,
                "platform-tag",
                path,
                None,
                (),
                f"tag {tag}: unknown architecture {tag_arch}",
            )
        ]
    found: list[Finding] = []
    missing: dict[str, list[str]] = {}  # arch -> members without it
    extra: dict[str, list[str]] = {}
    too_new: dict[tuple[str, str], list[str]] = {}  # (arch, minos) -> members
    for m in wheel.macho:
        archs = {v.arch for v in m.slices}
        for arch in sorted(wanted - archs):
            missing.setdefault(arch, []).append(m.binary.member)
        for v in m.slices:
            if v.arch not in wanted:
                extra.setdefault(v.arch, []).append(m.binary.member)
                continue
            floor = max(tag_version, _ARM64_FIRST) if v.arch == "arm64" else tag_version
            if v.minos is not None and _os_key(v.minos) > _os_key(f"{floor[0]}.{floor[1]}"):
                too_new.setdefault((v.arch, v.minos), []).append(m.binary.member)
    for arch, members in sorted(missing.items()):
        found.append(
            Finding(
                Severity.ERROR,
                "arch-mismatch",
                path,
                None,
                tuple(sorted(members)),
                f"tagged {tag}, but binaries have no {arch} slice",
            )
        )
    for arch, members in sorted(extra.items()):
        found.append(
            Finding(
                Severity.WARNING,
                "extra-arch",
                path,
                None,
                tuple(sorted(members)),
                f"tagged {tag}, but binaries also carry an {arch} slice (unused)",
            )
        )
    if too_new:
        newest = max(too_new, key=lambda k: _os_key(k[1]))
        members = sorted({mm for ms in too_new.values() for mm in ms})
        found.append(
            Finding(
                Severity.ERROR,
                "minos",
                path,
                None,
                tuple(members),
                f"tagged {tag} (macOS {tag_version[0]}.{tag_version[1]}), but binaries need macOS "
                f"{newest[1]} ({newest[0]})",
            )
        )
    return found


def _check_macos(wheel: WheelAnalysis) -> list[Finding]:
    """Mach-O binaries against the wheel's macosx_X_Y_ARCH tags: architectures and minimum macOS."""
    if not wheel.macho:
        return []
    tags = [(t, mt) for t in wheel.scan.meta.platform_tags if (mt := _MACOS_TAG.fullmatch(t)) is not None]
    if not tags:
        return [
            Finding(
                Severity.ERROR,
                "platform-tag",
                wheel.scan.path,
                None,
                tuple(m.binary.member for m in wheel.macho),
                f"Mach-O binaries in a wheel tagged {', '.join(wheel.scan.meta.platform_tags)}: "
                "not a macosx tag",
            )
        ]
    return [f for tag, match in tags for f in _check_macos_tag(wheel, tag, match)]


# --- findings every target shares -----------------------------------------------------------------------


def _external_findings(wheel: WheelAnalysis, allow: Sequence[str], *, store_ok: bool) -> list[Finding]:
    """(nix) Required needs nothing in the wheel set provides. ``store_ok``: needs pinned to /nix/store
    paths (a repaired wheel) are fine. musl's libc is left to :func:`_musl_findings`."""
    path = wheel.scan.path
    found: list[Finding] = []
    external = _EXTERNAL if store_ok else (*_EXTERNAL, Outcome.NIX_STORE)
    pick = ((m, n) for m, n in _needs(wheel) if n.required and n.resolution.outcome in external)
    for soname, (need, members) in _grouped(pick).items():
        if _allowed(soname, allow) or is_musl_libc(soname):
            continue
        if need.resolution.outcome is Outcome.MANYLINUX:
            code, why = "system-library", "is expected from the system (manylinux policy) but is not bundled"
        elif need.resolution.outcome is Outcome.NIX_STORE:
            code, why = "nix-store", "is loaded from /nix/store (a repaired wheel), which exists only on Nix"
        else:
            code, why = "unresolved", "is not bundled, not in another given wheel, and not a system library"
        found.append(Finding(Severity.ERROR, code, path, soname, members, f"{soname} {why}"))
    return found


def _shared_findings(wheel: WheelAnalysis, allow: Sequence[str]) -> list[Finding]:
    """Findings for every target: unreachable bundled libs, unsupported binaries, Mach-O tags, and (last)
    dlopen hints nothing provides."""
    path = wheel.scan.path
    found: list[Finding] = []
    required = [(m, n) for m, n in _needs(wheel) if n.required and not n.resolution.reachable]
    for soname, (_need, members) in _grouped(required).items():
        found.append(
            Finding(
                Severity.WARNING,
                "not-on-search-path",
                path,
                soname,
                members,
                f"{soname} is in the wheel set but not on the search path of the binaries that need it; "
                "it loads only if another object loaded it first",
            )
        )
    for u in wheel.scan.unsupported:
        found.append(
            Finding(
                Severity.WARNING,
                "unsupported-binary",
                path,
                None,
                (u.member,),
                f"{u.format} binary not analysed",
            )
        )
    found.extend(_check_macos(wheel))
    hints = [(m, n) for m, n in _needs(wheel) if not n.required and n.resolution.outcome in _EXTERNAL]
    for soname, (need, members) in _grouped(hints).items():
        if _allowed(soname, allow):
            continue
        found.append(
            Finding(
                Severity.WARNING,
                "dlopen-unresolved",
                path,
                soname,
                members,
                f"{soname} may be dlopen()ed ({need.source.value.replace('_', ' ')}) and is not provided",
            )
        )
    return found


# --- the wheel's platform ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Platform:
    linux: tuple[LinuxTag, ...]  # manylinux/musllinux/linux_ tags
    macos: tuple[str, ...]
    other: tuple[str, ...]  # win_amd64, ios_..., anything else that is not "any"
    pure: bool  # tagged "any"

    @property
    def archs(self) -> frozenset[str]:
        return frozenset(tag_machine(t.arch) for t in self.linux if t.arch)

    def of(self, family: str) -> list[LinuxTag]:
        return sorted(
            (t for t in self.linux if t.family == family and t.policy is not None),
            key=lambda t: t.policy.version if t.policy else (0, 0),
        )


def _platform(wheel: WheelAnalysis) -> _Platform:
    linux: list[LinuxTag] = []
    macos: list[str] = []
    other: list[str] = []
    pure = False
    for tag in wheel.scan.meta.platform_tags:
        parsed = parse_linux_tag(tag)
        if parsed is not None and parsed.arch is not None:
            linux.append(parsed)
        elif tag == "any":
            pure = True
        elif tag.startswith("macosx_"):
            macos.append(tag)
        else:
            other.append(tag)
    return _Platform(tuple(linux), tuple(macos), tuple(other), pure)


def wheel_libc(wheel: WheelAnalysis) -> str | None:
    """ "musl" or "glibc": the C library the wheel's ELF binaries link (their needs and interpreters), else
    the only family its tags name (both: glibc, as auditwheel decides on a glibc host); None for a wheel
    with neither."""
    musl = glibc = False
    for b in wheel.elf:
        elf = b.binary.elf
        names = (*elf.needed, *([elf.interpreter.rsplit("/", 1)[-1]] if elf.interpreter else []))
        musl = musl or any(is_musl_libc(n) for n in names)
        glibc = glibc or any(n == "libc.so.6" or n.startswith(("ld-linux", "ld64.so")) for n in names)
    if musl != glibc:
        return "musl" if musl else "glibc"
    families = {t.family for t in _platform(wheel).linux}
    if "manylinux" in families or (glibc and musl):
        return "glibc"
    if "musllinux" in families:
        return "musl"
    return "glibc" if "linux" in families or wheel.elf else None


# --- the facts the manylinux/musllinux policies judge, gathered once per wheel ----------------------------

_LOADERS = ("ld-linux", "ld64.so")
_IN_WHEEL = (Outcome.BUNDLED, Outcome.OTHER_WHEEL)
_PYFPE = frozenset({"PyFPE_jbuf", "PyFPE_dummy", "PyFPE_counter"})


@dataclass(frozen=True, slots=True)
class _Binary:
    member: str
    arch: str
    external: tuple[str, ...]  # required needs nothing in the wheel set provides (libpython aside)
    store: frozenset[str]  # those of them pinned to /nix/store (a repaired wheel)
    unreachable: tuple[str, ...]  # (executables, extensions) in the wheel set but not on the search path
    libpython: tuple[str, ...]
    needed: tuple[str, ...]  # DT_NEEDED (for blacklists)
    versions: tuple[tuple[str, str], ...]  # (file, version) that the policies judge
    imports: frozenset[str]  # strong undefined dynamic symbols (those some blacklist names)
    pyfpe: bool
    isa: str | None  # x86-64-v2/v3/v4/unknown


def _counted_versions(b: ElfAnalysis) -> tuple[tuple[str, str], ...]:
    """The symbol versions a policy judges: all but the loader's (auditwheel), and but those needed from a
    library the wheel set provides under a name no policy allows (an auditwheel-grafted copy such as
    libstdc++-a1b2c3.so.6): that copy is what gets loaded. A bundled copy under an allowlisted name
    (libstdc++.so.6) is judged: a system copy that is loaded first wins."""
    outcome = {n.soname: n.resolution.outcome for n in b.needs if n.source is Source.NEEDED}
    keep = policy_allowlist()
    out: list[tuple[str, str]] = []
    for vn in b.binary.elf.version_needs:
        if vn.file.startswith(_LOADERS):
            continue
        if outcome.get(vn.file) in _IN_WHEEL and vn.file not in keep:
            continue
        out.extend((vn.file, v) for v in vn.versions)
    return tuple(out)


def _loaded_by_packages(wheel: WheelAnalysis) -> dict[str, set[str]]:
    """soname -> the package directories with an extension module that finds it on its search path."""
    out: dict[str, set[str]] = {}
    for b in wheel.elf:
        if b.kind is BinaryKind.EXTENSION:
            where = posixpath.dirname(b.binary.location.path)
            for n in b.needs:
                if n.required and n.resolution.outcome in _IN_WHEEL and n.resolution.reachable:
                    out.setdefault(n.soname, set()).add(where)
    return out


def _loaded_first(b: ElfAnalysis, soname: str, loaded: dict[str, set[str]]) -> bool:
    """Whether nothing has loaded ``soname`` by the time ``b`` loads: always for an executable; for an
    extension module, unless an extension of an enclosing package finds it (Python imports the enclosing
    packages first, as mujoco.experimental.studio's modules rely on); a library may be loaded after
    something that loaded it."""
    if b.kind is BinaryKind.EXECUTABLE:
        return True
    if b.kind is not BinaryKind.EXTENSION:
        return False
    here = posixpath.dirname(b.binary.location.path)
    return not any(d and here.startswith(d + "/") for d in loaded.get(soname, ()))


def _binary(b: ElfAnalysis, loaded: dict[str, set[str]]) -> _Binary:
    """A bundled library that is not on the search path of a binary nothing loads before it is missing on
    every system (as auditwheel's ldd finds it); otherwise the not-on-search-path warning says it."""
    external: list[str] = []
    libpython: list[str] = []
    unreachable: list[str] = []
    for n in b.needs:
        if not n.required or n.soname.startswith(_LOADERS):
            continue
        if n.resolution.outcome in _IN_WHEEL:
            if not n.resolution.reachable and _loaded_first(b, n.soname, loaded):
                unreachable.append(n.soname)
            continue
        (libpython if n.resolution.outcome is Outcome.PYTHON else external).append(n.soname)
    extras = b.binary.extras
    imports = extras.imports or ()
    isa = None
    if b.binary.elf.machine == "x86_64" and extras.isa_needed is not None:
        isa = x86_isa_level(extras.isa_needed)
    return _Binary(
        member=b.binary.member,
        arch=b.binary.elf.machine,
        external=tuple(dict.fromkeys(external)),
        store=frozenset(n.soname for n in b.needs if n.resolution.outcome is Outcome.NIX_STORE),
        unreachable=tuple(dict.fromkeys(unreachable)),
        libpython=tuple(dict.fromkeys(libpython)),
        needed=b.binary.elf.needed,
        versions=_counted_versions(b),
        imports=frozenset(i.name for i in imports if not i.weak),
        pyfpe=any(i.name in _PYFPE and i.function for i in imports),
        isa=isa,
    )


_CPU_ARCHS = frozenset(
    {"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "ppc64", "s390x", "riscv64", "loongarch64"}
)


@dataclass(slots=True)
class _Facts:
    """The wheel's ELF binaries as the policies see them. ``binaries``: those of a tagged architecture
    (every CPU architecture for a wheel without Linux tags); ``foreign``: of another CPU architecture;
    ``unknown``: ELF files for machines no policy knows (GPU code, firmware)."""

    wheel: WheelAnalysis
    platform: _Platform
    libc: str | None
    binaries: list[_Binary] = field(default_factory=list)
    foreign: dict[str, list[str]] = field(default_factory=dict)
    unknown: dict[str, list[str]] = field(default_factory=dict)

    @property
    def archs(self) -> tuple[str, ...]:
        """The architectures to name a consistent tag for: the tags', else the binaries'."""
        return tuple(sorted(self.platform.archs or {b.arch for b in self.binaries}))


def _facts(wheel: WheelAnalysis) -> _Facts:
    platform = _platform(wheel)
    facts = _Facts(wheel, platform, wheel_libc(wheel))
    tagged = platform.archs
    loaded = _loaded_by_packages(wheel)
    for b in wheel.elf:
        machine = b.binary.elf.machine
        if machine not in _CPU_ARCHS:
            facts.unknown.setdefault(machine, []).append(b.binary.member)
        elif tagged and machine not in tagged:
            facts.foreign.setdefault(machine, []).append(b.binary.member)
        else:
            facts.binaries.append(_binary(b, loaded))
    return facts


# --- one policy over the facts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cause:
    code: str
    soname: str | None
    members: tuple[str, ...]
    symbols: tuple[str, ...]
    message: str


def _version_key(version: str) -> tuple[int, ...]:
    """Numeric key of "GLIBC_2.17" or "2.17" (non-numeric parts such as PRIVATE sort first)."""
    return tuple(int(x) for x in version.rpartition("_")[2].split(".") if x.isdigit())


def _sorted_members(groups: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(sorted(v)) for k, v in sorted(groups.items())}


def _allowance(policy: LinuxPolicy, arch: str, prefix: str) -> str:
    allowed = policy.allowed_versions(arch, prefix) or frozenset()
    numeric = [v for v in allowed if re.fullmatch(r"[\d.]+", v)]
    if not numeric:
        return f"no {prefix} version"
    return f"up to {prefix}_{max(numeric, key=_version_key)}"


def _version_causes(binaries: Sequence[_Binary], policy: LinuxPolicy) -> list[_Cause]:
    """One cause per library: the versions needed from it that the policy does not list (auditwheel: every
    version of a prefix the policy knows must be listed, so GLIBC_PRIVATE never is)."""
    bad: dict[str, dict[str, set[str]]] = {}  # file -> version -> members
    arch_of: dict[str, str] = {}
    for b in binaries:
        for file, version in b.versions:
            prefix, _, number = version.partition("_")
            allowed = policy.allowed_versions(b.arch, prefix)
            if allowed is None or number in allowed:
                continue
            bad.setdefault(file, {}).setdefault(version, set()).add(b.member)
            arch_of.setdefault(file, b.arch)
    causes = []
    for file, versions in sorted(bad.items()):
        names = sorted(versions, key=lambda v: (v.partition("_")[0], _version_key(v), v))
        prefixes = sorted({v.partition("_")[0] for v in names})
        limits = " and ".join(_allowance(policy, arch_of[file], p) for p in prefixes)
        members = tuple(sorted({m for ms in versions.values() for m in ms}))
        causes.append(
            _Cause(
                "symbol-version",
                file,
                members,
                tuple(names),
                f"{file}: needs {', '.join(names)}; {policy.name} allows {limits}",
            )
        )
    return causes


def _library_causes(binaries: Sequence[_Binary], policy: LinuxPolicy, allow: Sequence[str]) -> list[_Cause]:
    external: dict[str, set[str]] = {}
    store: dict[str, set[str]] = {}
    unreachable: dict[str, set[str]] = {}
    libpython: dict[str, set[str]] = {}
    blacklisted: dict[str, set[str]] = {}
    hits: dict[str, set[str]] = {}
    for b in binaries:
        for names, into in ((b.external, external), (b.unreachable, unreachable)):
            for soname in names:
                if not policy.allows_library(soname, b.arch) and not _allowed(soname, allow):
                    (store if soname in b.store and into is external else into).setdefault(soname, set()).add(
                        b.member
                    )
        for soname in b.libpython:
            if not _allowed(soname, allow):
                libpython.setdefault(soname, set()).add(b.member)
        for soname in b.needed:
            banned = policy.blacklist.get(soname)
            if banned:
                found = banned & (b.imports | {"*"})
                if found:
                    blacklisted.setdefault(soname, set()).add(b.member)
                    hits.setdefault(soname, set()).update(found)
    causes = [
        _Cause(
            "external-library",
            soname,
            members,
            (),
            f"{soname} is not bundled and not on {policy.name}'s allowlist",
        )
        for soname, members in _sorted_members(external).items()
    ]
    causes += [
        _Cause(
            "nix-store",
            soname,
            members,
            (),
            f"{soname} is loaded from /nix/store (a repaired wheel), which exists only on Nix, and is not on "
            f"{policy.name}'s allowlist",
        )
        for soname, members in _sorted_members(store).items()
    ]
    causes += [
        _Cause(
            "external-library",
            soname,
            members,
            (),
            f"{soname} is in the wheel, but not on the search path (RPATH/RUNPATH) of these binaries, which "
            f"nothing loads before them: on a {policy.name} system nothing provides it",
        )
        for soname, members in _sorted_members(unreachable).items()
    ]
    causes += [
        _Cause(
            "libpython",
            soname,
            members,
            (),
            f"{soname}: linked against libpython, which no manylinux/musllinux system provides (PEP 513: "
            "extensions take the interpreter's symbols from the process)",
        )
        for soname, members in _sorted_members(libpython).items()
    ]
    causes += [
        _Cause(
            "blacklisted-symbol",
            soname,
            members,
            tuple(sorted(hits[soname])),
            f"{soname}: imports {', '.join(sorted(hits[soname]))}, which {policy.name} blacklists "
            f"(not exported by every {soname} it allows)",
        )
        for soname, members in _sorted_members(blacklisted).items()
    ]
    return causes


def _binary_causes(binaries: Sequence[_Binary], policy: LinuxPolicy) -> list[_Cause]:
    """Causes that are about the binaries themselves: architecture, ISA level, PyFPE."""
    uncovered: dict[str, set[str]] = {}
    isa: dict[str, set[str]] = {}
    pyfpe: set[str] = set()
    for b in binaries:
        if not policy.covers(b.arch):
            uncovered.setdefault(b.arch, set()).add(b.member)
        if b.isa is not None:
            isa.setdefault(b.isa, set()).add(b.member)
        if b.pyfpe:
            pyfpe.add(b.member)
    causes = [
        _Cause("architecture", None, members, (), f"{policy.name} does not cover {arch}")
        for arch, members in _sorted_members(uncovered).items()
    ]
    causes += [
        _Cause(
            "isa-level",
            None,
            members,
            (level,),
            f"needs {level} (GNU property ISA_1_NEEDED): more than the x86_64 baseline that manylinux and "
            "musllinux promise (glibc 2.33+ refuses to load it on an older CPU)"
            if level != "unknown"
            else "needs an unknown x86 ISA level (GNU property ISA_1_NEEDED)",
        )
        for level, members in _sorted_members(isa).items()
    ]
    if pyfpe:
        causes.append(
            _Cause(
                "pyfpe",
                None,
                tuple(sorted(pyfpe)),
                ("PyFPE_jbuf",),
                "uses PyFPE_jbuf, which only a Python built with --with-fpectl has",
            )
        )
    return causes


def _causes(
    facts: _Facts, policy: LinuxPolicy, allow: Sequence[str], arch: str | None = None
) -> list[_Cause]:
    """Why the wheel's binaries (of ``arch``, or all) do not satisfy ``policy``; [] when they do."""
    binaries = [b for b in facts.binaries if arch is None or b.arch == arch]
    return [
        *_binary_causes(binaries, policy),
        *_library_causes(binaries, policy, allow),
        *_version_causes(binaries, policy),
    ]


def _consistent(facts: _Facts) -> str | None:
    """The most compatible policy tag (per architecture) the binaries satisfy, joined with '.'; None when
    some architecture has none."""
    if facts.libc is None or not facts.archs:
        return None
    policies = linux_policies(facts.libc)
    if facts.libc == "musl":
        # musl versions no symbol, so the data cannot tell a musl 1.1 binary from a 1.2 one: like auditwheel
        # off a musl host, name the newest policy (--target musllinux_1_1 still checks that one's lists)
        policies = policies[-1:]
    tags = []
    for arch in facts.archs:
        fits = (p for p in policies if p.covers(arch) and not _causes(facts, p, (), arch))
        best = next(fits, None)
        if best is None:
            return None
        tags.append(best.tag(arch))
    return ".".join(tags)


def consistent_with(wheel: WheelAnalysis) -> str | None:
    """The most compatible manylinux/musllinux tag ``wheel``'s binaries are consistent with (auditwheel
    ``show``'s headline), e.g. ``manylinux_2_17_x86_64``; None when there is none, or the wheel is not a
    Linux platform wheel."""
    platform = _platform(wheel)
    if not platform.linux and not wheel.elf:
        return None
    return _consistent(_facts(wheel))


# --- target rules -----------------------------------------------------------------------------------------


def _finding(path: str, cause: _Cause, policy: str, *, tag: str | None = None) -> Finding:
    if tag is None:
        return Finding(
            Severity.ERROR,
            cause.code,
            path,
            cause.soname,
            cause.members,
            f"not {policy}: {cause.message}",
            policy,
            cause.symbols,
        )
    return Finding(
        Severity.ERROR,
        "tag-mismatch",
        path,
        cause.soname,
        cause.members,
        f"tag {tag} is wrong: {cause.message}",
        tag,
        cause.symbols,
        cause.code,
    )


def _arch_findings(facts: _Facts) -> list[Finding]:
    path = facts.wheel.scan.path
    found: list[Finding] = []
    tagged = ", ".join(sorted(facts.platform.archs))
    for machine, members in sorted(facts.foreign.items()):
        found.append(
            Finding(
                Severity.ERROR,
                "arch-mismatch",
                path,
                None,
                tuple(sorted(members)),
                f"{machine} ELF binaries in a wheel tagged for {tagged}: no {tagged} process can load them",
            )
        )
    for machine, members in sorted(facts.unknown.items()):
        found.append(
            Finding(
                Severity.WARNING,
                "not-checked",
                path,
                None,
                tuple(sorted(members)),
                f"ELF files for {machine}, not a CPU architecture of any manylinux/musllinux policy: "
                "not checked (ld.so does not load them)",
            )
        )
    return found


def _tag_findings(facts: _Facts, allow: Sequence[str], exclude: LinuxPolicy | None) -> list[Finding]:
    """Per family, the causes that make the most compatible false tag the wheel carries wrong (the tag an
    installer picks on the oldest systems); every tag above it that is false is named in the first one."""
    path = facts.wheel.scan.path
    found: list[Finding] = []
    for family in ("manylinux", "musllinux"):
        false = []
        for t in facts.platform.of(family):
            assert t.policy is not None and t.arch is not None
            arch = tag_machine(t.arch)
            if exclude is not None and t.policy.name == exclude.name and t.policy.libc == exclude.libc:
                continue
            causes = _causes(facts, t.policy, allow, arch)
            if causes:
                false.append((t, causes))
        if not false:
            continue
        tag, causes = false[0]
        others = sorted({t.tag for t, _ in false[1:]} - {tag.tag})
        for i, cause in enumerate(causes):
            f = _finding(path, cause, tag.tag, tag=tag.tag)
            if i == 0 and others:
                f = Finding(
                    f.severity,
                    f.code,
                    f.wheel,
                    f.soname,
                    f.members,
                    f.message + f" (also wrong: {', '.join(others)})",
                    f.policy,
                    f.symbols,
                    f.cause,
                )
            found.append(f)
    return found


def _not_linux(wheel: WheelAnalysis, what: str) -> Finding:
    tags = wheel.scan.meta.platform_tags
    members = tuple(
        sorted(
            [m.binary.member for m in wheel.macho]
            + [u.member for u in wheel.scan.unsupported]
            + [b.binary.member for b in wheel.elf]
        )
    )
    return Finding(
        Severity.ERROR, "wrong-platform", wheel.scan.path, None, members, f"{'.'.join(tags)} wheel: {what}"
    )


def _pure_with_elf(wheel: WheelAnalysis) -> list[Finding]:
    if not wheel.elf:
        return []
    return [
        Finding(
            Severity.ERROR,
            "platform-tag",
            wheel.scan.path,
            None,
            tuple(b.binary.member for b in wheel.elf),
            "tagged any, but has ELF binaries: a wheel with binaries needs a platform tag",
        )
    ]


def _platform_findings(facts: _Facts, target: Target) -> list[Finding]:
    """The wheel's tags against a policy target: a tag of the target's family, none newer than it, and the
    target's architecture (when it names one)."""
    policy = target.policy
    assert policy is not None
    path = facts.wheel.scan.path
    tags = ", ".join(facts.wheel.scan.meta.platform_tags)
    found: list[Finding] = []
    same = facts.platform.of(policy.family)
    if not same:
        others = sorted({t.family for t in facts.platform.linux if t.family != "linux"})
        what = f"a {others[0]} wheel, not {policy.family}" if others else f"not a {policy.family} tag"
        found.append(
            Finding(Severity.ERROR, "platform-tag", path, None, (), f"tagged {tags}: {what}", policy.name)
        )
    else:
        lowest = same[0]
        assert lowest.policy is not None
        if lowest.policy.version > policy.version:
            v = ".".join(map(str, lowest.policy.version))
            found.append(
                Finding(
                    Severity.ERROR,
                    "platform-tag",
                    path,
                    None,
                    (),
                    f"tagged {lowest.tag}, which needs {lowest.policy.libc} {v}: newer than {policy.name}",
                    policy.name,
                )
            )
    if target.arch is not None and target.arch not in facts.platform.archs:
        found.append(
            Finding(
                Severity.ERROR,
                "platform-tag",
                path,
                None,
                (),
                f"tagged {tags}: not for {target.arch}",
                target.name,
            )
        )
    return found


def _without_repeats(found: list[Finding]) -> list[Finding]:
    """Drop the not-on-search-path warnings an external-library error already says (same soname, binaries)."""
    said = {
        (f.soname, m)
        for f in found
        if f.severity is Severity.ERROR and "external-library" in (f.code, f.cause)
        for m in f.members
    }
    return [
        f
        for f in found
        if f.code != "not-on-search-path" or not all((f.soname, m) in said for m in f.members)
    ]


def _check_policy(
    wheel: WheelAnalysis, target: Target, allow: Sequence[str]
) -> tuple[list[Finding], _Facts | None]:
    policy = target.policy
    assert policy is not None
    platform = _platform(wheel)
    if not platform.linux and (platform.macos or platform.other):
        return [_not_linux(wheel, "not a Linux wheel")], None
    if not platform.linux:  # tagged "any"
        return [*_pure_with_elf(wheel), *_shared_findings(wheel, allow)], None
    facts = _facts(wheel)
    found = _platform_findings(facts, target)
    found += _arch_findings(facts)
    label = policy.tag(target.arch) if target.arch else policy.name
    for arch in facts.archs if target.arch is None else (target.arch,):
        for cause in _causes(facts, policy, allow, arch):
            found.append(_finding(wheel.scan.path, cause, label))
    found += _tag_findings(facts, allow, policy)
    found += _shared_findings(wheel, allow)
    return _without_repeats(found), facts


def _check_auto(wheel: WheelAnalysis, allow: Sequence[str]) -> tuple[list[Finding], _Facts | None]:
    platform = _platform(wheel)
    if not platform.linux and platform.other:
        return [_not_linux(wheel, "wheelfix checks only Linux and macOS wheels")], None
    if not platform.linux:  # macOS, or tagged "any"
        return [*_pure_with_elf(wheel), *_shared_findings(wheel, allow)], None
    facts = _facts(wheel)
    found = _arch_findings(facts)
    if not any(t.policy for t in platform.linux):
        best = _consistent(facts)
        found.append(
            Finding(
                Severity.WARNING,
                "platform-tag",
                wheel.scan.path,
                None,
                (),
                f"tagged {', '.join(wheel.scan.meta.platform_tags)}: no manylinux/musllinux tag (PyPI "
                f"refuses linux_ tags); its binaries are consistent with {best or 'no such tag'}",
            )
        )
    found += _tag_findings(facts, allow, None)
    found += _shared_findings(wheel, allow)
    return _without_repeats(found), facts


def _musl_findings(wheel: WheelAnalysis) -> list[Finding]:
    pick = ((m, n) for m, n in _needs(wheel) if n.required and is_musl_libc(n.soname))
    return [
        Finding(
            Severity.ERROR,
            "musl",
            wheel.scan.path,
            soname,
            members,
            f"a musllinux wheel: its binaries need musl's C library ({soname}), so they load only into a "
            "musl-based Python (Alpine), not into a glibc one such as nixpkgs'; use a manylinux wheel",
        )
        for soname, (_n, members) in _grouped(pick).items()
    ]


def _check_nix(wheel: WheelAnalysis, allow: Sequence[str]) -> list[Finding]:
    platform = _platform(wheel)
    if not platform.linux and not platform.macos and platform.other:
        return [_not_linux(wheel, "not a Linux or macOS wheel (where Nix runs)")]
    return [
        *_musl_findings(wheel),
        *_external_findings(wheel, allow, store_ok=True),
        *_shared_findings(wheel, allow),
    ]


def parse_target(target: str) -> Target:
    """``nix``, ``auto``, or a manylinux/musllinux policy (name or alias, optionally with an architecture);
    UnknownTarget for anything else."""
    if target in ("nix", "auto"):
        return Target(target, target)
    parsed = parse_linux_tag(target)
    if parsed is None or parsed.policy is None or parsed.policy.interpolated:
        known = ", ".join(p.name for p in (*linux_policies("glibc"), *linux_policies("musl")))
        raise UnknownTarget(
            f"unknown target {target!r}: use nix, auto, or a policy ({known}; aliases manylinux1/2010/2014; "
            "optionally with an architecture, e.g. manylinux_2_28_aarch64)"
        )
    return Target(target, "policy", parsed.policy, tag_machine(parsed.arch) if parsed.arch else None)


def _verdict(wheel: WheelAnalysis, facts: _Facts | None) -> WheelVerdict:
    meta = wheel.scan.meta
    if facts is None:
        platform = _platform(wheel)
        facts = _facts(wheel) if platform.linux or (wheel.elf and not platform.macos) else None
    return WheelVerdict(
        path=wheel.scan.path,
        filename=meta.filename,
        platform_tags=tuple(meta.platform_tags),
        libc=facts.libc if facts is not None else None,
        consistent_with=_consistent(facts) if facts is not None else None,
    )


def run_check(analysis: Analysis, target: str = "nix", allow: Sequence[str] = ()) -> CheckResult:
    """Raises UnknownTarget for a target that is neither ``nix``, ``auto`` nor a known policy."""
    allow = tuple(allow)
    parsed = parse_target(target)
    findings: list[Finding] = []
    verdicts: list[WheelVerdict] = []
    for w in analysis.wheels:
        facts: _Facts | None = None
        if parsed.kind == "nix":
            found = _check_nix(w, allow)
        elif parsed.kind == "auto":
            found, facts = _check_auto(w, allow)
        else:
            found, facts = _check_policy(w, parsed, allow)
        findings.extend(found)
        verdicts.append(_verdict(w, facts))
    return CheckResult(target, allow, tuple(findings), tuple(verdicts))

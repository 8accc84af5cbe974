"""CI verdicts over an analysis: ``nix`` (every need must be met without a system library directory) and
``manylinux_2_X`` (auditwheel's policy data: allowlist, symbol versions, and the wheel's own tags)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wheelfix._enum import StrEnum
from wheelfix.analysis.model import Analysis, Need, Outcome, WheelAnalysis
from wheelfix.analysis.policy import ManylinuxPolicy, manylinux_policy
from wheelfix.errors import UsageError

__all__ = ["CheckResult", "Finding", "Severity", "UnknownTarget", "parse_target", "run_check"]


class UnknownTarget(UsageError):
    """A target that is neither ``nix`` nor a known policy."""


class Severity(StrEnum):
    ERROR = "error"  # fails the check
    WARNING = "warning"  # reported only


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str  # short stable identifier, e.g. "unresolved", "system-library", "policy", "minos"
    wheel: str  # the wheel's path as given
    soname: str | None
    members: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    target: str
    allow: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def passed(self) -> bool:
        return not self.errors


_EXTERNAL = (Outcome.UNRESOLVED, Outcome.MANYLINUX)


def _allowed(soname: str, allow: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(soname, g) for g in allow)


def _grouped(
    wheel: WheelAnalysis, pick: Iterable[tuple[str, Need]]
) -> dict[str, tuple[Need, tuple[str, ...]]]:
    out: dict[str, tuple[Need, list[str]]] = {}
    for member, need in pick:
        out.setdefault(need.soname, (need, []))[1].append(member)
    return {k: (n, tuple(sorted(set(ms)))) for k, (n, ms) in sorted(out.items())}


def _needs(wheel: WheelAnalysis) -> Iterable[tuple[str, Need]]:
    for b in wheel.views():
        for n in b.needs():
            yield b.member, n


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


def _check_macos(wheel: WheelAnalysis) -> list[Finding]:
    """Mach-O binaries against the wheel's macosx_X_Y_ARCH tags: architectures and minimum macOS."""
    if not wheel.macho:
        return []
    path = wheel.scan.path
    found: list[Finding] = []
    tags = [(t, mt) for t in wheel.scan.meta.platform_tags if (mt := _MACOS_TAG.fullmatch(t)) is not None]
    if not tags:
        found.append(
            Finding(
                Severity.ERROR,
                "platform-tag",
                path,
                None,
                tuple(m.binary.member for m in wheel.macho),
                f"Mach-O binaries in a wheel tagged {', '.join(wheel.scan.meta.platform_tags)}: "
                "not a macosx tag",
            )
        )
        return found
    for tag, match in tags:
        tag_version = (int(match.group(1)), int(match.group(2)))
        tag_arch = match.group(3)
        wanted = _TAG_ARCHS.get(tag_arch)
        if wanted is None:
            found.append(
                Finding(
                    Severity.WARNING,
                    "platform-tag",
                    path,
                    None,
                    (),
                    f"tag {tag}: unknown architecture {tag_arch}",
                )
            )
            continue
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


def _common(
    wheel: WheelAnalysis, allow: Sequence[str], external_ok: frozenset[str], *, store_ok: bool = True
) -> list[Finding]:
    """Findings for every target: external needs, unreachable bundled libs, hints, unsupported binaries.
    ``store_ok``: needs pinned to /nix/store paths (a repaired wheel) are fine (Nix), or external
    (manylinux)."""
    path = wheel.scan.path
    found: list[Finding] = []
    required = [(m, n) for m, n in _needs(wheel) if n.required]
    external = _EXTERNAL if store_ok else (*_EXTERNAL, Outcome.NIX_STORE)
    for soname, (need, members) in _grouped(
        wheel, ((m, n) for m, n in required if n.resolution.outcome in external)
    ).items():
        if soname in external_ok or _allowed(soname, allow):
            continue
        if need.resolution.outcome is Outcome.MANYLINUX:
            code, why = "system-library", "is expected from the system (manylinux policy) but is not bundled"
        elif need.resolution.outcome is Outcome.NIX_STORE:
            code, why = "nix-store", "is loaded from /nix/store (a repaired wheel), which exists only on Nix"
        else:
            code, why = "unresolved", "is not bundled, not in another given wheel, and not a system library"
        found.append(Finding(Severity.ERROR, code, path, soname, members, f"{soname} {why}"))
    for soname, (_need, members) in _grouped(
        wheel, ((m, n) for m, n in required if not n.resolution.reachable)
    ).items():
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
    hints = [(m, n) for m, n in _needs(wheel) if not n.required and n.resolution.outcome in _EXTERNAL]
    for soname, (need, members) in _grouped(wheel, hints).items():
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
    return found


def _version_key(version: str) -> tuple[int, ...]:
    """Numeric key of "GLIBC_2.17" or "2.17"."""
    return tuple(int(x) for x in version.rpartition("_")[2].split(".") if x.isdigit())


def _policy_violations(wheel: WheelAnalysis, policy: ManylinuxPolicy, allow: Sequence[str]) -> list[str]:
    """Why ``wheel``'s binaries do not satisfy ``policy``: arch, external libs, symbol versions."""
    why: list[str] = []
    too_new: dict[tuple[str, str], str] = {}  # (arch, prefix) -> newest version needed beyond the policy
    for b in wheel.elf:
        elf = b.binary.elf
        arch_versions = policy.symbol_versions.get(elf.machine)
        if arch_versions is None:
            why.append(f"{b.binary.member}: architecture {elf.machine} is not covered by {policy.name}")
            continue
        outcome = {n.soname: n.resolution.outcome for n in b.needs if n.source.value == "needed"}
        for vn in elf.version_needs:
            if vn.file.startswith(("ld-linux", "ld64.so")):
                continue
            if outcome.get(vn.file) in (Outcome.BUNDLED, Outcome.OTHER_WHEEL):
                continue
            for v in vn.versions:
                prefix, _, number = v.partition("_")
                allowed = arch_versions.get(prefix)  # version numbers without the prefix
                if allowed is None or number in allowed or not re.fullmatch(r"[\d.]+", number):
                    continue
                cur = too_new.get((elf.machine, prefix))
                if cur is None or _version_key(v) > _version_key(cur):
                    too_new[(elf.machine, prefix)] = v
        for n in b.needs:
            if (
                n.required
                and n.resolution.outcome not in (Outcome.BUNDLED, Outcome.OTHER_WHEEL, Outcome.PYTHON)
                and n.soname not in policy.lib_whitelist
                and not n.soname.startswith(("ld-linux", "ld64.so"))
                and not _allowed(n.soname, allow)
            ):
                why.append(
                    f"{n.soname} is not bundled and not allowed by {policy.name} "
                    f"(needed by {b.binary.member})"
                )
    for (arch, prefix), v in sorted(too_new.items()):
        newest = max(policy.symbol_versions[arch][prefix], key=_version_key)
        why.append(f"needs {v}, {policy.name} allows up to {prefix}_{newest}")
    return why


def _check_manylinux(wheel: WheelAnalysis, target: ManylinuxPolicy, allow: Sequence[str]) -> list[Finding]:
    path = wheel.scan.path
    found = _common(wheel, allow, target.lib_whitelist, store_ok=False)
    # external libraries are judged against the policy's allowlist below
    found = [f for f in found if f.code not in ("system-library", "unresolved")]
    for why in sorted(set(_policy_violations(wheel, target, allow))):
        found.append(Finding(Severity.ERROR, "policy", path, None, (), f"not {target.name}: {why}"))
    tags = wheel.scan.meta.platform_tags
    claimed = [(t, p) for t in tags if (p := manylinux_policy(t)) is not None]
    if not wheel.elf:
        return found
    if not claimed:
        found.append(
            Finding(
                Severity.ERROR,
                "platform-tag",
                path,
                None,
                (),
                f"tagged {', '.join(tags)}: not a manylinux tag",
            )
        )
    else:
        lowest_tag, lowest = min(claimed, key=lambda tp: tp[1].glibc)
        if lowest.glibc > target.glibc:
            found.append(
                Finding(
                    Severity.ERROR,
                    "platform-tag",
                    path,
                    None,
                    (),
                    f"tagged {lowest_tag}, which needs glibc {lowest.glibc[0]}.{lowest.glibc[1]}: "
                    f"newer than {target.name}",
                )
            )
        for tag, policy in claimed:
            if policy == target:
                continue  # already judged above
            for why in sorted(set(_policy_violations(wheel, policy, allow))):
                found.append(
                    Finding(Severity.ERROR, "tag-mismatch", path, None, (), f"tag {tag} is wrong: {why}")
                )
    return found


def parse_target(target: str) -> ManylinuxPolicy | None:
    """None for ``nix``, the policy for a manylinux target; UnknownTarget for anything else."""
    if target == "nix":
        return None
    policy = manylinux_policy(target) if target.startswith("manylinux") else None
    if policy is None:
        raise UnknownTarget(f"unknown target {target!r}: use nix or manylinux_2_X (e.g. manylinux_2_28)")
    return policy


def run_check(analysis: Analysis, target: str = "nix", allow: Sequence[str] = ()) -> CheckResult:
    """Raises UnknownTarget for a target that is neither ``nix`` nor a known manylinux policy."""
    allow = tuple(allow)
    findings: list[Finding] = []
    policy = parse_target(target)
    if policy is None:
        for w in analysis.wheels:
            findings.extend(_common(w, allow, frozenset()))
    else:
        for w in analysis.wheels:
            findings.extend(_check_manylinux(w, policy, allow))
    return CheckResult(target, allow, tuple(findings))

"""Property test: ``check`` never fails internally, whatever the binaries need.

Synthetic wheels (no files: scans built in memory, resolved by the real resolver) with generated platform
tags, machines, DT_NEEDED, symbol-version needs (every prefix of every policy, versions the policies list
and versions they do not, empty and non-numeric ones), ISA levels and imported symbols are checked at every
target: nix, auto, every manylinux/musllinux policy by name, alias and with an architecture. Besides not
raising, the result must be well-formed (schema v2, every member named belongs to the wheel) and
``consistent_with`` must be the first policy that has nothing to say about the binaries.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wheelfix.analysis.check import run_check
from wheelfix.analysis.policy import LEGACY_ALIASES, manylinux_policies, musllinux_policies, parse_linux_tag
from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import ElfMember, WheelScan
from wheelfix.binfmt.elf.extras import ElfExtras, Import
from wheelfix.binfmt.elf.reader import ElfInfo, VersionNeed
from wheelfix.render.github import render_github
from wheelfix.render.jsondoc import check_document, load_schema
from wheelfix.render.text import render_check
from wheelfix.wheel.archive import InstallLocation, WheelIdentity, WheelMeta

POLICIES = (*manylinux_policies(), *musllinux_policies())
TARGETS = (
    "nix",
    "auto",
    *(p.name for p in POLICIES),
    *LEGACY_ALIASES,
    "manylinux_2_17_x86_64",
    "manylinux_2_28_aarch64",
    "manylinux2014_i686",
    "musllinux_1_2_x86_64",
    "musllinux_1_1_loongarch64",
)
PREFIXES = sorted({p for pol in POLICIES for a in pol.symbol_versions.values() for p in a} | {"FOO", "GLIBC"})
KNOWN_VERSIONS = sorted(
    {v for pol in POLICIES for a in pol.symbol_versions.values() for vs in a.values() for v in vs}
)
BLACKLISTED = sorted({s for pol in POLICIES for names in pol.blacklist.values() for s in names})
MACHINES = (
    "x86_64",
    "x86_64",
    "x86_64",
    "i686",
    "aarch64",
    "ppc64le",
    "s390x",
    "armv7l",
    "loongarch64",
    "EM_190",
)
PLATFORMS = (
    "manylinux1_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_25_x86_64",  # PEP 600 version between the data's policies
    "manylinux_2_28_x86_64",
    "manylinux_2_99_x86_64",  # beyond the newest policy
    "manylinux_2_17_aarch64",
    "manylinux_2_5_i686",
    "musllinux_1_1_x86_64",
    "musllinux_1_2_x86_64",
    "musllinux_1_3_x86_64",
    "linux_x86_64",
    "linux_armv6l",
    "macosx_11_0_arm64",
    "win_amd64",
    "any",
)
SONAMES = (
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libz.so.1",
    "libatomic.so.1",
    "libpython3.11.so.1.0",
    "libc.musl-x86_64.so.1",
    "ld-linux-x86-64.so.2",
    "libcuda.so.1",
    "libfoo.so.1",
    "libbundled.so.1",
)
VERSION_CODES = frozenset(
    {
        "external-library",
        "nix-store",
        "libpython",
        "symbol-version",
        "blacklisted-symbol",
        "isa-level",
        "pyfpe",
        "architecture",
    }
)


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema("check")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


versions = st.one_of(
    st.sampled_from(KNOWN_VERSIONS),
    st.sampled_from(["", "PRIVATE", "2.99", "1.2.3.4.5", "3.4.35", "x", "1..2", "2.17_1"]),
    st.text(alphabet="0123456789._ABCxyz", max_size=8),
)
version_strings = st.builds(lambda p, v: f"{p}_{v}" if p else v, st.sampled_from([*PREFIXES, ""]), versions)
version_needs = st.lists(
    st.builds(
        VersionNeed,
        st.sampled_from(SONAMES),
        st.lists(version_strings, max_size=4).map(tuple),
    ),
    max_size=5,
).map(tuple)
imports = st.lists(
    st.builds(
        Import, st.sampled_from([*BLACKLISTED[:40], "PyFPE_jbuf", "printf"]), st.booleans(), st.booleans()
    ),
    max_size=4,
).map(tuple)
extras = st.builds(
    ElfExtras,
    st.one_of(st.none(), st.integers(min_value=0, max_value=0x1F)),
    st.one_of(st.none(), imports),
)


@st.composite
def elf_member(draw: st.DrawFn, index: int, package: str) -> ElfMember:
    kind = draw(st.sampled_from(["ext", "lib", "exe", "bundled"]))
    machine = draw(st.sampled_from(MACHINES))
    interp = draw(st.sampled_from([None, "/lib64/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1"]))
    if kind == "ext":
        member = f"{package}/_m{index}.cpython-311-x86_64-linux-gnu.so"
    elif kind == "exe":
        member = f"{package}/bin/tool{index}"
    elif kind == "bundled":
        member = f"{package}.libs/libbundled.so.1"
    else:
        member = f"{package}.libs/lib{index}.so"
    info = ElfInfo(
        elf_class=64,
        endian="little",
        machine=machine,
        osabi="SYSV",
        type="ET_EXEC" if kind == "exe" else "ET_DYN",
        interpreter=interp if kind == "exe" else None,
        soname="libbundled.so.1" if kind == "bundled" else None,
        needed=tuple(dict.fromkeys(draw(st.lists(st.sampled_from(SONAMES), max_size=6)))),
        rpath=None,
        runpath=draw(st.sampled_from([None, f"$ORIGIN/../{package}.libs", "$ORIGIN", "/nix/store/x-z/lib"])),
        version_needs=draw(version_needs),
        dlopen_notes=(),
        dlopen_candidates=tuple(draw(st.lists(st.sampled_from(["libGL.so.1", "libfoo.so.2"]), max_size=2))),
        is_dynamic=True,
    )
    return ElfMember(member, InstallLocation("platlib", member), 1000, info, draw(extras))


@st.composite
def wheel_scan(draw: st.DrawFn, index: int) -> WheelScan:
    package = f"pkg{index}"
    plats = draw(st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=3, unique=True))
    tags = tuple(sorted(f"cp311-cp311-{p}" for p in plats))
    filename = f"{package}-1.0-cp311-cp311-{'.'.join(sorted(plats))}.whl"
    meta = WheelMeta(
        filename, package, "1.0", tags, tags, False, f"{package}-1.0.dist-info", f"{package}-1.0.data"
    )
    members: dict[str, ElfMember] = {}
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        m = draw(elf_member(i, package))
        members.setdefault(m.member, m)
    elf = tuple(sorted(members.values(), key=lambda m: m.member))
    return WheelScan(
        path=f"/wheels/{filename}",
        meta=meta,
        file_size=1,
        member_count=len(elf) + 3,
        uncompressed_size=1,
        elf=elf,
        macho=(),
        unsupported=(),
        identity=WheelIdentity(1, 0, "0" * 64),
    )


def _assert_well_formed(result: Any, scans: list[WheelScan]) -> None:
    members = {s.path: {m.member for m in s.elf} for s in scans}
    for f in result.findings:
        assert f.wheel in members
        assert set(f.members) <= members[f.wheel] or f.code in ("wrong-platform",), f
        assert f.message
        if f.code == "tag-mismatch":
            assert f.cause in VERSION_CODES and f.policy
    _validator().validate(check_document(result))
    render_check(result)
    render_github(result)


def _first_consistent(result: Any, analysis: Any) -> None:
    """consistent_with names a policy whose target raises no binary cause; every more compatible policy of
    that architecture has one."""
    for verdict in result.wheels:
        tag = verdict.consistent_with
        if tag is None or "." in tag:
            continue
        parsed = parse_linux_tag(tag)
        assert parsed is not None and parsed.policy is not None and parsed.arch is not None
        at = run_check(analysis, tag)
        assert not [f for f in at.of(verdict.path) if f.code in VERSION_CODES], tag
        for older in manylinux_policies():  # musl: always the newest policy (no symbol versions to tell)
            if older.libc != parsed.policy.libc or older.version >= parsed.policy.version:
                continue
            if not older.covers(parsed.arch):
                continue
            before = run_check(analysis, older.tag(parsed.arch))
            assert [f for f in before.of(verdict.path) if f.code in VERSION_CODES], (tag, older.name)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.integers(), min_size=1, max_size=2).flatmap(
        lambda xs: st.tuples(*(wheel_scan(i) for i in range(len(xs))))
    )
)
def test_check_never_fails_internally(scans: tuple[WheelScan, ...]) -> None:
    analysis = analyze(list(scans))
    for target in TARGETS:
        result = run_check(analysis, target)
        _assert_well_formed(result, list(scans))
        assert len(result.wheels) == len(scans)
        with_allow = run_check(analysis, target, ["lib*"])
        assert len(with_allow.errors) <= len(result.errors) or target in ("nix",)
    _first_consistent(run_check(analysis, "auto"), analysis)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(version_needs, st.sampled_from(MACHINES[:-1]))
def test_every_policy_judges_any_version_need(needs: tuple[VersionNeed, ...], machine: str) -> None:
    """The crash of issue 13 (max() of no versions: ZLIB at 2_5, LIBATOMIC at 2_5/2_12/2_17): every target
    over a binary with these needs, in a wheel that claims every policy at once."""
    plats = [p.tag(machine) for p in POLICIES if p.covers(machine)]
    tags = tuple(f"cp311-cp311-{p}" for p in plats)
    filename = f"v-1.0-cp311-cp311-{'.'.join(plats)}.whl"
    info = ElfInfo(
        64,
        "little",
        machine,
        "SYSV",
        "ET_DYN",
        None,
        None,
        ("libc.so.6", "libz.so.1"),
        None,
        None,
        needs,
        (),
        (),
        True,
    )
    member = "v/_v.cpython-311-x86_64-linux-gnu.so"
    scan = WheelScan(
        f"/w/{filename}",
        WheelMeta(filename, "v", "1.0", tags, tags, False, "v-1.0.dist-info", "v-1.0.data"),
        1,
        4,
        1,
        (ElfMember(member, InstallLocation("platlib", member), 1, info),),
        (),
        (),
        WheelIdentity(1, 0, "0" * 64),
    )
    analysis = analyze([scan])
    for target in TARGETS:
        _assert_well_formed(run_check(analysis, target), [scan])

"""ld.so search rules, checked on hand-made models (no compiler needed)."""

from __future__ import annotations

from wheelfix.analysis.model import Outcome
from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import ElfMember, WheelScan
from wheelfix.binfmt.elf.reader import ElfInfo
from wheelfix.wheel.archive import WheelIdentity, WheelMeta, install_location


def elf(
    needed: tuple[str, ...] = (),
    *,
    rpath: str | None = None,
    runpath: str | None = None,
    soname: str | None = None,
    machine: str = "x86_64",
    interp: str | None = None,
) -> ElfInfo:
    return ElfInfo(
        elf_class=64,
        endian="little",
        machine=machine,
        osabi="SYSV",
        type="ET_DYN",
        interpreter=interp,
        soname=soname,
        needed=needed,
        rpath=rpath,
        runpath=runpath,
        version_needs=(),
        dlopen_notes=(),
        dlopen_candidates=(),
        is_dynamic=True,
    )


def wheel(
    name: str, binaries: dict[str, ElfInfo], tag: str = "cp311-cp311-manylinux_2_17_x86_64"
) -> WheelScan:
    meta = WheelMeta(
        filename=f"{name}-1.0-{tag}.whl",
        name=name,
        version="1.0",
        tags=(tag,),
        wheel_tags=(tag,),
        root_is_purelib=False,
        dist_info=f"{name}-1.0.dist-info",
        data_dir=f"{name}-1.0.data",
    )
    members = tuple(
        ElfMember(m, install_location(m, meta.data_dir), 1000, e) for m, e in sorted(binaries.items())
    )
    return WheelScan(
        meta.filename, meta, 1000, len(members), 1000, members, (), (), WheelIdentity(1000, 0, name)
    )


def outcome_of(scans: list[WheelScan], member: str, soname: str) -> tuple[Outcome, bool, str | None]:
    for w in analyze(scans).wheels:
        for b in w.elf:
            if b.binary.member == member:
                for n in b.needs:
                    if n.soname == soname:
                        return n.resolution.outcome, n.resolution.reachable, n.resolution.via
    raise AssertionError((member, soname))


def test_runpath_disables_rpath() -> None:
    w = wheel(
        "p",
        {
            "p/ext.so": elf(("liba.so",), rpath="$ORIGIN/libs", runpath="$ORIGIN/other"),
            "p/libs/liba.so": elf(soname="liba.so"),
        },
    )
    # found only as "present but unreachable": RPATH is ignored because RUNPATH exists
    assert outcome_of([w], "p/ext.so", "liba.so") == (Outcome.BUNDLED, False, None)


def test_origin_brace_syntax_and_normalisation() -> None:
    w = wheel(
        "p",
        {
            "p/sub/ext.so": elf(("liba.so",), runpath="${ORIGIN}/../libs/."),
            "p/libs/liba.so": elf(soname="liba.so"),
        },
    )
    assert outcome_of([w], "p/sub/ext.so", "liba.so") == (
        Outcome.BUNDLED,
        True,
        "RUNPATH ${ORIGIN}/../libs/.",
    )


def test_runpath_is_not_inherited_but_rpath_is() -> None:
    libs = {
        "p/libs/liba.so": elf(("libb.so",), soname="liba.so"),
        "p/libs/deep/libb.so": elf(soname="libb.so"),
    }
    with_runpath = wheel(
        "p", {"p/ext.so": elf(("liba.so",), runpath="$ORIGIN/libs:$ORIGIN/libs/deep"), **libs}
    )
    assert outcome_of([with_runpath], "p/libs/liba.so", "libb.so")[:2] == (Outcome.BUNDLED, False)
    with_rpath = wheel("p", {"p/ext.so": elf(("liba.so",), rpath="$ORIGIN/libs:$ORIGIN/libs/deep"), **libs})
    outcome, reachable, via = outcome_of([with_rpath], "p/libs/liba.so", "libb.so")
    assert (outcome, reachable) == (Outcome.BUNDLED, True) and via == "RPATH of p/ext.so $ORIGIN/libs/deep"


def test_host_dependent_entries_are_not_searched() -> None:
    for entry in ("/usr/lib", "$LIB/x", "relative/dir", "", "$ORIGIN/../../../../../../.."):
        w = wheel("p", {"p/ext.so": elf(("libz.so.1",), runpath=entry)})
        assert outcome_of([w], "p/ext.so", "libz.so.1")[0] == Outcome.MANYLINUX, entry


def test_machine_mismatch_is_skipped() -> None:
    w = wheel(
        "p",
        {
            "p/ext.so": elf(("liba.so",), runpath="$ORIGIN"),
            "p/liba.so": elf(soname="liba.so", machine="aarch64"),
        },
    )
    assert outcome_of([w], "p/ext.so", "liba.so")[0] == Outcome.UNRESOLVED


def test_data_scheme_and_other_wheel() -> None:
    torch = wheel("torch", {"torch/lib/libc10.so": elf(soname="libc10.so")})
    vision = wheel("torchvision", {"torchvision/_C.so": elf(("libc10.so",), runpath="$ORIGIN/../torch/lib")})
    assert outcome_of([vision, torch], "torchvision/_C.so", "libc10.so") == (
        Outcome.OTHER_WHEEL,
        True,
        "RUNPATH $ORIGIN/../torch/lib",
    )
    tool = wheel(
        "t",
        {
            "t-1.0.data/scripts/tool": elf(
                ("libt.so",),
                rpath="$ORIGIN/../lib/python3.11/site-packages/t",
                interp="/lib64/ld-linux-x86-64.so.2",
            ),
            "t/libt.so": elf(soname="libt.so"),
        },
    )
    assert outcome_of([tool], "t-1.0.data/scripts/tool", "libt.so")[:2] == (Outcome.BUNDLED, True)


def test_classification_of_system_names() -> None:
    # libcrypt.so.1 left glibc (libxcrypt on Nix) and is in no manylinux allowlist
    w = wheel(
        "p",
        {
            "p/ext.so": elf(
                (
                    "libc.so.6",
                    "ld-linux-x86-64.so.2",
                    "libcuda.so.1",
                    "libnvidia-ml.so.1",
                    "libpython3.11.so.1.0",
                    "libstdc++.so.6",
                    "libcrypt.so.1",
                    "libfoo.so",
                )
            )
        },
    )
    got = {n.soname: n.resolution.outcome for n in analyze([w]).wheels[0].elf[0].needs}
    assert got == {
        "libc.so.6": Outcome.GLIBC,
        "ld-linux-x86-64.so.2": Outcome.GLIBC,
        "libcuda.so.1": Outcome.GPU_DRIVER,
        "libnvidia-ml.so.1": Outcome.GPU_DRIVER,
        "libpython3.11.so.1.0": Outcome.PYTHON,
        "libstdc++.so.6": Outcome.MANYLINUX,
        "libcrypt.so.1": Outcome.UNRESOLVED,
        "libfoo.so": Outcome.UNRESOLVED,
    }

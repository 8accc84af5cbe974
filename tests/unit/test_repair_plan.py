"""The repair planner in-process: ``plan_repair`` on scanned and analysed synthetic wheels, against
``--lib-path`` directories built here (libfoo, a copy of the host's libz and of its loader).

What is asserted is the plan itself, the edits ``repair --dry-run`` prints and the patcher applies: for each
binary the tag (RUNPATH or RPATH) and its exact new value, which needs made a directory necessary, the
new PT_INTERP, and the needs nothing provides (which stop a repair unless ``--allow``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from wheelfix.analysis.model import Outcome
from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import scan_wheel
from wheelfix.repair.libindex import LibIndex
from wheelfix.repair.plan import ElfEdit, Missing, WheelPlan, plan_repair

from tests.support import synthetic
from tests.support.elfbuild import gcc_bytes
from tests.support.prereq import unavailable
from tests.support.wheels import make_wheel

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"
DEMO_RUNPATH = "$ORIGIN/../demo.libs"
DEMO_TOOL_RPATH = "$ORIGIN/../lib/python3.11/site-packages/demo.libs"
LEGACY_EXT = "legacy/_legacy.cpython-311-x86_64-linux-gnu.so"
CONSUMER_EXT = "consumer/_consumer.cpython-311-x86_64-linux-gnu.so"
HOST_LOADER = "/lib64/ld-linux-x86-64.so.2"
# the executable's loader, found nowhere: a missing need that is its interpreter
LOADER_MISSING = Missing(DEMO_TOOL, "ld-linux-x86-64.so.2", Outcome.UNRESOLVED, "x86_64", HOST_LOADER)
STORE_LOADER = "/nix/store/00000000000000000000000000000000-glibc-2.40/lib/ld-linux-x86-64.so.2"


@pytest.fixture(scope="module")
def libdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Flat library directories, as ``--lib-path`` takes them: foo (libfoo.so.1, on no system), z (the host's
    libz.so.1) and glibc (the host's loader, ld-linux-x86-64.so.2)."""
    root = tmp_path_factory.mktemp("libdirs")
    host = {"z": Path("/usr/lib/x86_64-linux-gnu/libz.so.1"), "glibc": Path(HOST_LOADER)}
    for name, path in host.items():
        if not path.exists():
            unavailable(f"{path} is not there")
        (root / name).mkdir()
        shutil.copyfile(path.resolve(), root / name / path.name)
    synthetic.build_libfoo(root / "foo")
    return {"foo": root / "foo", "z": root / "z", "glibc": root / "glibc"}


def plan(
    wheels: Sequence[Path],
    dirs: Sequence[Path],
    *,
    allow: Sequence[str] = (),
    rpath_kind: str = "keep",
    interpreter: str | None = None,
) -> tuple[WheelPlan, ...]:
    """What ``wheelfix repair --lib-path DIR... [--allow G] [--rpath-kind K] [--interpreter I]`` plans."""
    analysis = analyze([scan_wheel(w) for w in wheels])
    index = LibIndex.from_dirs(dirs)
    return plan_repair(analysis, index, allow=allow, rpath_kind=rpath_kind, interpreter=interpreter)


def elf_edits(p: WheelPlan) -> tuple[ElfEdit, ...]:
    return p.elf_edits


def edits(p: WheelPlan) -> dict[str, ElfEdit]:
    return {e.member: e for e in elf_edits(p)}


def test_needs_found_in_lib_dirs_are_appended_to_the_runpath(
    wheels: dict[str, Path], libdirs: dict[str, Path]
) -> None:
    foo, z, glibc = libdirs["foo"], libdirs["z"], libdirs["glibc"]
    (p,) = plan([wheels["demo"]], [foo, z, glibc])
    assert p.missing == ()
    ext = edits(p)[DEMO_EXT]
    # the existing $ORIGIN entry stays first, then one directory per found need, in NEEDED order
    assert ext == ElfEdit(
        member=DEMO_EXT,
        kind="RUNPATH",
        old_value=DEMO_RUNPATH,
        old_kind="RUNPATH",
        new_value=f"{DEMO_RUNPATH}:{foo}:{z}",
        added=(("libfoo.so.1", str(foo)), ("libz.so.1", str(z))),
        old_interpreter=None,
        new_interpreter=None,
        arch="x86_64",
    )
    assert ext.changes_path
    # libbar (bundled, needs only glibc) is not touched; the dlopen hints (libnoted.so.3, libdlopened.so.2)
    # add no directory and are not missing
    assert sorted(edits(p)) == [DEMO_TOOL, DEMO_EXT]


def test_a_directory_found_twice_is_added_once(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    """libfoo and libz from the same directory: one new entry."""
    both = libdirs["foo"].parent / "both"
    both.mkdir()
    for lib in (libdirs["foo"] / "libfoo.so.1", libdirs["z"] / "libz.so.1"):
        shutil.copyfile(lib, both / lib.name)
    (p,) = plan([wheels["demo"]], [both, libdirs["glibc"]])
    ext = edits(p)[DEMO_EXT]
    assert ext.new_value == f"{DEMO_RUNPATH}:{both}"
    assert ext.added == (("libfoo.so.1", str(both)), ("libz.so.1", str(both)))


def test_unfound_needs_are_missing(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    foo = libdirs["foo"]
    (p,) = plan([wheels["demo"]], [foo])
    assert p.missing == (
        # the executable's loader is found nowhere: its PT_INTERP would still say /lib64/...
        LOADER_MISSING,
        Missing(DEMO_EXT, "libz.so.1", Outcome.MANYLINUX, "x86_64"),
    )
    # what was found is still planned: the repair stops on the missing needs, not on the plan
    assert list(edits(p)) == [DEMO_EXT]
    assert edits(p)[DEMO_EXT].new_value == f"{DEMO_RUNPATH}:{foo}"
    assert edits(p)[DEMO_EXT].added == (("libfoo.so.1", str(foo)),)


def test_allow_accepts_what_is_missing(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    foo = libdirs["foo"]
    (p,) = plan([wheels["demo"]], [foo], allow=["libz.so.1", "ld-linux*"])
    assert p.missing == ()
    assert list(edits(p)) == [DEMO_EXT]
    assert edits(p)[DEMO_EXT].new_value == f"{DEMO_RUNPATH}:{foo}"  # an allowed need gets no directory
    # a glob that matches only some of them leaves the others missing
    (p,) = plan([wheels["demo"]], [foo], allow=["libz.*"])
    assert p.missing == (LOADER_MISSING,)


def test_other_wheels_provide_and_the_rest_is_missing(
    wheels: dict[str, Path], libdirs: dict[str, Path]
) -> None:
    alone, *_ = plan([wheels["consumer"]], [libdirs["foo"]])
    assert elf_edits(alone) == ()
    assert alone.missing == (
        Missing(CONSUMER_EXT, "libprov.so.1", Outcome.UNRESOLVED, "x86_64"),
        Missing(CONSUMER_EXT, "libstdc++.so.6", Outcome.MANYLINUX, "x86_64"),
        Missing(CONSUMER_EXT, "libgcc_s.so.1", Outcome.MANYLINUX, "x86_64"),
    )
    together = plan([wheels["consumer"], wheels["provider"]], [libdirs["foo"]])
    assert [p.wheel.scan.meta.name for p in together] == ["consumer", "provider"]
    assert together[0].missing == alone.missing[1:]  # libprov.so.1 comes from the provider wheel
    assert elf_edits(together[1]) == () and together[1].missing == ()


@pytest.mark.parametrize(
    ("rpath_kind", "ext_kind", "tool_kind"),
    [("keep", "RUNPATH", "RPATH"), ("runpath", "RUNPATH", "RUNPATH"), ("rpath", "RPATH", "RPATH")],
)
def test_rpath_kind(
    wheels: dict[str, Path], libdirs: dict[str, Path], rpath_kind: str, ext_kind: str, tool_kind: str
) -> None:
    """keep: each binary's own tag; runpath/rpath: that tag for every edited binary, the value unchanged."""
    foo, z, glibc = libdirs["foo"], libdirs["z"], libdirs["glibc"]
    (p,) = plan([wheels["demo"]], [foo, z, glibc], rpath_kind=rpath_kind)
    ext, tool = edits(p)[DEMO_EXT], edits(p)[DEMO_TOOL]
    assert (ext.kind, ext.old_kind, ext.new_value) == (ext_kind, "RUNPATH", f"{DEMO_RUNPATH}:{foo}:{z}")
    assert (tool.kind, tool.old_kind, tool.new_value) == (tool_kind, "RPATH", DEMO_TOOL_RPATH)
    assert tool.added == ()
    assert tool.changes_path == (rpath_kind == "runpath")
    assert sorted(edits(p)) == [DEMO_TOOL, DEMO_EXT]


def test_rpath_kind_alone_converts_the_tag(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    """legacy needs nothing from outside: kept as it is, but --rpath-kind runpath still converts its
    DT_RPATH (same value) to DT_RUNPATH."""
    (kept,) = plan([wheels["rpathlegacy"]], [libdirs["foo"]])
    assert elf_edits(kept) == () and kept.missing == ()
    (p,) = plan([wheels["rpathlegacy"]], [libdirs["foo"]], rpath_kind="runpath")
    assert elf_edits(p) == (
        ElfEdit(
            member=LEGACY_EXT,
            kind="RUNPATH",
            old_value="$ORIGIN/.libs",
            old_kind="RPATH",
            new_value="$ORIGIN/.libs",
            added=(),
            old_interpreter=None,
            new_interpreter=None,
            arch="x86_64",
        ),
    )


@pytest.fixture(scope="module")
def loaded_through(tmp_path_factory: pytest.TempPathFactory, libdirs: dict[str, Path]) -> dict[str, Path]:
    """Two wheels whose extension loads inherit/libs/libx.so.1, which has no search path of its own and
    needs libfoo.so.1: through the extension's DT_RPATH ("rpath"), or its DT_RUNPATH ("runpath")."""
    work = tmp_path_factory.mktemp("inherit")
    foo = libdirs["foo"] / "libfoo.so.1"
    (work / "x").mkdir()
    libx = gcc_bytes(
        work / "x",
        "int foo_value(void);\nint x_value(void) { return foo_value() + 1; }\n",
        *("-shared", "-fPIC", "-Wl,-soname,libx.so.1", "-Wl,--no-as-needed", str(foo)),
    )
    out: dict[str, Path] = {}
    for tag, dtags in (("rpath", "--disable-new-dtags"), ("runpath", "--enable-new-dtags")):
        build = work / tag
        build.mkdir()
        (build / "libx.so.1").write_bytes(libx)
        ext = gcc_bytes(
            build,
            "int x_value(void);\nint ext_value(void) { return x_value(); }\n",
            *("-shared", "-fPIC", f"-Wl,{dtags},-rpath,$ORIGIN/libs", "-Wl,--no-as-needed"),
            *(f"-Wl,-rpath-link,{foo.parent}", str(build / "libx.so.1")),
        )
        files = {"inherit/_ext.cpython-311-x86_64-linux-gnu.so": bytes(ext), "inherit/libs/libx.so.1": libx}
        (work / "wheels" / tag).mkdir(parents=True)
        out[tag] = make_wheel(work / "wheels" / tag, "inherit", "cp311-cp311-manylinux_2_17_x86_64", files)
    return out


def test_a_library_inheriting_a_loaders_rpath_gets_rpath(
    loaded_through: dict[str, Path], libdirs: dict[str, Path]
) -> None:
    """libx finds what it loads through its loader's DT_RPATH: a DT_RUNPATH of its own would switch that
    inheritance off, so it gets DT_RPATH. Loaded through a DT_RUNPATH (not inherited), it gets DT_RUNPATH."""
    foo = libdirs["foo"]
    (through_rpath,) = plan([loaded_through["rpath"]], [foo])
    assert through_rpath.missing == ()
    assert elf_edits(through_rpath) == (
        ElfEdit(
            member="inherit/libs/libx.so.1",
            kind="RPATH",
            old_value=None,
            old_kind=None,
            new_value=str(foo),
            added=(("libfoo.so.1", str(foo)),),
            old_interpreter=None,
            new_interpreter=None,
            arch="x86_64",
        ),
    )
    (through_runpath,) = plan([loaded_through["runpath"]], [foo])
    (edit,) = elf_edits(through_runpath)
    assert (edit.member, edit.kind, edit.old_kind, edit.new_value) == (
        "inherit/libs/libx.so.1",
        "RUNPATH",
        None,
        str(foo),
    )
    # asked for explicitly, the tag is what was asked for
    (forced,) = plan([loaded_through["rpath"]], [foo], rpath_kind="runpath")
    assert [(e.member, e.kind) for e in elf_edits(forced)] == [
        ("inherit/_ext.cpython-311-x86_64-linux-gnu.so", "RUNPATH"),
        ("inherit/libs/libx.so.1", "RUNPATH"),
    ]


def test_interpreter_found_in_a_lib_dir(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    foo, z, glibc = libdirs["foo"], libdirs["z"], libdirs["glibc"]
    (p,) = plan([wheels["demo"]], [foo, z, glibc])
    assert edits(p)[DEMO_TOOL] == ElfEdit(
        member=DEMO_TOOL,
        kind="RPATH",
        old_value=DEMO_TOOL_RPATH,
        old_kind="RPATH",
        new_value=DEMO_TOOL_RPATH,  # libbar is bundled: nothing to add
        added=(),
        old_interpreter=HOST_LOADER,
        new_interpreter=f"{glibc}/ld-linux-x86-64.so.2",
        arch="x86_64",
    )
    assert not edits(p)[DEMO_TOOL].changes_path
    assert edits(p)[DEMO_EXT].new_interpreter is None  # a library has no PT_INTERP


def test_interpreter_not_found(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    (p,) = plan([wheels["demo"]], [libdirs["foo"], libdirs["z"]])
    assert DEMO_TOOL not in edits(p)  # nothing else to change in it
    assert p.missing == (LOADER_MISSING,)


def test_interpreter_given(wheels: dict[str, Path], libdirs: dict[str, Path]) -> None:
    """--interpreter: used as given, whether or not a loader is in the lib dirs (it wins over one that is)."""
    for dirs in ([libdirs["foo"], libdirs["z"]], [libdirs["foo"], libdirs["z"], libdirs["glibc"]]):
        (p,) = plan([wheels["demo"]], dirs, interpreter=STORE_LOADER)
        assert p.missing == ()
        tool = edits(p)[DEMO_TOOL]
        assert (tool.old_interpreter, tool.new_interpreter) == (HOST_LOADER, STORE_LOADER)
        assert (tool.kind, tool.new_value, tool.added) == ("RPATH", DEMO_TOOL_RPATH, ())
    # the interpreter it already has: no edit
    (p,) = plan([wheels["demo"]], [libdirs["foo"], libdirs["z"]], interpreter=HOST_LOADER)
    assert DEMO_TOOL not in edits(p) and p.missing == ()

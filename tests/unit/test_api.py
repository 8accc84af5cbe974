"""The public API (``import wheelfix``) and the pipeline under it: each wheel is opened once per command
(counted with an audit hook on every ``open`` of the wheel's path), the caller's limits hold for every step,
a wheel changed after ``inspect`` is refused when its plan is written, and every error is a
``wheelfix.Error`` with the CLI's exit code."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import wheelfix
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.cli import main

from tests.support.prereq import require_tool

EXAMPLE_EXT = "wheelfix_example/_example.cpython-311-x86_64-linux-gnu.so"

# --- counting opens ---------------------------------------------------------------------------------------

_opened: list[str] = []
_watch: set[str] = set()
_lock = threading.Lock()


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        name = os.fsdecode(args[0]) if not isinstance(args[0], os.PathLike) else os.fspath(args[0])
        if name in _watch:
            with _lock:
                _opened.append(str(name))


sys.addaudithook(_hook)  # audit hooks cannot be removed: it only counts paths a test asks it to watch


@contextmanager
def count_opens(*paths: Path) -> Iterator[list[str]]:
    names = {str(p) for p in paths} | {str(p.resolve()) for p in paths}
    with _lock:
        _opened.clear()
        _watch.update(names)
    try:
        yield _opened
    finally:
        with _lock:
            _watch.difference_update(names)


# --- wheels -----------------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def rewrite_wheel(source: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """A copy of ``source`` with members replaced and RECORD updated to match."""
    with zipfile.ZipFile(source) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members.update(replace)
    (record,) = [n for n in members if n.endswith(".dist-info/RECORD")]
    lines = []
    for name, data in members.items():
        lines.append(f"{name},,\n" if name == record else f"{name},{_record_hash(data)},{len(data)}\n")
    members[record] = "".join(lines).encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    dest.write_bytes(buf.getvalue())
    return dest


@pytest.fixture
def example(wheels: dict[str, Path], tmp_path: Path) -> Path:
    """The example wheel (needs libz.so.1 from the system), in a directory of its own."""
    dest = tmp_path / "in" / wheels["example"].name
    dest.parent.mkdir()
    shutil.copy2(wheels["example"], dest)
    return dest


def runpath_of(wheel: Path, member: str) -> str | None:
    with zipfile.ZipFile(wheel) as zf:
        return parse_elf(zf.read(member)).runpath


# --- the API ----------------------------------------------------------------------------------------------


def test_public_names_are_importable_and_typed() -> None:
    for name in wheelfix.__all__:
        assert hasattr(wheelfix, name), name
    assert (Path(wheelfix.__file__).parent / "py.typed").is_file()
    assert wheelfix.__version__ != "0+unknown"
    for error in (wheelfix.BadInput, wheelfix.UsageError, wheelfix.Findings, wheelfix.OutputError):
        assert issubclass(error, wheelfix.Error)
    assert (wheelfix.Findings.exit_code, wheelfix.BadInput.exit_code, wheelfix.OutputError.exit_code) == (
        1,
        2,
        4,
    )


def test_inspect_check_plan_and_write(example: Path, libz_dir: Path, tmp_path: Path) -> None:
    analysis = wheelfix.inspect([example])
    (wheel,) = analysis.wheels
    libs = {lib.soname: lib.outcome for lib in wheel.libraries()}
    assert libs == {
        "libz.so.1": wheelfix.Outcome.MANYLINUX,
        "libexdep.so.1": wheelfix.Outcome.BUNDLED,
        "libc.so.6": wheelfix.Outcome.GLIBC,
    }
    result = wheelfix.check(analysis, "nix")
    assert not result.passed
    assert [(f.severity, f.code, f.soname) for f in result.errors] == [
        (wheelfix.Severity.ERROR, "system-library", "libz.so.1")
    ]
    assert wheelfix.check(analysis, "nix", allow=["libz.so.*"]).passed
    assert wheelfix.check(analysis, "manylinux_2_17").passed

    (plan,) = wheelfix.plan_repair(analysis, lib_paths=[libz_dir])
    assert plan.complete and plan.changes and not plan.macho_edits
    (edit,) = plan.elf_edits
    assert edit.member == EXAMPLE_EXT
    assert (edit.old_kind, edit.old_value) == ("RUNPATH", "$ORIGIN/../wheelfix_example.libs")
    assert (edit.kind, edit.new_value) == ("RUNPATH", f"$ORIGIN/../wheelfix_example.libs:{libz_dir}")
    assert edit.added == (("libz.so.1", str(libz_dir)),)

    (result_,) = wheelfix.write_repaired([plan], tmp_path / "out")
    assert result_.output == tmp_path / "out" / example.name and result_.changed == (EXAMPLE_EXT,)
    assert runpath_of(result_.output, EXAMPLE_EXT) == edit.new_value
    # a directory outside /nix/store is never looked at by inspect: the need stays the system's
    again = wheelfix.inspect([result_.output])
    assert {lib.soname: lib.outcome for lib in again.wheels[0].libraries()}[
        "libz.so.1"
    ] is wheelfix.Outcome.MANYLINUX


def test_repair_in_one_call_and_the_missing_library(example: Path, libz_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[wheelfix.WheelPlan, ...]] = []
    (r,) = wheelfix.repair([example], tmp_path / "out", lib_paths=[libz_dir], on_plan=seen.append)
    assert len(seen) == 1 and seen[0][0] is r.plan
    assert runpath_of(r.output, EXAMPLE_EXT) == f"$ORIGIN/../wheelfix_example.libs:{libz_dir}"  # type: ignore[arg-type]

    with pytest.raises(wheelfix.RepairIncomplete) as info:
        wheelfix.repair([example], tmp_path / "out2")
    assert info.value.exit_code == 1
    assert [(m.member, m.soname) for p in info.value.plans for m in p.missing] == [(EXAMPLE_EXT, "libz.so.1")]
    assert "libz.so.1" in str(info.value)
    assert not (tmp_path / "out2").exists()

    (dry,) = wheelfix.repair([example], tmp_path / "out3", allow=["libz.so.1"], dry_run=True)
    assert dry.output is None and not (tmp_path / "out3").exists()


def test_a_wheel_changed_after_inspect_is_refused(example: Path, libz_dir: Path, tmp_path: Path) -> None:
    (plan,) = wheelfix.plan_repair(wheelfix.inspect([example]), lib_paths=[libz_dir])
    rewrite_wheel(example, example, {"wheelfix_example/extra.txt": b"added later\n"})
    with pytest.raises(wheelfix.BadInput, match="changed since it was inspected"):
        wheelfix.write_repaired([plan], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_usage_errors(example: Path, tmp_path: Path) -> None:
    analysis = wheelfix.inspect([example])
    with pytest.raises(wheelfix.UnknownTarget) as info:
        wheelfix.check(analysis, "manylinux_1_0")
    assert isinstance(info.value, wheelfix.UsageError) and info.value.exit_code == 2
    with pytest.raises(wheelfix.UsageError, match="flavor"):
        wheelfix.nix_fragment(analysis, "conda")
    with pytest.raises(wheelfix.UsageError, match="holds the input"):
        wheelfix.repair([example], example.parent)
    with pytest.raises(wheelfix.BadInput) as bad:
        wheelfix.inspect([tmp_path / "missing-1.0-py3-none-any.whl", tmp_path / "also-1.0-py3-none-any.whl"])
    assert [p.message for p in bad.value.problems] == [
        "no such file",
        "no such file",
    ]  # every wheel's problems


def test_lookup_and_nix_fragment(example: Path) -> None:
    (answer,) = wheelfix.lookup(["libz.so.1"])
    assert answer.known and answer.chosen is not None and answer.chosen.attr == "zlib"
    fragment = wheelfix.nix_fragment(wheelfix.inspect([example]), "plain")
    assert fragment.flavor == "plain" and fragment.unknown == ()
    assert "pkgs.zlib" in fragment.text


# --- one open per wheel, the caller's limits everywhere ---------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["inspect", "--json"],
        ["check", "--target", "nix"],
        ["check", "--target", "manylinux_2_17", "--format", "json"],
        ["nix", "--flavor", "uv2nix"],
        ["repair", "--lib-path", "{libz}", "-o", "{out}"],
        ["repair", "--allow", "libz.so.1", "-o", "{out}"],  # nothing to patch: copied from the open file
        ["repair", "--lib-path", "{libz}", "--dry-run", "-o", "{out}"],
    ],
)
def test_each_command_opens_each_wheel_once(
    command: list[str], example: Path, wheels: dict[str, Path], libz_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "in" / wheels["demo"].name
    shutil.copy2(wheels["demo"], other)
    args = [a.format(libz=libz_dir, out=tmp_path / "out") for a in command]
    given = [example] if command[0] == "repair" else [example, other]
    with count_opens(*given) as opened:
        code = main([*args, *map(str, given)])
    assert code in (0, 1)
    assert sorted(opened) == sorted(str(p) for p in given)


def test_raised_max_ratio_holds_for_the_whole_repair(example: Path, libz_dir: Path, tmp_path: Path) -> None:
    """A member over 16 MiB that inflates more than 200:1 (here: the extension with 20 MiB of zeros after its
    last section, which ld.so never maps) is refused by default, and repaired with --max-ratio raised: the
    raised limit holds for patching and writing too, not only for the scan."""
    require_tool("readelf")
    with zipfile.ZipFile(example) as zf:
        ext = zf.read(EXAMPLE_EXT)
    big = rewrite_wheel(example, tmp_path / "big" / example.name, {EXAMPLE_EXT: ext + bytes(20 << 20)})
    out = tmp_path / "out"
    base = ["repair", str(big), "--lib-path", str(libz_dir), "-o", str(out)]
    assert main(base) == 2  # refused: a possible zip bomb
    assert not out.exists()
    assert main([*base, "--max-ratio", "100000", "--dry-run"]) == 0
    assert main([*base, "--max-ratio", "100000"]) == 0
    repaired = out / big.name
    with zipfile.ZipFile(repaired) as zf:
        data = zf.read(EXAMPLE_EXT)
    assert parse_elf(data).runpath == f"$ORIGIN/../wheelfix_example.libs:{libz_dir}"
    elf = tmp_path / "ext.so"
    elf.write_bytes(data)
    dyn = subprocess.run(["readelf", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    assert f"Library runpath: [$ORIGIN/../wheelfix_example.libs:{libz_dir}]" in dyn
    assert wheelfix.inspect([repaired], limits=wheelfix.Limits(max_ratio=100000)).wheels[0].elf

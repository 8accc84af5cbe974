"""The real CLI against hostile input: every ``generate.HOSTILE`` wheel, bomb limits, bad paths, bad options.

Each hostile wheel must be refused with exit code 2 and one ``wheelfix: error: <file>[: <member>]: <what>``
line per problem on stderr (no traceback, nothing on stdout), and must be left exactly as it was: same
bytes, nothing written next to it or into the working directory.

The CLI runs as ``python -m wheelfix`` in a subprocess. The (wheel x command) matrix is run once per session,
concurrently, each run in its own empty working directory; the tests then check the recorded results.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import synthetic as generate
from tests.support.wheels import with_record, write_wheel

ERROR = "wheelfix: error: "
EVIL_SO = f"evil/_evil{generate.EXT_SUFFIX}"
RECORD = "evil-1.0.dist-info/RECORD"
TIMEOUT = 120  # seconds per CLI run; a hang is a failure, not a stuck suite


# --- what each hostile wheel must produce ----------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """``member``: the member every error line names (None: the defect is in the archive as a whole).
    ``phrases``: each must occur in some line's message. ``lines``: how many problems are reported."""

    member: str | None
    phrases: tuple[str, ...]
    lines: int = 1


EXPECTED: dict[str, Expect] = {
    "not-a-zip": Expect(None, ("not a valid zip file",)),
    "truncated-zip": Expect(None, ("not a valid zip file",)),
    "zipslip-dotdot": Expect("../evil.py", ("'..' in member name", "zip-slip")),
    "zipslip-absolute": Expect("/etc/evil.py", ("absolute member name", "zip-slip")),
    "zipslip-drive": Expect("C:/evil.py", ("drive letter", "zip-slip")),
    "zipslip-backslash": Expect("pkg\\..\\..\\evil.py", ("backslash in member name", "zip-slip")),
    "duplicate-member": Expect("evil/util.py", ("duplicate member name",)),
    "symlink-member": Expect("evil/link.py", ("symlink member",)),
    "bomb-ratio": Expect("evil/zeros.bin", ("compression ratio", "over the limit of 200:1", "zip bomb")),
    "record-missing": Expect(RECORD, ("missing",)),
    "record-malformed": Expect(
        RECORD, ("line 1: expected 3 fields, got 4", "line 2: bad hash", "evil/util.py"), lines=2
    ),
    "record-wrong-hash": Expect("evil/util.py", ("sha256 does not match RECORD",)),
    "record-wrong-size": Expect("evil/util.py", ("size 10 does not match RECORD (11)",)),
    "record-unlisted-member": Expect("evil/unlisted.py", ("not listed in RECORD",)),
    "record-lists-missing-file": Expect("evil/missing.py", ("listed in RECORD but not in the archive",)),
    "two-dist-info": Expect(
        None, ("more than one .dist-info directory", "evil-1.0.dist-info", "other-1.0.dist-info")
    ),
    "garbage-elf": Expect(EVIL_SO, ("malformed ELF",)),
    "truncated-elf": Expect(EVIL_SO, ("malformed ELF", "past the end of the file")),
    "elf-bad-offsets": Expect(EVIL_SO, ("malformed ELF", "past the end of the file")),
}

# Deviations that pip and uv accept (RECORD gets a size wrong, or lists a file that is not there): a warning
# by default, refused under --strict, which the matrix below uses for them.
DEVIATIONS = {"record-wrong-size", "record-lists-missing-file"}

# Problems are found before any output format or target matters; two variants each keep that honest.
COMMANDS: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect",),
    "inspect-json": ("inspect", "--json", "--verbose"),
    "check": ("check",),
    "check-manylinux-github": ("check", "--target", "manylinux_2_17", "--format", "github", "-j", "1"),
}


# --- running the CLI --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def describe(self) -> str:
        command = " ".join(self.args)
        return f"wheelfix {command} -> {self.returncode}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WHEELFIX_DEBUG"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def wheelfix(*args: str | Path, cwd: Path) -> Run:
    argv = tuple(str(a) for a in args)
    proc = subprocess.run(
        [sys.executable, "-m", "wheelfix", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        timeout=TIMEOUT,
        check=False,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes (by sha256) and the names in its directory."""

    sha256: str
    size: int
    siblings: tuple[str, ...]


def snapshot(path: Path) -> Snapshot:
    data = path.read_bytes()
    return Snapshot(hashlib.sha256(data).hexdigest(), len(data), tuple(sorted(os.listdir(path.parent))))


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def assert_clean_failure(run: Run, *, lines: int | None = None, annotations: bool = False) -> None:
    """Exit 2, nothing on stdout (``annotations``: only ``::error`` workflow commands), only
    ``wheelfix: error:`` lines on stderr, no traceback."""
    assert run.returncode == 2, run.describe()
    if annotations:
        assert run.stdout and all(line.startswith("::error ") for line in run.stdout.splitlines()), (
            run.describe()
        )
    else:
        assert run.stdout == "", run.describe()
    assert run.stderr.strip(), run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    assert "internal error" not in run.stderr, run.describe()
    for line in run.lines:
        assert line.startswith(ERROR), f"line {line!r} is not a wheelfix error\n{run.describe()}"
    if lines is not None:
        assert len(run.lines) == lines, run.describe()


def assert_reports(run: Run, path: Path, expect: Expect, lines: Sequence[str] | None = None) -> None:
    """``lines`` (default: all of stderr) are exactly the problems ``expect`` describes for ``path``."""
    lines = run.lines if lines is None else lines
    where = f"{ERROR}{path}: " if expect.member is None else f"{ERROR}{path}: {expect.member}: "
    assert len(lines) == expect.lines, run.describe()
    for line in lines:
        assert line.startswith(where), f"{line!r} does not start with {where!r}\n{run.describe()}"
        assert line[len(where) :].strip(), f"{line!r} has no message\n{run.describe()}"
    messages = [line[len(where) :] for line in lines]
    for phrase in expect.phrases:
        assert any(phrase in m for m in messages), f"no line says {phrase!r}\n{run.describe()}"


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hostile_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("hostile-cli")
    return {name: generate.build_wheel(name, outdir) for name in generate.HOSTILE}


@pytest.fixture(scope="session")
def demo_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate.build_wheel("demo", tmp_path_factory.mktemp("demo-cli"))


@dataclass(frozen=True)
class Outcome:
    wheel: Path
    run: Run
    before: Snapshot
    after: Snapshot
    cwd_after: tuple[str, ...]


@pytest.fixture(scope="session")
def hostile_runs(
    hostile_wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Outcome]:
    """Every hostile wheel under every command, run concurrently; snapshots taken before and after all."""
    before = {name: snapshot(path) for name, path in hostile_wheels.items()}
    jobs = [
        (name, cmd, tmp_path_factory.mktemp(f"cwd-{name}-{cmd}")) for name in EXPECTED for cmd in COMMANDS
    ]

    def one(job: tuple[str, str, Path]) -> Run:
        name, cmd, cwd = job
        strict = ("--strict",) if name in DEVIATIONS else ()
        return wheelfix(*COMMANDS[cmd], *strict, hostile_wheels[name], cwd=cwd)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        runs = list(pool.map(one, jobs))
    after = {name: snapshot(path) for name, path in hostile_wheels.items()}
    return {
        (name, cmd): Outcome(hostile_wheels[name], run, before[name], after[name], tuple(listing(cwd)))
        for (name, cmd, cwd), run in zip(jobs, runs, strict=True)
    }


def matrix() -> Iterator[tuple[str, str]]:
    for name in generate.HOSTILE:
        for cmd in COMMANDS:
            yield name, cmd


# --- every hostile wheel ----------------------------------------------------------------------------


def test_every_hostile_wheel_has_an_expectation() -> None:
    assert set(EXPECTED) == set(generate.HOSTILE)


@pytest.mark.parametrize(("name", "cmd"), list(matrix()))
def test_hostile_wheel_is_refused(name: str, cmd: str, hostile_runs: dict[tuple[str, str], Outcome]) -> None:
    outcome = hostile_runs[name, cmd]
    assert_clean_failure(outcome.run, annotations=cmd.endswith("-github"))
    assert_reports(outcome.run, outcome.wheel, EXPECTED[name])


@pytest.mark.parametrize(("name", "cmd"), list(matrix()))
def test_hostile_wheel_is_left_untouched(
    name: str, cmd: str, hostile_runs: dict[tuple[str, str], Outcome]
) -> None:
    outcome = hostile_runs[name, cmd]
    assert outcome.after == outcome.before
    assert outcome.after.siblings == (outcome.wheel.name,)
    assert outcome.cwd_after == (), "the CLI wrote into its working directory"


@pytest.mark.parametrize("name", generate.HOSTILE)
def test_same_report_from_every_command(name: str, hostile_runs: dict[tuple[str, str], Outcome]) -> None:
    """Input validation happens before any output format or target is involved."""
    reports = {cmd: hostile_runs[name, cmd].run.stderr for cmd in COMMANDS}
    assert len(set(reports.values())) == 1, reports


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deviations_installers_accept_are_warnings(
    name: str, hostile_wheels: dict[str, Path], tmp_path: Path
) -> None:
    wheel = hostile_wheels[name]
    run = wheelfix("inspect", wheel, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    (line,) = run.lines
    expect = EXPECTED[name]
    assert line.startswith(f"wheelfix: warning: {wheel}: "), run.describe()
    assert all(phrase in line for phrase in expect.phrases) and expect.member is not None
    assert expect.member in line
    assert run.stdout.startswith(wheel.name)


def test_relative_path_is_reported_as_given(hostile_wheels: dict[str, Path]) -> None:
    wheel = hostile_wheels["zipslip-dotdot"]
    run = wheelfix("inspect", wheel.name, cwd=wheel.parent)
    assert_clean_failure(run, lines=1)
    assert run.lines[0].startswith(f"{ERROR}{wheel.name}: ../evil.py: "), run.describe()


# --- several wheels in one call ---------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["inspect", "check"])
def test_every_problem_of_every_wheel_is_reported(
    cmd: str,
    hostile_wheels: dict[str, Path],
    demo_wheel: Path,
    hostile_runs: dict[tuple[str, str], Outcome],
    tmp_path: Path,
) -> None:
    """All hostile wheels plus a valid one in one call: the report is each wheel's own report, in argument
    order, and the valid wheel is not mentioned."""
    names = list(generate.HOSTILE)
    middle = len(names) // 2
    wheels = (
        [hostile_wheels[n] for n in names[:middle]]
        + [demo_wheel]
        + [hostile_wheels[n] for n in names[middle:]]
    )
    before = {w: snapshot(w) for w in wheels}
    run = wheelfix(cmd, "--strict", *wheels, cwd=tmp_path)  # the deviations are refused too
    assert_clean_failure(run)
    expected_lines = [line for n in names for line in hostile_runs[n, cmd].run.lines]
    assert run.lines == expected_lines, run.describe()
    for name in names:
        path = hostile_wheels[name]
        own = [line for line in run.lines if line.startswith(f"{ERROR}{path}: ")]
        assert_reports(run, path, EXPECTED[name], own)
    assert not any(str(demo_wheel) in line for line in run.lines)
    assert {w: snapshot(w) for w in wheels} == before
    assert listing(tmp_path) == []


def test_two_hostile_wheels_with_the_same_file_name(hostile_wheels: dict[str, Path], tmp_path: Path) -> None:
    """Every hostile wheel is called evil-1.0-...whl: the reports must tell them apart by path."""
    a, b = hostile_wheels["record-wrong-hash"], hostile_wheels["symlink-member"]
    assert a.name == b.name
    run = wheelfix("check", a, b, cwd=tmp_path)
    assert_clean_failure(run, lines=2)
    assert_reports(run, a, EXPECTED["record-wrong-hash"], run.lines[:1])
    assert_reports(run, b, EXPECTED["symlink-member"], run.lines[1:])


# --- bomb guard by total size ------------------------------------------------------------------------


def inflated_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        return sum(i.file_size for i in zf.infolist() if not i.is_dir())


def test_valid_demo_wheel_passes_default_limits(demo_wheel: Path, tmp_path: Path) -> None:
    run = wheelfix("inspect", demo_wheel, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("cmd", ["inspect", "check"])
def test_max_size_exact_boundary(cmd: str, demo_wheel: Path, tmp_path: Path) -> None:
    """The limit is on the sum of the members' inflated sizes: equal passes the guard, one byte less fails."""
    total = inflated_size(demo_wheel)
    ok = wheelfix(cmd, "--max-size", str(total), demo_wheel, cwd=tmp_path)
    assert ok.returncode in (0, 1), ok.describe()  # check: findings (libfoo is unresolved) are exit 1
    assert ERROR not in ok.stderr, ok.describe()
    refused = wheelfix(cmd, "--max-size", str(total - 1), demo_wheel, cwd=tmp_path)
    assert_clean_failure(refused, lines=1)
    assert refused.lines[0] == (
        f"{ERROR}{demo_wheel}: members inflate to {total} bytes, over the limit of {total - 1}"
    ), refused.describe()


@pytest.mark.parametrize(("limit", "value"), [("16K", 16 << 10), ("16KiB", 16 << 10), ("40kb", 40 << 10)])
def test_max_size_units_on_demo_wheel(limit: str, value: int, demo_wheel: Path, tmp_path: Path) -> None:
    total = inflated_size(demo_wheel)
    assert total > value
    run = wheelfix("inspect", "--max-size", limit, demo_wheel, cwd=tmp_path)
    assert_clean_failure(run, lines=1)
    assert f"over the limit of {value}" in run.stderr, run.describe()


def test_max_size_1m_on_demo_wheel_is_under_the_limit(demo_wheel: Path, tmp_path: Path) -> None:
    """The demo wheel inflates to ~48 KB, so ``--max-size 1M`` accepts it (the bomb case is below)."""
    assert inflated_size(demo_wheel) < 1 << 20
    run = wheelfix("inspect", "--max-size", "1M", demo_wheel, cwd=tmp_path)
    assert run.returncode == 0, run.describe()


def test_max_size_1m_bomb_by_total(hostile_wheels: dict[str, Path], tmp_path: Path) -> None:
    """With the ratio guard relaxed, the 50 MiB member trips the total-size guard instead, at 1M."""
    wheel = hostile_wheels["bomb-ratio"]
    before = snapshot(wheel)
    run = wheelfix("check", "--max-ratio", "100000", "--max-size", "1M", wheel, cwd=tmp_path)
    assert_clean_failure(run, lines=1)
    total = inflated_size(wheel)
    assert run.lines[0] == f"{ERROR}{wheel}: members inflate to {total} bytes, over the limit of {1 << 20}"
    assert snapshot(wheel) == before
    assert listing(tmp_path) == []


def test_both_bomb_guards_are_reported(hostile_wheels: dict[str, Path], tmp_path: Path) -> None:
    wheel = hostile_wheels["bomb-ratio"]
    run = wheelfix("inspect", "--max-size", "1M", wheel, cwd=tmp_path)
    assert_clean_failure(run, lines=2)
    assert any("over the limit of 1048576" in line for line in run.lines), run.describe()
    assert any(f"{wheel}: evil/zeros.bin: compression ratio" in line for line in run.lines), run.describe()


@pytest.mark.parametrize("value", ["lots", "-1M", "1.5G", "1X"])
def test_bad_max_size_is_a_usage_error(value: str, demo_wheel: Path, tmp_path: Path) -> None:
    run = wheelfix("inspect", "--max-size", value, demo_wheel, cwd=tmp_path)
    assert run.returncode == 2, run.describe()
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert "--max-size" in run.stderr, run.describe()


# --- paths that are not wheels ------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["inspect", "check"])
def test_nonexistent_file(cmd: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope-1.0-py3-none-any.whl"
    run = wheelfix(cmd, missing, cwd=tmp_path)
    assert_clean_failure(run, lines=1)
    assert run.lines[0] == f"{ERROR}{missing}: no such file", run.describe()
    assert not missing.exists()
    assert listing(tmp_path) == []


@pytest.mark.parametrize("cmd", ["inspect", "check"])
def test_directory_given_as_wheel(cmd: str, tmp_path: Path) -> None:
    directory = tmp_path / "dir-1.0-py3-none-any.whl"
    directory.mkdir()
    (directory / "inside.txt").write_text("x")
    run = wheelfix(cmd, directory, cwd=tmp_path)
    assert_clean_failure(run, lines=1)
    assert run.lines[0].startswith(f"{ERROR}{directory}: "), run.describe()
    assert "directory" in run.lines[0], run.describe()
    assert listing(tmp_path) == ["dir-1.0-py3-none-any.whl", "dir-1.0-py3-none-any.whl/inside.txt"]


def test_missing_and_hostile_together(hostile_wheels: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "gone-1.0-py3-none-any.whl"
    wheel = hostile_wheels["record-wrong-hash"]
    run = wheelfix("check", missing, wheel, cwd=tmp_path)
    assert_clean_failure(run, lines=2)
    assert run.lines[0] == f"{ERROR}{missing}: no such file"
    assert_reports(run, wheel, EXPECTED["record-wrong-hash"], run.lines[1:])


# --- bad options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["bogus", "manylinux_2_x", "manylinux_2_99", "musllinux_1_9", "NIX", ""])
def test_unknown_target(target: str, demo_wheel: Path, tmp_path: Path) -> None:
    before = snapshot(demo_wheel)
    run = wheelfix("check", "--target", target, demo_wheel, cwd=tmp_path)
    assert run.returncode == 2, run.describe()
    assert run.stdout == "", run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    assert "internal error" not in run.stderr, run.describe()
    assert "--target" in run.stderr, run.describe()
    if target:
        assert repr(target) in run.stderr or target in run.stderr, run.describe()
    assert snapshot(demo_wheel) == before


def test_unknown_format(demo_wheel: Path, tmp_path: Path) -> None:
    run = wheelfix("check", "--format", "xml", demo_wheel, cwd=tmp_path)
    assert run.returncode == 2, run.describe()
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert "--format" in run.stderr


def test_no_wheels_is_a_usage_error(tmp_path: Path) -> None:
    run = wheelfix("inspect", cwd=tmp_path)
    assert run.returncode == 2, run.describe()
    assert run.stdout == ""
    assert "Traceback" not in run.stderr


# --- a member the ELF reader chokes on -------------------------------------------------------------------


def test_elf_member_with_deeply_nested_dlopen_note(tmp_path: Path) -> None:
    """An FDO .note.dlopen whose JSON nests 100 000 arrays deep is not a crash: the note is skipped with a
    warning (ld.so never reads notes), and --strict refuses the ELF as malformed (exit 2)."""
    lib = generate.build_libfoo(tmp_path / "build")
    desc = b"[" * 100_000 + b"\0"
    note = struct.pack("<III", 4, len(desc), 0x407C0C0A) + b"FDO\0" + desc + bytes(-len(desc) % 4)
    (tmp_path / "note.bin").write_bytes(note)
    patched = tmp_path / "build" / "patched.so"
    subprocess.run(
        ["objcopy", f"--add-section=.note.dlopen={tmp_path / 'note.bin'}", str(lib), str(patched)],
        capture_output=True,
        check=True,
    )
    member = f"evil/_evil{generate.EXT_SUFFIX}"
    wheel = write_wheel(tmp_path / "evil-1.0-cp311-cp311-linux_x86_64.whl", {member: patched.read_bytes()})
    run = wheelfix("inspect", wheel, cwd=tmp_path / "build")
    assert run.returncode == 0, run.describe()
    (line,) = run.lines
    assert line.startswith(f"wheelfix: warning: {wheel}: {member}: .note.dlopen at "), run.describe()
    assert "not valid JSON" in line and "the note is ignored" in line, run.describe()
    run = wheelfix("inspect", "--strict", wheel, cwd=tmp_path / "build")
    assert_clean_failure(run, lines=1)
    assert run.lines[0].startswith(f"{ERROR}{wheel}: {member}: malformed ELF: "), run.describe()
    assert "not valid JSON" in run.lines[0], run.describe()


# --- an ELF member hidden behind a slow-starting deflate stream ------------------------------------------


def _stored_block(data: bytes, final: bool) -> bytes:
    return bytes([1 if final else 0]) + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def slow_start_deflate(data: bytes) -> bytes:
    """A valid deflate stream for ``data`` whose first 300 KiB inflate to just 2 bytes: a 2-byte stored block,
    empty stored blocks, then the rest. The scanner reads compressed data 256 KiB at a time."""
    out = _stored_block(data[:2], False) + _stored_block(b"", False) * (300 * 1024 // 5)
    rest = [data[i : i + 0xFFFF] for i in range(2, len(data), 0xFFFF)] or [b""]
    out += b"".join(_stored_block(chunk, i == len(rest) - 1) for i, chunk in enumerate(rest))
    assert zlib.decompress(out, -15) == data
    return out


def raw_deflate_zip(entries: list[tuple[str, bytes, bytes]]) -> bytes:
    """A zip of (name, data, raw deflate stream of data) entries, written by hand to use any stream."""
    body, central = bytearray(), bytearray()
    for name, data, raw in entries:
        encoded, crc, offset = name.encode(), zlib.crc32(data), len(body)
        body += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(raw), len(data), len(encoded), 0
        )
        body += encoded + raw
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            *(0x02014B50, 0x031E, 20, 0, 8, 0, 0x21, crc, len(raw), len(data), len(encoded), 0, 0, 0, 0),
            *(0o644 << 16, offset),
        )
        central += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(body), 0)
    return bytes(body + central + end)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def test_elf_behind_a_slow_starting_deflate_stream_is_still_scanned(demo_wheel: Path, tmp_path: Path) -> None:
    """The same files twice, once deflated normally and once with a stream that yields 2 bytes at first:
    inspect and check must see the same binaries (the demo extension needs libfoo.so.1: check fails)."""
    ext = f"demo/_demo{generate.EXT_SUFFIX}"
    with zipfile.ZipFile(demo_wheel) as zf:
        files = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/RECORD")}
    files = with_record(files, "demo-1.0.dist-info")
    reports: dict[str, tuple[int, list[str]]] = {}
    for variant in ("plain", "slow-start"):
        directory = tmp_path / variant
        directory.mkdir()
        wheel = directory / demo_wheel.name
        wheel.write_bytes(
            raw_deflate_zip(
                [
                    (
                        name,
                        data,
                        slow_start_deflate(data)
                        if variant == "slow-start" and name == ext
                        else _deflate(data),
                    )
                    for name, data in files.items()
                ]
            )
        )
        inspect = wheelfix("inspect", "--json", wheel, cwd=tmp_path)
        assert inspect.returncode == 0, inspect.describe()
        (doc,) = json.loads(inspect.stdout)["wheels"]
        check = wheelfix("check", wheel, cwd=tmp_path)
        reports[variant] = (check.returncode, sorted(b["member"] for b in doc["binaries"]))
    assert ext in reports["plain"][1]
    assert reports["slow-start"] == reports["plain"]

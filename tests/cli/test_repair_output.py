"""What `wheelfix repair` tells a person: plans as added/removed search-path entries (whole RUNPATHs only with
-v, nothing with -q), binaries with the same change listed together; a failed repair as one line per missing
need with the binaries that need it (counted, a few named) and the nixpkgs package as Nix, then one line on
what to do; the checks of --lib-path, --from-env and --interpreter; a shared library's PT_INTERP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.cli import RunCli
from tests.support.elfbuild import gcc_bytes, runpath_flag
from tests.support.oracles import readelf
from tests.support.realwheels import fetch, load_manifest
from tests.support.wheels import make_wheel

EXT_A = "pkg/_a.cpython-311-x86_64-linux-gnu.so"
EXT_B = "pkg/_b.cpython-311-x86_64-linux-gnu.so"
INTERP_LIB = "pkg.libs/libinterp.so.1"
TAG = "cp311-cp311-manylinux_2_17_x86_64"
HOST_Z = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")

# A shared library that can also be run (like libc.so.6 or libQt5Core): an .interp section gives it a
# PT_INTERP, and it has a DT_SONAME.
INTERP_C = """\
const char interp[] __attribute__((section(".interp"))) = "/lib64/ld-linux-x86-64.so.2";
int f(void) { return 1; }
"""


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two extensions needing libz.so.1 with the same build-tree RUNPATH (dropped by the repair), and a
    shared library with PT_INTERP and a SONAME."""
    tmp = tmp_path_factory.mktemp("pkg")
    ext = gcc_bytes(
        tmp,
        "int f(void) { return 2; }\n",
        "-shared",
        "-fPIC",
        "-Wl,--no-as-needed",
        "-l:libz.so.1",
        runpath_flag("/build/tmp/lib:$ORIGIN"),
    )
    lib = gcc_bytes(tmp, INTERP_C, "-shared", "-fPIC", "-Wl,-soname,libinterp.so.1")
    assert "program interpreter" in readelf_bytes(tmp, bytes(lib), "-l")
    return make_wheel(tmp, "pkg", TAG, {EXT_A: bytes(ext), EXT_B: bytes(ext), INTERP_LIB: bytes(lib)})


def readelf_bytes(tmp: Path, data: bytes, flag: str) -> str:
    path = tmp / "probe"
    path.write_bytes(data)
    return readelf(path, flag)


@pytest.fixture(scope="module")
def zdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("zlib") / "lib"
    d.mkdir()
    shutil.copyfile(HOST_Z.resolve(), d / "libz.so.1")
    return d


def test_plan_shows_added_and_removed_entries(run_cli: RunCli, pkg: Path, zdir: Path, tmp_path: Path) -> None:
    proc = run_cli("repair", pkg, "-o", tmp_path / "out", "--lib-path", zdir, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{pkg.name}: would patch 2 of 3 binaries",
        f"  2 binaries: {EXT_A}, {EXT_B}",
        f"    + {zdir}  (libz.so.1)",
        "    - /build/tmp/lib",
    ]
    # a directory outside the store: a warning, not an error
    assert f"wheelfix: warning: --lib-path {zdir} is outside /nix/store" in proc.stderr
    # -v: each binary's whole old and new search path
    verbose = run_cli("repair", pkg, "-o", tmp_path / "out", "--lib-path", zdir, "--dry-run", "-v")
    assert f"  {EXT_A}: RUNPATH /build/tmp/lib:$ORIGIN -> RUNPATH $ORIGIN:{zdir}  (for libz.so.1)" in (
        verbose.stdout
    )
    # -q: no plan, no "wrote" lines (the warning stays)
    quiet = run_cli("repair", pkg, "-o", tmp_path / "out", "--lib-path", zdir, "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and "warning" in quiet.stderr
    assert (tmp_path / "out" / pkg.name).is_file()


def test_shared_library_pt_interp_is_left_alone(
    run_cli: RunCli, pkg: Path, zdir: Path, tmp_path: Path
) -> None:
    """The loader of a shared library with PT_INTERP is no missing need, and its PT_INTERP is not set, even
    with --interpreter: it is loaded by the process's loader (docs/usage.md, the interpreter rule)."""
    store_loader = "/nix/store/00000000000000000000000000000000-glibc-2.40/lib/ld-linux-x86-64.so.2"
    out = tmp_path / "out"
    proc = run_cli("repair", pkg, "-o", out, "--lib-path", zdir, "--interpreter", store_loader)
    assert proc.returncode == 0, proc.stderr
    assert "ld-linux" not in proc.stdout + proc.stderr
    inspect = run_cli("inspect", "-v", out / pkg.name)
    assert "interpreter: /lib64/ld-linux-x86-64.so.2" in inspect.stdout


def test_missing_needs_one_line_each_with_the_package(run_cli: RunCli, wheels: dict[str, Path]) -> None:
    proc = run_cli("repair", wheels["demo"], wheels["consumer"], wheels["provider"], "-o", "/nonexistent/out")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines == [
        "missing: ld-linux-x86-64.so.2 needed by demo-1.0.data/scripts/demo-tool as its interpreter "
        "(PT_INTERP /lib64/ld-linux-x86-64.so.2) in demo: glibc's loader: pkgs.glibc (in its lib/), or give "
        "--interpreter PATH",
        "missing: libfoo.so.1 needed by demo/_demo.cpython-311-x86_64-linux-gnu.so in demo: no known nixpkgs "
        "package",
        "missing: libgcc_s.so.1 needed by consumer/_consumer.cpython-311-x86_64-linux-gnu.so in consumer: "
        "pkgs.stdenv.cc.cc.lib",
        "missing: libstdc++.so.6 needed by consumer/_consumer.cpython-311-x86_64-linux-gnu.so in consumer: "
        "pkgs.stdenv.cc.cc.lib",
        "missing: libz.so.1 needed by demo/_demo.cpython-311-x86_64-linux-gnu.so in demo: pkgs.zlib",
        "repair stopped, nothing written: let wheelfix build and use the packages named with --nixpkgs "
        "nixpkgs (a flake reference, <nixpkgs> or a path), or give their lib directories with --lib-path "
        "DIR; accept the others with --allow GLOB",
    ]


def test_store_root_gets_a_did_you_mean_lib_hint(
    run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path
) -> None:
    """``--lib-path /nix/store/...-zlib`` where ``.../lib`` was meant (what ``${pkgs.zlib}`` gives)."""
    root = tmp_path / "zlib-root"
    (root / "lib").mkdir(parents=True)
    shutil.copyfile(HOST_Z.resolve(), root / "lib" / "libz.so.1")
    proc = run_cli(
        "repair", wheels["demo"], "-o", tmp_path / "out", "--lib-path", root, "--allow", "lib[!z]*"
    )
    assert proc.returncode == 1
    assert f"wheelfix: warning: --lib-path {root} has no libraries; did you mean {root}/lib?" in proc.stderr
    assert (
        "missing: libz.so.1 needed by demo/_demo.cpython-311-x86_64-linux-gnu.so: pkgs.zlib "
        f"(did you mean --lib-path {root}/lib?)" in proc.stderr.splitlines()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lib-path", "/does/not/exist"], "--lib-path /does/not/exist (no such directory)"),
        (["--interpreter", "lib/ld-linux-x86-64.so.2"], "--interpreter 'lib/ld-linux-x86-64.so.2' is not an"),
    ],
)
def test_usage_errors_exit_2(
    run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_cli("repair", wheels["demo"], "-o", tmp_path / "out", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_from_env_without_inputs_says_so(run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("repair", wheels["pure"], "-o", tmp_path / "out", "--from-env")
    assert proc.returncode == 0, proc.stderr
    assert (
        "wheelfix: warning: --from-env: $buildInputs, $propagatedBuildInputs and $WHEELFIX_LIB_PATH give no "
        "library directory" in proc.stderr
    )


def test_verbose_and_quiet_on_every_command(run_cli: RunCli, wheels: dict[str, Path], tmp_path: Path) -> None:
    for args in (
        ["inspect", wheels["pure"]],
        ["check", wheels["pure"]],
        ["nix", wheels["pure"]],
        ["repair", wheels["pure"], "-o", tmp_path / "o", "--dry-run"],
        ["lookup", "libz.so.1"],
    ):
        for flag in ("-v", "-q"):
            proc = run_cli(*args, flag)
            assert proc.returncode == 0, (args, flag, proc.stderr)
        both = run_cli(*args, "-v", "-q")
        assert both.returncode == 2 and "-v and -q contradict each other" in both.stderr


CI_WHEELS = {e["name"]: e for e in load_manifest() if e["ci"]}


@pytest.mark.network
def test_real_wheels_fail_with_one_line_per_soname(run_cli: RunCli, tmp_path: Path) -> None:
    """opencv-python-headless and pyarrow: 90 (soname, binary) pairs used to be 90 lines; now one line per
    soname, each with its count, two names and the package, and one line on what to do."""
    opencv = fetch(CI_WHEELS["opencv-python-headless"])
    pyarrow = fetch(CI_WHEELS["pyarrow"])
    proc = run_cli("repair", opencv, pyarrow, "-o", tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    missing = [line for line in lines if line.startswith("missing: ")]
    assert [line.split()[1] for line in missing] == ["libgcc_s.so.1", "libstdc++.so.6", "libz.so.1"]
    assert missing[0].startswith("missing: libgcc_s.so.1 needed by 42 binaries (cv2/cv2.abi3.so, ")
    assert missing[0].endswith("+40 more) in opencv_python_headless, pyarrow: pkgs.stdenv.cc.cc.lib")
    assert missing[1].endswith(": pkgs.stdenv.cc.cc.lib")
    assert missing[2].endswith(" in opencv_python_headless: pkgs.zlib")
    assert len(lines) == 4 and lines[-1].startswith("repair stopped, nothing written: ")
    assert "--nixpkgs" in lines[-1]

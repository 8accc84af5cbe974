"""wheelfixHook (nix/hook.sh) on a macOS wheel, inside a real Nix build.

The same raw derivation (tests.support.nix.build_with_hook) as tests/integration/test_nix_flake.py's ELF
case: the hook's env hook collects the lib directories of a ``nix-store --add`` libomp (a fat arm64 +
x86_64 dylib built with clang-15/ld64.lld-15), and ``wheelfixRepairWheels`` repairs a universal2 wheel
whose extension needs ``@rpath/libomp.dylib``. Oracles: ``llvm-objdump-15 --macho --dylibs-used`` per
slice on the built output, the arm64 signature checked page by page with hashlib, and
``nix-store -q --references`` of the output naming libomp's path.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.support import machobuild as mf
from tests.support.machochecks import verify_signature
from tests.support.nix import build_with_hook, nix_env, references, run
from tests.support.oracles import objdump_dylibs_used
from tests.support.prereq import require_tool
from tests.support.wheels import make_wheel

EXT = "omptest/_ext.cpython-311-darwin.so"


def test_hook_repairs_a_macos_wheel_in_a_nix_build(tmp_path: Path) -> None:
    require_tool("nix-build")
    for tool in mf.TOOLS:
        require_tool(tool)
    thin = [
        mf.build(
            tmp_path / "omp" / arch / "libomp.dylib", arch=arch, install_name="/usr/local/lib/libomp.dylib"
        )
        for arch in ("arm64", "x86_64")
    ]
    mf.lipo(tmp_path / "wheelfix-test-openmp" / "lib" / "libomp.dylib", *thin)
    added = run(["nix-store", "--add", tmp_path / "wheelfix-test-openmp"], env=nix_env())
    assert added.returncode == 0, added.stderr
    omp = added.stdout.strip()
    ext = [
        mf.build(
            tmp_path / "ext" / arch / "_ext.cpython-311-darwin.so",
            arch=arch,
            kind="bundle",
            deps=[mf.Dep("@rpath/libomp.dylib"), mf.Dep("/usr/lib/libSystem.B.dylib")],
            rpaths=["/opt/homebrew/opt/libomp/lib"],
            headerpad=0x400,
        )
        for arch in ("arm64", "x86_64")
    ]
    fat = mf.lipo(tmp_path / "fat" / "_ext.cpython-311-darwin.so", *ext).read_bytes()
    wheel = make_wheel(tmp_path, "omptest", "cp311-cp311-macosx_11_0_universal2", {EXT: fat})

    out = build_with_hook(tmp_path, wheel, [omp])
    with zipfile.ZipFile(out / wheel.name) as zf:
        new = zf.read(EXT)
    got = tmp_path / "got" / "_ext.cpython-311-darwin.so"
    got.parent.mkdir()
    got.write_bytes(new)
    for arch in ("arm64", "x86_64"):
        names = [d.name for d in objdump_dylibs_used(got, arch)]
        assert names == [f"{omp}/lib/libomp.dylib", "/usr/lib/libSystem.B.dylib"], arch
    assert len(verify_signature(new, "_ext.cpython-311-darwin.so")) == 1  # the arm64 slice
    assert omp in references(out)

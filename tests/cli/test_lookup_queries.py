"""`wheelfix lookup` as a person uses it: unversioned names answered through their versions and never by an
unrelated package picked alphabetically, macOS names answered as `wheelfix nix` maps them, pasted loader
errors and paths, near misses, and the answer as copy-pasteable Nix."""

from __future__ import annotations

import pytest

import wheelfix
from wheelfix.errors import BadInput
from wheelfix.nixkb.kb import KnowledgeBase
from wheelfix.nixkb.query import parse_query
from wheelfix.render.nix import linux_names

from tests.support.cli import RunCli

ERROR = "ImportError: libGL.so.1: cannot open shared object file: No such file or directory"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


def one(kb: KnowledgeBase, name: str) -> wheelfix.Answer:
    (a,) = wheelfix.lookup([name], kb=kb)
    return a


@pytest.mark.parametrize(
    ("name", "unrelated"),
    [("libcublas.so", "zluda"), ("libEGL.so", "angle"), ("libc.so", "musl"), ("libssl.so", "netcat")],
)
def test_unversioned_names_never_name_an_unrelated_package(
    kb: KnowledgeBase, name: str, unrelated: str
) -> None:
    a = one(kb, name)
    assert a.chosen is None or a.chosen.attr != unrelated


def test_unversioned_names_resolve_through_their_versions(kb: KnowledgeBase) -> None:
    cublas = one(kb, "libcublas.so")  # libcublas.so.12 and .13 are curated: the default CUDA set's
    assert cublas.chosen is not None and cublas.chosen.ref == "cudaPackages.libcublas.lib"
    assert "development name of libcublas.so.12, libcublas.so.13" in cublas.reason
    assert [c.attr for c in cublas.alternatives] == ["cudaPackages_13.libcublas"]
    cudart = one(kb, "libcudart.so")  # no file of that name in the data at all: still known
    assert cudart.chosen is not None and cudart.chosen.ref == "cudaPackages.cuda_cudart.lib"
    libc = one(kb, "libc.so")  # glibc's linker script: nothing to add
    assert (libc.kind, libc.chosen) == ("glibc", None) and "libc.so.6" in libc.reason
    gl = one(kb, "libGL.so")
    assert gl.chosen is not None and gl.chosen.ref == "libGL.out"
    cxx = one(kb, "libstdc++.so")  # through the pattern row libstdc++.so.6*
    assert cxx.chosen is not None and cxx.chosen.ref == "stdenv.cc.cc.lib"
    z = one(kb, "libz.so")
    assert z.chosen is not None and z.chosen.ref == "zlib.out"


def test_unversioned_name_with_several_unrelated_providers_is_unknown(kb: KnowledgeBase) -> None:
    egl = one(kb, "libEGL.so")
    assert egl.kind == "unknown" and egl.chosen is None
    assert "several packages ship a file with this name (angle, libGL" in egl.reason
    assert "libEGL.so.1 (pkgs.libGL)" in egl.reason  # the versioned name to look up instead
    assert {c.attr for c in egl.alternatives} >= {"angle", "libGL"}


def test_unversioned_name_named_after_its_package_is_taken_from_the_table(kb: KnowledgeBase) -> None:
    xcb = one(kb, "libxcb.so")
    assert xcb.chosen is not None and xcb.chosen.attr == "libxcb" and "named after the library" in xcb.reason


@pytest.mark.parametrize(
    "name", ["libomp.dylib", "@rpath/libomp.dylib", "/opt/homebrew/opt/libomp/lib/libomp.dylib"]
)
def test_macos_names_are_answered_as_wheelfix_nix_maps_them(kb: KnowledgeBase, name: str) -> None:
    a = one(kb, name)
    (linux,) = [n for n in linux_names("libomp.dylib") if kb.lookup(n).known][:1]
    assert a.soname == "libomp.dylib" and a.chosen == kb.lookup(linux).chosen
    assert a.chosen is not None and a.chosen.ref == "llvmPackages.openmp.out"
    assert f"looked up as {linux}" in a.reason


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (ERROR, "libGL.so.1"),
        (
            "./demo-tool: error while loading shared libraries: libfoo.so.1: cannot open shared object "
            "file: No such file or directory",
            "libfoo.so.1",
        ),
        ("OSError: libz.so: cannot open shared object file: No such file or directory", "libz.so"),
        (
            "ImportError: dlopen(/x/_ext.so, 0x0002): Library not loaded: @rpath/libomp.dylib\n  Referenced "
            "from: /x/_ext.so",
            "libomp.dylib",
        ),
        ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found", "libstdc++.so.6"),
        ("/usr/lib/x86_64-linux-gnu/libGL.so.1", "libGL.so.1"),
        ("libGL", "libGL"),
    ],
)
def test_pasted_lines_and_paths(text: str, name: str) -> None:
    assert parse_query(text).name == name


@pytest.mark.parametrize("text", ["", "   ", "nothing to see here", "a\x00b"])
def test_text_without_a_library_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_query(text)


def test_near_misses_are_suggested(kb: KnowledgeBase) -> None:
    gl = one(kb, "libGL")
    assert gl.kind == "unknown" and gl.reason.startswith("did you mean libGL.so.1 (pkgs.libGL)")
    cased = one(kb, "libgl.so.1")
    assert "did you mean libGL.so.1" in cased.reason


def test_cli_prints_nix_and_takes_a_pasted_line(run_cli: RunCli) -> None:
    line = ERROR
    proc = run_cli("lookup", line, "libstdc++.so.6", "libcublas.so")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == f"libGL.so.1 (from {line!r}): pkgs.libGL"
    assert "libstdc++.so.6: pkgs.stdenv.cc.cc.lib" in out
    assert "libcublas.so: pkgs.cudaPackages.libcublas.lib" in out
    assert not any(line.startswith(("data:", "  provenance:")) for line in out)
    unknown = run_cli("lookup", "libGL")
    assert (
        unknown.returncode == 1 and "why:          did you mean libGL.so.1 (pkgs.libGL), " in unknown.stdout
    )

"""A nixpkgs-shaped expression for ``repair --nixpkgs``: the few attributes the synthetic wheels need, each a
REAL derivation (raw ``derivation``, builder ``/bin/sh``, no stdenv) that copies libraries out of one store
path made with ``nix-store --add``, so evaluating it gives real ``.drv`` files and realising them really
builds. Written as a plain ``default.nix`` taking ``{ ... }`` and as a flake exposing
``legacyPackages.<system>`` (read with ``builtins.getFlake "path:..."``).

What it fakes (see the header it writes): nixpkgs itself -- no stdenv, no fetchers, no other attributes; the
libraries are this machine's (gcc's runtime, zlib, the loader) and the test's libfoo, not nixpkgs builds.
What is real: the derivations, their outputs (``stdenv.cc.cc`` has ``out`` and ``lib``, ``zlib`` has ``out``
and ``dev``, like nixpkgs'), the store paths they build to, and the libraries in them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support import synthetic as generate
from tests.support.nix import nix_add

HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu")
LOADER = Path("/lib64/ld-linux-x86-64.so.2")

DEFAULT_NIX = """\
# A nixpkgs-shaped stub for wheelfix's `repair --nixpkgs` tests (tests/support/mini_nixpkgs.py).
# It FAKES nixpkgs: only these attributes exist, there is no stdenv, and each package is a raw
# `derivation` (builder /bin/sh, no sandbox) that copies libraries from one `nix-store --add`ed source
# ({src}): this machine's gcc runtime, zlib and loader, and the test's libfoo -- not nixpkgs builds.
# The derivations, their outputs (stdenv.cc.cc: out + lib, zlib: out + dev) and store paths are real.
{{ system ? builtins.currentSystem, ... }}:
let
  src = builtins.storePath "{src}";
  pkg = name: outputs: script: derivation {{
    inherit name system outputs src;
    builder = "/bin/sh";
    args = [ "-c" "set -e; PATH=/usr/bin:/bin; ${{script}}" ];
  }};
in
rec {{
  zlib = pkg "zlib-1.3" [ "out" "dev" ] ''
    mkdir -p $out/lib $dev/include; cp $src/zlib/libz.so.1 $out/lib/
    echo '/* zlib.h */' > $dev/include/zlib.h
  '';
  foo = pkg "foo-1.0" [ "out" ] "mkdir -p $out/lib; cp $src/foo/libfoo.so.1 $out/lib/";
  glibc = pkg "glibc-2.40" [ "out" ] "mkdir -p $out/lib; cp $src/glibc/ld-linux-x86-64.so.2 $out/lib/";
  stdenv = {{
    cc = {{
      cc = pkg "gcc-13.3.0" [ "out" "lib" ] ''
        mkdir -p $out/bin $lib/lib; echo gcc > $out/bin/gcc
        cp $src/gcc/libstdc++.so.6 $src/gcc/libgcc_s.so.1 $lib/lib/
      '';
      libc = glibc;
    }};
  }};
  broken = pkg "broken-1.0" [ "out" ] "echo this package fails to build >&2; exit 1";
}}
"""

FLAKE_NIX = """\
# The same stub as a flake (see default.nix): legacyPackages.<system> for the two systems tested.
{
  outputs = { self }: {
    legacyPackages = builtins.listToAttrs (map (system: {
      name = system;
      value = import ./default.nix { inherit system; };
    }) [ "x86_64-linux" "aarch64-linux" ]);
  };
}
"""


@dataclass(frozen=True)
class MiniNixpkgs:
    """The stub: ``root`` holds default.nix and flake.nix; ``src`` is the ``nix-store --add``ed source."""

    root: Path
    src: str

    @property
    def flake(self) -> str:
        return f"path:{self.root}"


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src.resolve(), dest)
    dest.chmod(0o755)


def make_mini_nixpkgs(where: Path) -> MiniNixpkgs:
    """Build the stub's library source, add it to the store, and write default.nix and flake.nix."""
    source = where / "wheelfix-mini-nixpkgs-src"
    generate.build_libfoo(source / "foo")
    _copy(HOST_LIBS / "libz.so.1", source / "zlib" / "libz.so.1")
    for name in ("libstdc++.so.6", "libgcc_s.so.1"):
        _copy(HOST_LIBS / name, source / "gcc" / name)
    _copy(LOADER, source / "glibc" / LOADER.name)
    src = nix_add(source)
    root = where / "mini-nixpkgs"
    root.mkdir()
    (root / "default.nix").write_text(DEFAULT_NIX.format(src=src), encoding="utf-8")
    (root / "flake.nix").write_text(FLAKE_NIX, encoding="utf-8")
    return MiniNixpkgs(root, src)

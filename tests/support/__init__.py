"""Shared support code for the test suite (no tests here).

* :mod:`~tests.support.prereq`: ``unavailable()`` / ``require_tool()``, a missing prerequisite fails under
  ``CI=true`` and skips elsewhere;
* :mod:`~tests.support.paths`: the repository's files the tests read (the committed example wheel, the Nix
  hook, the stub nixpkgs, the golden files);
* :mod:`~tests.support.oracles`: the independent tools the tests judge wheelfix by (readelf, patchelf,
  llvm-otool-15 / llvm-objdump-15), wrapped once;
* builders: :mod:`~tests.support.synthetic` (the synthetic and hostile wheels, gcc),
  :mod:`~tests.support.elfbuild` (gcc / clang-15 + lld ELF binaries), :mod:`~tests.support.machobuild`
  (clang-15 + ld64.lld-15 Mach-O fixtures), :mod:`~tests.support.wheels` (small wheels written by hand),
  :mod:`~tests.support.nixindex` (nix-index databases);
* helpers: :mod:`~tests.support.asserts` (``same_bytes``), :mod:`~tests.support.cli` (the command line in a
  subprocess, fresh venvs),
  :mod:`~tests.support.nix` (real Nix: ``nix-store --add``, references, the hook in a raw derivation),
  :mod:`~tests.support.machochecks` (wheelfix's Mach-O reader against LLVM, signatures checked with
  hashlib), :mod:`~tests.support.realwheels` (the pinned real wheels, fetched by sha256).

Everything is imported as ``tests.support.<module>``: pytest imports ``tests`` as a package
(tests/__init__.py), with the repository root on ``sys.path``.
"""

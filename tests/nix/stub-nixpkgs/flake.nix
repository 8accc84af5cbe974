# A hand-written stand-in for nixpkgs, for wheelfix's flake tests (tests/integration/test_nix_flake.py).
#
# It has only what wheelfix's flake.nix and nix/*.nix use. Every builder is a raw `derivation` that keeps
# what it was called with in `stubArgs` (and `stubFunction`), so tests can assert on the wiring with
# `nix eval`. The derivations also build, with the host's tools (sandbox off): stdenv.mkDerivation runs
# ./stdenv-setup.sh, a small genericBuild (setup hooks, env hooks, propagation, phases), and
# buildPythonApplication wraps the source tree for the host's Python. Host paths come from ./host.nix,
# which the tests write into a copy of this directory; without it, eval-only defaults are used.
{
  description = "stub nixpkgs for wheelfix's flake tests";

  outputs =
    { self }:
    {
      lib = import ./lib.nix;

      legacyPackages = self.lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ] (system: import ./pkgs.nix { inherit system; inherit (self) lib; });
    };
}

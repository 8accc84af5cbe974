# A stand-in for nixpkgs for wheelfix's flake tests, built on nixpkgs' real files (see ./pkgs.nix).
#
# Its inputs are overridden by the tests, nothing is fetched:
#   --override-input nixpkgs path:<a copy of this directory, with host.nix>
#   --override-input nixpkgs/nix-sources path:<nix-sources> (upstream nixpkgs lib, setup.sh, hooks, ...)
# host.nix, written by the tests next to this file, names this machine's programs and libraries.
{
  description = "nixpkgs for wheelfix's flake tests: nixpkgs' real lib, stdenv setup.sh and hooks, host tools";

  inputs.nix-sources = {
    url = "path:/nonexistent/wheelfix-nix-sources-must-be-overridden";
    flake = false;
  };

  outputs =
    { self, nix-sources }:
    let
      lib = import "${nix-sources}/nixpkgs-lib/lib";
      host = import ./host.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ] (system: import ./pkgs.nix { inherit lib system host; nixSources = nix-sources; });
    };
}

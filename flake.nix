{
  description = "wheelfix: make prebuilt binary wheels work on Nix, and tell CI whether a wheel is portable";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      wheelfixFor = pkgs: pkgs.python3Packages.buildPythonApplication {
        pname = "wheelfix";
        version = "0.1.0";
        pyproject = true;
        src = self;
        build-system = [ pkgs.python3Packages.hatchling ];
        dependencies = with pkgs.python3Packages; [ packaging click auditwheel ];
        meta.mainProgram = "wheelfix";
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        wheelfix = wheelfixFor pkgs;
        default = wheelfix;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.wheelfix}/bin/wheelfix";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: with ps; [ packaging click auditwheel pytest jsonschema pyelftools ]))
            pkgs.patchelf
          ];
        };
      });
    };
}

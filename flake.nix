{
  description = "wheelfix: make prebuilt binary wheels work on Nix, and tell CI whether a wheel is portable";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # wheelfix and its hook for one package set
      build = pkgs: rec {
        wheelfix = pkgs.callPackage ./nix/package.nix { };
        wheelfixHook = pkgs.callPackage ./nix/hook.nix { inherit wheelfix; };
      };

      # the committed synthetic wheel: bundles libexdep.so.1, needs libz.so.1 from outside
      exampleWheel = ./testdata/wheels/wheelfix_example-1.0-cp311-cp311-manylinux_2_17_x86_64.whl;
    in
    {
      lib = {
        patchWheel = import ./nix/patch-wheel.nix;
        uv2nixOverrides = import ./nix/uv2nix-overrides.nix;
      };

      overlays.default = final: prev: {
        wheelfix = final.callPackage ./nix/package.nix { };
        wheelfixHook = final.callPackage ./nix/hook.nix { };
      };

      packages = forAllSystems (
        pkgs:
        let
          built = build pkgs;
        in
        {
          inherit (built) wheelfix wheelfixHook;
          default = built.wheelfix;
        }
      );

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.wheelfix}/bin/wheelfix";
          meta.description = "Inspect, check and repair prebuilt Python wheels for Nix";
        };
      });

      # `nix fmt`: nixfmt (RFC 166 style) over the tree
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree or pkgs.nixfmt-rfc-style);

      devShells = forAllSystems (
        pkgs:
        {
          # pyproject.toml's dependencies and its `test` extra; the tests also need gcc and nix
          default = pkgs.mkShell {
            packages = [
              (pkgs.python3.withPackages (
                ps:
                with ps;
                [
                  packaging
                  click
                  pytest
                  jsonschema
                  pyelftools
                  zstandard
                  hypothesis
                  mypy
                  # the `fast` codecs, which the test extra installs too
                  isal
                  zlib-ng
                ]
                # nixpkgs builds auditwheel for Linux only
                ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [ auditwheel ]
              ))
              pkgs.patchelf
              pkgs.ruff
            ];
          };
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          inherit (self.packages.${system}) wheelfix wheelfixHook;
        in
        {
          inherit wheelfix;
        }
        // lib.optionalAttrs (system == "x86_64-linux") {
          # lib.patchWheel: the repaired example wheel, whose extension now points at zlib's store path
          patch-example = self.lib.patchWheel {
            inherit pkgs wheelfix wheelfixHook;
            wheel = exampleWheel;
            buildInputs = [ pkgs.zlib ];
          };

          # the hook in a wheel build laid out like format = "wheel": repaired in dist/, installed, then
          # stdenv's fixupPhase (the hook sets dontPatchELF; its wheelfixVerifyPhase checks the result)
          hook-example = pkgs.stdenv.mkDerivation {
            name = "wheelfix-hook-example";
            src = exampleWheel;
            dontUnpack = true;
            nativeBuildInputs = [ wheelfixHook ];
            buildInputs = [ pkgs.zlib ];
            buildPhase = ''
              runHook preBuild
              mkdir -p dist
              cp "$src" "dist/$(stripHash "$src")"
              runHook postBuild
            '';
            installPhase = ''
              runHook preInstall
              ${pkgs.python3.interpreter} -m zipfile -e dist/*.whl "$out"
              runHook postInstall
            '';
            # as wheel builders do: strip may break prebuilt binaries
            dontStrip = true;
          };
        }
      );
    };
}

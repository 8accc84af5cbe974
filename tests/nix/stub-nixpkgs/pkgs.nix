# The stub package set for one system (see ./flake.nix).
{ lib, system }:
let
  defaults = {
    bash = "/bin/bash";
    python = "/usr/bin/python3";
    pythonVersion = "3.11";
    patchelf = "/usr/bin/patchelf";
    libz = "/usr/lib/x86_64-linux-gnu/libz.so.1";
    path = "/usr/local/bin:/usr/bin:/bin";
  };
  host = defaults // (if builtins.pathExists ./host.nix then import ./host.nix else { });

  # Values a derivation's environment can hold; the rest (functions, plain sets) stays in stubArgs.
  isEnvValue =
    v:
    builtins.isString v
    || builtins.isPath v
    || builtins.isBool v
    || builtins.isInt v
    || v == null
    || (builtins.isAttrs v && v ? outPath)
    || (builtins.isList v && builtins.all isEnvValue v);

  # The result of a stub builder: the derivation, what it was called with, and the passthru attributes.
  record =
    function: args: drv:
    drv
    // (args.passthru or { })
    // {
      stubFunction = function;
      stubArgs = args;
      meta = args.meta or { };
    };

  mkDerivation =
    args:
    let
      env = lib.filterAttrs (n: v: isEnvValue v) (
        removeAttrs args [
          "passthru"
          "meta"
        ]
      );
    in
    record "stdenv.mkDerivation" args (
      derivation (
        env
        // {
          inherit system;
          name = args.name or "${args.pname}-${args.version}";
          builder = host.bash;
          args = [ ./stdenv-setup.sh ];
          stubHostPath = host.path;
        }
      )
    );

  stdenv = {
    inherit mkDerivation;
    hostPlatform = {
      inherit system;
      isLinux = builtins.match ".*-linux" system != null;
      isDarwin = builtins.match ".*-darwin" system != null;
    };
    buildPlatform = stdenv.hostPlatform;
    isLinux = stdenv.hostPlatform.isLinux;
    isDarwin = stdenv.hostPlatform.isDarwin;
  };

  # A Python package that is only a name: the host's interpreter has the real one installed.
  pythonPackage =
    pname:
    mkDerivation {
      name = "python${host.pythonVersion}-${pname}-stub";
      buildCommand = ''mkdir -p "$out"'';
      passthru = {
        inherit pname;
      };
    };

  # `--prefix VAR SEP VALUE` triples of makeWrapperArgs, as shell code for the wrapper.
  prefixes =
    margs:
    if builtins.length margs >= 4 && builtins.head margs == "--prefix" then
      let
        var = builtins.elemAt margs 1;
        sep = builtins.elemAt margs 2;
        value = builtins.elemAt margs 3;
      in
      "export ${var}=\"${value}${sep}\$${var}\"\n" + prefixes (builtins.genList (i: builtins.elemAt margs (i + 4)) (builtins.length margs - 4))
    else if margs == [ ] then
      ""
    else
      throw "stub buildPythonApplication: only --prefix VAR SEP VALUE in makeWrapperArgs";

  # Runs `python -m <pname>` from the source tree's src/ with the host's interpreter. -B: the source is a
  # store path, which root (the tests' user) could write __pycache__ into.
  buildPythonApplication =
    args:
    record "python3Packages.buildPythonApplication" args (mkDerivation {
      name = "${args.pname}-${args.version}";
      inherit (args) src;
      wrapperPrefixes = prefixes (args.makeWrapperArgs or [ ]);
      buildCommand = ''
        mkdir -p "$out/bin"
        {
          echo "#!${host.bash}"
          printf '%s' "$wrapperPrefixes"
          echo "export PYTHONPATH=\"$src/src\""
          echo "exec ${host.python} -B -m ${args.pname} \"\$@\""
        } > "$out/bin/${args.meta.mainProgram or args.pname}"
        chmod +x "$out/bin/${args.meta.mainProgram or args.pname}"
      '';
      passthru = args.passthru or { };
    });

  python3Packages = {
    inherit buildPythonApplication;
    hatchling = pythonPackage "hatchling";
    click = pythonPackage "click";
    packaging = pythonPackage "packaging";
    auditwheel = pythonPackage "auditwheel";
    pytest = pythonPackage "pytest";
    jsonschema = pythonPackage "jsonschema";
    pyelftools = pythonPackage "pyelftools";
    zstandard = pythonPackage "zstandard";
    hypothesis = pythonPackage "hypothesis";
    mypy = pythonPackage "mypy";
  };

  python3 = {
    interpreter = host.python;
    inherit (host) pythonVersion;
    sitePackages = "lib/python${host.pythonVersion}/site-packages";
    pkgs = python3Packages;
    withPackages =
      f:
      mkDerivation {
        name = "python${host.pythonVersion}-env-stub";
        stubPackages = map (p: p.pname) (f python3Packages);
        buildCommand = ''mkdir -p "$out"'';
      };
  };

  # Substitutes @name@ at build time, like nixpkgs' makeSetupHook.
  makeSetupHook =
    args: script:
    record "makeSetupHook" (args // { inherit script; }) (
      mkDerivation (
        (args.substitutions or { })
        // {
          inherit (args) name;
          inherit script;
          substitutionNames = builtins.attrNames (args.substitutions or { });
          propagatedBuildInputs = args.propagatedBuildInputs or [ ];
          buildCommand = ''
            text="$(< "$script")"
            for name in $substitutionNames; do
              text="''${text//@$name@/''${!name}}"
            done
            mkdir -p "$out/nix-support"
            printf '%s\n' "$text" > "$out/nix-support/setup-hook"
          '';
          passthru = args.passthru or { };
        }
      )
    );

  # A program from the host, as a package with bin/<name>.
  hostProgram =
    name: pname: path:
    mkDerivation {
      inherit name;
      buildCommand = ''
        mkdir -p "$out/bin"
        ln -s ${path} "$out/bin/${pname}"
      '';
    };

  # the package set as a fixpoint, so that overlays (appendOverlays, extend) work as in nixpkgs
  base = self: {
    inherit
      lib
      stdenv
      python3
      python3Packages
      makeSetupHook
      ;

    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);

    mkShell =
      args:
      record "mkShell" args (mkDerivation {
        name = args.name or "nix-shell";
        nativeBuildInputs = args.packages or [ ];
        buildCommand = ''mkdir -p "$out"'';
      });

    makeWrapper = mkDerivation {
      name = "make-wrapper-stub";
      buildCommand = ''mkdir -p "$out"'';
    };

    patchelf = hostProgram "patchelf-stub" "patchelf" host.patchelf;
    ruff = hostProgram "ruff-stub" "ruff" "/bin/false";

    # like nixpkgs' zlib: buildInputs get the dev output, which propagates the one with the library
    zlib = mkDerivation {
      name = "zlib-stub-dev";
      propagatedBuildInputs = [
        (mkDerivation {
          name = "zlib-stub";
          buildCommand = ''
            mkdir -p "$out/lib"
            cp -L ${host.libz} "$out/lib/libz.so.1"
          '';
        })
      ];
      buildCommand = ''mkdir -p "$out/include"'';
    };
  };

  withOverlays =
    overlays:
    let
      self = builtins.foldl' (acc: overlay: acc // overlay self acc) (base self) overlays;
    in
    self
    // {
      appendOverlays = more: withOverlays (overlays ++ more);
      extend = overlay: withOverlays (overlays ++ [ overlay ]);
    };
in
withOverlays [ ]

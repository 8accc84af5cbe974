# The package set for one system (see ./flake.nix): nixpkgs' real files where nix-sources has them, stubs
# only for what cannot exist here, each saying so.
#
# Real (read from nix-sources, unmodified): lib; the stdenv's setup.sh, default-builder.sh and default setup
# hooks (./stdenv.nix); trivial-builders (runCommand, writeText, makeSetupHook, ...); patchelf's setup hook;
# auto-patchelf.sh with the newer auto-patchelf.py (autoPatchelfHook); addDriverRunpath and
# autoAddDriverRunpath; the Python builders mk-python-derivation.nix (buildPythonPackage) and
# hooks/default.nix with the hook scripts that exist (wheel-unpack, pypa-install, imports-check,
# catch-conflicts, output-dist); pythonManylinuxPackages (manylinux/default.nix).
#
# Stubs, because they are built from source in nixpkgs and full nixpkgs cannot be fetched here:
# make-derivation.nix (./make-derivation.nix); the packages named *-host, which copy or link this machine's
# files (tools, patchelf, gcc/binutils as the cc-wrapper, glibc's loader and libc, libstdc++, zlib, zstd,
# the CPython interpreter and its stdlib); Python packages installed from PyPI wheels (installer, uv);
# the Python hooks whose scripts are not among the sources (wrapPython, pythonRemoveTestsDirHook,
# pythonRemoveBinBytecodeHook, pythonNamespacesHook, ensureNewerSourcesForZipFilesHook, autoFixElfFiles);
# CPython's setup hook; libraries named only so that lists evaluate (xorg.*, libGL, glib, ncurses5,
# libxcrypt: empty *-stub packages). python3Packages.buildPythonApplication stays the recording stub the
# flake tests read (stubArgs): building wheelfix from source needs pypaBuildHook and hatchling, which are
# not here.
#
# `host` (./host.nix, written by the tests) names this machine's files.
{
  lib,
  system,
  nixSources,
  host,
}:
let
  pkgsDir = "${nixSources}/nixpkgs/pkgs";
  pythonDir = "${pkgsDir}/development/interpreters/python";
  isLinux = builtins.match ".*-linux" system != null;

  # a derivation built by the host's bash and tools (for the stdenv's own inputs); its outputs say that
  # they were chosen (outputSpecified), as make-derivation's do: lib.getDev keeps `cc.cc.lib` the lib output
  hostDerivation =
    attrs:
    let
      drv = derivation (
        removeAttrs attrs [ "script" ]
        // {
          inherit system;
          builder = host.bash;
          args = [
            "-euc"
            attrs.script
          ];
          PATH = host.toolPath;
        }
      );
    in
    drv // lib.genAttrs (attrs.outputs or [ "out" ]) (o: drv.${o} // { outputSpecified = true; });

  tools = hostDerivation {
    name = "tools-host";
    # GNU coreutils, findutils, diffutils, sed, grep, awk, tar, gzip, bzip2, xz, make, patch, file, bash
    names = lib.concatStringsSep " " [
      "[ arch b2sum base32 base64 basename basenc cat chcon chgrp chmod chown chroot cksum comm cp csplit"
      "cut date dd df dir dircolors dirname du echo env expand expr factor false fmt fold groups head"
      "hostid id install join link ln logname ls md5sum mkdir mkfifo mknod mktemp mv nice nl nohup nproc"
      "numfmt od paste pathchk pinky pr printenv printf ptx pwd readlink realpath rm rmdir runcon seq"
      "sha1sum sha224sum sha256sum sha384sum sha512sum shred shuf sleep sort split stat stdbuf stty sum"
      "sync tac tail tee test timeout touch tr true truncate tsort tty uname unexpand uniq unlink users"
      "vdir wc who whoami yes find xargs diff diff3 cmp sdiff sed grep egrep fgrep awk gawk mawk tar"
      "gzip gunzip zcat bzip2 bunzip2 bzcat xz unxz xzcat make patch file bash sh unzip zip"
    ];
    script = ''
      mkdir -p "$out/bin"
      for n in $names; do
        if p="$(command -v "$n")"; then ln -s "$p" "$out/bin/$n"; fi
      done
    '';
  };

  patchelf = hostDerivation {
    name = "patchelf-host";
    hook = "${pkgsDir}/development/tools/misc/patchelf/setup-hook.sh";
    script = ''
      mkdir -p "$out/bin" "$out/nix-support"
      ln -s ${host.patchelf} "$out/bin/patchelf"
      cp "$hook" "$out/nix-support/setup-hook"
    '';
  };

  # glibc: the host's loader (a copy: executables' PT_INTERP points here) and its libraries
  glibc =
    hostDerivation {
      name = "glibc-host";
      inherit (host) loader libcDir;
      libs = "libc.so.6 libm.so.6 libdl.so.2 librt.so.1 libpthread.so.0 libutil.so.1 libresolv.so.2 libnsl.so.1";
      script = ''
        mkdir -p "$out/lib"
        cp -L "$loader" "$out/lib/$(basename "$loader")"
        for l in $libs; do if [ -e "$libcDir/$l" ]; then ln -s "$libcDir/$l" "$out/lib/$l"; fi; done
      '';
    }
    // {
      pname = "glibc";
      version = host.glibcVersion;
      linuxHeaders.version = "6.1";
    };

  # gcc's runtime libraries: stdenv.cc.cc.lib
  gccUnwrapped = hostDerivation {
    name = "gcc-host";
    outputs = [
      "out"
      "lib"
    ];
    inherit (host) libstdcxx libgcc_s;
    script = ''
      mkdir -p "$out/bin" "$lib/lib"
      cp -L "$libstdcxx" "$lib/lib/libstdc++.so.6"
      cp -L "$libgcc_s" "$lib/lib/libgcc_s.so.1"
    '';
  };

  # stand-in for the cc-wrapper and the bintools-wrapper
  ccDrv = hostDerivation {
    name = "gcc-wrapper-host";
    programs = "gcc g++ cc c++ cpp ld as ar nm objcopy objdump ranlib readelf strip size strings";
    dynamicLinker = "${glibc}/lib/${baseNameOf host.loader}";
    origLibc = "${glibc}";
    script = ''
      mkdir -p "$out/bin" "$out/nix-support"
      for n in $programs; do
        if p="$(command -v "$n")"; then ln -s "$p" "$out/bin/$n"; fi
      done
      echo "$dynamicLinker" > "$out/nix-support/dynamic-linker"
      echo "$origLibc" > "$out/nix-support/orig-libc"
      cat > "$out/nix-support/setup-hook" <<EOF
      export NIX_CC=$out NIX_BINTOOLS=$out
      export CC=cc CXX=c++ CPP=cpp LD=ld AS=as AR=ar NM=nm OBJCOPY=objcopy OBJDUMP=objdump RANLIB=ranlib
      export READELF=readelf STRIP=strip SIZE=size STRINGS=strings
      EOF
    '';
  };
  cc = ccDrv // {
    cc = gccUnwrapped;
    libc = glibc;
    bintools = ccDrv // {
      libc = glibc;
    };
    isGNU = true;
    isClang = false;
  };

  mkStdenv =
    cc:
    let
      base = import ./stdenv.nix {
        inherit
          lib
          nixSources
          system
          host
          hostDerivation
          cc
          patchelf
          tools
          ;
      };
      self = base // {
        mkDerivation = import ./make-derivation.nix {
          inherit lib system;
          stdenv = self;
        };
      };
    in
    self;
  stdenv = mkStdenv cc;
  stdenvNoCC = mkStdenv null;

  # a recording wrapper, for the flake tests: what a builder was called with
  record =
    function: args: drv:
    drv
    // {
      stubFunction = function;
      stubArgs = args;
    };

  # an empty package: a library nixpkgs would build, named so that lists evaluate
  emptyPackage =
    name:
    hostDerivation {
      name = "${name}-stub";
      script = ''mkdir -p "$out/lib"'';
    };

  # a host file as lib/<name> of a package
  hostLibrary =
    name: files:
    hostDerivation {
      inherit name;
      files = lib.concatStringsSep " " (lib.mapAttrsToList (soname: path: "${soname}=${path}") files);
      script = ''
        mkdir -p "$out/lib"
        for f in $files; do cp -L "''${f#*=}" "$out/lib/''${f%%=*}"; done
      '';
    };

  pythonVersion = host.pythonVersion;
  sitePackages = "lib/python${pythonVersion}/site-packages";
in
lib.makeScope lib.callPackageWith (
  self:
  let
    trivial = import "${pkgsDir}/build-support/trivial-builders/default.nix" {
      inherit lib stdenv stdenvNoCC;
      config = { };
      jq = null;
      lndir = null;
      shellcheck-minimal = null;
      runtimeShell = stdenv.shell;
    };

    # CPython: the host's interpreter and stdlib in a store prefix of their own (stub: nixpkgs builds it)
    python =
      let
        version = "${pythonVersion}.${host.pythonPatch}";
        drv = stdenv.mkDerivation {
          pname = "python3-host";
          inherit version;
          inherit (host) basePython pythonStdlib;
          dontUnpack = true;
          dontFixup = true;
          # STUB of CPython's setup hook (pkgs/development/interpreters/python/setup-hook.sh)
          setupHookText = ''
            addPythonPath() { addToSearchPathWithCustomDelimiter : PYTHONPATH "$1/${sitePackages}"; }
            if [ -z "''${dontAddPythonPath:-}" ]; then addEnvHooks "$hostOffset" addPythonPath; fi
            export PYTHONNOUSERSITE=1 PYTHONHASHSEED=0 DETERMINISTIC_BUILD=1
          '';
          installPhase = ''
            mkdir -p "$out/bin" "$out/lib/python${pythonVersion}/site-packages" "$out/nix-support"
            for e in "$pythonStdlib"/*; do
              [ "$(basename "$e")" = site-packages ] || ln -s "$e" "$out/lib/python${pythonVersion}/"
            done
            ln -s "$basePython" "$out/bin/python${pythonVersion}"
            ln -s "python${pythonVersion}" "$out/bin/python3"
            ln -s "python${pythonVersion}" "$out/bin/python"
            printf '%s\n' "$setupHookText" > "$out/nix-support/setup-hook"
          '';
        };
        passthru = {
          inherit pythonVersion sitePackages version;
          implementation = "cpython";
          sourceVersion = {
            major = "3";
            minor = lib.last (lib.splitString "." pythonVersion);
            patch = host.pythonPatch;
            suffix = "";
          };
          pythonAttr = "python3";
          executable = "python${pythonVersion}";
          libPrefix = "python${pythonVersion}";
          interpreter = "${drv}/bin/python${pythonVersion}";
          isPy3k = true;
          isPy27 = false;
          isPyPy = false;
          pythonAtLeast = lib.versionAtLeast pythonVersion;
          pythonOlder = lib.versionOlder pythonVersion;
          inherit stdenv;
          pythonOnBuildForHost = self.python3;
          pythonForBuild = self.python3;
          pkgs = self.python3Packages;
          withPackages =
            f:
            self.buildEnvPython (f self.python3Packages);
        };
      in
      drv
      // passthru
      // {
        inherit passthru;
        meta = drv.meta // {
          platforms = lib.platforms.unix;
        };
      };

    # a Python package made from a host directory or a PyPI wheel (stub: nixpkgs builds these)
    pythonPackageFrom =
      pname: script: extra:
      self.stdenv.mkDerivation (
        {
          name = "python${pythonVersion}-${pname}-host";
          inherit pname;
          dontUnpack = true;
          dontFixup = true;
          installPhase = ''
            mkdir -p "$out/${sitePackages}"
            ${script}
          '';
          passthru = {
            pythonModule = self.python3;
            pythonPath = [ ];
            requiredPythonModules = [ ];
          };
        }
        // extra
      );
    fromWheel =
      pname: wheel:
      pythonPackageFrom pname ''
        ${host.basePython} -I -m zipfile -e ${
          if wheel == null then throw "host.nix names no ${pname} wheel" else wheel
        } "$out/${sitePackages}"
      '' { };
    # a package nixpkgs has whose contents nothing here runs; overridable (poetry2nix's default overrides
    # rebuild the bootstrap packages with `.override { ... }`)
    emptyPythonPackage = pname: lib.makeOverridable ({ ... }: pythonPackageFrom pname "" { }) { };

    # hooks whose scripts are not among the sources
    stubHook =
      name: text:
      trivial.makeSetupHook { inherit name; } (builtins.toFile "${name}.sh" ("# STUB of nixpkgs' ${name}\n" + text));

    python3Packages = lib.makeScope self.newScope (
      ps:
      let
        hooks = import "${pythonDir}/hooks/default.nix" ps { };
      in
      hooks
      // {
        inherit lib;
        python = self.python3;
        inherit (self.python3) pythonOnBuildForHost;
        # the hooks' pkgs: the top-level set
        pkgs = self;
        # Stubs of the hooks whose files nix-sources does not have
        wrapPython = stubHook "wrap-python" ''
          wrapPythonPrograms() { :; }
          wrapPythonProgramsIn() { :; }
        '';
        ensureNewerSourcesForZipFilesHook = stubHook "ensure-newer-sources-for-zip-files-hook" "";
        pythonRemoveTestsDirHook = stubHook "python-remove-tests-dir-hook" "";
        pythonRemoveBinBytecodeHook = stubHook "python-remove-bin-bytecode-hook" "";
        pythonNamespacesHook = stubHook "python-namespaces-hook" "";
        update-python-libraries = "update-python-libraries-stub";
        namePrefix = "python${pythonVersion}-";
        toPythonModule =
          drv:
          drv
          // {
            pythonModule = self.python3;
            pythonPath = [ ];
            requiredPythonModules = [ ];
          };

        # nixpkgs' python-packages-base.nix, reduced: mk-python-derivation.nix made overridable
        buildPythonPackage =
          let
            f = lib.makeOverridable (
              ps.callPackage "${pythonDir}/mk-python-derivation.nix" {
                inherit (ps) namePrefix toPythonModule;
              }
            );
          in
          args:
          let
            drv = f args;
          in
          drv
          // {
            overridePythonAttrs =
              g:
              let
                new = args // (if builtins.isFunction g then g args else g);
              in
              ps.buildPythonPackage new;
          };

        # STUB: the recording builder of wheelfix itself (see the comment at the top)
        buildPythonApplication =
          args:
          record "python3Packages.buildPythonApplication" args (
            self.stdenv.mkDerivation {
              name = "${args.pname}-${args.version}";
              inherit (args) src;
              dontUnpack = true;
              dontFixup = true;
              installPhase = ''
                mkdir -p "$out/bin"
                {
                  echo "#!${host.bash}"
                  echo "export PYTHONPATH=\"$src/src\""
                  echo "exec ${host.python} -B -m ${args.pname} \"\$@\""
                } > "$out/bin/${args.meta.mainProgram or args.pname}"
                chmod +x "$out/bin/${args.meta.mainProgram or args.pname}"
              '';
              passthru = args.passthru or { };
              meta = args.meta or { };
            }
          );

        installer = fromWheel "installer" host.installerWheel;
        # pyelftools from the test environment, for auto-patchelf
        pyelftools = pythonPackageFrom "pyelftools" ''cp -r ${host.pyelftools} "$out/${sitePackages}/elftools"'' { };
        # named by hooks and by wheelfix's package and dev shell; nothing here imports them from the store
        wheel = emptyPythonPackage "wheel";
        setuptools = emptyPythonPackage "setuptools";
        packaging = emptyPythonPackage "packaging";
        hatchling = emptyPythonPackage "hatchling";
        click = emptyPythonPackage "click";
        pytest = emptyPythonPackage "pytest";
        jsonschema = emptyPythonPackage "jsonschema";
        zstandard = emptyPythonPackage "zstandard";
        hypothesis = emptyPythonPackage "hypothesis";
        mypy = emptyPythonPackage "mypy";
        isal = emptyPythonPackage "isal";
        zlib-ng = emptyPythonPackage "zlib-ng";
        # nixpkgs' auditwheel is Linux-only (meta.platforms = platforms.linux), as here
        auditwheel = pythonPackageFrom "auditwheel" "" { meta.platforms = lib.platforms.linux; };
        bootstrap = {
          inherit (ps) installer packaging;
          build = emptyPythonPackage "build";
        };
      }
    );
  in
  {
    inherit lib stdenv stdenvNoCC system;
    inherit (trivial)
      runCommand
      runCommandLocal
      runCommandCC
      writeText
      writeTextFile
      writeScript
      writeShellScript
      emptyDirectory
      ;
    pkgs = self;
    buildPackages = self;
    pkgsBuildHost = self;
    config = { };
    # overlays, as nixpkgs applies them
    appendOverlays = overlays: self.overrideScope (lib.composeManyExtensions overlays);
    extend = overlay: self.overrideScope overlay;

    # the real makeSetupHook, recording its arguments; with its formals (pyproject.nix looks at them)
    makeSetupHook =
      {
        name ? "hook",
        propagatedBuildInputs ? [ ],
        depsTargetTargetPropagated ? [ ],
        meta ? { },
        passthru ? { },
        substitutions ? { },
      }@args:
      script:
      record "makeSetupHook" (args // { inherit script; }) (trivial.makeSetupHook args script);

    # STUB of nixpkgs' replaceVars (pkgs/build-support/replace-vars): @name@ -> value, every one replaced
    replaceVars =
      path: vars:
      trivial.runCommand (baseNameOf path) { inherit path; } ''
        substitute "$path" "$out" ${
          lib.concatStringsSep " " (
            lib.mapAttrsToList (n: v: "--subst-var-by ${lib.escapeShellArg n} ${lib.escapeShellArg "${v}"}") vars
          )
        }
      '';

    inherit patchelf glibc;
    # STUB: nothing is fetched here (the tests use local wheels and path sources)
    fetchurl = args: throw "fetchurl ${args.url or args.name or ""}: no network in wheelfix's Nix tests";
    bash = tools;
    coreutils = tools;
    unzip = tools;
    # STUB: pyproject.nix's install-dist script names ugrep (used only for a `dist` output)
    ugrep = tools // {
      meta.mainProgram = "grep";
    };

    python3 = python;
    python311 = python;
    python312 = python;
    inherit python3Packages;
    pythonInterpreters = { };
    # STUB of python.withPackages: a wrapper with the packages' site-packages on PYTHONPATH
    buildEnvPython =
      packages:
      trivial.runCommand "python${pythonVersion}-env"
        {
          paths = packages;
          stubPackages = map (p: p.pname or p.name) packages;
        }
        ''
          mkdir -p "$out/bin"
          pp=""
          for p in $paths; do pp="$pp''${pp:+:}$p/${sitePackages}"; done
          {
            echo "#!${stdenv.shell}"
            echo "export PYTHONPATH=\"$pp\''${PYTHONPATH:+:\$PYTHONPATH}\""
            echo "exec ${python.interpreter} \"\$@\""
          } > "$out/bin/python3"
          chmod +x "$out/bin/python3"
        '';

    # uv from PyPI's wheel: its binary (pyproject.nix's install hook runs `uv pip install`)
    uv = hostDerivation {
      name = "uv-host";
      wheel = host.uvWheel;
      script = ''
        ${host.basePython} -I -m zipfile -e "$wheel" unpacked
        mkdir -p "$out/bin"
        cp unpacked/uv-*.data/scripts/uv "$out/bin/uv"
        chmod +x "$out/bin/uv"
      '';
    };

    autoPatchelfHook = self.makeSetupHook {
      name = "auto-patchelf-hook";
      propagatedBuildInputs = [ stdenv.cc.bintools ];
      substitutions = {
        # auto-patchelf.sh of this vintage runs the script itself; auto-patchelf.py is the newer one
        pythonInterpreter = "${
          self.python3Packages.python.withPackages (ps: [ ps.pyelftools ])
        }/bin/python3";
        autoPatchelfScript = "${pkgsDir}/by-name/au/auto-patchelf/source/auto-patchelf.py";
      };
    } "${pkgsDir}/build-support/setup-hooks/auto-patchelf.sh";

    addDriverRunpath = self.callPackage "${pkgsDir}/by-name/ad/addDriverRunpath/package.nix" { };
    autoFixElfFiles = self.makeSetupHook { name = "auto-fix-elf-files"; } (
      builtins.toFile "auto-fix-elf-files.sh" ''
        # STUB of nixpkgs' autoFixElfFiles: run the function on every dynamically linked ELF file
        autoFixElfFiles() {
            local fn="$1" output file
            shift
            for output in $(getAllOutputNames); do
                [ -e "''${!output}" ] || continue
                while IFS= read -r -d "" file; do
                    isELF "$file" || continue
                    patchelf --print-interpreter "$file" >/dev/null 2>&1 || patchelf --print-rpath "$file" >/dev/null 2>&1 || continue
                    "$fn" "$file"
                done < <(find "''${!output}" -type f -print0)
            done
        }
      ''
    );
    autoAddDriverRunpath = self.callPackage "${pkgsDir}/by-name/au/autoAddDriverRunpath/package.nix" { };
    pythonManylinuxPackages = import "${pythonDir}/manylinux/default.nix" {
      inherit lib;
      pkgs = self;
    };

    # libraries from this host
    zlib = hostLibrary "zlib-stub" { "libz.so.1" = host.libz; };
    zstd = hostLibrary "zstd-host" { "libzstd.so.1" = host.libzstd; };
    # named by lists that must evaluate (pythonManylinuxPackages): empty
    xorg = lib.genAttrs [
      "libX11"
      "libXext"
      "libXrender"
      "libICE"
      "libSM"
    ] emptyPackage;
    libGL = emptyPackage "libGL";
    # named by poetry2nix's default overrides (numpy) and by fragments' CUDA fallbacks: empty
    openblasCompat = emptyPackage "openblas";
    gfortran = emptyPackage "gfortran";
    cudaPackages =
      lib.genAttrs
        [
          "cuda_cudart"
          "cuda_nvrtc"
          "cuda_cupti"
          "libcublas"
          "libcufft"
          "libcusolver"
          "libcusparse"
          "cudnn"
          "nccl"
        ]
        (
          name:
          hostDerivation {
            name = "cuda-${name}-unfree-stub";
            outputs = [
              "out"
              "lib"
            ];
            script = ''mkdir -p "$out" "$lib/lib"'';
          }
        );
    glib = emptyPackage "glib";
    ncurses5 = emptyPackage "ncurses5";
    libxcrypt = emptyPackage "libxcrypt";

    mkShell =
      args:
      record "mkShell" args (
        stdenv.mkDerivation {
          name = args.name or "nix-shell";
          nativeBuildInputs = args.packages or [ ];
          dontUnpack = true;
          installPhase = ''mkdir -p "$out"'';
        }
      );
    makeWrapper = emptyPackage "make-wrapper";
    ruff = emptyPackage "ruff";
    nixfmt-rfc-style = emptyPackage "nixfmt";
  }
)

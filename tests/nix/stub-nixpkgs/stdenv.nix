# A Linux stdenv assembled from nixpkgs' own files (nix-sources, see ../../../docs/nix.md): the real
# pkgs/stdenv/generic/setup.sh and default-builder.sh, the default setup hooks of a Linux stdenv in the order
# a build log shows them, and patchelf with its real setup hook (extraNativeBuildInputs on Linux), so phases,
# env hooks, propagation, multiple outputs and fixupPhase (strip, patchELF's shrink-rpath, patch-shebangs,
# audit-tmpdir, ...) run as they do in nixpkgs.
#
# What cannot exist here is stubbed, and says so in its name (*-host): the programs come from this machine
# (initialPath is common-path.nix applied to one directory of symlinks to the host's coreutils, findutils,
# sed, grep, awk, tar, gzip, bzip2, xz, make, patch and file), patchelf is the host's binary, and the C
# compiler is a small stand-in for nixpkgs' cc-wrapper (nixpkgs builds gcc and glibc from source): it puts
# the host's gcc and binutils on PATH and exports NIX_CC, NIX_BINTOOLS, STRIP, READELF, ... with
# nix-support/dynamic-linker and nix-support/orig-libc naming a glibc package made of the host's loader and
# libc (see ./pkgs.nix).
#
# Bridges for the mixed vintage of the files (nix-sources/README.md), in the stdenv's preHook:
# header/stopNest for the older audit-tmpdir, patch-shebangs and patchelf hooks; recordPropagatedDependencies
# for the newer makeSetupHook (this setup.sh does that propagation inside fixupPhase); addPhase for the older
# python-catch-conflicts hook. no-broken-symlinks.sh (2025) needs nix*Log functions this setup.sh predates and
# is left out.
{
  lib,
  nixSources,
  system,
  host,
  # a derivation builder for the packages the stdenv itself needs (host tools, patchelf)
  hostDerivation,
  # the cc-wrapper stand-in, or null for stdenvNoCC
  cc ? null,
  patchelf,
  tools,
}:
let
  pkgsDir = "${nixSources}/nixpkgs/pkgs";
  setupHooks = map (name: "${pkgsDir}/build-support/setup-hooks/${name}.sh") [
    "audit-tmpdir"
    "compress-man-pages"
    "make-symlinks-relative"
    "move-docs"
    "move-lib64"
    "move-sbin"
    "move-systemd-user-units"
    "multiple-outputs"
    "patch-shebangs"
    "prune-libtool-files"
    "reproducible-builds"
    "set-source-date-epoch-to-latest"
    "strip"
  ];

  # pkgs/stdenv/generic/common-path.nix with every package being the host tool directory
  initialPath = lib.unique (
    import "${pkgsDir}/stdenv/generic/common-path.nix" {
      pkgs = {
        coreutils = tools;
        findutils = tools;
        diffutils = tools;
        gnused = tools;
        gnugrep = tools;
        gawk = tools;
        gnutar = tools;
        gzip = tools;
        bzip2.bin = tools;
        gnumake = tools;
        bash = tools;
        patch = tools;
        xz.bin = tools;
        file = tools;
      };
    }
  );

  # pkgs/stdenv/linux/default.nix's commonPreHook, then the bridges described above
  preHook = ''
    export NIX_ENFORCE_PURITY="''${NIX_ENFORCE_PURITY-1}"
    export NIX_ENFORCE_NO_NATIVE="''${NIX_ENFORCE_NO_NATIVE-1}"
    header() { echo "$1"; }
    stopNest() { :; }
    addPhase() { local var="''${1%% *}"; eval "$var+=\" ''${1#* }\""; }
    recordPropagatedDependencies() {
        local -a vars=(depsBuildBuildPropagated propagatedNativeBuildInputs depsBuildTargetPropagated
            depsHostHostPropagated propagatedBuildInputs depsTargetTargetPropagated)
        local -a files=("''${propagatedBuildDepFiles[@]}" "''${propagatedHostDepFiles[@]}"
            "''${propagatedTargetDepFiles[@]}")
        local i slice
        for i in "''${!vars[@]}"; do
            slice="''${vars[$i]}[@]"
            [[ "''${!slice-}" ]] || continue
            mkdir -p "''${!outputDev}/nix-support"
            printWords ''${!slice} > "''${!outputDev}/nix-support/''${files[$i]}"
        done
    }
  '';

  shell = "${tools}/bin/bash";

  setup = hostDerivation {
    name = "stdenv-linux-real-setup";
    setup = "${pkgsDir}/stdenv/generic/setup.sh";
    inherit shell preHook;
    initialPath = initialPath;
    defaultNativeBuildInputs = setupHooks ++ [ patchelf ] ++ lib.optional (cc != null) cc;
    script = ''
      mkdir -p "$out"
      {
        printf 'export SHELL=%s\n' "$shell"
        printf 'initialPath="%s"\n' "$initialPath"
        printf 'defaultNativeBuildInputs="%s"\n' "$defaultNativeBuildInputs"
        printf 'defaultBuildInputs=""\n'
        printf '%s\n' "$preHook"
        cat "$setup"
      } > "$out/setup"
    '';
  };

  platform = lib.systems.elaborate system;
in
{
  name = "stdenv-linux";
  outPath = setup.outPath;
  inherit shell initialPath cc system;
  setupDrv = setup;
  defaultBuilder = "${pkgsDir}/stdenv/generic/default-builder.sh";
  hostPlatform = platform;
  buildPlatform = platform;
  targetPlatform = platform;
  inherit (platform) isLinux isDarwin;
  isi686 = false;
  isx86_64 = platform.isx86_64;
  isAarch64 = platform.isAarch64;
}

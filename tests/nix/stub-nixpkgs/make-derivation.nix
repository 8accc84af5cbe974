# STUB of nixpkgs' pkgs/stdenv/generic/make-derivation.nix, which is not among the nix-sources (its
# check-meta, hardening, cross-compilation splicing and env checks need the whole of nixpkgs). It keeps what
# the builders here rely on:
#
# * `stdenv.mkDerivation attrs` and `stdenv.mkDerivation (finalAttrs: attrs)`, `overrideAttrs` with a set,
#   `old: { }` or `final: prev: { }`, `finalPackage`, `passthru` and `meta` on the result;
# * the derivation nixpkgs' builder sees: builder = bash, args = [ "-e" default-builder.sh ], `stdenv` = the
#   setup of ./stdenv.nix, name from pname/version, `__ignoreNulls`, `env` merged in, nulls dropped from the
#   dependency lists and every dependency replaced by its dev output (lib.chooseDevOutputs), the check
#   inputs added when doCheck/doInstallCheck;
# * meta.platforms: a package whose platforms exclude this system fails when it is built or its drvPath is
#   taken, as nixpkgs' check-meta makes it fail (e.g. auditwheel, platforms.linux, on darwin).
#
# Every result also records what it was called with (stubArgs, stubFunction), which the flake tests read.
{
  lib,
  stdenv,
  system,
}:
let
  depLists = [
    "depsBuildBuild"
    "depsBuildBuildPropagated"
    "nativeBuildInputs"
    "propagatedNativeBuildInputs"
    "depsBuildTarget"
    "depsBuildTargetPropagated"
    "depsHostHost"
    "depsHostHostPropagated"
    "buildInputs"
    "propagatedBuildInputs"
    "depsTargetTarget"
    "depsTargetTargetPropagated"
  ];

  # a dependency as make-derivation passes it: its dev output (or the output it names), nulls dropped
  deps = list: map lib.getDev (lib.filter (d: d != null) list);

  available =
    meta:
    !(meta ? platforms)
    || lib.any (p: (if builtins.isString p then p else p.system or "") == system) meta.platforms;

  makeDerivation =
    args:
    let
      doCheck = args.doCheck or false;
      doInstallCheck = args.doInstallCheck or false;
      withChecks =
        args
        // {
          nativeBuildInputs =
            (args.nativeBuildInputs or [ ])
            ++ lib.optionals doCheck (args.nativeCheckInputs or [ ])
            ++ lib.optionals doInstallCheck (args.nativeInstallCheckInputs or [ ]);
          buildInputs =
            (args.buildInputs or [ ])
            ++ lib.optionals doCheck (args.checkInputs or [ ])
            ++ lib.optionals doInstallCheck (args.installCheckInputs or [ ]);
        };
      env =
        removeAttrs withChecks [
          "passthru"
          "meta"
          "pos"
          "env"
          "checkInputs"
          "nativeCheckInputs"
          "installCheckInputs"
          "nativeInstallCheckInputs"
          "stubFunction"
        ]
        // lib.genAttrs (lib.filter (n: withChecks ? ${n}) depLists) (n: deps withChecks.${n})
        // (args.env or { });
      name = args.name or "${args.pname}-${args.version}";
      meta = args.meta or { };
      drv = derivation (
        env
        // {
          inherit name system;
          builder = stdenv.shell;
          args = [
            "-e"
            stdenv.defaultBuilder
          ];
          stdenv = stdenv.setupDrv;
          __ignoreNulls = true;
        }
      );
      unavailable = throw "Package ‘${name}’ is not available on the requested hostPlatform ${system} (meta.platforms; stub check-meta)";
    in
    if available meta then
      drv
    else
      drv
      // {
        drvPath = unavailable;
        outPath = unavailable;
      };

  extensible =
    rattrs:
    let
      args = lib.fix rattrs;
      drv = makeDerivation args;
      result =
        drv
        // lib.genAttrs (args.outputs or [ "out" ]) (o: drv.${o} // { outputSpecified = true; })
        // (args.passthru or { })
        // {
          meta = args.meta or { };
          passthru = args.passthru or { };
          stubFunction = args.stubFunction or "stdenv.mkDerivation";
          stubArgs = args;
          finalPackage = result;
          overrideAttrs =
            f1:
            let
              # a set, `old: { }` or `final: prev: { }`
              f0 = if builtins.isFunction f1 then f1 else _: f1;
              f =
                self: super:
                let
                  x = f0 super;
                in
                if builtins.isFunction x then f0 self super else x;
            in
            extensible (
              self:
              let
                super = rattrs self;
              in
              super // f self super
            );
        };
    in
    result;
in
fnOrAttrs: extensible (if builtins.isFunction fnOrAttrs then fnOrAttrs else _: fnOrAttrs)

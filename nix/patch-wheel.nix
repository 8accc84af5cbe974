# lib.patchWheel: one prebuilt wheel in, its repaired copy out, as a derivation of its own.
#
#   patched = wheelfix.lib.patchWheel {
#     inherit pkgs;
#     wheel = pkgs.fetchurl { url = "https://files.pythonhosted.org/.../torch-...whl"; hash = "..."; };
#     buildInputs = [ pkgs.stdenv.cc.cc.lib pkgs.zlib ];
#     ignoreMissing = [ "libcuda.so.1" ];
#   };
#
# $out/<wheel file name>   the repaired wheel (same name as the input)
# $out/wheelfix-report.json   `wheelfix inspect --json` of the repaired wheel
# $out/wheelfix.nix   the Nix fragment (`wheelfix nix --flavor plain`), when this wheelfix has it
# $out/nix-support/wheelfix-references   the store paths the repaired binaries point at, one a line
#
# The .whl is compressed, so Nix cannot see the store paths written into its binaries; the report and
# nix-support/wheelfix-references hold them uncompressed, which makes them runtime references of this
# output (the libraries stay alive and are copied along with the wheel).
#
# passthru: wheelName (the file name), wheel ("${drv}/${wheelName}", a src for format = "wheel"),
# report (the JSON file), installAttrs: the attributes for the derivation that installs the wheel,
#
#   torch' = torch.overridePythonAttrs (_: patched.installAttrs);
#   # = { src = patched.wheel; dontPatchELF = true; dontAutoPatchelf = true; dontStrip = true; }
#
# dontPatchELF: stdenv's fixupPhase would otherwise run `patchelf --shrink-rpath` over the installed
# binaries and delete every directory wheelfix added for a library that is dlopen()ed, not DT_NEEDED (and
# the GPU driver directory); dontAutoPatchelf: autoPatchelf (uv2nix, poetry2nix) would rewrite the search
# paths again; dontStrip: prebuilt binaries.
{
  pkgs,
  wheel,
  buildInputs ? [ ],
  ignoreMissing ? [ ],
  # search these directories too (flat), e.g. a Python dependency's site-packages/nvidia/cublas/lib
  libPath ? [ ],
  interpreter ? null,
  rpathKind ? "keep",
  # append the GPU driver directory to the binaries that need a driver library (libcuda.so.1, ...)
  addDriverRunpath ? false,
  driverLibDir ? "/run/opengl-driver/lib",
  extraFlags ? [ ],
  # the wheel's file name; by default the name of `wheel` without a store hash
  wheelName ? null,
  wheelfix ? pkgs.wheelfix or (pkgs.callPackage ./package.nix { }),
  wheelfixHook ? pkgs.wheelfixHook or (pkgs.callPackage ./hook.nix { inherit wheelfix; }),
}:
let
  baseName =
    if builtins.isAttrs wheel && wheel ? name then wheel.name else baseNameOf (toString wheel);
  withoutHash =
    let
      m = builtins.match "[0-9a-z]{32}-(.*)" baseName;
    in
    if m == null then baseName else builtins.head m;
  fileName = if wheelName != null then wheelName else withoutHash;
  suffix = builtins.substring (builtins.stringLength fileName - 4) 4 fileName;
  stem = builtins.substring 0 (builtins.stringLength fileName - 4) fileName;

  drv = pkgs.stdenv.mkDerivation {
    name = stem;
    src = wheel;
    wheelName = fileName;

    nativeBuildInputs = [ wheelfixHook ];
    inherit buildInputs;

    wheelfixIgnoreMissing = ignoreMissing;
    wheelfixLibPath = libPath;
    wheelfixRpathKind = rpathKind;
    wheelfixFlags = extraFlags;
    wheelfixAddDriverRunpath = addDriverRunpath;
    wheelfixDriverLibDir = driverLibDir;
    ${if interpreter != null then "wheelfixInterpreter" else null} = interpreter;

    wheelfix = "${wheelfix}/bin/wheelfix";

    buildCommand = ''
      mkdir -p "$out/nix-support" input
      # the store file is named <hash>-<name>; wheelfix reads the tags from the file name
      ln -s "$src" "input/$wheelName"
      wheelfixRepairWheels "$out" "input/$wheelName"

      (cd "$out" && "$wheelfix" inspect --json "$wheelName" > wheelfix-report.json)
      grep -o "''${NIX_STORE:-/nix/store}/[0-9a-z]\{32\}-[^/\":]*" "$out/wheelfix-report.json" \
        | sort -u > "$out/nix-support/wheelfix-references" || true

      if "$wheelfix" nix --help > /dev/null 2>&1; then
        (cd "$out" && "$wheelfix" nix "$wheelName" --flavor plain -o wheelfix.nix) \
          || echo "wheelfix: no Nix fragment: wheelfix nix failed" >&2
      fi
    '';

    passthru = {
      wheelName = fileName;
      wheel = "${drv}/${fileName}";
      report = "${drv}/wheelfix-report.json";
      installAttrs = {
        src = "${drv}/${fileName}";
        dontPatchELF = true;
        dontAutoPatchelf = true;
        dontStrip = true;
      };
      inherit wheelfix;
    };

    meta.description = "${fileName} repaired by wheelfix";
  };
in
assert
  suffix == ".whl"
  || throw "lib.patchWheel: ${fileName} is not a .whl file name (pass wheelName = \"...whl\")";
drv

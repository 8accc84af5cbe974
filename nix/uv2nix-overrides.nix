# lib.uv2nixOverrides: an overlay for a uv2nix / pyproject.nix package set that gives wheel packages the
# shared libraries their Python dependencies ship (torch -> nvidia-cublas-cu12, nvidia-cudnn-cu12 ->
# nvidia-cublas-cu12, libpinocchio -> cmeel-boost).
#
#   pythonSet = (pkgs.callPackage pyproject-nix.build.packages { inherit python; }).overrideScope (
#     lib.composeManyExtensions [
#       pyproject-build-systems.overlays.wheel
#       overlay
#       (wheelfix.lib.uv2nixOverrides { })                       # every wheel with dependencies
#       # (wheelfix.lib.uv2nixOverrides { packages = [ "torch" "nvidia-cudnn-cu12" ]; })
#     ]
#   );
#
# For each selected package built from a wheel, every package in its passthru.dependencies (what uv.lock
# says it depends on) goes into buildInputs, and the dependency's site-packages is added to autoPatchelf's
# search path (addAutoPatchelfSearchPath, in preFixup: uv2nix's builder puts autoPatchelfHook on every
# Linux wheel; autoPatchelf itself only searches <input>/lib). wheelfixHook needs only the buildInputs: its
# env hook searches the site-packages of Python inputs.
{
  # names of the packages to wire; null: every package of the set built from a wheel that has dependencies
  packages ? null,
}:
final: prev:
let
  inherit (prev.pkgs) lib;
  isWheelWithDeps =
    name:
    let
      attempt = builtins.tryEval (
        let
          v = prev.${name};
        in
        builtins.isAttrs v
        && (v.passthru.format or null) == "wheel"
        && (v.passthru.dependencies or { }) != { }
      );
    in
    attempt.success && attempt.value;

  wire =
    name:
    prev.${name}.overrideAttrs (
      old:
      let
        deps = map (dep: final.${dep}) (
          lib.filter (dep: dep != name && final ? ${dep}) (builtins.attrNames (old.passthru.dependencies or { }))
        );
        sitePackages = final.python.sitePackages;
      in
      {
        buildInputs = (old.buildInputs or [ ]) ++ deps;
        preFixup =
          (old.preFixup or "")
          + lib.concatMapStrings (dep: ''
            if [ -d "${dep}/${sitePackages}" ]; then addAutoPatchelfSearchPath "${dep}/${sitePackages}"; fi
          '') deps;
      }
    );
in
if packages == null then
  # every attribute again, each decided lazily: an overlay's attribute names must not depend on the
  # values of the set (they depend on the overlay itself: infinite recursion)
  lib.mapAttrs (name: value: if isWheelWithDeps name then wire name else value) prev
else
  lib.genAttrs packages wire

# wheelfixHook: repairs the wheels in dist/ before installPhase (see ./hook.sh for the variables).
{
  makeSetupHook,
  wheelfix,
  patchelf,
}:
makeSetupHook {
  name = "wheelfix-hook";
  # Absolute paths, not propagation: propagating wheelfix would put its Python dependencies on the
  # PYTHONPATH of the package being built.
  substitutions = {
    wheelfix = "${wheelfix}/bin/wheelfix";
    # read-only: wheelfixVerifyPhase reads the installed binaries' search paths (--print-rpath)
    patchelf = "${patchelf}/bin/patchelf";
  };
  passthru = {
    inherit wheelfix;
  };
  meta = {
    description = "Setup hook that repairs prebuilt Python wheels with wheelfix before they are installed";
  };
} ./hook.sh

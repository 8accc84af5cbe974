# wheelfix built from this source tree with nixpkgs' Python packages.
{
  lib,
  python3Packages,
}:
let
  root = ../.;
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);

  # Only what the wheel is built from: a change to tests, benchmarks or Nix files does not rebuild it.
  rootPrefix = toString root + "/";
  relative = path: builtins.substring (builtins.stringLength rootPrefix) (-1) (toString path);
  keep =
    path: type:
    let
      rel = relative path;
      name = baseNameOf rel;
    in
    (rel == "pyproject.toml" || rel == "README.md" || builtins.match "LICEN[CS]E.*" rel != null)
    || (
      (rel == "src" || builtins.substring 0 4 rel == "src/")
      && name != "__pycache__"
      && builtins.match ".*\\.py[co]" name == null
    );
in
python3Packages.buildPythonApplication {
  pname = "wheelfix";
  inherit (pyproject.project) version;
  pyproject = true;

  src = builtins.path {
    name = "wheelfix-source";
    path = root;
    filter = keep;
  };

  build-system = [ python3Packages.hatchling ];

  dependencies = with python3Packages; [
    click
    packaging
    auditwheel
  ];

  # No patchelf: wheelfix writes ELF files itself (src/wheelfix/binfmt/elf/editor.py).

  # The test suite needs gcc, a Nix store and network fixtures; the flake's checks cover the package.
  doCheck = false;
  pythonImportsCheck = [ "wheelfix" ];

  meta = {
    inherit (pyproject.project) description;
    license = lib.licenses.mit;
    mainProgram = "wheelfix";
    platforms = lib.platforms.unix;
  };
}

# wheelfix built from this source tree with nixpkgs' Python packages.
{
  lib,
  stdenv,
  python3Packages,
}:
let
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);

  # Only what the wheel is built from: a change to tests, benchmarks or Nix files does not rebuild it.
  compiled = name: lib.hasSuffix ".pyc" name || lib.hasSuffix ".pyo" name;
  src =
    if builtins ? readFileType then
      lib.fileset.toSource {
        root = ../.;
        fileset = lib.fileset.unions [
          ../pyproject.toml
          ../README.md
          ../LICENSE
          (lib.fileset.fileFilter (file: !(compiled file.name)) ../src)
        ];
      }
    else
      # lib.fileset needs builtins.readFileType (Nix >= 2.14); the same files for an older Nix
      builtins.path {
        name = "source";
        path = ../.;
        filter =
          path: type:
          let
            rel = lib.removePrefix (toString ../. + "/") (toString path);
          in
          lib.elem rel [
            "pyproject.toml"
            "README.md"
            "LICENSE"
          ]
          || (rel == "src" || lib.hasPrefix "src/" rel)
            && (if type == "directory" then baseNameOf rel != "__pycache__" else !(compiled rel));
      };
in
python3Packages.buildPythonApplication {
  pname = "wheelfix";
  inherit (pyproject.project) version;
  pyproject = true;

  inherit src;

  build-system = [ python3Packages.hatchling ];

  dependencies =
    with python3Packages;
    [
      click
      packaging
      # the `fast` extra: inflating twice as fast in the hook's repairs (output bytes do not depend on it)
      isal
      zlib-ng
    ]
    # wheelfix reads only auditwheel's manylinux policy JSON. nixpkgs builds auditwheel for Linux only
    # (meta.platforms = platforms.linux), so on darwin it is left out: the package evaluates and builds;
    # reading the policy there needs wheelfix to ship that JSON itself (docs/nix.md, "darwin").
    ++ lib.optionals stdenv.hostPlatform.isLinux [ auditwheel ];

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

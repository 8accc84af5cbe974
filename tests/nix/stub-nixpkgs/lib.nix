# The few nixpkgs lib functions wheelfix's Nix code uses, with nixpkgs' names and meanings.
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    listToAttrs
    ;
in
rec {
  genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
  optionalAttrs = cond: attrs: if cond then attrs else { };
  optionals = cond: list: if cond then list else [ ];
  optionalString = cond: s: if cond then s else "";
  filterAttrs =
    pred: attrs:
    listToAttrs (
      map (n: { name = n; value = attrs.${n}; }) (filter (n: pred n attrs.${n}) (attrNames attrs))
    );
  isDerivation = v: builtins.isAttrs v && (v.type or null) == "derivation";
  makeBinPath = packages: concatStringsSep ":" (map (p: "${p}/bin") packages);
  licenses.mit = {
    spdxId = "MIT";
    shortName = "mit";
  };
  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    darwin = [
      "x86_64-darwin"
      "aarch64-darwin"
    ];
    unix = platforms.linux ++ platforms.darwin;
  };
}

"""The soname -> nixpkgs knowledge base: a nix-index decoder and table builder (release time, needs the
``db`` extra) and the stdlib-only lookup that reads the packaged table (:mod:`wheelfix.nixkb.kb`)."""

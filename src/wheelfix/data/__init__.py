"""Packaged data: the soname -> nixpkgs table built by ``wheelfix db build`` and the curated preferences."""

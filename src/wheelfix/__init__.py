"""wheelfix: make prebuilt binary wheels work on Nix, and tell CI whether a wheel is portable."""

__version__ = "0.1.0"

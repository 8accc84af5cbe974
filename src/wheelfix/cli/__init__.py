"""The ``wheelfix`` command line."""

from wheelfix.cli.app import cli, main

__all__ = ["cli", "main"]

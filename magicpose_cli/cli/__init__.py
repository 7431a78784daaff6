"""The `magicpose` command line: one module per command, each a thin layer over library code."""

from magicpose_cli.cli.app import app

__all__ = ["app"]

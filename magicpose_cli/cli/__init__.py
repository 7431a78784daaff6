"""The `magicpose` command line: one module per command, each a thin layer over library code."""

from magicpose_cli.cli.app import app
from magicpose_cli.cli import convert  # noqa: F401  (registers the command)
from magicpose_cli.cli import retarget  # noqa: F401  (registers the command)
from magicpose_cli.cli import batch  # noqa: F401  (registers the command)
from magicpose_cli.cli import extract_pose  # noqa: F401  (registers the command)
from magicpose_cli.cli import train  # noqa: F401  (registers the command)
from magicpose_cli.cli import demo  # noqa: F401  (registers the command)
from magicpose_cli.cli import cache  # noqa: F401  (registers the command)
from magicpose_cli.cli import evaluate  # noqa: F401  (registers the command)
from magicpose_cli.cli import ui  # noqa: F401  (registers the command)
from magicpose_cli.cli import comfyui  # noqa: F401  (registers the command)

__all__ = ["app"]

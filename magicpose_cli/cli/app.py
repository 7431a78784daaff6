"""The Typer application object and the shared error handling of every command."""

from __future__ import annotations

import functools
import os
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from magicpose_cli.errors import MagicPoseError

app = typer.Typer(
    name="magicpose",
    help="Make the person in one photo perform the motion and expressions of a driving video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def user_errors(func: F) -> F:
    """Turn a MagicPoseError, or an error of the file system (missing, unreadable, a folder where a
    file belongs, a full disk), into one red line and exit code 1, and Ctrl-C into one line and
    exit code 130 (the shell's convention for SIGINT).

    Set MAGICPOSE_DEBUG=1 (or pass --debug where a command has it) to see the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (MagicPoseError, OSError) as error:
            if kwargs.get("debug") or os.environ.get("MAGICPOSE_DEBUG"):
                raise
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            if kwargs.get("debug") or os.environ.get("MAGICPOSE_DEBUG"):
                raise
            console.print("[bold red]error:[/] interrupted (Ctrl-C)", highlight=False)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]

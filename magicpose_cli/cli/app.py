"""The Typer application object and the conventions every command shares.

Every command is registered with :func:`command`, which gives it ``-q/--quiet`` and
``-v/--verbose``, turns the errors a user can act on into one line, and lists the exit codes in
its help. Output: progress, notices and summaries go to stderr through ``console``; errors through
``error_console`` (shown even with --quiet); a command's product (the file it wrote) to stdout
with --quiet. With ``NO_COLOR`` set, or when stderr is not a terminal, the text is plain: no
colours, no cursor movement, progress bars only as their final state. Under ``accelerate launch``
or ``torchrun`` only the main process speaks: a failure either happens alike on every process or is
passed on to the main process, which says it. Native libraries' own stderr lines show only with
--verbose or --debug (magicpose_cli.native_output); Ctrl-C says what was kept and how to go on.
Command modules import their library code inside the command, after the cheap checks, so help
and input mistakes answer without torch (tests/test_first_minute.py).
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import time
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

import magicpose_cli
from magicpose_cli.distributed import launched_as_main
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.native_output import native_output_hidden

EXIT_CODES = (
    "Exit codes: 0 done; 1 a problem with the input or the environment (one line says what to change); "
    "2 wrong usage (an unknown option, a missing argument); 130 interrupted (Ctrl-C)."
)


class HelpConventions:
    """The help every command shares: arguments in upper case (REFERENCE, not {reference}), in
    brackets only when optional, and flags without a value placeholder (--overwrite, not
    --overwrite <bool>), as click, git and pip write them."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.param_type_name == "argument" and param.metavar is None:
                param.metavar = (param.name or "").upper()
            elif getattr(param, "is_flag", False):
                param.metavar = ""  # Typer shows a flag's metavar where a value's type would go
        return params

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces


class Command(HelpConventions, TyperCommand):
    pass


class Group(HelpConventions, TyperGroup):
    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), self.subcommand_metavar]


RESUMING = {  # what a stopped command kept, and how to go on (said after "interrupted (Ctrl-C)")
    "retarget": "; the finished frames are kept: the same command resumes",
    "batch": "; the finished jobs and frames are kept: the same command resumes",
    "demo": "; the finished frames are kept: the same command resumes",
    "evaluate": "; the finished frames are kept: the same command resumes",
    "extract-pose": "; the poses detected so far are kept: the same command resumes",
    "train": "; the checkpoints written so far are kept: the same command with --resume continues from the newest",
}

app = typer.Typer(
    name="magicpose",
    cls=Group,
    help="Make the person in one photo perform the motion and expressions of a driving video.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _plain_text() -> bool | None:
    """``False`` (no terminal codes at all) when NO_COLOR is set; else None: rich decides by the stream."""
    return False if os.environ.get("NO_COLOR") else None


console = Console(stderr=True, force_terminal=_plain_text())
error_console = Console(stderr=True, force_terminal=_plain_text())

F = TypeVar("F", bound=Callable)


class WrongUsage(MagicPoseError):
    """Arguments that do not go together, which Typer cannot see: one line and exit code 2, as its own usage errors."""


class Verbosity(IntEnum):
    quiet = 0
    normal = 1
    verbose = 2


_verbosity = Verbosity.normal


def verbosity() -> Verbosity:
    """How much the running command is asked to say (its -q/-v)."""
    return _verbosity


def detail(line: str) -> None:
    """A line shown only with --verbose (a setting's source, a timing)."""
    if _verbosity is Verbosity.verbose:
        console.print(line, highlight=False, soft_wrap=True)


def report_output(path: Path | str) -> None:
    """The file a command made: with --quiet, its path alone on stdout (the summary says it otherwise)."""
    if _verbosity is Verbosity.quiet and launched_as_main():
        typer.echo(str(path))


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"magicpose {magicpose_cli.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Show the version and exit.", callback=_show_version, is_eager=True),
) -> None:
    """Make the person in one photo perform the motion and expressions of a driving video."""


def command(name: str, group: typer.Typer | None = None, **settings) -> Callable[[F], F]:
    """Register ``func`` as the command ``name`` (of ``group``, a sub-app such as `magicpose comfyui`) with the
    shared options, error handling and help epilog."""

    def register(func: F) -> F:
        (group or app).command(name, epilog=EXIT_CODES, cls=Command, **settings)(_with_verbosity(user_errors(func)))
        return func

    return register


def _with_verbosity(func: F) -> F:
    """Add -q/--quiet and -v/--verbose to a command's signature (Typer reads it) and apply them."""
    quiet = inspect.Parameter(
        "quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
        default=typer.Option(False, "--quiet", "-q", help="Print only errors and, at the end, the path of what was written."),
    )  # fmt: skip
    verbose = inspect.Parameter(
        "verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
        default=typer.Option(False, "--verbose", "-v", help="Also say where each setting came from, and how long each part took."),
    )  # fmt: skip

    @functools.wraps(func)
    def wrapper(*args, quiet: bool = False, verbose: bool = False, **kwargs):
        global _verbosity
        if quiet and verbose:
            raise typer.BadParameter("give --quiet or --verbose, not both")
        _verbosity = Verbosity.quiet if quiet else Verbosity.verbose if verbose else Verbosity.normal
        console.quiet = quiet or not launched_as_main()  # one voice for a launch of several processes
        started = time.perf_counter()
        try:
            with native_output_hidden(hidden=not (verbose or debugging(kwargs))):
                result = func(*args, **kwargs)
            detail(f"{name_of(func)} took {time.perf_counter() - started:.1f} s")
            return result
        finally:
            _verbosity, console.quiet = Verbosity.normal, False

    signature = inspect.signature(func)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), quiet, verbose])
    return wrapper  # type: ignore[return-value]


def debugging(kwargs: dict) -> bool:
    """Whether the command shows tracebacks (its --debug, or MAGICPOSE_DEBUG=1) and native libraries' messages."""
    return bool(kwargs.get("debug") or os.environ.get("MAGICPOSE_DEBUG"))


def name_of(func: Callable) -> str:
    return func.__name__.removesuffix("_command").replace("_", "-")


def user_errors(func: F) -> F:
    """Turn a MagicPoseError, or an error of the file system (missing, unreadable, a folder where a
    file belongs, a full disk), into one red line and exit code 1, and Ctrl-C into one line and
    exit code 130 (the shell's convention for SIGINT). In a launch of several processes only the
    main one says it and exits with 1.

    Set MAGICPOSE_DEBUG=1 (or pass --debug where a command has it) to see the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctrl_c = CtrlC()
        try:
            with ctrl_c.remembered():
                return func(*args, **kwargs)
        except (MagicPoseError, OSError) as error:
            if ctrl_c.pressed and not debugging(kwargs):
                interrupted(func)
            if debugging(kwargs):
                raise
            if not launched_as_main():
                # The main process hears of this failure (magicpose_cli.distributed) and says it; this
                # process leaves quietly, for an exit code 1 here would make torchrun stop the main one
                # before it has. The launch still fails: the main process exits with 1.
                raise typer.Exit(code=0) from None
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2 if isinstance(error, WrongUsage) else 1) from None
        except Exception:
            # Ctrl-C while a native library loads (torch, on a command's first lines) can surface as
            # another error (SystemError, RuntimeError): it is still the user's interruption.
            if not ctrl_c.pressed or debugging(kwargs):
                raise
            interrupted(func)
        except KeyboardInterrupt:
            if debugging(kwargs):
                raise
            interrupted(func)

    return wrapper  # type: ignore[return-value]


def interrupted(func: Callable) -> None:
    """Ctrl-C's one line (what was kept and how to go on) and exit code 130."""
    error_console.print(f"[bold red]error:[/] interrupted (Ctrl-C){RESUMING.get(name_of(func), '')}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=130) from None


class CtrlC:
    """Whether SIGINT arrived while a command ran; it still raises KeyboardInterrupt as Python's own handler does."""

    def __init__(self):
        self.pressed = False

    def _on_signal(self, signum, frame):
        self.pressed = True
        signal.default_int_handler(signum, frame)

    @contextmanager
    def remembered(self):
        try:
            previous = signal.signal(signal.SIGINT, self._on_signal)
        except ValueError:  # not the main thread (the app's jobs): the process's own handler stays
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

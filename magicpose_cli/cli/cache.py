"""`magicpose cache`: show the cache's size per kind; clear kinds of it or shrink it, via magicpose_cli.cache."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from magicpose_cli.cache import CACHE_KINDS, cache_usage, check_cache_root, check_kinds, clear_cache, format_size, parse_size, shrink_cache
from magicpose_cli.cli.app import Verbosity, command, console, verbosity
from magicpose_cli.files import default_cache_root


ClearKind = Enum("ClearKind", {kind: kind for kind in [*CACHE_KINDS, "all"]}, type=str)  # --clear's choices


@command("cache")
def cache_command(
    clear: List[ClearKind] = typer.Option(
        [], "--clear", help="Delete every entry of a kind, or all (repeatable)."
    ),
    max_size: Optional[str] = typer.Option(
        None, help="Delete the least recently used entries until the cache holds at most this much (e.g. 20G)."
    ),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache root (default $MAGICPOSE_CACHE or ~/.cache/magicpose)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Show how much disk the cache uses (generated frames, extracted poses, converted models) and free it.

    Everything in the cache is recomputed when needed: clearing frames only means a rerun
    generates them again.
    """
    root = check_cache_root(cache_dir or default_cache_root())
    kinds = check_kinds([kind.value for kind in clear]) if clear else ()
    limit = parse_size(max_size) if max_size is not None else None
    deleted = clear_cache(root, kinds) if kinds else []
    if limit is not None:
        deleted += shrink_cache(root, limit)
    if clear or limit is not None:
        console.print(f"deleted {len(deleted)} {'entry' if len(deleted) == 1 else 'entries'} ({format_size(sum(entry.size for entry in deleted))})", highlight=False)
    table = Table("kind", "entries", "size", "what", title=f"cache {root}", title_justify="left")
    usages = cache_usage(root)
    for usage in usages:
        table.add_row(usage.kind, str(usage.entries), format_size(usage.size), usage.description)
    table.add_row("total", str(sum(u.entries for u in usages)), format_size(sum(u.size for u in usages)), "", style="bold")
    Console(quiet=verbosity() is Verbosity.quiet).print(table)

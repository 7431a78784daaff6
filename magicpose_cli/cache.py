"""What the cache root holds, and clearing it: by kind, or least recently written first down to a size.

The cache root (``$MAGICPOSE_CACHE`` or ``~/.cache/magicpose``) holds one folder per kind, each made
of entries that are safe to delete (they are recomputed when needed):

    frames/<run key>/     finished frames of a retarget run (an interrupted run resumes from them)
    poses/<video>-<tag>/  poses extracted from a driving or training video
    models/<hash>/        original checkpoints converted for ``--model``

Only these folders and the file-hash memo are touched; anything else under the root is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError

FRAMES_KIND, POSES_KIND, MODELS_KIND = "frames", "poses", "models"  # the folders under the cache root
CACHE_KINDS = {
    FRAMES_KIND: "generated frames (retarget resumes from them)",
    POSES_KIND: "poses extracted from driving and training videos",
    MODELS_KIND: "checkpoints converted for --model",
}
HASH_MEMO_FILE = "file_hashes.json"  # hashing.hash_folder's memo of file hashes
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class CacheEntry:
    """One deletable unit of the cache: a run's frames, a video's poses, a converted model."""

    kind: str
    path: Path
    size: int  # bytes
    last_written: float  # newest modification time inside, seconds since the epoch


@dataclass(frozen=True)
class KindUsage:
    kind: str
    description: str
    entries: int
    size: int


def parse_size(text: str) -> int:
    """Bytes from a size such as ``500M``, ``20G``, ``1.5GB`` or ``1000`` (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise MagicPoseError(f"not a size: {text!r} (examples: 500M, 20G, 1.5GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _SIZE_UNITS[unit]:
            return f"{size / _SIZE_UNITS[unit]:.1f} {unit}B"
    return f"{size} B"


def _measure(path: Path) -> tuple[int, float]:
    """Total bytes and newest modification time of a file or of everything under a folder."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    size, newest = 0, path.lstat().st_mtime
    for file in files:
        try:
            stat = file.lstat()
        except FileNotFoundError:  # deleted meanwhile by a run that is writing
            continue
        size += stat.st_size
        newest = max(newest, stat.st_mtime)
    return size, newest


def cache_entries(root: Path, kinds: tuple[str, ...] = tuple(CACHE_KINDS)) -> list[CacheEntry]:
    """Every entry of the given kinds under ``root``, least recently written first."""
    entries = []
    for kind in kinds:
        folder = Path(root) / kind
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            size, last_written = _measure(path)
            entries.append(CacheEntry(kind, path, size, last_written))
    return sorted(entries, key=lambda entry: entry.last_written)


def cache_usage(root: Path) -> list[KindUsage]:
    """Entries and bytes per kind, in the order of CACHE_KINDS."""
    entries = cache_entries(root)
    return [
        KindUsage(
            kind,
            description,
            sum(1 for entry in entries if entry.kind == kind),
            sum(entry.size for entry in entries if entry.kind == kind),
        )
        for kind, description in CACHE_KINDS.items()
    ]


def check_kinds(kinds: list[str]) -> tuple[str, ...]:
    """The kinds named (``all`` for every one), refusing unknown names."""
    if "all" in kinds:
        return tuple(CACHE_KINDS)
    unknown = [kind for kind in kinds if kind not in CACHE_KINDS]
    if unknown:
        raise MagicPoseError(f"unknown cache kind {unknown[0]!r}; choose from {', '.join(CACHE_KINDS)} or all")
    return tuple(dict.fromkeys(kinds))


def _delete(entry: CacheEntry) -> None:
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        entry.path.unlink(missing_ok=True)


def clear_cache(root: Path, kinds: tuple[str, ...]) -> list[CacheEntry]:
    """Delete every entry of ``kinds``; returns what was deleted."""
    entries = cache_entries(root, kinds)
    for entry in entries:
        _delete(entry)
    if set(kinds) == set(CACHE_KINDS):
        (Path(root) / HASH_MEMO_FILE).unlink(missing_ok=True)
    return entries


def shrink_cache(root: Path, max_size: int) -> list[CacheEntry]:
    """Delete the least recently written entries until the cache holds at most ``max_size`` bytes."""
    entries = cache_entries(root)
    total = sum(entry.size for entry in entries)
    deleted = []
    for entry in entries:
        if total <= max_size:
            break
        _delete(entry)
        total -= entry.size
        deleted.append(entry)
    return deleted


def check_cache_root(root: Path) -> Path:
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise MagicPoseError(f"cache folder {root} is a file, not a folder")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise MagicPoseError(f"cannot read the cache folder {root}; check its permissions, or pass --cache-dir another folder")
    return root

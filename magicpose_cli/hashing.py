"""Content hashes for cache keys: one place, so every cache agrees on what "the same input" means."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from magicpose_cli.cache import HASH_MEMO_FILE
from magicpose_cli.files import atomic_write_text


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path, digest=None) -> str:
    """SHA-256 of a file's bytes, read in blocks; with ``digest``, the bytes are added to it instead."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def hash_arrays(arrays: list[np.ndarray]) -> str:
    """A hash of the arrays' shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _read_memo(memo_path: Path | None) -> dict[str, str]:
    if memo_path is None or not memo_path.is_file():
        return {}
    try:
        return json.loads(memo_path.read_text())
    except (OSError, ValueError):
        return {}


def files_in(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every file below it, sorted."""
    return [path] if path.is_file() else sorted(file for file in path.rglob("*") if file.is_file())


def hash_folder(folder: Path, cache_root: Path | None = None) -> str:
    """A content hash of every file under ``folder`` (relative names and bytes), or of one file.

    Hashing a multi-gigabyte model on every run is slow, so each file's hash is remembered under
    ``cache_root`` by its absolute path, size and modification time.
    """
    folder = Path(folder).resolve()
    memo_path = (cache_root / HASH_MEMO_FILE) if cache_root is not None else None
    memo = _read_memo(memo_path)
    digest = hashlib.sha256()
    changed = False
    for path in files_in(folder):
        stat = path.stat()
        memo_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        file_hash = memo.get(memo_key)
        if file_hash is None:
            file_hash = memo[memo_key] = hash_file(path)
            changed = True
        name = path.name if path == folder else path.relative_to(folder).as_posix()
        digest.update(f"{name}\0{file_hash}\n".encode())
    if memo_path is not None and changed:
        try:
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError:
            pass  # the memo only saves time; a read-only cache still hashes correctly
    return digest.hexdigest()

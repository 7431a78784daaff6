"""Writing files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from magicpose_cli.errors import MagicPoseError


def default_cache_root() -> Path:
    """Where caches live (frames, poses, converted models): ``$MAGICPOSE_CACHE``, else ``~/.cache/magicpose``."""
    configured = os.environ.get("MAGICPOSE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "magicpose"


def check_exists(path: str | Path, what: str) -> None:
    """Refuse a missing input in one line naming it; the commands call it before any slow import or work."""
    if not Path(path).exists():
        raise MagicPoseError(f"{what} not found: {path} (check the path)")


@contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Delete ``folder`` when the block fails and the folder did not exist before it: a failed command
    leaves nothing behind. An interruption (Ctrl-C) keeps it, for commands that resume from what is there."""
    existed = Path(folder).exists()
    try:
        yield
    except Exception:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _usual_permissions(path: Path, mode: int) -> None:
    """tempfile makes private (0600/0700) files; the final file gets what a plain open() would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary file keeps ``path``'s suffix so that tools choosing a format by extension
    (PIL, ffmpeg, safetensors) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    _usual_permissions(temporary_path, 0o666)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    _usual_permissions(temporary, 0o777)
    try:
        yield temporary
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(temporary, path)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)

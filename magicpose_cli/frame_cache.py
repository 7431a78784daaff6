"""A lossless store of finished frames, so a long run that stops can resume without redoing work.

Each run's frames live in a folder named by a hash of everything that determines them (model
weights, reference image, pose maps, generation settings, seed). A frame is a PNG written
atomically the moment its batch finishes; a different input or setting gets a different folder,
so a stale frame is never reused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from magicpose_cli.cache import FRAMES_KIND
from magicpose_cli.files import atomic_path, atomic_write_text
from magicpose_cli.hashing import hash_bytes

CACHE_FORMAT_VERSION = 1


def run_key(**parts: object) -> str:
    """One hash of the named parts (strings, numbers, lists, dicts), stable across runs."""
    text = json.dumps({"cache_format": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hash_bytes(text.encode())


class FrameCache:
    """The finished frames of one run: ``<root>/frames/<key>/<index:05d>.png`` (lossless RGB)."""

    def __init__(self, root: Path, key: str, description: dict | None = None):
        self.folder = Path(root) / FRAMES_KIND / key
        self.key = key
        self.description = description or {}
        if self.folder.is_dir():
            os.utime(self.folder)  # marks the run as used: `magicpose cache --max-size` deletes least recently used first

    def path(self, index: int) -> Path:
        return self.folder / f"{index:05d}.png"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def count(self, num_frames: int) -> int:
        """How many of frames ``0 .. num_frames - 1`` are finished (whichever process made them)."""
        return sum(self.has(index) for index in range(num_frames))

    def load(self, index: int) -> np.ndarray:
        with Image.open(self.path(index)) as image:
            return np.asarray(image.convert("RGB"))

    def open_folder(self) -> Path:
        """The run's folder, made (with its run.json) on first use."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.folder / "run.json", json.dumps(self.description, indent=1, default=str))
        return self.folder

    def save(self, index: int, frame: np.ndarray) -> None:
        """Write one HxWx3 uint8 frame atomically (a crash never leaves a broken PNG)."""
        self.open_folder()
        with atomic_path(self.path(index)) as temporary:
            Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(temporary, format="PNG")

    def clear(self) -> None:
        """Forget every frame of this run (``--force``)."""
        shutil.rmtree(self.folder, ignore_errors=True)

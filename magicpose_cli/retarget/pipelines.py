"""Loaded pipelines kept between retarget runs, for a process that runs many (the app).

`magicpose retarget` runs once and loads its model once; an app that loaded the weights again on
every click would spend most of a short run loading. The key is everything ``load_pipeline`` is
given plus the files of the model folder and of the motion module (names, sizes, modification
times), so weights written again are loaded anew. Only the newest ``capacity`` pipelines are kept: one model on a GPU
is the usual budget, so the old one is let go before the next is loaded.
"""

from __future__ import annotations

import gc
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from magicpose_cli.models.loading import load_pipeline


def files_stamp(path: Path) -> tuple:
    """The path and the name (relative to it), size and modification time of every file it is or
    holds: cheap to read, and different whenever a file is written again."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(file for file in path.rglob("*") if file.is_file())
    return (str(path), *((file.relative_to(path).as_posix(), file.stat().st_size, file.stat().st_mtime_ns) for file in files))


class PipelineCache:
    """``load(...)`` takes ``load_pipeline``'s arguments and returns a pipeline loaded with them.

    ``loading(folder)`` gives a context the loading of a miss runs in (the app shows it as progress).
    """

    def __init__(self, capacity: int = 1, loading: Callable[[Path], AbstractContextManager] = lambda folder: nullcontext()):
        self.capacity = capacity
        self.loading = loading
        self.loads = 0  # pipelines loaded so far: misses
        self._pipelines: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, *args, **kwargs):
        """The pipeline ``load_pipeline(*args, **kwargs)`` gives, loaded only when no kept one matches."""
        call = inspect.signature(load_pipeline).bind(*args, **kwargs)
        call.apply_defaults()
        folder, motion_module = Path(call.arguments["folder"]), call.arguments["motion_module"]
        stamps = (files_stamp(folder), motion_module and files_stamp(motion_module))
        key = (*stamps, *(str(getattr(value, "value", value)) for name, value in call.arguments.items() if name not in ("folder", "motion_module")))
        with self._lock:
            if key in self._pipelines:
                self._pipelines.move_to_end(key)
                return self._pipelines[key]
            self._make_room(self.capacity - 1)
            with self.loading(folder):
                pipeline = load_pipeline(*args, **kwargs)
            self._pipelines[key] = pipeline
            self.loads += 1
            return pipeline

    def clear(self) -> None:
        """Let every kept pipeline go (and the GPU memory it held)."""
        with self._lock:
            self._make_room(0)

    def _make_room(self, keep: int) -> None:
        if len(self._pipelines) <= keep:
            return
        while len(self._pipelines) > keep:
            self._pipelines.popitem(last=False)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

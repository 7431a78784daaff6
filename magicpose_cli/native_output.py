"""Native libraries' own messages (ffmpeg's ``moov atom not found``, decord's ``video_reader.cc:83:
ERROR``, MediaPipe's absl and TensorFlow Lite lines, onnxruntime's warnings), kept off the terminal.

They are printed by C and C++ code straight to file descriptor 2, past Python's ``sys.stderr``, so
no Python logging setting reaches all of them. A command therefore runs with descriptor 2 pointed
at the null device, while ``sys.stderr`` (progress, notices, our one ``error:`` line) keeps writing
to the real stderr through a copy of the original descriptor. With ``--verbose`` or ``--debug``
nothing is hidden.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Log levels the libraries read from the environment when they load (MediaPipe's glog and absl,
# TensorFlow Lite): warnings and info off, errors reach us as exceptions. A value the user set wins.
QUIET_LOG_LEVELS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


@contextmanager
def native_output_hidden(hidden: bool = True) -> Iterator[None]:
    """Within the block, what native code writes to descriptor 2 is dropped (when ``hidden``);
    Python's ``sys.stderr`` still reaches the terminal (or whatever stderr was)."""
    if not hidden:
        yield
        return
    for name, value in QUIET_LOG_LEVELS.items():
        os.environ.setdefault(name, value)
    sys.stderr.flush()
    original_stderr = sys.stderr
    real_descriptor = os.dup(2)
    replaced = _writes_to_descriptor_2(original_stderr)
    if replaced:  # the Python stream keeps its destination through a copy of descriptor 2
        sys.stderr = os.fdopen(
            os.dup(real_descriptor), "w", buffering=1, encoding=original_stderr.encoding, errors=original_stderr.errors
        )
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        if replaced:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = original_stderr
        os.dup2(real_descriptor, 2)
        os.close(real_descriptor)


def _writes_to_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test runner's captured stream
        return False

"""`magicpose retarget`: the person of a reference photo performing the motion of a driving video.

``run`` is the orchestration, ``options`` the settings and how each is resolved, ``generation``
the frames made into the frame cache, ``outputs`` the mp4 and the ``--frames-dir`` PNGs.
"""

from magicpose_cli.retarget.options import RetargetOptions, Sampling, resolve_sampling
from magicpose_cli.retarget.outputs import FRAMES_DIR_RECORD
from magicpose_cli.retarget.run import RetargetSummary, load_reference_image, retarget

__all__ = ["FRAMES_DIR_RECORD", "RetargetOptions", "RetargetSummary", "Sampling", "load_reference_image", "resolve_sampling", "retarget"]

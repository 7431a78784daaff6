"""`magicpose demo`: the bundled demo model retargeting one unseen synthetic person onto another's motion.

Both people come from :func:`magicpose_cli.synthetic.sample_pair`, whose people never appear in
the demo model's training data. The reference is written as a PNG and the driving motion (person
B's motion on person A's proportions) as a folder of OpenPose JSON files; then the ordinary
retarget path runs on them, so the demo exercises exactly what `magicpose retarget` does. The
reference is drawn at 4x the model's size, so that the face pass (on unless ``face_pass=False``)
redraws each face from a reference face with detail in it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from PIL import Image
from rich.console import Console

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.cache import check_cache_root
from magicpose_cli.encode import check_output_path
from magicpose_cli.files import atomic_directory, atomic_path
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.retarget import RetargetOptions, RetargetSummary, retarget
from magicpose_cli.synthetic import sample_pair

DEMO_SIZE = 64  # the demo model's training resolution: it generates at this size
DEMO_REFERENCE_SIZE = 256  # the reference photo and the poses' canvas: its face crop is sharp at the face canvas's 64x64
DEMO_DISPLAY_HEIGHT = 256  # each grid panel enlarged 4x (nearest neighbour) so that it can be seen
DEMO_PAIR_SEED = 2024
DEMO_FPS = 12.0
DEMO_FRAMES = 24  # two seconds at DEMO_FPS


@dataclass(frozen=True)
class DemoInputs:
    reference: Path  # PNG of person A
    reference_pose: Path  # A's keypoints in it (OpenPose JSON): where the face pass finds the reference's face
    driving: Path  # folder of OpenPose JSON files: B's motion on A's proportions


DEMO_INPUT_NAMES = ("reference.png", "reference_pose.json", "driving_poses")


def check_inputs_dir(folder: Path, overwrite: bool) -> None:
    """Fail before any work when ``folder`` cannot take the demo inputs, or holds earlier ones without ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise MagicPoseError(f"--inputs-dir {folder} is a file, not a folder")
    earlier = [name for name in DEMO_INPUT_NAMES if (folder / name).exists()]
    if earlier and not overwrite:
        raise MagicPoseError(f"--inputs-dir {folder} already holds {' and '.join(earlier)}; pass --overwrite to replace them")


def write_demo_inputs(folder: Path, seed: int = DEMO_PAIR_SEED, num_frames: int = DEMO_FRAMES) -> DemoInputs:
    """Draw an unseen reference person and a driving motion into ``folder``.

    Each is written whole under its final name (the pose folder replaces any earlier one), so a
    folder never mixes the poses of two runs.
    """
    if num_frames < 1:
        raise MagicPoseError(f"--frames must be at least 1, got {num_frames}")
    pair = sample_pair(seed, DEMO_REFERENCE_SIZE, num_frames)
    reference, reference_pose, driving = (folder / name for name in DEMO_INPUT_NAMES)
    with atomic_directory(driving) as staging:
        for index, pose in enumerate(pair.target_poses):
            pose.save(staging / f"{index:05d}.json")
    with atomic_path(reference) as temporary:
        Image.fromarray(pair.reference_frame).save(temporary, format="PNG")
    pair.reference_pose.save(reference_pose)
    return DemoInputs(reference, reference_pose, driving)


def run_demo(
    output: Path,
    num_frames: int = DEMO_FRAMES,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = DEMO_PAIR_SEED,
    inputs_dir: Path | None = None,
    cache_root: Path | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    on_notice: Callable[[str], None] | None = None,
    face_pass: bool = True,
) -> RetargetSummary:
    """Retarget an unseen synthetic person onto another's motion with the demo model; write ``output`` as a grid video.

    ``steps`` and ``guidance`` default to the demo model's recommended settings. The inputs go to
    ``inputs_dir`` when given (kept; earlier ones are replaced only with ``overwrite``), else to a
    temporary folder. ``face_pass``: redraw each face (retarget's face pass), or show the main pass alone.
    """
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        raise MagicPoseError(f"the demo model is missing from {DEMO_MODEL_DIR}; reinstall magicpose-cli")
    check_output_path(Path(output), overwrite)
    if inputs_dir is not None:
        check_inputs_dir(Path(inputs_dir), overwrite)
    if cache_root is not None:
        cache_root = check_cache_root(cache_root)
    options = RetargetOptions(
        model=DEMO_MODEL_DIR, width=DEMO_SIZE, height=DEMO_SIZE,
        align=False,  # the driving poses are already on the reference's proportions
        seed=0, steps=steps, guidance=guidance, fps=DEMO_FPS, grid=True, grid_height=DEMO_DISPLAY_HEIGHT,
        overwrite=overwrite, cache_root=cache_root, face_pass=face_pass,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="magicpose-demo-") as temporary:
        inputs = write_demo_inputs(Path(inputs_dir or temporary), seed, num_frames)
        options = replace(options, reference_pose=inputs.reference_pose)
        return retarget(inputs.reference, inputs.driving, Path(output), options, console=console, on_notice=on_notice)

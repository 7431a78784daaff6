"""`magicpose demo`: the bundled demo model retargeting one unseen synthetic person onto another's motion.

Both people come from :func:`magicpose_cli.synthetic.sample_pair`, whose people never appear in
the demo model's training data. The reference is written as a PNG and the driving motion (person
B's motion on person A's proportions) as a folder of OpenPose JSON files; then the ordinary
retarget path runs on them, so the demo exercises exactly what `magicpose retarget` does.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image
from rich.console import Console

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.retarget import RetargetOptions, RetargetSummary, retarget
from magicpose_cli.synthetic import sample_pair

DEMO_SIZE = 64  # the demo model's training resolution
DEMO_PAIR_SEED = 2024
DEMO_FPS = 12.0


@dataclass(frozen=True)
class DemoInputs:
    reference: Path  # PNG of person A
    driving: Path  # folder of OpenPose JSON files: B's motion on A's proportions


def write_demo_inputs(folder: Path, seed: int = DEMO_PAIR_SEED, num_frames: int = 24) -> DemoInputs:
    """Draw an unseen reference person and a driving motion into ``folder``."""
    if num_frames < 1:
        raise MagicPoseError(f"--frames must be at least 1, got {num_frames}")
    pair = sample_pair(seed, DEMO_SIZE, num_frames)
    folder.mkdir(parents=True, exist_ok=True)
    reference = folder / "reference.png"
    with atomic_path(reference) as temporary:
        Image.fromarray(pair.reference_frame).save(temporary, format="PNG")
    driving = folder / "driving_poses"
    driving.mkdir(exist_ok=True)
    for index, pose in enumerate(pair.target_poses):
        pose.save(driving / f"{index:05d}.json")
    return DemoInputs(reference, driving)


def run_demo(
    output: Path,
    num_frames: int = 24,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = DEMO_PAIR_SEED,
    inputs_dir: Path | None = None,
    cache_root: Path | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RetargetSummary:
    """Retarget an unseen synthetic person onto another's motion with the demo model; write ``output`` as a grid video.

    The inputs go to ``inputs_dir`` when given (kept), else to a temporary folder.
    """
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        raise MagicPoseError(f"the demo model is missing from {DEMO_MODEL_DIR}; reinstall magicpose-cli")
    options = RetargetOptions(
        model=DEMO_MODEL_DIR,
        width=DEMO_SIZE,
        height=DEMO_SIZE,
        align=False,  # the driving poses are already on the reference's proportions
        seed=0,
        steps=steps,
        guidance=guidance,
        fps=DEMO_FPS,
        grid=True,
        overwrite=overwrite,
        cache_root=cache_root,
    )
    with tempfile.TemporaryDirectory(prefix="magicpose-demo-") as temporary:
        inputs = write_demo_inputs(Path(inputs_dir or temporary), seed, num_frames)
        return retarget(inputs.reference, inputs.driving, Path(output), options, console=console, on_notice=on_notice)

"""Several people in a driving video (--person): two people made from scikit-image's astronaut
cross once; each --person stays on its own person in every frame."""

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from skimage import data, transform

from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.driving import load_driving_poses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.extract import PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import BODY, FramePose

FRAMES = 12
WIDTH, HEIGHT, PERSON_WIDTH = 448, 256, 160
LEFT, RIGHT = 16, WIDTH - PERSON_WIDTH - 16


def person_pictures() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut (orange suit) and a mirrored copy in a blue suit (red and blue swapped)."""
    astronaut = (transform.resize(data.astronaut()[:, 40:360], (HEIGHT, PERSON_WIDTH), anti_aliasing=True) * 255).astype(np.uint8)
    return astronaut, np.ascontiguousarray(astronaut[:, ::-1, ::-1])


def lefts(t: int) -> tuple[int, int]:
    """Where each person's picture starts at frame ``t``: the first walks right, the second left, over each other."""
    step = (RIGHT - LEFT) * t / (FRAMES - 1)
    return round(LEFT + step), round(RIGHT - step)


@pytest.fixture(scope="module")
def crossing_video(tmp_path_factory) -> Path:
    """The two people cross once; the second passes in front, hiding the first for a few frames."""
    first, second = person_pictures()
    frames = []
    for t in range(FRAMES):
        canvas = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
        first_left, second_left = lefts(t)
        canvas[:, first_left : first_left + PERSON_WIDTH] = first
        canvas[:, second_left : second_left + PERSON_WIDTH] = second
        frames.append(canvas)
    path = tmp_path_factory.mktemp("videos") / "crossing.mp4"
    imageio.mimwrite(path, frames, fps=10, codec="libx264", quality=9, macro_block_size=16)
    return path


def nose_offsets() -> tuple[float, float]:
    """Where each person's nose is in their own picture, from one person alone in the frame."""
    from magicpose_cli.pose.detectors import detect_reference_pose

    first, second = person_pictures()
    return tuple(float(detect_reference_pose(picture).people[0].body[BODY["nose"], 0]) for picture in (first, second))


@pytest.mark.parametrize("person", [1, 2])
def test_each_person_is_followed_through_the_crossing(crossing_video, tmp_path, person):
    result = extract_poses(crossing_video, tmp_path / "poses", settings=PoseSettings(person=str(person)))
    offset = nose_offsets()[person - 1]
    noses = [frame.people[0].body[BODY["nose"]] for frame in result.poses]
    expected = [lefts(t)[person - 1] + offset for t in range(FRAMES)]
    print(person, [round(float(nose[0])) for nose in noses], [round(x) for x in expected], result.statuses)
    assert all(nose[2] > 0 for nose in noses)
    assert np.abs(np.array([nose[0] for nose in noses]) - expected).max() < 20


def test_auto_says_whom_it_follows_and_a_missing_person_is_one_line(crossing_video, tmp_path):
    runner = CliRunner()
    auto = runner.invoke(app, ["extract-pose", str(crossing_video), "-o", str(tmp_path / "auto"), "--max-frames", "3"])
    assert auto.exit_code == 0, auto.output
    said = " ".join(auto.output.split())
    assert f"2 people in {crossing_video}: following person 1 from the left, the most visible (--person 1..2 picks another)" in said
    missing = runner.invoke(app, ["extract-pose", str(crossing_video), "-o", str(tmp_path / "third"), "--person", "3"])
    assert missing.exit_code == 1, missing.output
    assert f"--person 3: 2 people were found in {crossing_video}; choose --person 1..2 or auto" in missing.output
    assert len(missing.output.strip().splitlines()) == 1 and not (tmp_path / "third").exists()
    with pytest.raises(MagicPoseError, match="--person must be auto or a number from 1"):
        extract_poses(crossing_video, tmp_path / "bad", settings=PoseSettings(person="left"))
    (tmp_path / "json").mkdir()
    FramePose(WIDTH, HEIGHT, []).save(tmp_path / "json" / "00000.json")
    with pytest.raises(MagicPoseError, match="--person follows someone in a video or photos; .* holds OpenPose JSON"):
        load_driving_poses(tmp_path / "json", settings=PoseSettings(person="2"))


def test_the_apps_pose_preview_boxes_the_followed_person(crossing_video, tmp_path):
    from PIL import Image
    from rich.progress import Progress

    from magicpose_cli.retarget import RetargetOptions
    from magicpose_cli.ui.jobs import Engine

    reference = tmp_path / "reference.png"
    Image.fromarray(data.astronaut()).save(reference)
    engine = Engine(tmp_path / "out", tmp_path / "scratch", cache_root=tmp_path / "cache")
    preview = engine.preview_poses(reference, crossing_video, RetargetOptions(person="2", max_frames=2), Progress(disable=True))
    first = imageio.get_reader(preview).get_data(0)
    scale = first.shape[0] / HEIGHT
    driving_panel = first[:, : round(WIDTH * scale)]
    yellow = (driving_panel[..., 0] > 200) & (driving_panel[..., 1] > 170) & (driving_panel[..., 2] < 90)
    columns = np.flatnonzero(yellow.any(axis=0)) / scale
    assert len(columns) and RIGHT - 60 < columns.min() and columns.max() < RIGHT + PERSON_WIDTH + 60  # around person 2 ...
    assert columns.max() - columns.min() > 100 and columns.min() > LEFT + PERSON_WIDTH  # ... not person 1

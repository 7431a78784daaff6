"""--drive face|body and --face-from on videos made from scikit-image's astronaut: what each keeps of
the reference, and what follows which video."""

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data, filters, transform
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.driving import load_driving_poses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.detectors import detect_reference_pose
from magicpose_cli.pose.extract import PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import BODY

ANGLES = (-14, -7, 0, 7, 14, 7)  # the driver's head (the whole picture) tilting
SHIFTS = (0, 8, 16, 24, 32, 40)


def face_angle(face: np.ndarray) -> float:
    """The tilt of the eye line (iBUG outer eye corners 36 and 45), in degrees."""
    dx, dy = face[45, :2] - face[36, :2]
    return float(np.degrees(np.arctan2(dy, dx)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A reference photo, one without a face to see, a tilting head and a body walking right."""
    root = tmp_path_factory.mktemp("drive")
    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(root / "reference.png")
    faceless = astronaut.copy()  # eyes, nose and mouth blurred away: a body, and no face to find
    faceless[60:160, 180:270] = (filters.gaussian(astronaut[60:160, 180:270], 12, channel_axis=-1) * 255).astype(np.uint8)
    Image.fromarray(faceless).save(root / "faceless.png")
    person = transform.resize(astronaut, (256, 256), anti_aliasing=True)
    tilting = [(transform.rotate(person, angle, center=(128, 90)) * 255).astype(np.uint8) for angle in ANGLES]
    imageio.mimwrite(root / "tilting.mp4", tilting, fps=10, codec="libx264", quality=9, macro_block_size=16)
    walking = []
    for shift in SHIFTS:
        canvas = np.zeros((256, 320, 3), dtype=np.uint8)
        canvas[:, shift : shift + 256] = (person * 255).astype(np.uint8)
        walking.append(canvas)
    imageio.mimwrite(root / "walking.mp4", walking, fps=10, codec="libx264", quality=9, macro_block_size=16)
    return {name: root / f"{name}{'.png' if name in ('reference', 'faceless') else '.mp4'}" for name in ("reference", "faceless", "tilting", "walking")}


def test_drive_face_keeps_the_reference_body_and_moves_the_face(clips, tmp_path):
    reference = detect_reference_pose(clips["reference"]).people[0]
    result = extract_poses(clips["tilting"], tmp_path, settings=PoseSettings(align_to=str(clips["reference"]), drive="face"))
    driver = extract_poses(clips["tilting"], tmp_path, settings=PoseSettings())  # the same detections, not aligned
    for frame in result.poses:
        np.testing.assert_array_equal(frame.people[0].body, reference.body)
    tilts = [face_angle(frame.people[0].face) for frame in result.poses]
    driver_tilts = [face_angle(frame.people[0].face) for frame in driver.poses]
    print(np.round(tilts, 1), np.round(driver_tilts, 1))
    assert np.ptp(tilts) > 20  # the face turns as the driver's does ...
    assert np.abs(np.subtract(tilts, tilts[2]) - np.subtract(driver_tilts, driver_tilts[2])).max() < 4
    nose = reference.body[BODY["nose"], :2]
    centres = np.array([frame.people[0].face[:68, :2].mean(axis=0) for frame in result.poses])
    assert np.linalg.norm(centres - nose, axis=1).max() < 60  # ... on the reference's head


def test_face_from_takes_the_face_and_the_body_from_two_videos(clips, tmp_path):
    reference = str(clips["reference"])
    joined = extract_poses(clips["walking"], tmp_path, settings=PoseSettings(align_to=reference, face_from=str(clips["tilting"])))
    body_only = extract_poses(clips["walking"], tmp_path, settings=PoseSettings(align_to=reference))
    for frame, walking in zip(joined.poses, body_only.poses):
        np.testing.assert_allclose(frame.people[0].body, walking.people[0].body, atol=0.05)  # raw detections saved to 3 decimals
    tilts = [face_angle(frame.people[0].face) for frame in joined.poses]
    walking_tilts = [face_angle(frame.people[0].face) for frame in body_only.poses]
    print(np.round(tilts, 1), np.round(walking_tilts, 1))
    assert np.ptp(tilts) > 20 and np.ptp(walking_tilts) < 5
    noses = np.array([frame.people[0].body[BODY["nose"], :2] for frame in joined.poses])
    centres = np.array([frame.people[0].face[:68, :2].mean(axis=0) for frame in joined.poses])
    assert np.linalg.norm(centres - noses, axis=1).max() < 60  # on the walking body's head


def test_drive_body_keeps_the_reference_face_on_the_moving_head(clips, tmp_path):
    reference = detect_reference_pose(clips["reference"])
    driving = load_driving_poses(clips["tilting"], settings=PoseSettings(drive="body"), cache_root=tmp_path)
    aligned = driving.aligned_to(np.asarray(Image.open(clips["reference"])))
    reference_tilt = face_angle(reference.people[0].face)
    for frame in aligned.keypoints:
        person = frame.people[0]
        assert abs(face_angle(person.face) - reference_tilt) < 0.01  # the reference's own face ...
        centre = person.face[:68, :2].mean(axis=0)
        assert np.linalg.norm(centre - person.body[BODY["nose"], :2]) < 60  # ... carried on the driver's head


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["tilting", "--drive", "face"], "--drive face joins the driving poses with the reference's: it needs the reference (--align-to REF"),
        (["tilting", "--align-to", "faceless", "--drive", "face"], "--drive face: no face found in {faceless}; use a photo where the face shows"),
        (["walking", "--align-to", "reference", "--drive", "body", "--face-from", "tilting"], "--face-from gives the face, and --drive body keeps"),
        (["walking", "--align-to", "reference", "--face-from", "missing.mp4"], "--face-from video not found: missing.mp4"),
    ],
)
def test_bad_drive_options_are_one_line(clips, tmp_path, arguments, message):
    arguments = [str(clips.get(argument, argument)) for argument in arguments]
    result = CliRunner().invoke(app, ["extract-pose", *arguments, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert message.format(**clips) in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


def test_the_jobs_file_the_app_and_retarget_take_and_check_the_options(tmp_path):
    from magicpose_cli.pose.drive import DriveMode
    from magicpose_cli.retarget import RetargetOptions
    from magicpose_cli.retarget.batch import read_jobs
    from magicpose_cli.retarget.options import validate_options
    from magicpose_cli.ui.settings import options_from

    jobs = tmp_path / "jobs.toml"
    job = '[[jobs]]\nreference = "a.png"\ndriving = "d.mp4"\noutput = "o.mp4"\n'
    jobs.write_text('drive = "face"\n' + job + 'person = 2\nface-from = "talk.mp4"\n')
    [parsed] = read_jobs(jobs)
    assert (parsed.options.drive, parsed.options.person, parsed.options.face_from) == (DriveMode.FACE, "2", tmp_path / "talk.mp4")
    for text, message in (('person = "left"\n', "person must be auto or a number from 1"), ('drive = "hands"\n', "drive must be one of all, body, face")):
        jobs.write_text(text + job)
        with pytest.raises(MagicPoseError, match=message):
            read_jobs(jobs)
    from_page = options_from({"person": " 2 ", "drive": "body", "face_from": None})
    assert (from_page.person, from_page.drive, from_page.face_from) == ("2", DriveMode.BODY, None)
    assert options_from({"person": "", "drive": ""}).person == "auto"
    refused = {
        "--drive face joins the driving poses": RetargetOptions(drive=DriveMode.FACE, align=False),
        "--face-from joins the driving poses": RetargetOptions(face_from=Path("talk.mp4"), align=False),
        "--person must be auto or a number from 1": RetargetOptions(person="0"),
    }
    for message, options in refused.items():
        with pytest.raises(MagicPoseError, match=message):
            validate_options(options)

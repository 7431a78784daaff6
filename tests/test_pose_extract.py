"""extract-pose end to end on videos made from a real photo: outputs, tracking, resume, cache, loaders."""

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data, transform
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.driving import load_driving_poses
from magicpose_cli.pose.extract import PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import BODY, FramePose
from magicpose_cli.video import FrameSelection

FRAMES = 6
SHIFT_PER_FRAME = 6


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory) -> Path:
    """The astronaut at 256 px walking right by 6 px per frame on a 320x256 canvas."""
    person = (transform.resize(data.astronaut(), (256, 256), anti_aliasing=True) * 255).astype(np.uint8)
    frames = []
    for t in range(FRAMES):
        canvas = np.zeros((256, 320, 3), dtype=np.uint8)
        canvas[:, SHIFT_PER_FRAME * t : SHIFT_PER_FRAME * t + 256] = person
        frames.append(canvas)
    path = tmp_path_factory.mktemp("videos") / "astronaut.mp4"
    imageio.mimwrite(path, frames, fps=10, codec="libx264", quality=9, macro_block_size=16)
    return path


def test_cli_writes_json_maps_and_manifest_tracking_the_motion(astronaut_video, tmp_path):
    out = tmp_path / "poses"
    result = CliRunner().invoke(app, ["extract-pose", str(astronaut_video), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{FRAMES} frames: {FRAMES} detected, 0 filled" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frame_count"] == FRAMES and manifest["fps"] == pytest.approx(10)
    assert manifest["detector"] == "mediapipe" and manifest["settings"]["smooth"] is True
    assert [frame["status"] for frame in manifest["frames"]] == ["detected"] * FRAMES
    raw = json.loads((out / "00000.json").read_text())
    assert (raw["canvas_width"], raw["canvas_height"]) == (320, 256)
    assert {"pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d"} <= set(raw["people"][0])
    poses = [FramePose.load(out / f"{t:05d}.json") for t in range(FRAMES)]
    nose = np.array([pose.people[0].body[BODY["nose"], :2] for pose in poses])
    assert nose[0, 1] < poses[0].people[0].body[BODY["neck"], 1]
    assert abs((nose[-1, 0] - nose[0, 0]) - SHIFT_PER_FRAME * (FRAMES - 1)) < 8
    pose_map = np.asarray(Image.open(out / "00000.png"))
    assert pose_map.shape == (256, 320, 3)
    neck = poses[0].people[0].body[BODY["neck"], :2].astype(int)
    assert tuple(pose_map[neck[1], neck[0]]) == (255, 85, 0)  # the neck joint's colour


def test_interrupted_run_resumes_without_recomputing(astronaut_video, tmp_path):
    out = tmp_path / "poses"

    def stop_after_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_poses(astronaut_video, out, on_progress=stop_after_three)
    raw_files = sorted((out / ".cache" / "raw").glob("*.json"))
    assert len(raw_files) == 3 and not (out / "manifest.json").exists()
    stamps = {path: path.stat().st_mtime_ns for path in raw_files}
    resumed = extract_poses(astronaut_video, out)
    assert (resumed.reused, resumed.detected_now) == (3, FRAMES - 3)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    again = extract_poses(astronaut_video, out)
    assert again.from_cache and again.detected == FRAMES
    # Other post-processing settings reuse the detections; --force recomputes them.
    unsmoothed = extract_poses(astronaut_video, out, settings=PoseSettings(smooth=False, face=False))
    assert (unsmoothed.reused, unsmoothed.detected_now) == (FRAMES, 0)
    assert (unsmoothed.poses[0].people[0].face[:, 2] == 0).all()
    forced = extract_poses(astronaut_video, out, force=True)
    assert (forced.reused, forced.detected_now) == (0, FRAMES)


def test_frames_without_a_person_are_filled(astronaut_video, tmp_path):
    reader = imageio.get_reader(astronaut_video)
    frames = [frame for _, frame in zip(range(4), reader)]
    reader.close()
    frames[2] = np.zeros_like(frames[2])  # the person vanishes for one frame
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    result = extract_poses(folder, tmp_path / "poses", settings=PoseSettings(smooth=False))
    assert result.statuses == ["detected", "detected", "filled", "detected"]
    neck = [pose.people[0].body[BODY["neck"], :2] for pose in result.poses]
    assert np.allclose(neck[2], (neck[1] + neck[3]) / 2, atol=1e-3)


def test_no_person_and_bad_input_errors(tmp_path):
    blank = tmp_path / "blank.mp4"
    imageio.mimwrite(blank, [np.zeros((128, 128, 3), dtype=np.uint8)] * 3, fps=10, macro_block_size=16)
    with pytest.raises(MagicPoseError, match="no person found in any frame"):
        extract_poses(blank, tmp_path / "out")
    runner = CliRunner()
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    result = runner.invoke(app, ["extract-pose", str(tmp_path / "junk.mp4"), "-o", str(tmp_path / "o2")])
    assert result.exit_code == 1 and "cannot read video" in result.output
    result = runner.invoke(app, ["extract-pose", str(blank), "-o", str(tmp_path / "o3"), "--detector", "openpose"])
    assert result.exit_code == 1 and "body_pose_model.pth" in result.output


def test_align_to_reference_and_loaders(astronaut_video, tmp_path):
    reference_path = tmp_path / "reference.png"
    Image.fromarray(data.astronaut()).save(reference_path)  # the same person, 2x larger
    out = tmp_path / "aligned"
    result = extract_poses(
        astronaut_video, out, FrameSelection(max_frames=3), PoseSettings(align_to=str(reference_path))
    )
    assert (result.poses[0].width, result.poses[0].height) == (512, 512)
    body = result.poses[1].people[0].body
    shoulders = body[BODY["left_shoulder"], 0] - body[BODY["right_shoulder"], 0]
    assert 150 < shoulders < 230  # the reference's shoulder width (~190 px), not the video's (~95 px)

    # The output folder (OpenPose JSON) and a folder of its rendered maps load as driving input.
    from_json = load_driving_poses(out)
    assert len(from_json) == 3 and from_json.fps == pytest.approx(10) and from_json.keypoints is not None
    maps = tmp_path / "maps"
    maps.mkdir()
    for png in sorted(out.glob("*.png")):
        (maps / png.name).write_bytes(png.read_bytes())
    from_maps = load_driving_poses(maps)
    assert from_maps.keypoints is None and len(from_maps) == 3 and (from_maps.canvas_width, from_maps.canvas_height) == (512, 512)
    # Both render (or read) the same maps on a canvas of their own size.
    drawn, read = (poses.pose_maps(poses.placement(512, 512, "pad"))[2] for poses in (from_json, from_maps))
    assert np.array_equal(drawn, read) and np.array_equal(read, np.asarray(Image.open(maps / "00002.png")))
    from_video = load_driving_poses(astronaut_video, max_frames=2, work_dir=tmp_path / "work")
    assert len(from_video) == 2 and (from_video.canvas_width, from_video.canvas_height) == (320, 256)

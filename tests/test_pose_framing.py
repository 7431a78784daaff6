"""Footage as people film it: an upper-body clip gives no legs, and a video extracted in parts gives
the keypoints of one whole extraction. Videos are made here from scikit-image's astronaut photo."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data, transform

from magicpose_cli.driving import load_driving_poses
from magicpose_cli.pose.align import align_poses, detect_reference_pose
from magicpose_cli.pose.extract import TRACKING_SEGMENT, extract_poses
from magicpose_cli.pose.keypoints import BODY
from magicpose_cli.pose.mediapipe_detector import LEG_POINTS, body_from_mediapipe
from magicpose_cli.video import FrameSelection
from test_pose_conventions import MEDIAPIPE_POSE

KNEES_AND_ANKLES = [BODY[name] for name in ("right_knee", "right_ankle", "left_knee", "left_ankle")]


def turning_clip(path: Path, frames: int, size: int, turn: float = 10.0, move: int = 30) -> Path:
    """The astronaut photo (which ends at her waist) turning by +-``turn`` degrees and moving by +-``move``
    px (at 512) over ``frames`` frames, ``size`` px square, written as an H.264 mp4."""
    photo = Image.fromarray(data.astronaut())
    images = []
    for t in range(frames):
        swing = np.sin(2 * np.pi * t / frames)
        turned = photo.rotate(turn * swing, resample=Image.BILINEAR, fillcolor=(128, 128, 128)).resize((size, size), Image.LANCZOS)
        images.append(np.roll(np.asarray(turned), int(move * swing * size / 512), axis=1))
    imageio.mimwrite(path, images, fps=30, codec="libx264", quality=8, macro_block_size=16)
    return path


@pytest.fixture(scope="module")
def upper_body_poses(tmp_path_factory):
    """The upper-body clip at 512 px, where MediaPipe's tracking once put a knee on the helmet (frame 26)."""
    folder = tmp_path_factory.mktemp("upper_body")
    clip = turning_clip(folder / "upper_body.mp4", 36, 512)
    return extract_poses(clip, folder / "poses", write_maps=False).poses


def test_an_upper_body_clip_has_no_knee_or_ankle_in_any_frame(upper_body_poses):
    assert all(pose.people for pose in upper_body_poses)
    for pose in upper_body_poses:
        body = pose.people[0].body
        assert (body[KNEES_AND_ANKLES, 2] == 0).all()
        assert (body[[BODY["neck"], BODY["nose"], BODY["right_shoulder"], BODY["left_shoulder"]], 2] > 0).all()


def test_upper_body_driving_aligns_to_an_upper_body_reference(upper_body_poses):
    """No hips on either side: the scale comes from the head and shoulders, and no leg is drawn."""
    half = transform.rescale(data.astronaut(), 0.5, channel_axis=2, anti_aliasing=True)
    reference = detect_reference_pose((half * 255).astype(np.uint8))
    aligned = align_poses(upper_body_poses, reference)
    reference_body = reference.people[0].body
    width = np.linalg.norm(reference_body[BODY["right_shoulder"], :2] - reference_body[BODY["left_shoulder"], :2])
    widths = [np.linalg.norm(p.people[0].body[BODY["right_shoulder"], :2] - p.people[0].body[BODY["left_shoulder"], :2]) for p in aligned]
    assert np.median(widths) == pytest.approx(width, rel=0.1)
    assert all((pose.people[0].body[KNEES_AND_ANKLES, 2] == 0).all() for pose in aligned)


def test_extrapolated_legs_are_absent_and_seen_legs_stay():
    """MediaPipe rows of a real full-body photo (test_pose_conventions): legs it calls visible far below
    the picture are a guess, so all of them go; a knee without its hip goes; a foot just past the edge stays."""
    guessed = MEDIAPIPE_POSE.copy()
    guessed[[25, 26, 27, 28], 1] += 300  # knees 30 % and ankles 50 % below the 512 px picture, still "visible"
    assert (body_from_mediapipe(guessed, 512, 512, 0.5)[list(LEG_POINTS), 2] == 0).all()
    no_hip = MEDIAPIPE_POSE.copy()
    no_hip[24, 2] = 0.1  # the right hip unseen: its knee and ankle hang from nothing
    body = body_from_mediapipe(no_hip, 512, 512, 0.5)
    assert (body[[BODY["right_hip"], BODY["right_knee"], BODY["right_ankle"]], 2] == 0).all()
    assert (body[[BODY["left_hip"], BODY["left_knee"], BODY["left_ankle"]], 2] > 0).all()
    stepping_out = MEDIAPIPE_POSE.copy()
    stepping_out[[27, 28], 1] = 530  # ankles 18 px (3.5 %) below the picture: only they are absent
    body = body_from_mediapipe(stepping_out, 512, 512, 0.5)
    assert (body[[BODY["right_ankle"], BODY["left_ankle"]], 2] == 0).all()
    assert (body[[BODY["right_hip"], BODY["right_knee"], BODY["left_hip"], BODY["left_knee"]], 2] > 0).all()


def keypoints(poses) -> np.ndarray:
    return np.stack([np.concatenate(list(pose.people[0].parts().values())) for pose in poses])


def test_a_video_extracted_in_parts_equals_it_extracted_whole(tmp_path):
    """Frames around a tracking restart: interrupted, then a shorter run through retarget's loader, then the
    whole selection in the same folder give exactly what one uninterrupted run gives in a fresh one."""
    clip = turning_clip(tmp_path / "clip.mp4", TRACKING_SEGMENT + 4, 256)
    selection = FrameSelection(start=TRACKING_SEGMENT - 4, max_frames=8)
    whole = extract_poses(clip, tmp_path / "whole", selection, write_maps=False)
    parts = tmp_path / "parts"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_poses(clip, parts, selection, on_progress=stop_after_two, write_maps=False)
    shorter = load_driving_poses(clip, FrameSelection(start=TRACKING_SEGMENT - 4), max_frames=6, work_dir=parts)
    trunk = [BODY[name] for name in ("nose", "neck", "right_shoulder", "left_shoulder")]  # filtered causally, always seen
    assert np.array_equal(keypoints(shorter.keypoints)[:, trunk], keypoints(whole.poses[:6])[:, trunk])
    resumed = extract_poses(clip, parts, selection, write_maps=False)
    assert (resumed.reused, resumed.detected_now) == (6, 2)
    assert np.array_equal(keypoints(resumed.poses), keypoints(whole.poses))
    raw = json.loads((parts / ".cache" / "raw" / f"{TRACKING_SEGMENT + 1:05d}.json").read_text())
    assert raw["magicpose_tracking_feed"] == [TRACKING_SEGMENT, TRACKING_SEGMENT + 1]  # tracking restarted at the segment

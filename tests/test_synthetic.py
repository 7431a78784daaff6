"""The synthetic people: deterministic, drawn where their keypoints say, smooth motion, exact retargets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from magicpose_cli import synthetic
from magicpose_cli.synthetic import drawing
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import BODY, FramePose

SIZE = 128


def _person(seed: int, num_frames: int = 24):
    rng = np.random.default_rng(seed)
    return synthetic.sample_identity(rng), synthetic.sample_motion(rng, num_frames)


def _colour_distance(pixel: np.ndarray, colour) -> float:
    return float(np.linalg.norm(pixel.astype(np.float64) - np.asarray(colour, dtype=np.float64)))


def _distance_to_blend(pixel: np.ndarray, first, second) -> float:
    """How far ``pixel`` is from every mix of two colours (antialiased edges blend them)."""
    return _segment_distance(pixel.astype(np.float64), np.asarray(first, np.float64), np.asarray(second, np.float64))


def _segment_distance(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    direction = end - start
    fraction = np.clip(np.dot(point - start, direction) / max(np.dot(direction, direction), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(point - (start + fraction * direction)))


def _covered_by_arm(point: np.ndarray, person, identity, sides=("right", "left")) -> bool:
    """Whether an arm or hand (drawn last, in front of everything) could cover ``point``."""
    unit = identity.stature * SIZE
    reach = identity.arm_radius * unit * 1.3 + 1.5
    body = person.body[:, :2]
    for side in sides:
        shoulder, elbow, wrist = (body[BODY[f"{side}_{joint}"]] for joint in ("shoulder", "elbow", "wrist"))
        if min(_segment_distance(point, shoulder, elbow), _segment_distance(point, elbow, wrist)) < reach:
            return True
        hand = (person.right_hand if side == "right" else person.left_hand)[:, :2]
        if np.min(np.linalg.norm(hand - point, axis=1)) < 0.15 * identity.hand_length * unit + 2:
            return True
    return False


def _pixel(frame: np.ndarray, point: np.ndarray) -> np.ndarray:
    return frame[int(point[1]), int(point[0])]


def test_write_dataset_is_deterministic_per_seed(tmp_path):
    first = synthetic.write_dataset(tmp_path / "a", num_videos=2, frames_per_video=3, size=64, seed=7, progress=False)
    second = synthetic.write_dataset(tmp_path / "b", num_videos=2, frames_per_video=3, size=64, seed=7, progress=True)
    # Writing again over an existing dataset replaces its videos whole and leaves no scraps.
    synthetic.write_dataset(tmp_path / "b", num_videos=2, frames_per_video=3, size=64, seed=7, progress=False)
    assert sorted(path.name for path in (tmp_path / "b").iterdir()) == ["person_00000", "person_00001"]
    other = synthetic.write_dataset(tmp_path / "c", num_videos=2, frames_per_video=3, size=64, seed=8, progress=False)
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert len(files) == 2 * (3 + 3 + 1)
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    assert [folder.name for folder in first] == [folder.name for folder in second] == [folder.name for folder in other]
    differing = [
        relative
        for relative in files
        if relative.suffix == ".png" and (tmp_path / "a" / relative).read_bytes() != (tmp_path / "c" / relative).read_bytes()
    ]
    assert len(differing) == 6


def test_dataset_layout_round_trips_through_frame_pose(tmp_path):
    folders = synthetic.write_dataset(tmp_path, num_videos=2, frames_per_video=4, size=(96, 80), seed=3, progress=False)
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["seed"] == 3 and (meta["width"], meta["height"]) == (96, 80)
        identity = synthetic.Identity.from_json(meta["identity"])
        motion = synthetic.Motion.from_json(meta["motion"])
        assert motion.num_frames == 4
        for index in range(4):
            frame = np.asarray(Image.open(folder / "frames" / f"{index:05d}.png"))
            assert frame.shape == (80, 96, 3) and frame.dtype == np.uint8
            loaded = FramePose.load(folder / "poses" / f"{index:05d}.json")
            assert (loaded.width, loaded.height, len(loaded.people)) == (96, 80, 1)
            expected = synthetic.pose_at(identity, motion, index, 96, 80)
            for part, array in loaded.people[0].parts().items():
                np.testing.assert_allclose(array, expected.parts()[part], atol=2e-3, err_msg=part)
            # Redrawing from the saved identity and keypoints gives the saved frame back.
            redrawn = synthetic.draw_person(identity, loaded.people[0], 96, 80)
            assert np.abs(redrawn.astype(int) - frame.astype(int)).max() <= 40
            assert np.mean(redrawn != frame) < 0.01


def test_different_seeds_give_different_people():
    identities = [synthetic.sample_identity(np.random.default_rng(seed)) for seed in range(40)]
    assert len({identity.shirt for identity in identities}) == 40
    assert len({identity.skin for identity in identities}) >= 30
    assert {identity.hair_style for identity in identities} == set(synthetic.HAIR_STYLES)
    assert {identity.shirt_pattern for identity in identities} == set(synthetic.SHIRT_PATTERNS)
    assert len({round(identity.upper_arm, 6) for identity in identities}) == 40
    frames = [synthetic.render_video(*_person(seed, 1), SIZE, SIZE)[0][0] for seed in range(4)]
    for first in range(4):
        for second in range(first + 1, 4):
            assert np.mean(np.abs(frames[first].astype(int) - frames[second].astype(int)) > 30) > 0.3


def test_keypoints_match_what_is_drawn():
    checked = {"wrist": 0, "hip": 0, "ankle": 0, "elbow": 0, "face": 0}
    for seed in range(12):
        identity, motion = _person(seed, 12)
        frames, poses = synthetic.render_video(identity, motion, SIZE, SIZE)
        # The same person in front of another scene: pixels the person covers stay the same.
        elsewhere = dataclasses.replace(
            identity,
            background_top=tuple(255 - c for c in identity.background_top),
            background_bottom=tuple(255 - c for c in identity.background_bottom),
            floor=tuple(255 - c for c in identity.floor),
        )
        unit = identity.stature * SIZE
        for frame, pose in zip(frames[::3], poses[::3]):
            person = pose.people[0]
            body = person.body
            for side in ("right", "left"):
                other = ("left",) if side == "right" else ("right",)
                wrist = body[BODY[f"{side}_wrist"]]
                if wrist[2] > 0 and not _covered_by_arm(wrist[:2], person, identity, other):
                    assert _colour_distance(_pixel(frame, wrist), identity.skin) < 25, (seed, side)
                    checked["wrist"] += 1
                hip = body[BODY[f"{side}_hip"]]
                if hip[2] > 0 and not _covered_by_arm(hip[:2], person, identity):
                    assert _colour_distance(_pixel(frame, hip), identity.trousers) < 25, (seed, side)
                    checked["hip"] += 1
                ankle = body[BODY[f"{side}_ankle"]]
                if ankle[2] > 0 and not _covered_by_arm(ankle[:2], person, identity):
                    assert _colour_distance(_pixel(frame, ankle), identity.shoes) < 25, (seed, side)
                    checked["ankle"] += 1
                elbow = body[BODY[f"{side}_elbow"]]
                if elbow[2] > 0 and identity.sleeves == "long" and not _covered_by_arm(elbow[:2], person, identity, other):
                    assert _colour_distance(_pixel(frame, elbow), synthetic.sleeve_colour(identity, side)) < 25, (seed, side)
                    checked["elbow"] += 1
            # The face sits in the drawn head: every landmark pixel is covered by the person, near the head.
            elsewhere_frame = synthetic.draw_person(elsewhere, person, SIZE, SIZE)
            head_centre = person.face[:, :2].mean(axis=0)
            radius = identity.head_radius * unit
            assert np.linalg.norm(person.face[:, :2] - head_centre, axis=1).max() < 1.3 * radius
            for index, landmark in enumerate(person.face):
                if landmark[2] == 0 or _covered_by_arm(landmark[:2], person, identity):
                    continue
                point = landmark[:2]
                if index < 17:  # jaw points are on the outline: look just inside it
                    point = point + 1.5 * (head_centre - point) / np.linalg.norm(head_centre - point)
                assert _colour_distance(_pixel(frame, point), _pixel(elsewhere_frame, point)) < 8, (seed, index)
                checked["face"] += 1
    assert min(checked.values()) >= 5, checked


def test_hands_follow_the_forearm():
    identity, motion = _person(11, 8)
    for pose in synthetic.motion_poses(identity, motion, SIZE, SIZE):
        person = pose.people[0]
        hand_length = identity.hand_length * identity.stature * SIZE
        for side, hand in (("right", person.right_hand), ("left", person.left_hand)):
            wrist = person.body[BODY[f"{side}_wrist"], :2]
            elbow = person.body[BODY[f"{side}_elbow"], :2]
            np.testing.assert_allclose(hand[0, :2], wrist, atol=1e-3)
            reach = np.linalg.norm(hand[:, :2] - wrist, axis=1)
            assert reach.max() <= 1.05 * hand_length and reach[9] > 0.3 * hand_length
            forearm = (wrist - elbow) / np.linalg.norm(wrist - elbow)
            palm = (hand[9, :2] - wrist) / np.linalg.norm(hand[9, :2] - wrist)
            assert np.dot(forearm, palm) > np.cos(0.8)


def test_expressions_change_the_drawn_face():
    identity, motion = _person(2, 1)
    neutral = {name: values.copy() for name, values in motion.channels.items()}
    neutral.update(mouth_open=np.zeros(1), blink=np.zeros(1), head_yaw=np.zeros(1), head_roll=np.zeros(1))
    expressive = dict(neutral, mouth_open=np.ones(1), blink=np.ones(1))
    size = 320
    drawn = {}
    for name, channels in (("neutral", neutral), ("expressive", expressive)):
        pose = synthetic.pose_at(identity, synthetic.Motion(channels), 0, size, size)
        drawn[name] = (pose, synthetic.draw_person(identity, pose, size, size))
    (neutral_pose, neutral_frame), (expressive_pose, expressive_frame) = drawn["neutral"], drawn["expressive"]
    # Mouth: the lips part and the dark inside shows at the mouth centre.
    assert np.linalg.norm(expressive_pose.face[66, :2] - expressive_pose.face[62, :2]) > 3 * np.linalg.norm(
        neutral_pose.face[66, :2] - neutral_pose.face[62, :2]
    )
    mouth_centre = (expressive_pose.face[62, :2] + expressive_pose.face[66, :2]) / 2
    assert _colour_distance(_pixel(expressive_frame, mouth_centre), synthetic.MOUTH_INSIDE) < 25
    assert _colour_distance(_pixel(neutral_frame, mouth_centre), synthetic.MOUTH_INSIDE) > 40
    # Eyes: open eyes show white around a dark pupil; blinking hides the white.
    for eye in (slice(36, 42), slice(42, 48)):
        x0, y0 = np.floor(neutral_pose.face[eye, :2].min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(neutral_pose.face[eye, :2].max(axis=0)).astype(int) + 2
        white = {
            name: int((np.linalg.norm(frame[y0:y1, x0:x1].astype(float) - synthetic.EYE_WHITE, axis=-1) < 30).sum())
            for name, (_, frame) in drawn.items()
        }
        assert white["neutral"] >= 2 and white["expressive"] == 0, white
    for pupil in (68, 69):
        assert _pixel(neutral_frame, neutral_pose.face[pupil, :2]).max() < 60
    # The nose bridge is skin (or its shading) on both.
    shade = drawing.shade(identity.skin, 0.78)
    for pose, frame in drawn.values():
        for index in (28, 29):
            assert _distance_to_blend(_pixel(frame, pose.face[index, :2]), identity.skin, shade) < 25


def test_motion_is_smooth_and_moves():
    for seed in range(6):
        identity, motion = _person(seed, 48)
        poses = synthetic.motion_poses(identity, motion, SIZE, SIZE)
        body = np.stack([pose.people[0].body[:, :2] for pose in poses])
        steps = np.linalg.norm(np.diff(body, axis=0), axis=-1)
        assert steps.max() < 0.08 * SIZE, seed
        assert np.median(steps) < 0.02 * SIZE, seed
        wrists = body[:, [BODY["right_wrist"], BODY["left_wrist"]]]
        assert np.linalg.norm(wrists.max(axis=0) - wrists.min(axis=0), axis=-1).max() > 0.1 * SIZE, seed
        # Expressions change too.
        assert max(np.ptp(motion.channels[name]) for name in ("mouth_open", "smile", "brow_raise")) > 0.05, seed


def test_sample_pair_retargets_the_driving_motion_onto_the_reference():
    pair = synthetic.sample_pair(seed=5, size=96, num_frames=6)
    assert pair.reference_frame.shape == (96, 96, 3)
    assert len(pair.driving_frames) == len(pair.driving_poses) == len(pair.target_poses) == len(pair.target_frames) == 6
    assert pair.reference_identity != pair.driving_identity
    for driving, target, frame in zip(pair.driving_poses, pair.target_poses, pair.target_frames):
        driving_body, target_body = driving.people[0].body[:, :2], target.people[0].body[:, :2]
        assert not np.allclose(driving_body, target_body, atol=0.5)
        # Same joint angles: every bone points the same way on both skeletons.
        for start, end in ((BODY["right_shoulder"], BODY["right_elbow"]), (BODY["left_elbow"], BODY["left_wrist"]), (BODY["right_knee"], BODY["right_ankle"])):
            driving_bone = driving_body[end] - driving_body[start]
            target_bone = target_body[end] - target_body[start]
            cosine = np.dot(driving_bone, target_bone) / (np.linalg.norm(driving_bone) * np.linalg.norm(target_bone))
            assert cosine > 0.9999
        np.testing.assert_array_equal(frame, synthetic.draw_person(pair.reference_identity, target.people[0], 96, 96))
    # The ground truth wears the reference's clothes, not the driver's.
    reference_hip = pair.target_poses[0].people[0].body[BODY["right_hip"], :2]
    if not _covered_by_arm(reference_hip, pair.target_poses[0].people[0], pair.reference_identity):
        pixel = _pixel(pair.target_frames[0], reference_hip)
        assert _colour_distance(pixel, pair.reference_identity.trousers) < 25


def test_bad_sizes_and_counts_are_user_errors(tmp_path):
    with pytest.raises(MagicPoseError, match="at least 32x32"):
        synthetic.write_dataset(tmp_path, num_videos=1, frames_per_video=1, size=16, progress=False)
    with pytest.raises(MagicPoseError, match="at least one video"):
        synthetic.write_dataset(tmp_path, num_videos=0, frames_per_video=1, size=64, progress=False)

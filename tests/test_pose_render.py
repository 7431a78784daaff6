"""Control maps: the ControlNet 1.1 openpose look, at any size, with parts left out on request."""

import numpy as np
import pytest

from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from magicpose_cli.pose.render import BODY_COLORS, HAND_POINT_COLOR, LIMB_COLOR_FACTOR, render_pose


def standing_person(scale: float = 1.0) -> PersonPose:
    """A frontal stick figure on a 512x512 canvas (multiplied by ``scale``)."""
    points = {
        "nose": (256, 100), "neck": (256, 160),
        "right_shoulder": (200, 160), "right_elbow": (180, 240), "right_wrist": (170, 310),
        "left_shoulder": (312, 160), "left_elbow": (332, 240), "left_wrist": (342, 310),
        "right_hip": (225, 320), "right_knee": (220, 400), "right_ankle": (218, 480),
        "left_hip": (287, 320), "left_knee": (292, 400), "left_ankle": (294, 480),
        "right_eye": (245, 90), "left_eye": (267, 90), "right_ear": (232, 96), "left_ear": (280, 96),
    }  # fmt: skip
    body = np.zeros((18, 3), dtype=np.float32)
    for name, (x, y) in points.items():
        body[BODY[name]] = (x * scale, y * scale, 1.0)
    hand = np.zeros((21, 3), dtype=np.float32)
    for finger in range(5):  # a fan of fingers below the right wrist
        for joint in range(4):
            hand[1 + 4 * finger + joint] = ((150 + 10 * finger) * scale, (320 + 8 * (joint + 1)) * scale, 1.0)
    hand[0] = (170 * scale, 312 * scale, 1.0)
    face = np.zeros((70, 3), dtype=np.float32)
    angles = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    face[:, 0], face[:, 1], face[:, 2] = (256 + 20 * np.cos(angles)) * scale, (100 + 25 * np.sin(angles)) * scale, 1
    return PersonPose(body=body, right_hand=hand, face=face)


def test_identical_to_controlnet_aux_drawing_at_512():
    from controlnet_aux.open_pose import util
    from controlnet_aux.open_pose.body import Keypoint

    person = standing_person()
    ours = render_pose(FramePose(512, 512, [person]))

    def keypoints(rows):
        return [Keypoint(x / 512, y / 512) if confidence > 0 else None for x, y, confidence in rows]

    theirs = np.zeros((512, 512, 3), dtype=np.uint8)
    theirs = util.draw_bodypose(theirs, keypoints(person.body))
    theirs = util.draw_handpose(theirs, keypoints(person.right_hand))
    theirs = util.draw_facepose(theirs, keypoints(person.face))
    assert (theirs > 0).any(axis=-1).sum() > 5000
    assert np.array_equal(ours, theirs)


def test_limb_colours_and_positions():
    image = render_pose(FramePose(512, 512, [standing_person()]), face=False, hands=False)
    # Joint discs in their full colour, limb middles in 60 % of the limb's colour, black elsewhere.
    assert tuple(image[160, 200]) == BODY_COLORS[BODY["right_shoulder"]]
    assert tuple(image[100, 256]) == BODY_COLORS[BODY["nose"]]
    upper_arm = tuple(int(c * LIMB_COLOR_FACTOR) for c in BODY_COLORS[2])  # limb 2: right shoulder -> elbow
    assert tuple(image[200, 190]) == upper_arm
    thigh = tuple(int(c * LIMB_COLOR_FACTOR) for c in BODY_COLORS[10])  # limb 10: left hip -> knee
    assert tuple(image[360, 290]) == thigh
    assert tuple(image[20, 20]) == (0, 0, 0) and tuple(image[250, 256]) == (0, 0, 0)


def test_face_and_hands_can_be_left_out():
    pose = FramePose(512, 512, [standing_person()])
    full = render_pose(pose)
    no_face = render_pose(pose, face=False)
    no_hands = render_pose(pose, hands=False)
    white = lambda image: (image == 255).all(axis=-1).sum()  # noqa: E731
    blue = lambda image: (image == HAND_POINT_COLOR).all(axis=-1).sum()  # noqa: E731
    assert white(full) > 300 and white(no_face) < white(full) / 4
    assert blue(full) > 100 and blue(no_hands) < blue(full) / 4


@pytest.mark.parametrize("size", [256, 1024])
def test_any_resolution_looks_the_same_once_resized(size):
    import cv2

    reference = render_pose(FramePose(512, 512, [standing_person()]))
    scaled = render_pose(FramePose(512, 512, [standing_person()]), size, size)  # keypoints rescaled to the size
    assert scaled.shape == (size, size, 3)
    back = cv2.resize(scaled, (512, 512), interpolation=cv2.INTER_AREA)
    drawn, drawn_back = reference.max(axis=-1) > 40, back.max(axis=-1) > 40
    overlap = (drawn & drawn_back).sum() / (drawn | drawn_back).sum()
    assert overlap > 0.6

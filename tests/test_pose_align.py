"""Alignment maths on constructed skeletons: bone ratios, anchoring, face and hands."""

import numpy as np
import pytest

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.align import BODY_BONES, align_poses, bone_ratios
from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from tests.test_pose_render import standing_person


def bone_length(body: np.ndarray, parent: str, child: str) -> float:
    return float(np.linalg.norm(body[BODY[child], :2] - body[BODY[parent], :2]))


def moved(person: PersonPose, shift: tuple[float, float], scale: float = 1.0, origin=(256, 160)) -> PersonPose:
    """``person`` scaled about ``origin`` and shifted, every part alike."""
    result = person.copy()
    for part in result.parts().values():
        present = part[:, 2] > 0
        part[present, :2] = (part[present, :2] - origin) * scale + origin + shift
    return result


def test_driving_person_takes_the_reference_size_and_place():
    reference = FramePose(512, 512, [standing_person()])
    # The driving person is half the size, elsewhere, and steps 5 px right per frame.
    driving = [FramePose(640, 480, [moved(standing_person(), (100 + 5 * t, 50), 0.5)]) for t in range(5)]
    aligned = align_poses(driving, reference)
    assert all((frame.width, frame.height) == (512, 512) for frame in aligned)
    bodies = [frame.people[0].body for frame in aligned]
    # Same shape as the reference; the neck follows the driving motion around the median frame.
    reference_body = reference.people[0].body
    assert np.allclose(bodies[2][:, :2], reference_body[:, :2], atol=1e-3)
    neck_x = [body[BODY["neck"], 0] for body in bodies]
    assert np.allclose(np.diff(neck_x), 10.0, atol=1e-3)  # 5 px of driving motion at scale 2
    for parent, child in (("right_shoulder", "right_elbow"), ("left_hip", "left_knee"), ("nose", "left_eye")):
        assert bone_length(bodies[0], parent, child) == pytest.approx(bone_length(reference_body, parent, child), rel=1e-4)
    # Face and hands follow: same size as the reference's, on its head and wrist.
    face = aligned[2].people[0].face
    assert np.allclose(face[:, :2], reference.people[0].face[:, :2], atol=1e-3)
    hand = aligned[2].people[0].right_hand
    assert np.allclose(hand[:, :2], reference.people[0].right_hand[:, :2], atol=1e-3)


def test_per_bone_ratios_keep_the_reference_proportions_and_driving_angles():
    reference_person = standing_person()
    long_legged = reference_person.copy()
    for joint in ("right_knee", "left_knee"):
        long_legged.body[BODY[joint], 1] += 40  # reference thighs 40 px longer
    for joint in ("right_ankle", "left_ankle"):
        long_legged.body[BODY[joint], 1] += 40
    driving_person = standing_person()
    # Driving: right forearm raised horizontally to the side.
    elbow = driving_person.body[BODY["right_elbow"], :2]
    forearm = bone_length(driving_person.body, "right_elbow", "right_wrist")
    driving_person.body[BODY["right_wrist"], :2] = elbow + (-forearm, 0)
    aligned = align_poses([FramePose(512, 512, [driving_person])], FramePose(512, 512, [long_legged]))[0]
    body = aligned.people[0].body
    assert bone_length(body, "right_hip", "right_knee") == pytest.approx(
        bone_length(long_legged.body, "right_hip", "right_knee"), rel=1e-4
    )
    direction = body[BODY["right_wrist"], :2] - body[BODY["right_elbow"], :2]
    assert direction[1] == pytest.approx(0, abs=1e-3) and direction[0] < 0  # still horizontal, to the side


def test_ratios_are_medians_over_the_sequence_and_missing_bones_borrow():
    reference = standing_person().body.copy()
    reference[[BODY["left_knee"], BODY["left_ankle"]]] = 0  # left leg not in the reference photo
    frames = []
    for t in range(9):
        body = standing_person().body.copy()
        body[:, :2] = (body[:, :2] - (256, 160)) * 0.5 + (256, 160)
        if t == 4:  # one frame with a wildly wrong elbow: the median ignores it
            body[BODY["right_elbow"], :2] += (80, 0)
        frames.append(body)
    ratios, overall = bone_ratios(np.stack(frames), reference)
    assert overall == pytest.approx(2.0, rel=1e-3)
    assert ratios[(BODY["right_shoulder"], BODY["right_elbow"])] == pytest.approx(2.0, rel=1e-3)
    assert ratios[(BODY["left_hip"], BODY["left_knee"])] == pytest.approx(2.0, rel=1e-3)  # mirrored
    assert len(ratios) == len(BODY_BONES)


def test_face_keeps_the_driving_expression_at_the_reference_face_size():
    reference_person = standing_person()
    reference_person.face[:, :2] = (reference_person.face[:, :2] - (256, 100)) * 1.5 + (256, 100)  # bigger face
    neutral = standing_person()
    talking = standing_person()
    talking.face[57, 1] += 6  # lower lip drops 6 px
    aligned = align_poses([FramePose(512, 512, [p]) for p in (neutral, talking, neutral)], FramePose(512, 512, [reference_person]))
    faces = [frame.people[0].face for frame in aligned]
    assert np.allclose(faces[0][:, :2], reference_person.face[:, :2], atol=0.2)
    drop = faces[1][57, 1] - faces[0][57, 1]
    assert drop == pytest.approx(6 * 1.5, abs=0.6)


def test_frames_without_person_stay_empty_and_reference_needs_a_neck():
    reference = FramePose(512, 512, [standing_person()])
    aligned = align_poses([FramePose(512, 512, []), FramePose(512, 512, [standing_person()])], reference)
    assert aligned[0].people == [] and len(aligned[1].people) == 1
    headless = standing_person()
    headless.body[BODY["neck"]] = 0
    with pytest.raises(MagicPoseError, match="no neck"):
        align_poses([FramePose(512, 512, [standing_person()])], FramePose(512, 512, [headless]))

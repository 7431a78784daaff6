"""Fitting a driving skeleton to the reference person's body, so the generated person keeps the
reference's proportions and place in the picture while moving like the driving person.

The body is a tree rooted at the neck. Every bone gets one length ratio, reference length over
the driving person's median length over the whole sequence (robust to the frames where a bone
is foreshortened or mis-detected). Each frame is rebuilt from the neck outwards: a child joint
is its aligned parent plus the driving bone's direction times the bone's ratio. The neck moves
like the driving neck around its median position, scaled, and is anchored on the reference neck.
Face landmarks keep the driving expression, scaled to the reference face and placed on the
aligned head; hands keep their shape, scaled like their forearm, attached to the aligned wrists.
"""

from __future__ import annotations

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.detectors import detect_reference_pose
from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from magicpose_cli.pose.temporal import main_person

__all__ = ["align_poses", "bone_ratios", "detect_reference_pose"]  # detection re-exported: aligning needs both

NECK = BODY["neck"]
# (parent, child) bones, parents before children, so one pass rebuilds a frame.
BODY_BONES = (
    (NECK, BODY["nose"]),
    (BODY["nose"], BODY["right_eye"]), (BODY["right_eye"], BODY["right_ear"]),
    (BODY["nose"], BODY["left_eye"]), (BODY["left_eye"], BODY["left_ear"]),
    (NECK, BODY["right_shoulder"]), (BODY["right_shoulder"], BODY["right_elbow"]),
    (BODY["right_elbow"], BODY["right_wrist"]),
    (NECK, BODY["left_shoulder"]), (BODY["left_shoulder"], BODY["left_elbow"]),
    (BODY["left_elbow"], BODY["left_wrist"]),
    (NECK, BODY["right_hip"]), (BODY["right_hip"], BODY["right_knee"]), (BODY["right_knee"], BODY["right_ankle"]),
    (NECK, BODY["left_hip"]), (BODY["left_hip"], BODY["left_knee"]), (BODY["left_knee"], BODY["left_ankle"]),
)  # fmt: skip
_MIRROR = {
    name: name.replace("right_", "left_") if name.startswith("right_") else name.replace("left_", "right_")
    for name in BODY
}
MIRROR_POINT = {BODY[name]: BODY[mirrored] for name, mirrored in _MIRROR.items()}
_FOREARM = {"right_hand": (BODY["right_elbow"], BODY["right_wrist"]), "left_hand": (BODY["left_elbow"], BODY["left_wrist"])}
_IBUG_FACE = slice(0, 68)


def _present(points: np.ndarray) -> np.ndarray:
    return points[..., 2] > 0


def _bone_lengths(bodies: np.ndarray, parent: int, child: int) -> np.ndarray:
    """Lengths of one bone in every frame where both ends are present."""
    both = _present(bodies[:, parent]) & _present(bodies[:, child])
    return np.linalg.norm(bodies[both, child, :2] - bodies[both, parent, :2], axis=-1)


def bone_ratios(driving_bodies: np.ndarray, reference_body: np.ndarray) -> tuple[dict[tuple[int, int], float], float]:
    """Per-bone ratio reference length / median driving length, and the overall scale.

    A bone the reference does not show (legs of a half-body photo) takes its mirror bone's ratio,
    else the overall scale: the median of the ratios that could be measured.
    """
    measured: dict[tuple[int, int], float] = {}
    for parent, child in BODY_BONES:
        driving = _bone_lengths(driving_bodies, parent, child)
        reference = _bone_lengths(reference_body[None], parent, child)
        if len(driving) and len(reference) and np.median(driving) > 1e-6:
            measured[(parent, child)] = float(reference[0] / np.median(driving))
    if not measured:
        raise MagicPoseError("cannot align: the reference and driving poses share no visible bone; --no-align uses the driving poses as they are")
    overall = float(np.median(list(measured.values())))
    ratios = {}
    for parent, child in BODY_BONES:
        mirror = (MIRROR_POINT[parent], MIRROR_POINT[child])
        ratios[(parent, child)] = measured.get((parent, child), measured.get(mirror, overall))
    return ratios, overall


def _face_size(face: np.ndarray) -> float | None:
    """Root-mean-square distance of the 68 iBUG points from their centre (None if any is missing)."""
    points = face[_IBUG_FACE]
    if not _present(points).all():
        return None
    centred = points[:, :2] - points[:, :2].mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def _face_centre(face: np.ndarray) -> np.ndarray:
    return face[_IBUG_FACE, :2].mean(axis=0)


def align_poses(driving: list[FramePose], reference: FramePose) -> list[FramePose]:
    """The driving sequence's main person refitted to the reference person, on the reference's canvas."""
    reference_person = main_person(reference)
    if reference_person is None or not _present(reference_person.body[NECK]):
        raise MagicPoseError(
            "cannot align: the reference pose has no neck (both shoulders must be visible); use a photo that shows them, "
            "or --no-align to use the driving poses as they are"
        )
    people = [main_person(frame) for frame in driving]
    if all(person is None for person in people):
        return [FramePose(reference.width, reference.height, []) for _ in driving]
    blank = PersonPose()
    bodies = np.stack([(person or blank).body for person in people])
    ratios, scale = bone_ratios(bodies, reference_person.body)

    necks = bodies[_present(bodies[:, NECK]), NECK, :2]
    driving_anchor = np.median(necks, axis=0) if len(necks) else np.median(bodies[_present(bodies), :2], axis=0)
    reference_anchor = reference_person.body[NECK, :2]

    def place(points: np.ndarray) -> np.ndarray:
        """The similarity transform that carries the driving anchor onto the reference anchor."""
        return reference_anchor + (points - driving_anchor) * scale

    face_sizes = [size for person in people if person is not None and (size := _face_size(person.face))]
    reference_face_size = _face_size(reference_person.face)
    face_scale = reference_face_size / float(np.median(face_sizes)) if face_sizes and reference_face_size else scale
    # Where the face sits relative to the nose: the reference's own offset, plus the driving
    # offset's change from its median (the head turning), scaled to the reference face.
    nose = BODY["nose"]
    driving_offsets = [
        _face_centre(person.face) - person.body[nose, :2]
        for person in people
        if person is not None and _face_size(person.face) and _present(person.body[nose])
    ]
    face_offset_base = np.median(driving_offsets, axis=0) if driving_offsets else np.zeros(2)
    if reference_face_size and _present(reference_person.body[nose]):
        reference_face_offset = _face_centre(reference_person.face) - reference_person.body[nose, :2]
    else:
        reference_face_offset = face_offset_base * face_scale

    def face_offset(offset: np.ndarray) -> np.ndarray:
        return reference_face_offset + (offset - face_offset_base) * face_scale

    aligned = []
    for person in people:
        if person is None:
            aligned.append(FramePose(reference.width, reference.height, []))
            continue
        new_person = PersonPose()
        new_person.body = _align_body(person.body, ratios, place)
        new_person.face = _align_face(person, new_person.body, face_scale, face_offset, place)
        for hand in ("left_hand", "right_hand"):
            setattr(new_person, hand, _align_hand(person, new_person.body, hand, ratios, scale, place))
        aligned.append(FramePose(reference.width, reference.height, [new_person]))
    return aligned


def _align_body(body: np.ndarray, ratios: dict[tuple[int, int], float], place) -> np.ndarray:
    new_body = body.copy()
    present = _present(body)
    if present[NECK]:
        new_body[NECK, :2] = place(body[NECK, :2])
    done = {NECK} if present[NECK] else set()
    for parent, child in BODY_BONES:
        if not present[child]:
            continue
        if parent in done:
            new_body[child, :2] = new_body[parent, :2] + (body[child, :2] - body[parent, :2]) * ratios[(parent, child)]
        else:  # the chain to the neck is broken in this frame: carry the point over as a whole
            new_body[child, :2] = place(body[child, :2])
        done.add(child)
    return new_body


def _align_face(person: PersonPose, new_body: np.ndarray, face_scale: float, face_offset, place) -> np.ndarray:
    face = person.face
    present = _present(face)
    if not present.any():
        return face.copy()
    centre = face[present, :2].mean(axis=0) if not present[_IBUG_FACE].all() else _face_centre(face)
    nose = BODY["nose"]
    if _present(person.body[nose]):
        new_centre = new_body[nose, :2] + face_offset(centre - person.body[nose, :2])
    else:
        new_centre = place(centre)
    new_face = face.copy()
    new_face[present, :2] = new_centre + (face[present, :2] - centre) * face_scale
    return new_face


def _align_hand(person: PersonPose, new_body: np.ndarray, hand_name: str, ratios, scale, place) -> np.ndarray:
    hand = getattr(person, hand_name)
    present = _present(hand)
    if not present.any():
        return hand.copy()
    elbow, wrist = _FOREARM[hand_name]
    new_hand = hand.copy()
    if _present(person.body[wrist]):
        hand_scale = ratios[(elbow, wrist)]
        new_hand[present, :2] = new_body[wrist, :2] + (hand[present, :2] - person.body[wrist, :2]) * hand_scale
    else:
        new_hand[present, :2] = place(hand[present, :2])
    return new_hand

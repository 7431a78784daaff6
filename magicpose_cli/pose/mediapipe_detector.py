"""The default, fully offline detector: MediaPipe Holistic mapped to OpenPose conventions.

MediaPipe gives 33 body landmarks, 21 per hand and a 478-point face mesh (468 + 10 iris
points). OpenPose wants 18 body points (with a neck), 21 per hand in the same order as
MediaPipe's, and 70 face points (the 68-point iBUG layout + the two pupils).
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from magicpose_cli.pose.keypoints import BODY, NUM_FACE_POINTS, FramePose, PersonPose

# OpenPose body index -> MediaPipe pose landmark (the neck, index 1, is the mid-shoulder point).
_BODY_FROM_MEDIAPIPE = {
    0: 0,  # nose
    2: 12, 3: 14, 4: 16,  # right shoulder, elbow, wrist
    5: 11, 6: 13, 7: 15,  # left shoulder, elbow, wrist
    8: 24, 9: 26, 10: 28,  # right hip, knee, ankle
    11: 23, 12: 25, 13: 27,  # left hip, knee, ankle
    14: 5, 15: 2,  # right eye, left eye
    16: 8, 17: 7,  # right ear, left ear
}  # fmt: skip
_MEDIAPIPE_LEFT_SHOULDER, _MEDIAPIPE_RIGHT_SHOULDER = 11, 12

# Face mesh vertex for each of the 68 iBUG points. This is our own table, chosen by reading
# MediaPipe's canonical face mesh (the vertex numbering of mediapipe/modules/face_geometry/data/
# canonical_face_model_uv_visualization.png and the FACEMESH_* contour lists in
# mediapipe.python.solutions.face_mesh_connections: FACE_OVAL, LIPS, LEFT/RIGHT_EYE,
# LEFT/RIGHT_EYEBROW) against the iBUG 300-W 68-point annotation scheme. "Right" is the person's
# right (the image left of a frontal face), as in both schemes. The geometric checks in
# tests/test_pose_mediapipe.py (jaw runs left to right through the chin, brows above eyes,
# nose between eyes and mouth, ...) are what keeps the table honest.
MESH_TO_IBUG68 = np.array([
    # 0-16 jaw line, from the right ear-level cheek edge down through the chin (8) to the left
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,
    # 17-21 right eyebrow (outer -> inner), 22-26 left eyebrow (inner -> outer), upper edge
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    # 27-30 nose bridge (between the eyes -> tip), 31-35 nostril base (right -> left)
    168, 197, 5, 1,
    98, 97, 2, 326, 327,
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lips: right corner, upper lip to the left corner (54), lower lip back
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # 60-67 inner lips: right corner, upper inner edge, left corner, lower inner edge
    78, 82, 13, 312, 308, 317, 14, 87,
])  # fmt: skip
# Iris centres of the refined mesh (points 468-477): 468 the person's right, 473 the left.
MESH_RIGHT_IRIS, MESH_LEFT_IRIS = 468, 473
_RIGHT_EYE_RING = MESH_TO_IBUG68[36:42]
_LEFT_EYE_RING = MESH_TO_IBUG68[42:48]
# OpenPose body point -> the face-mesh vertex at OpenPose's place for it: the nose tip, the pupils,
# and the face outline at ear level (iBUG jaw points 0 and 16) for the ears.
_HEAD_FROM_MESH = {
    BODY["nose"]: 4,
    BODY["right_eye"]: MESH_RIGHT_IRIS,
    BODY["left_eye"]: MESH_LEFT_IRIS,
    BODY["right_ear"]: int(MESH_TO_IBUG68[0]),
    BODY["left_ear"]: int(MESH_TO_IBUG68[16]),
}
# OpenPose hip distance / MediaPipe hip distance: 1.07 and 1.21 on the two full-body public pairs
# measured (docs/poses.md, "OpenPose conventions"); COCO-style hips sit further out. The cautious end.
HIP_SPREAD = 1.07

# A body point MediaPipe sees with lower visibility than this is reported as missing,
# which is what OpenPose does with its own low-confidence parts.
DEFAULT_VISIBILITY_THRESHOLD = 0.5
# Legs MediaPipe calls visible this far outside the picture (a fraction of its short side) are
# extrapolated, not seen (_legs_guessed); a foot just past the edge of a dance video is not.
GUESSED_LEGS_MARGIN = 0.1
# A hip this close to the bottom edge (a fraction of the height) or below it is the pelvis cut by
# the edge: MediaPipe pins hips it cannot see there (a picture cut at the waist).
HIP_EDGE_BAND = 0.02
_LEGS = (
    (BODY["right_hip"], BODY["right_knee"], BODY["right_ankle"]),
    (BODY["left_hip"], BODY["left_knee"], BODY["left_ankle"]),
)
LEG_POINTS = tuple(point for leg in _LEGS for point in leg)


def _landmarks_to_pixels(landmarks, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised landmarks -> ``(N, 3)`` of x, y in pixels and visibility (1 if none)."""
    rows = [
        (lm.x * width, lm.y * height, lm.visibility if lm.HasField("visibility") else 1.0)
        for lm in landmarks.landmark
    ]
    return np.asarray(rows, dtype=np.float32)


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)


# mediapipe 0.10.14 calls a protobuf API that newer protobuf deprecates, on every image.
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: TensorFlow Lite and absl write there from C++, past Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def body_from_mediapipe(
    pose: np.ndarray, width: int, height: int, threshold: float, mesh: np.ndarray | None = None
) -> np.ndarray:
    """33 MediaPipe pose rows (and the face mesh, if found) -> 18 OpenPose body rows.

    Points below ``threshold`` visibility or outside the picture get confidence 0, as do
    extrapolated legs (_legs_guessed) and a knee or ankle whose hip or knee is missing, as OpenPose
    and DWPose report nothing there; the rest are moved to OpenPose's conventions
    (to_openpose_conventions).
    """
    body = np.zeros((18, 3), dtype=np.float32)
    for openpose_index, mediapipe_index in _BODY_FROM_MEDIAPIPE.items():
        body[openpose_index] = pose[mediapipe_index]
    to_openpose_conventions(body, mesh)
    shoulders = pose[[_MEDIAPIPE_RIGHT_SHOULDER, _MEDIAPIPE_LEFT_SHOULDER]]
    body[1, :2] = shoulders[:, :2].mean(axis=0)
    body[1, 2] = shoulders[:, 2].min()
    visible = (body[:, 2] >= threshold) & _inside(body, width, height)
    if _legs_guessed(body, width, height, threshold):
        visible[list(LEG_POINTS)] = False
    for hip, knee, ankle in _LEGS:  # a knee hangs from its hip, an ankle from its knee
        visible[knee] &= visible[hip]
        visible[ankle] &= visible[knee]
    body[~visible] = 0.0
    return body


def _legs_guessed(body: np.ndarray, width: int, height: int, threshold: float) -> bool:
    """Whether MediaPipe rates a leg point visible yet puts it well outside the picture.

    It always returns a whole skeleton; on a picture cut at the waist it extrapolates hips, knees
    and ankles, and while tracking it can rate them visible, putting some inside the picture (at
    the bottom edge, on an object). A point it calls visible more than GUESSED_LEGS_MARGIN of the
    picture outside it, or a hip on or below the bottom edge (within HIP_EDGE_BAND: the pelvis cut
    by it), shows the lower body is such a guess, so none of its points is kept.
    """
    margin = GUESSED_LEGS_MARGIN * min(width, height)
    legs = body[list(LEG_POINTS)]
    outside = (legs[:, 0] < -margin) | (legs[:, 0] > width + margin) | (legs[:, 1] < -margin) | (legs[:, 1] > height + margin)
    hips = body[[BODY["right_hip"], BODY["left_hip"]]]
    hip_below = (hips[:, 1] >= height * (1 - HIP_EDGE_BAND)) & (hips[:, 2] >= threshold)
    return bool((outside & (legs[:, 2] >= threshold)).any() or hip_below.any())


def to_openpose_conventions(body: np.ndarray, mesh: np.ndarray | None) -> None:
    """Move MediaPipe's body points (OpenPose order, in place) to where OpenPose puts them.

    OpenPose's head points are the nose tip, the pupils and the ears at the face's outline;
    MediaPipe's pose model places its own, coarser ones a few pixels off (higher, eyes at the eye
    centres). The face mesh has those exact places, so when a face was found they come from it
    (keeping the pose model's visibility). OpenPose's hips sit further apart than MediaPipe's
    (COCO annotates the outside of the hip): spread about their midpoint by HIP_SPREAD, a ratio,
    so it holds at any body size. The neck stays the shoulders' midpoint, as in OpenPose.
    """
    if mesh is not None and len(mesh) > MESH_LEFT_IRIS:
        for openpose_index, vertex in _HEAD_FROM_MESH.items():
            body[openpose_index, :2] = mesh[vertex, :2]
    right_hip, left_hip = BODY["right_hip"], BODY["left_hip"]
    middle = (body[right_hip, :2] + body[left_hip, :2]) / 2
    for hip in (right_hip, left_hip):
        body[hip, :2] = middle + (body[hip, :2] - middle) * HIP_SPREAD


def face_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """A 468- or 478-point face mesh -> 70 OpenPose face rows (68 iBUG + 2 pupils)."""
    face = np.zeros((NUM_FACE_POINTS, 3), dtype=np.float32)
    face[:68, :2] = mesh[MESH_TO_IBUG68, :2]
    if len(mesh) > MESH_LEFT_IRIS:
        face[68, :2] = mesh[MESH_RIGHT_IRIS, :2]
        face[69, :2] = mesh[MESH_LEFT_IRIS, :2]
    else:
        face[68, :2] = mesh[_RIGHT_EYE_RING, :2].mean(axis=0)
        face[69, :2] = mesh[_LEFT_EYE_RING, :2].mean(axis=0)
    face[:, 2] = 1.0
    return face


def _hand_rows(landmarks, width: int, height: int) -> np.ndarray:
    hand = _landmarks_to_pixels(landmarks, width, height)
    hand[:, 2] = 1.0  # MediaPipe hands carry no per-point confidence; a found hand is a whole hand
    return hand


class MediaPipeDetector:
    """MediaPipe Holistic on RGB frames -> FramePose with at most one person.

    ``tracking=True`` lets MediaPipe follow the person from frame to frame (faster and steadier
    on a video); ``tracking=False`` treats every image on its own (reference photos).
    """

    name = "mediapipe"

    def __init__(
        self,
        tracking: bool = True,
        model_complexity: int = 1,
        visibility_threshold: float = DEFAULT_VISIBILITY_THRESHOLD,
    ):
        import mediapipe as mp

        self.visibility_threshold = visibility_threshold
        # MediaPipe's native libraries log a screenful from their own threads while the graph
        # starts; it starts on the first image, so a blank one goes through while stderr is quiet.
        with _native_stderr_silenced():
            self._holistic = mp.solutions.holistic.Holistic(
                static_image_mode=not tracking,
                smooth_landmarks=False,  # smoothing is ours (temporal.smooth_track), tunable and lag-aware
                model_complexity=model_complexity,
                refine_face_landmarks=True,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
            self._holistic.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def restart_tracking(self) -> None:
        """Forget the person followed so far: the next frame is found afresh, as by a new detector
        (extraction restarts tracking at fixed frames, so a video extracted in parts equals it whole)."""
        self._holistic.reset()
        self._holistic.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def close(self) -> None:
        self._holistic.close()

    def __enter__(self) -> "MediaPipeDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect(self, image: np.ndarray) -> FramePose:
        height, width = image.shape[:2]
        pixels = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        result = self._holistic.process(pixels)
        if result.pose_landmarks is None:
            return FramePose(width, height, [])
        person = PersonPose()
        pose = _landmarks_to_pixels(result.pose_landmarks, width, height)
        mesh = None if result.face_landmarks is None else _landmarks_to_pixels(result.face_landmarks, width, height)
        person.body = body_from_mediapipe(pose, width, height, self.visibility_threshold, mesh)
        if mesh is not None:
            person.face = face_from_mesh(mesh)
        hands = [
            _hand_rows(landmarks, width, height)
            for landmarks in (result.left_hand_landmarks, result.right_hand_landmarks)
            if landmarks is not None
        ]
        for hand in hands:
            side = _closest_wrist_side(hand, pose)
            setattr(person, side, hand)
        if not (person.body[:, 2] > 0).any():
            return FramePose(width, height, [])
        return FramePose(width, height, [person])


def _closest_wrist_side(hand: np.ndarray, pose: np.ndarray) -> str:
    """Which of the person's hands this is: the one whose body wrist is nearer the hand's wrist."""
    left_wrist, right_wrist = pose[15, :2], pose[16, :2]
    to_left = np.linalg.norm(hand[0, :2] - left_wrist)
    to_right = np.linalg.norm(hand[0, :2] - right_wrist)
    return "left_hand" if to_left <= to_right else "right_hand"

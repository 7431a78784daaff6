"""Choosing a pose detector: MediaPipe (offline, default) or controlnet_aux's OpenPose / DWPose
with weights the user has downloaded. Every detector returns FramePose in OpenPose conventions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.pose.keypoints import NUM_FACE_POINTS, FramePose, PersonPose

DETECTOR_NAMES = ("mediapipe", "dwpose", "openpose")
ANNOTATOR_DIR_ENV = "MAGICPOSE_ANNOTATOR_DIR"

# The files each annotator detector needs in the annotator folder, and where to get them.
ANNOTATOR_FILES = {
    "openpose": {
        "body_pose_model.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/body_pose_model.pth",
        "hand_pose_model.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/hand_pose_model.pth",
        "facenet.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/facenet.pth",
    },
    "dwpose": {
        "yolox_l_8x8_300e_coco.pth": "https://download.openmmlab.com/mmdetection/v2.0/yolox/yolox_l_8x8_300e_coco/"
        "yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth",
        "dw-ll_ucoco_384.pth": "https://huggingface.co/wanghaofan/dw-ll_ucoco_384/resolve/main/dw-ll_ucoco_384.pth",
    },
}
# Confidence below which an annotator's point is reported missing (the annotators' own cut-off).
ANNOTATOR_SCORE_THRESHOLD = 0.3


class PoseDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> FramePose: ...

    def close(self) -> None: ...


def resolve_annotator_dir(annotator_dir: str | Path | None) -> Path | None:
    value = annotator_dir or os.environ.get(ANNOTATOR_DIR_ENV)
    return Path(value).expanduser() if value else None


def required_annotator_files(detector: str, annotator_dir: Path | None) -> dict[str, Path]:
    """The weight files ``detector`` needs, or a MissingWeightsError naming what to download and where."""
    files = ANNOTATOR_FILES[detector]
    if annotator_dir is None:
        listing = ", ".join(f"{name} ({url})" for name, url in files.items())
        raise MissingWeightsError(
            f"--detector {detector} needs local weights: put {listing} in a folder and pass "
            f"--annotator-dir FOLDER or set {ANNOTATOR_DIR_ENV}"
        )
    missing = {name: url for name, url in files.items() if not (annotator_dir / name).is_file()}
    if missing:
        listing = ", ".join(f"{name} ({url})" for name, url in missing.items())
        raise MissingWeightsError(f"--detector {detector}: missing in {annotator_dir}: {listing}")
    return {name: annotator_dir / name for name in files}


def make_detector(name: str, annotator_dir: str | Path | None = None, tracking: bool = True) -> PoseDetector:
    """A ready detector by name; ``tracking`` lets a video detector follow the person across frames."""
    if name == "mediapipe":
        from magicpose_cli.pose.mediapipe_detector import MediaPipeDetector

        return MediaPipeDetector(tracking=tracking)
    if name not in DETECTOR_NAMES:
        raise MagicPoseError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    files = required_annotator_files(name, resolve_annotator_dir(annotator_dir))
    if name == "openpose":
        return OpenPoseDetector(files)
    return DWPoseDetector(files)


def _keypoint_rows(keypoints, width: int, height: int, count: int) -> np.ndarray:
    """controlnet_aux Keypoint list (x, y in 0..1, None or negative when missing) -> pixel rows."""
    rows = np.zeros((count, 3), dtype=np.float32)
    for index, keypoint in enumerate((keypoints or [])[:count]):
        if keypoint is not None and keypoint.x >= 0 and keypoint.y >= 0:
            rows[index] = (keypoint.x * width, keypoint.y * height, keypoint.score)
    return rows


class OpenPoseDetector:
    """The ControlNet 1.1 OpenPose annotator (body, hands, face) from controlnet_aux."""

    name = "openpose"

    def __init__(self, files: dict[str, Path]):
        from controlnet_aux.open_pose import OpenposeDetector as Annotator

        self._annotator = Annotator.from_pretrained(str(files["body_pose_model.pth"].parent))

    def close(self) -> None:
        pass

    def detect(self, image: np.ndarray) -> FramePose:
        height, width = image.shape[:2]
        people = []
        for result in self._annotator.detect_poses(image, include_hand=True, include_face=True):
            person = PersonPose(
                body=_keypoint_rows(result.body.keypoints, width, height, 18),
                left_hand=_keypoint_rows(result.left_hand, width, height, 21),
                right_hand=_keypoint_rows(result.right_hand, width, height, 21),
                face=_keypoint_rows(result.face, width, height, NUM_FACE_POINTS),
            )
            people.append(person)
        return FramePose(width, height, people)


class DWPoseDetector:
    """DWPose whole-body keypoints (needs mmpose, mmdet and mmcv, as controlnet_aux's DWPose does)."""

    name = "dwpose"

    def __init__(self, files: dict[str, Path]):
        try:
            from controlnet_aux.dwpose.wholebody import Wholebody
        except ImportError as error:
            raise MagicPoseError(f"--detector dwpose needs mmpose, mmdet and mmcv installed: {error}") from error
        try:
            self._wholebody = Wholebody(
                det_ckpt=str(files["yolox_l_8x8_300e_coco.pth"]), pose_ckpt=str(files["dw-ll_ucoco_384.pth"])
            )
        except NameError as error:  # controlnet_aux swallows the mm* ImportError and fails here
            raise MagicPoseError("--detector dwpose needs mmpose, mmdet and mmcv installed") from error

    def close(self) -> None:
        pass

    def detect(self, image: np.ndarray) -> FramePose:
        height, width = image.shape[:2]
        keypoints, scores = self._wholebody(np.ascontiguousarray(image[..., ::-1]))
        people = []
        for points, score in zip(keypoints, scores):
            rows = np.concatenate([points, score[:, None]], axis=1).astype(np.float32)
            rows[rows[:, 2] < ANNOTATOR_SCORE_THRESHOLD] = 0.0
            face = np.zeros((NUM_FACE_POINTS, 3), dtype=np.float32)
            face[:68] = rows[24:92]
            for pupil, eye in ((68, face[36:42]), (69, face[42:48])):  # DWPose has no pupils: eye centres
                if (eye[:, 2] > 0).all():
                    face[pupil] = (*eye[:, :2].mean(axis=0), eye[:, 2].min())
            people.append(PersonPose(body=rows[:18], left_hand=rows[92:113], right_hand=rows[113:134], face=face))
        return FramePose(width, height, [person for person in people if (person.body[:, 2] > 0).any()])


def detect_reference_pose(
    image: np.ndarray | str | Path, detector: str = "mediapipe", annotator_dir: str | Path | None = None
) -> FramePose:
    """The main person of one photo (array or file), or MagicPoseError("no person found in ...")."""
    from magicpose_cli.pose.temporal import main_person
    from magicpose_cli.video import read_image

    name = str(image) if isinstance(image, (str, Path)) else "the reference image"
    pixels = read_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
    pose_detector = make_detector(detector, annotator_dir, tracking=False)
    try:
        frame_pose = pose_detector.detect(pixels)
    finally:
        pose_detector.close()
    person = main_person(frame_pose)
    if person is None:
        raise MagicPoseError(f"no person found in {name}")
    return FramePose(frame_pose.width, frame_pose.height, [person])

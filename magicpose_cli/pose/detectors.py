"""Choosing a pose detector: MediaPipe (offline, default where it installs), DWPose through ONNX
Runtime, or controlnet_aux's OpenPose, the last two with weights the user has (or the hub gives).
Every detector returns FramePose in OpenPose conventions.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Protocol

import numpy as np

from magicpose_cli.choices import ANNOTATOR_DIR_ENV, DetectorName
from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.pose.dwpose_onnx import YOLOX_FILE, DWPOSE_FILE, DWPoseOnnxDetector
from magicpose_cli.pose.keypoints import NUM_FACE_POINTS, FramePose, PersonPose


# Where DWPose's ONNX files are published; fetched from there when no annotator folder is given.
DWPOSE_HUB_ID = "yzd-v/DWPose"

# The files each annotator detector needs in the annotator folder, and where to get them.
ANNOTATOR_FILES = {
    DetectorName.OPENPOSE: {
        "body_pose_model.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/body_pose_model.pth",
        "hand_pose_model.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/hand_pose_model.pth",
        "facenet.pth": "https://huggingface.co/lllyasviel/Annotators/resolve/main/facenet.pth",
    },
    DetectorName.DWPOSE: {
        name: f"https://huggingface.co/{DWPOSE_HUB_ID}/resolve/main/{name}" for name in (YOLOX_FILE, DWPOSE_FILE)
    },
}


class PoseDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> FramePose: ...

    def close(self) -> None: ...


def resolve_annotator_dir(annotator_dir: str | Path | None) -> Path | None:
    value = annotator_dir or os.environ.get(ANNOTATOR_DIR_ENV)
    return Path(value).expanduser() if value else None


def _listing(files: dict[str, str]) -> str:
    return ", ".join(f"{name} ({url})" for name, url in files.items())


def required_annotator_files(detector: DetectorName, annotator_dir: Path | None) -> dict[str, Path]:
    """The weight files ``detector`` needs, or a MissingWeightsError naming what to download and where."""
    files = ANNOTATOR_FILES[detector]
    if annotator_dir is None:
        raise MissingWeightsError(
            f"--detector {detector.value} needs local weights: put {_listing(files)} in a folder and pass "
            f"--annotator-dir FOLDER or set {ANNOTATOR_DIR_ENV}"
        )
    missing = {name: url for name, url in files.items() if not (annotator_dir / name).is_file()}
    if missing:
        raise MissingWeightsError(f"--detector {detector.value}: missing in {annotator_dir}: {_listing(missing)}")
    return {name: annotator_dir / name for name in files}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all: offline, huggingface_hub would retry for half a minute first."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _dwpose_from_hub(download: bool) -> dict[str, Path] | None:
    """DWPose's files from the Hugging Face cache, downloading them if ``download``; None if unavailable."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    paths = {}
    for name in ANNOTATOR_FILES[DetectorName.DWPOSE]:
        cached = try_to_load_from_cache(DWPOSE_HUB_ID, name)
        if isinstance(cached, str):
            paths[name] = Path(cached)
            continue
        if not download or not _hub_reachable():
            return None
        try:
            paths[name] = Path(hf_hub_download(DWPOSE_HUB_ID, name))
        except Exception:  # offline, blocked, hub down: all mean "not available", the caller says what to do
            return None
    return paths


def dwpose_files(annotator_dir: Path | None, download: bool = True) -> dict[str, Path]:
    """DWPose's ONNX files: from the annotator folder when one is given, else from the hub (``DWPOSE_HUB_ID``)."""
    if annotator_dir is not None:
        return required_annotator_files(DetectorName.DWPOSE, annotator_dir)
    files = _dwpose_from_hub(download)
    if files is None:
        raise MissingWeightsError(
            f"--detector dwpose: could not fetch {DWPOSE_HUB_ID} from the hub; put "
            f"{_listing(ANNOTATOR_FILES[DetectorName.DWPOSE])} in a folder and pass --annotator-dir FOLDER "
            f"or set {ANNOTATOR_DIR_ENV}"
        )
    return files


def resolve_detector(name: DetectorName | str, annotator_dir: str | Path | None = None) -> DetectorName:
    """The detector ``name`` stands for: itself, or for ``auto`` MediaPipe when it is installed, else
    DWPose when its weights are on disk (annotator folder or hub cache), else an error saying what to get."""
    try:
        detector = DetectorName(name)
    except ValueError:
        choices = ", ".join(member.value for member in DetectorName)
        raise MagicPoseError(f"unknown detector {name!r}; choose one of {choices}") from None
    if detector is DetectorName.OPENPOSE and importlib.util.find_spec("controlnet_aux") is None:
        raise MagicPoseError("--detector openpose needs controlnet_aux: pip install 'magicpose-cli[openpose]', or pass --detector mediapipe or dwpose")
    if detector is not DetectorName.AUTO:
        return detector
    if importlib.util.find_spec("mediapipe") is not None:
        return DetectorName.MEDIAPIPE
    try:
        dwpose_files(resolve_annotator_dir(annotator_dir), download=False)
        return DetectorName.DWPOSE
    except MissingWeightsError:
        pass
    raise MissingWeightsError(
        "no pose detector available: pip install mediapipe==0.10.14 (Python 3.10-3.12), or put "
        f"{YOLOX_FILE} and {DWPOSE_FILE} (https://huggingface.co/{DWPOSE_HUB_ID}) in a folder and pass "
        f"--annotator-dir FOLDER or set {ANNOTATOR_DIR_ENV}; OpenPose JSON and pose-map folders need no detector"
    )


def make_detector(
    name: DetectorName | str, annotator_dir: str | Path | None = None, tracking: bool = True
) -> PoseDetector:
    """A ready detector by name; ``tracking`` lets a video detector follow the person across frames."""
    detector = resolve_detector(name, annotator_dir)
    if detector is DetectorName.MEDIAPIPE:
        from magicpose_cli.pose.mediapipe_detector import MediaPipeDetector

        return MediaPipeDetector(tracking=tracking)
    if detector is DetectorName.DWPOSE:
        files = dwpose_files(resolve_annotator_dir(annotator_dir))
        return DWPoseOnnxDetector(files[YOLOX_FILE], files[DWPOSE_FILE])
    return OpenPoseDetector(required_annotator_files(detector, resolve_annotator_dir(annotator_dir)))


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


def detect_reference_pose(
    image: np.ndarray | str | Path,
    detector: DetectorName | str = DetectorName.AUTO,
    annotator_dir: str | Path | None = None,
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
        raise MagicPoseError(
            f"no person found in {name} to fit the driving poses to; --no-align uses them as they are "
            "(in the app: untick Fit the poses to the photo's body)"
        )
    return FramePose(frame_pose.width, frame_pose.height, [person])

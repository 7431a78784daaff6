"""DWPose through ONNX Runtime: the published YOLOX-L person detector and DWPose-LL whole-body
model (``yolox_l.onnx``, ``dw-ll_ucoco_384.onnx``), with no mmcv/mmdet/mmpose install.

The steps are the published models' own conventions, written here from their papers and configs:

- detection: the image letterboxed into the detector's square input (scaled to fit, pasted at
  the top-left, the rest grey 114), BGR as mmdetection trains it; raw YOLOX outputs per anchor
  (grid offsets, log sizes, objectness, 80 class scores) decoded on strides 8, 16 and 32, then
  non-maximum suppression, keeping the class "person";
- pose: each person box widened by 1.25 and brought to the model's 3:4 aspect, cut out with an
  affine warp, normalised with the ImageNet mean/std in RGB; the model answers SimCC vectors
  (one per axis and keypoint, ``split_ratio`` bins per pixel) whose argmax is the position and
  whose smaller maximum of the two axes is the score;
- order: COCO-WholeBody's 133 points (17 body, 6 feet, 68 face, 21 + 21 hands) mapped to
  OpenPose's 18 body points (the neck is the shoulders' midpoint), its 68 + 2 face points and
  its hands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import BODY, NUM_FACE_POINTS, FramePose, PersonPose

YOLOX_FILE = "yolox_l.onnx"
DWPOSE_FILE = "dw-ll_ucoco_384.onnx"

LETTERBOX_FILL = 114
YOLOX_STRIDES = (8, 16, 32)
PERSON_CLASS = 0
DETECTION_SCORE_THRESHOLD = 0.3
NMS_IOU_THRESHOLD = 0.45
BOX_PADDING = 1.25
IMAGENET_MEAN_RGB = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD_RGB = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# A point scored below this is reported missing (the cut-off of the DWPose annotator).
KEYPOINT_SCORE_THRESHOLD = 0.3

# COCO body order: 0 nose, 1/2 left/right eye, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists,
# 11/12 hips, 13/14 knees, 15/16 ankles (left before right).
_COCO_BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
WHOLEBODY_FACE = slice(23, 91)
WHOLEBODY_LEFT_HAND = slice(91, 112)
WHOLEBODY_RIGHT_HAND = slice(112, 133)
NUM_WHOLEBODY_POINTS = 133


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """``image`` scaled to fit ``size`` (height, width), pasted at the top-left on grey; and the scale."""
    height, width = size
    ratio = min(height / image.shape[0], width / image.shape[1])
    resized_width, resized_height = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    canvas = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[:resized_height, :resized_width] = cv2.resize(
        image, (resized_width, resized_height), interpolation=cv2.INTER_LINEAR
    )
    return canvas, ratio


def decode_yolox(raw: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Raw YOLOX rows ``(anchors, 5 + classes)`` -> ``(anchors, 5 + classes)`` with centre x, y and
    width, height in input pixels (anchors run over strides 8, 16, 32, row-major per grid)."""
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, columns = input_size[0] // stride, input_size[1] // stride
        grid_x, grid_y = np.meshgrid(np.arange(columns), np.arange(rows))
        grids.append(np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2))
        strides.append(np.full((rows * columns, 1), stride))
    grid, stride = np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)
    decoded = raw.astype(np.float32).copy()
    decoded[:, :2] = (raw[:, :2] + grid) * stride
    decoded[:, 2:4] = np.exp(raw[:, 2:4]) * stride
    return decoded


def boxes_from_detections(decoded: np.ndarray, ratio: float) -> np.ndarray:
    """Decoded YOLOX rows -> ``(N, 4)`` person boxes x0, y0, x1, y1 in image pixels, after NMS."""
    scores = decoded[:, 4] * decoded[:, 5 + PERSON_CLASS]
    keep = scores > DETECTION_SCORE_THRESHOLD
    centres, sizes, scores = decoded[keep, :2], decoded[keep, 2:4], scores[keep]
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) / ratio
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), DETECTION_SCORE_THRESHOLD, NMS_IOU_THRESHOLD)
    return boxes[np.asarray(kept, dtype=int).reshape(-1)].astype(np.float32)


@dataclass(frozen=True)
class Crop:
    """The square-pixel window around a person that the pose model sees: centre and size in image pixels."""

    center: np.ndarray
    size: np.ndarray  # width, height

    @classmethod
    def around(cls, box: np.ndarray, input_size: tuple[int, int]) -> "Crop":
        """The box widened by BOX_PADDING, then grown along one axis to the model's aspect."""
        center = (box[:2] + box[2:]) / 2
        width, height = (box[2:] - box[:2]) * BOX_PADDING
        aspect = input_size[1] / input_size[0]
        if width > height * aspect:
            height = width / aspect
        else:
            width = height * aspect
        return cls(center.astype(np.float32), np.array([width, height], dtype=np.float32))

    def matrix(self, input_size: tuple[int, int]) -> np.ndarray:
        """The 2x3 affine map from image pixels to model-input pixels."""
        scale = input_size[1] / self.size[0]
        offset = np.array([input_size[1], input_size[0]]) / 2 - scale * self.center
        return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], dtype=np.float32)

    def to_image(self, points: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
        """Model-input pixels -> image pixels (the inverse of ``matrix``)."""
        return (points - np.array([input_size[1], input_size[0]]) / 2) * (self.size[0] / input_size[1]) + self.center


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> np.ndarray:
    """SimCC vectors ``(K, Wx)``, ``(K, Hy)`` -> ``(K, 3)`` of x, y in model-input pixels and score."""
    x = np.argmax(simcc_x, axis=1) / split_ratio
    y = np.argmax(simcc_y, axis=1) / split_ratio
    score = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    return np.stack([x, y, score], axis=1).astype(np.float32)


def wholebody_to_openpose(points: np.ndarray) -> PersonPose:
    """133 COCO-WholeBody rows (x, y, score) -> one person in OpenPose order; low scores become missing."""
    rows = points.astype(np.float32).copy()
    rows[rows[:, 2] < KEYPOINT_SCORE_THRESHOLD] = 0.0
    body = np.zeros((18, 3), dtype=np.float32)
    for coco_index, name in enumerate(_COCO_BODY_NAMES):
        body[BODY[name]] = rows[coco_index]
    shoulders = body[[BODY["right_shoulder"], BODY["left_shoulder"]]]
    if (shoulders[:, 2] > 0).all():
        body[BODY["neck"]] = (*shoulders[:, :2].mean(axis=0), shoulders[:, 2].min())
    face = np.zeros((NUM_FACE_POINTS, 3), dtype=np.float32)
    face[:68] = rows[WHOLEBODY_FACE]
    for pupil, eye in ((68, face[36:42]), (69, face[42:48])):  # no pupils in WholeBody: the eye centres
        if (eye[:, 2] > 0).all():
            face[pupil] = (*eye[:, :2].mean(axis=0), eye[:, 2].min())
    return PersonPose(body=body, left_hand=rows[WHOLEBODY_LEFT_HAND], right_hand=rows[WHOLEBODY_RIGHT_HAND], face=face)


class DWPoseOnnxDetector:
    """DWPose whole-body keypoints of every person YOLOX finds, through ONNX Runtime on the CPU."""

    name = "dwpose"

    def __init__(self, detector_path: Path, pose_path: Path):
        try:
            import onnxruntime
        except ImportError as error:
            raise MagicPoseError("--detector dwpose needs ONNX Runtime: pip install onnxruntime") from error
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self._detector = onnxruntime.InferenceSession(str(detector_path), options, providers=providers)
        self._pose = onnxruntime.InferenceSession(str(pose_path), options, providers=providers)
        self._detector_size = tuple(self._detector.get_inputs()[0].shape[2:4])
        self._pose_size = tuple(self._pose.get_inputs()[0].shape[2:4])

    def close(self) -> None:
        pass

    def person_boxes(self, image: np.ndarray) -> np.ndarray:
        """Person boxes (x0, y0, x1, y1) in pixels of the RGB ``image``."""
        padded, ratio = letterbox(np.ascontiguousarray(image[..., 2::-1]), self._detector_size)
        batch = padded.transpose(2, 0, 1)[None].astype(np.float32)
        raw = self._detector.run(None, {self._detector.get_inputs()[0].name: batch})[0]
        return boxes_from_detections(decode_yolox(raw[0], self._detector_size), ratio)

    def keypoints(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """133 whole-body rows (x, y in image pixels, score) of the person in ``box``."""
        crop = Crop.around(box, self._pose_size)
        height, width = self._pose_size
        patch = cv2.warpAffine(image[..., :3], crop.matrix(self._pose_size), (width, height), flags=cv2.INTER_LINEAR)
        batch = ((patch.astype(np.float32) - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB).transpose(2, 0, 1)[None]
        simcc_x, simcc_y = self._pose.run(None, {self._pose.get_inputs()[0].name: batch})[:2]
        points = decode_simcc(simcc_x[0], simcc_y[0], simcc_x.shape[-1] / width)
        points[:, :2] = crop.to_image(points[:, :2], self._pose_size)
        return points

    def detect(self, image: np.ndarray) -> FramePose:
        height, width = image.shape[:2]
        people = [wholebody_to_openpose(self.keypoints(image, box)) for box in self.person_boxes(image)]
        return FramePose(width, height, [person for person in people if (person.body[:, 2] > 0).any()])

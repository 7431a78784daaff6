"""Face-Cos: does the generated person keep the real person's face? The cosine similarity of
face-recognition embeddings of the generated and the ground-truth face, frame by frame.

The MagicPose repository ships no code for it, so this is a transparent version: faces are found by
our own pose detector's face landmarks (MediaPipe's face mesh, or DWPose's face points, in the
68-point iBUG layout), aligned by five of them (eye centres, nose tip, mouth corners) onto the
standard ArcFace 112x112 template with a similarity transform, and embedded by an ArcFace ONNX model
(insightface's ``w600k_r50.onnx`` or any model with its layout: N x 3 x 112 x 112 RGB scaled to
[-1, 1] in, N x D embeddings out) through onnxruntime.

A ground-truth frame without a face is skipped and counted; a generated frame whose face the detector
cannot find is aligned with the ground truth's landmarks, so a face drawn beyond recognition still
scores low instead of being left out.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.metrics.weights import ARCFACE, locate

# Where ArcFace models expect the five points of a 112x112 face (image left eye first), as
# insightface aligns its training faces.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64
)
# The 68-point iBUG face: the image-left eye ring (the person's right eye), the other eye, the nose
# tip, and the mouth corners on the image left and right.
IBUG_LEFT_EYE, IBUG_RIGHT_EYE, IBUG_NOSE_TIP, IBUG_MOUTH_LEFT, IBUG_MOUTH_RIGHT = range(36, 42), range(42, 48), 30, 48, 54
MIN_CONFIDENCE = 0.3


def five_points(face: np.ndarray) -> np.ndarray | None:
    """The five alignment points (5 x 2 pixels) of a 70 x 3 OpenPose face, or None when any is missing."""
    used = [*IBUG_LEFT_EYE, *IBUG_RIGHT_EYE, IBUG_NOSE_TIP, IBUG_MOUTH_LEFT, IBUG_MOUTH_RIGHT]
    if face is None or len(face) < 68 or (face[used, 2] <= MIN_CONFIDENCE).any():
        return None
    points = [face[list(IBUG_LEFT_EYE), :2].mean(axis=0), face[list(IBUG_RIGHT_EYE), :2].mean(axis=0)]
    points += [face[index, :2] for index in (IBUG_NOSE_TIP, IBUG_MOUTH_LEFT, IBUG_MOUTH_RIGHT)]
    return np.asarray(points, dtype=np.float64)


def align_face(image: np.ndarray, points: np.ndarray, size: int = 112) -> np.ndarray:
    """The face of ``image`` warped so that its five ``points`` land on the ArcFace template (size x size)."""
    from skimage.transform import SimilarityTransform

    template = ARCFACE_TEMPLATE * (size / 112.0)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(points, template)
    else:
        transform = SimilarityTransform()
        transform.estimate(points, template)
    return cv2.warpAffine(np.ascontiguousarray(image), transform.params[:2], (size, size), borderValue=0.0)


class FaceEmbedder:
    """An ArcFace ONNX model through onnxruntime: aligned RGB faces in, unit-length embeddings out."""

    def __init__(self, model_path: Path):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(model_path), providers=onnxruntime.get_available_providers())
        except Exception as error:  # onnxruntime raises its own error types for a file that is not a model
            raise MagicPoseError(f"cannot load the face model {model_path}: {str(error).splitlines()[0]}") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = model_input.shape[2] if isinstance(model_input.shape[2], int) else 112
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None

    def embed(self, faces: list[np.ndarray]) -> np.ndarray:
        batch = (np.stack(faces).astype(np.float32) - 127.5) / 127.5
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        if self.fixed_batch == 1:
            outputs = np.concatenate([self.session.run(None, {self.input_name: face[None]})[0] for face in batch])
        else:
            outputs = self.session.run(None, {self.input_name: batch})[0]
        outputs = outputs.reshape(len(faces), -1).astype(np.float64)
        return outputs / np.maximum(np.linalg.norm(outputs, axis=1, keepdims=True), 1e-12)


def face_model_path(face_model: Path | None, weights_dir: Path | None) -> Path:
    """``--face-model``, else ``w600k_r50.onnx`` in the weights folder, or a one-line MissingWeightsError."""
    return locate(ARCFACE, weights_dir, face_model)


class FaceLandmarks:
    """The 70 x 3 face landmarks of the main person our pose detector finds in an image (None: no face).

    Face-Cos and the face-region scores both look at each ground-truth frame; the answers for the
    last few images are kept, so a frame is detected once however many scores use it.
    """

    def __init__(self, detector, remember: int = 4):
        self.detector, self.remember = detector, remember
        self.recent: list[tuple[np.ndarray, np.ndarray | None]] = []  # holds the images, so their ids stay theirs
        self.closed = False

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        from magicpose_cli.pose.temporal import main_person

        for seen, face in self.recent:
            if seen is image:
                return face
        person = main_person(self.detector.detect(image))
        face = None if person is None else person.face
        self.recent = [*self.recent[1 - self.remember :], (image, face)]
        return face

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.detector.close()


class FaceCos:
    """Face-Cos of frame pairs, with the face landmarks of a pose detector."""

    def __init__(self, embedder: FaceEmbedder, face_landmarks: FaceLandmarks):
        self.embedder, self.face_landmarks = embedder, face_landmarks

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        face = self.face_landmarks(image)
        return None if face is None else five_points(face)

    def similarity(self, generated: np.ndarray, target: np.ndarray) -> tuple[float | None, bool]:
        """(cosine, generated face found), or (None, False) when the ground truth shows no face."""
        target_points = self.landmarks(target)
        if target_points is None:
            return None, False
        generated_points = self.landmarks(generated)
        found = generated_points is not None
        faces = [align_face(generated, generated_points if found else target_points, self.embedder.size), align_face(target, target_points, self.embedder.size)]
        embeddings = self.embedder.embed(faces)
        return float(embeddings[0] @ embeddings[1]), found

    def close(self) -> None:
        self.face_landmarks.close()

"""MediaPipe keypoints moved to OpenPose's conventions, checked against a real OpenPose detection.

The numbers are keypoints we derived from one public pair: the photo ``sample_images/test.png``
of facebookresearch/pifuhd (512x512, a frontal standing person) with the OpenPose BODY_25 output
the repository ships beside it (``test_keypoints.json``, reduced here to COCO-18), and what
MediaPipe Holistic 0.10.14 (model_complexity 1, static image) finds on that photo: its 33 pose
landmarks and the five face-mesh vertices the correction reads. No image is stored.
"""

import numpy as np

from magicpose_cli.pose.keypoints import BODY
from magicpose_cli.pose.mediapipe_detector import HIP_SPREAD, body_from_mediapipe
from magicpose_cli.pose.render import BODY_LIMBS

MEDIAPIPE_POSE = np.array([
    (254.4, 65.3, 1.0), (260.2, 56.4, 1.0), (262.9, 56.8, 1.0), (266.2, 57.1, 1.0), (249.3, 55.4, 1.0),
    (244.7, 55.2, 1.0), (240.9, 55.2, 1.0), (269.4, 60.8, 1.0), (234.2, 58.9, 1.0), (259.9, 75.3, 1.0),
    (246.2, 74.5, 1.0), (294.7, 119.6, 1.0), (203.2, 120.6, 1.0), (304.8, 186.5, 0.95), (188.1, 194.2, 0.99),
    (319.5, 222.3, 0.97), (223.5, 202.2, 0.99), (329.5, 239.7, 0.95), (233.5, 209.2, 0.97), (329.1, 235.4, 0.96),
    (236.8, 198.8, 0.97), (324.0, 229.4, 0.95), (234.3, 196.2, 0.96), (280.7, 261.8, 1.0), (228.6, 263.5, 1.0),
    (295.9, 364.2, 0.99), (228.7, 367.4, 0.99), (308.2, 464.6, 0.99), (233.5, 461.6, 0.99), (300.1, 482.6, 0.94),
    (240.5, 476.0, 0.89), (345.1, 494.1, 0.99), (224.8, 492.6, 0.98),
], dtype=np.float32)  # fmt: skip
MESH_VERTICES = {4: (251.6, 71.8), 468: (243.1, 59.7), 473: (259.4, 59.6), 234: (231.8, 61.1), 454: (269.2, 61.4)}
OPENPOSE_BODY = np.array([
    (251.1, 70.1), (249.7, 121.6), (205.2, 121.6), (185.7, 191.2), (216.3, 199.6), (294.2, 120.2),
    (306.9, 189.9), (324.9, 223.3), (226.0, 265.1), (227.4, 370.8), (234.4, 467.0), (281.8, 262.3),
    (295.7, 372.2), (316.6, 472.6), (244.2, 60.3), (260.9, 60.3), (230.3, 60.3), (272.0, 60.3),
], dtype=np.float32)  # fmt: skip


def _mesh() -> np.ndarray:
    mesh = np.zeros((478, 3), dtype=np.float32)
    for vertex, xy in MESH_VERTICES.items():
        mesh[vertex] = (*xy, 1.0)
    return mesh


def limb_distances(body: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per limb, the mean distance of its two ends: how far a drawn stick is from the reference's."""
    joint = np.linalg.norm(body[:, :2] - reference[:, :2], axis=1)
    return np.array([(joint[a] + joint[b]) / 2 for a, b in BODY_LIMBS])


def test_correction_brings_mediapipe_onto_openpose():
    without_mesh = body_from_mediapipe(MEDIAPIPE_POSE, 512, 512, 0.5)  # head points from the pose model
    corrected = body_from_mediapipe(MEDIAPIPE_POSE, 512, 512, 0.5, _mesh())
    assert (corrected[:, 2] > 0).all()
    before = np.median(limb_distances(without_mesh, OPENPOSE_BODY))
    after = np.median(limb_distances(corrected, OPENPOSE_BODY))
    assert after <= 2.6 and after < before
    head = [BODY[name] for name in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")]
    head_after = np.linalg.norm(corrected[head, :2] - OPENPOSE_BODY[head], axis=1)
    head_before = np.linalg.norm(without_mesh[head, :2] - OPENPOSE_BODY[head], axis=1)
    assert np.median(head_after) <= 2.0 < np.median(head_before)


def test_correction_is_a_ratio_of_the_body():
    """Scaled and shifted landmarks give the same corrected skeleton, scaled and shifted."""
    small = MEDIAPIPE_POSE.copy()
    small[:, :2] = small[:, :2] * 0.25 + 7
    mesh = _mesh()
    small_mesh = mesh.copy()
    small_mesh[:, :2] = small_mesh[:, :2] * 0.25 + 7
    big = body_from_mediapipe(MEDIAPIPE_POSE, 512, 512, 0.5, mesh)
    scaled = body_from_mediapipe(small, 512, 512, 0.5, small_mesh)
    assert np.allclose(scaled[:, :2], big[:, :2] * 0.25 + 7, atol=1e-3)
    right_hip, left_hip = BODY["right_hip"], BODY["left_hip"]
    mediapipe_hips = np.linalg.norm(MEDIAPIPE_POSE[24, :2] - MEDIAPIPE_POSE[23, :2])
    assert np.isclose(np.linalg.norm(big[right_hip, :2] - big[left_hip, :2]), HIP_SPREAD * mediapipe_hips, rtol=1e-4)
    assert np.allclose(big[BODY["neck"], :2], (big[BODY["right_shoulder"], :2] + big[BODY["left_shoulder"], :2]) / 2)

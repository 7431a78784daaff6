"""MediaPipe Holistic -> OpenPose conventions, on a real photo of a person (skimage's astronaut)."""

import sys

import numpy as np
import pytest
from skimage import data

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.detectors import detect_reference_pose, make_detector
from magicpose_cli.pose.keypoints import BODY
from magicpose_cli.pose.mediapipe_detector import MESH_TO_IBUG68


@pytest.fixture(scope="module")
def astronaut_person():
    return detect_reference_pose(data.astronaut()).people[0]


def test_body_points_where_the_person_is(astronaut_person):
    body = astronaut_person.body
    nose, neck = body[BODY["nose"]], body[BODY["neck"]]
    right_shoulder, left_shoulder = body[BODY["right_shoulder"]], body[BODY["left_shoulder"]]
    assert nose[2] > 0 and neck[2] > 0 and right_shoulder[2] > 0 and left_shoulder[2] > 0
    assert nose[1] < neck[1] - 60  # nose well above the neck (y grows downwards)
    # The person's right shoulder is on the image left, and the neck between the shoulders.
    assert right_shoulder[0] < neck[0] < left_shoulder[0]
    assert np.allclose(neck[:2], (right_shoulder[:2] + left_shoulder[:2]) / 2)
    # The astronaut's head is at about x 170..280, y 40..190 of the 512x512 photo.
    assert 170 < nose[0] < 280 and 60 < nose[1] < 190
    # Hips are out of the picture: OpenPose reports them missing, not guessed.
    assert body[BODY["right_hip"], 2] == 0 and body[BODY["left_hip"], 2] == 0


def test_face_points_inside_the_head_in_ibug_layout(astronaut_person):
    face = astronaut_person.face
    assert face.shape == (70, 3) and (face[:, 2] > 0).all()
    x, y = face[:, 0], face[:, 1]
    assert (x > 160).all() and (x < 290).all() and (y > 60).all() and (y < 200).all()
    jaw, brows, nose, eyes, mouth = y[:17], y[17:27], y[27:36], y[36:48], y[48:68]
    assert np.argmax(jaw) == 8  # the chin is the lowest jaw point
    assert (np.diff(x[:17]) > -1).all() and x[16] - x[0] > 80  # the jaw runs from the image left to the right
    assert brows.max() < eyes.min() and eyes.max() < nose[3] < mouth.min()
    assert x[36] < x[39] < x[27] < x[42] < x[45]  # right eye, nose bridge, left eye, left to right
    assert x[48] < x[51] < x[54] and y[51] < y[62] < y[66] < y[57]  # mouth corners, lips top to bottom
    for pupil, corners in ((68, (36, 39)), (69, (42, 45))):  # pupils between their eye's corners
        assert x[corners[0]] < x[pupil] < x[corners[1]]
    assert len(set(MESH_TO_IBUG68.tolist())) == 68


def test_blank_image_has_no_person():
    with pytest.raises(MagicPoseError, match="no person found"):
        detect_reference_pose(np.zeros((256, 256, 3), dtype=np.uint8))


def test_tracking_follows_a_shift():
    image = data.astronaut()
    frames = []
    for shift in range(0, 50, 10):  # the person walks 10 px right per frame
        frame = np.zeros_like(image)
        frame[:, shift:] = image[:, : image.shape[1] - shift]
        frames.append(frame)
    detector = make_detector("mediapipe", tracking=True)
    try:
        bodies = [detector.detect(frame).people[0].body for frame in frames]
    finally:
        detector.close()
    nose_x = [body[BODY["nose"], 0] for body in bodies]
    assert (np.diff(nose_x) > 0).all()
    for name in ("nose", "right_eye", "left_eye"):
        dx, dy = bodies[-1][BODY[name], :2] - bodies[0][BODY[name], :2]
        assert abs(dx - 40) < 6 and abs(dy) < 6, name
    torso = [BODY[name] for name in ("neck", "right_shoulder", "left_shoulder")]
    assert abs(float(np.mean(bodies[-1][torso, 0] - bodies[0][torso, 0])) - 40) < 10


def test_annotator_detectors_name_the_missing_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("MAGICPOSE_ANNOTATOR_DIR", raising=False)
    with pytest.raises(MagicPoseError, match="body_pose_model.pth.*--annotator-dir"):
        make_detector("openpose")
    (tmp_path / "body_pose_model.pth").write_bytes(b"")
    with pytest.raises(MagicPoseError, match=f"missing in {tmp_path}: hand_pose_model.pth"):
        make_detector("openpose", tmp_path)
    with pytest.raises(MagicPoseError, match="dw-ll_ucoco_384.onnx"):
        make_detector("dwpose", tmp_path)


def test_the_openpose_detector_without_its_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "controlnet_aux", None)  # not installed (the openpose extra)
    with pytest.raises(MagicPoseError, match=r"--detector openpose needs controlnet_aux: pip install 'magicpose-cli\[openpose\]'"):
        make_detector("openpose")

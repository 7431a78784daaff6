"""Reading OpenPose JSON as other tools write it: CMU OpenPose (BODY_25, no canvas) and
controlnet_aux / DWPose (COCO-18, 68 face points, a canvas, sometimes wrapped in a list)."""

import json

import numpy as np
import pytest

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import BODY, FramePose, load_openpose_frames, parse_pose_size


def _body_25() -> np.ndarray:
    """A standing person in BODY_25 order; point i sits at x = 100 + i, y = 10 * i (confidence 0.9)."""
    return np.array([(100 + i, 10 * i, 0.9) for i in range(25)], dtype=np.float32)


def _cmu_frame(body: np.ndarray, face: np.ndarray | None = None) -> dict:
    """What `openpose.bin --write_json` writes: no canvas size, empty lists for parts not computed."""
    person = {
        "person_id": [-1],
        "pose_keypoints_2d": body.reshape(-1).tolist(),
        "face_keypoints_2d": [] if face is None else face.reshape(-1).tolist(),
        "hand_left_keypoints_2d": [],
        "hand_right_keypoints_2d": [],
        "pose_keypoints_3d": [],
    }
    return {"version": 1.3, "people": [person]}


def _write(folder, frames) -> list:
    folder.mkdir(exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"video_{index:012d}_keypoints.json"
        path.write_text(json.dumps(frame))
        paths.append(path)
    return paths


def test_body_25_becomes_coco_18_without_mid_hip_and_feet(tmp_path):
    paths = _write(tmp_path / "cmu", [_cmu_frame(_body_25())])
    (frame_pose,), _ = load_openpose_frames(paths, pose_size=(640, 480))
    body = frame_pose.people[0].body
    assert body.shape == (18, 3)
    # BODY_25: 8 mid-hip, 9/10/11 right hip/knee/ankle, 12/13/14 left, 15-18 eyes and ears, 19-24 feet.
    assert body[BODY["right_wrist"], 0] == 104 and body[BODY["right_hip"], 0] == 109
    assert body[BODY["left_ankle"], 0] == 114 and body[BODY["left_ear"], 0] == 118
    assert (frame_pose.width, frame_pose.height) == (640, 480)


def test_canvas_from_json_then_pose_size_then_extent(tmp_path):
    body = _body_25()
    cmu = _write(tmp_path / "cmu", [_cmu_frame(body), _cmu_frame(body + (20, 5, 0))])
    poses, notice = load_openpose_frames(cmu)
    # Without mid-hip and feet the points span x 100..138, y 0..185 over both frames; the canvas keeps
    # as much room right and below as there is left and above: 238 x 185.
    assert (poses[0].width, poses[0].height) == (238, 185) and (poses[1].width, poses[1].height) == (238, 185)
    assert "no canvas size" in notice and "238x185" in notice and "--pose-size" in notice
    poses, notice = load_openpose_frames(cmu, pose_size=(1080, 1920))
    assert (poses[1].width, poses[1].height) == (1080, 1920) and notice == "canvas 1080x1920 from --pose-size"
    with_canvas = _write(tmp_path / "aux", [{**_cmu_frame(body[:18]), "canvas_width": 512, "canvas_height": 768}])
    poses, notice = load_openpose_frames(with_canvas, pose_size=(1080, 1920))
    assert (poses[0].width, poses[0].height) == (512, 768) and notice == "canvas size from the OpenPose JSON"


def test_controlnet_aux_list_and_68_face_points(tmp_path):
    face = np.array([(200 + i, 300 + (i % 7), 0.8) for i in range(68)], dtype=np.float32)
    frame = {**_cmu_frame(_body_25()[:18], face), "canvas_width": 512, "canvas_height": 512}
    path = tmp_path / "pose.json"
    path.write_text(json.dumps([frame]))  # the sd-webui-controlnet editor's one-frame list
    person = FramePose.load(path).people[0]
    assert person.face.shape == (70, 3) and np.allclose(person.face[:68], face)
    assert np.allclose(person.face[68, :2], face[36:42, :2].mean(axis=0))  # pupils: the eye centres
    assert np.allclose(person.face[69, :2], face[42:48, :2].mean(axis=0))


@pytest.mark.parametrize(
    "person, message",
    [
        ({"pose_keypoints_2d": [1.0] * 20 * 3}, "pose_keypoints_2d has 20 points; expected 18 .* or 25"),
        ({"pose_keypoints_2d": [1.0] * 10}, "not x, y, confidence triples"),
        ({"hand_left_keypoints_2d": [1.0] * 20 * 3}, "hand_left_keypoints_2d has 20 points; expected 21"),
    ],
)
def test_malformed_people_are_refused_with_the_reason(tmp_path, person, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"people": [person], "canvas_width": 64, "canvas_height": 64}))
    with pytest.raises(ValueError, match=message):
        FramePose.load(path)


def test_no_keypoints_and_no_canvas_asks_for_pose_size(tmp_path):
    paths = _write(tmp_path / "empty", [{"version": 1.3, "people": []}])
    with pytest.raises(ValueError, match="--pose-size"):
        load_openpose_frames(paths)
    assert load_openpose_frames(paths, (64, 32))[0][0].people == []


def test_pose_size_reads_width_x_height():
    assert parse_pose_size("1080x1920") == (1080, 1920) and parse_pose_size(" 640 X 480 ") == (640, 480)
    for bad in ("1080", "x1920", "0x10", "-5x10", "axb", "10x10x10"):
        with pytest.raises(MagicPoseError, match="--pose-size must be WIDTHxHEIGHT"):
            parse_pose_size(bad)

"""DWPose through ONNX Runtime, end to end, on tiny ONNX graphs with the published models' signatures.

The tests write their own ``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx`` (magicpose_cli.pose.dwpose_tiny,
built with the ``onnx`` package): a detector that always reports the same boxes, and pose models
whose answer is either fixed or follows a bright spot in their input. The expected keypoints are
worked out by hand below from the letterbox, the crop and the SimCC conventions.
"""

import json
import sys

import huggingface_hub.constants
import imageio.v2 as imageio
import numpy as np
import pytest
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.detectors import DetectorName, make_detector, resolve_detector
from magicpose_cli.pose.dwpose_onnx import YOLOX_FILE, DWPOSE_FILE, letterbox
from magicpose_cli.pose.dwpose_tiny import write_tiny_dwpose
from magicpose_cli.pose.keypoints import BODY


@pytest.fixture
def fixed_weights(tmp_path):
    return write_tiny_dwpose(tmp_path / "annotators", "fixed")


@pytest.fixture
def spot_weights(tmp_path):
    return write_tiny_dwpose(tmp_path / "spot_annotators", "spot")


def test_letterbox_scales_to_fit_at_the_top_left_on_grey():
    image = np.full((100, 200, 3), 7, dtype=np.uint8)
    padded, ratio = letterbox(image, (640, 640))
    assert ratio == 3.2 and padded.shape == (640, 640, 3)
    assert (padded[:320] == 7).all() and (padded[320:] == 114).all()


def test_fixed_models_give_hand_computed_openpose_keypoints(fixed_weights):
    # tiny_detections: one person centred at (240, 176), 128 x 256, in the 640x640 detector input.
    # A 1280x960 image is letterboxed at ratio 0.5, so the person box is (176..304, 48..304) / 0.5
    # = x 352..608, y 96..608: centre (480, 352), 256 x 512. Padded by 1.25: 320 x 640; at the
    # model's 3:4 aspect: 480 x 640. Model pixel (u, v) -> image ((u - 144) / 0.6 + 480, (v - 192) / 0.6 + 352).
    detector = make_detector("dwpose", fixed_weights)
    frame_pose = detector.detect(np.zeros((960, 1280, 3), dtype=np.uint8))
    assert (frame_pose.width, frame_pose.height) == (1280, 960) and len(frame_pose.people) == 1  # NMS, class filter
    person = frame_pose.people[0]

    def expected(k):
        return np.array([(10 + k - 144) / 0.6 + 480, (20 + k - 192) / 0.6 + 352], dtype=np.float32)

    assert np.allclose(person.body[BODY["nose"], :2], (256.6667, 65.3333), atol=1e-3)  # COCO 0
    coco_of = {"right_shoulder": 6, "left_shoulder": 5, "right_wrist": 10, "left_wrist": 9, "right_hip": 12,
               "left_hip": 11, "right_ankle": 16, "left_ankle": 15, "right_eye": 2, "left_eye": 1,
               "right_ear": 4}  # fmt: skip
    for name, coco_index in coco_of.items():
        assert np.allclose(person.body[BODY[name]], (*expected(coco_index), 0.9), atol=1e-3), name
    assert (person.body[BODY["left_ear"]] == 0).all()  # scored 0.1: missing
    assert np.allclose(person.body[BODY["neck"], :2], (expected(5) + expected(6)) / 2, atol=1e-3)
    assert np.allclose(person.face[0, :2], expected(23), atol=1e-3)  # WholeBody face starts at 23
    assert np.allclose(person.face[67, :2], expected(90), atol=1e-3)
    assert np.allclose(person.face[68, :2], np.mean([expected(23 + i) for i in range(36, 42)], axis=0), atol=1e-3)
    assert np.allclose(person.left_hand[0, :2], expected(91), atol=1e-3)
    assert np.allclose(person.right_hand[20, :2], expected(132), atol=1e-3)


def test_spot_model_finds_the_spot_where_it_is(spot_weights):
    # With the spot model every keypoint is where the image is brightest, so after the crop and its
    # inverse the keypoints land on the spot, to within one model pixel (1 / 0.6 image pixels).
    image = np.zeros((960, 1280, 3), dtype=np.uint8)
    image[300:304, 500:504] = (255, 0, 0)  # red: the pose model reads its first channel, RGB
    person = make_detector("dwpose", spot_weights).detect(image).people[0]
    assert np.abs(person.body[BODY["nose"], :2] - (501.5, 301.5)).max() <= 1 / 0.6 + 0.5


def test_extract_pose_with_dwpose_writes_the_same_outputs_and_resumes(tmp_path, spot_weights):
    frames = []
    for t in range(4):  # the spot moves 16 px right per frame in a 256x192 video
        frame = np.zeros((192, 256, 3), dtype=np.uint8)
        frame[80:96, 60 + 16 * t : 76 + 16 * t] = 255
        frames.append(frame)
    video = tmp_path / "spot.mp4"
    imageio.mimwrite(video, frames, fps=10, codec="libx264", quality=9, macro_block_size=16)
    out = tmp_path / "poses"
    arguments = ["extract-pose", str(video), "-o", str(out), "--detector", "dwpose",
                 "--annotator-dir", str(spot_weights), "--no-smooth"]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "4 frames: 4 detected" in result.output and "detector dwpose" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["detector"] == "dwpose" and manifest["frame_count"] == 4
    noses = []
    for index in range(4):
        data = json.loads((out / f"{index:05d}.json").read_text())
        assert (data["canvas_width"], data["canvas_height"]) == (256, 192)
        noses.append(data["people"][0]["pose_keypoints_2d"][:2])
        assert (out / f"{index:05d}.png").is_file()
    assert np.allclose(np.diff(np.array(noses)[:, 0]), 16, atol=2.5)
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0 and "all from cache" in again.output


def test_missing_dwpose_weights_name_the_files(tmp_path):
    (tmp_path / YOLOX_FILE).write_bytes(b"")
    with pytest.raises(MagicPoseError, match=f"missing in {tmp_path}: {DWPOSE_FILE}.*huggingface.co/yzd-v/DWPose"):
        make_detector("dwpose", tmp_path)


def test_auto_picks_an_installed_detector(tmp_path, monkeypatch, fixed_weights):
    monkeypatch.delenv("MAGICPOSE_ANNOTATOR_DIR", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    assert resolve_detector("auto") is DetectorName.MEDIAPIPE  # installed here
    assert resolve_detector("dwpose") is DetectorName.DWPOSE
    with pytest.raises(MagicPoseError, match="unknown detector 'posenet'"):
        resolve_detector("posenet")
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # how Python sees a package that is not installed
    assert resolve_detector("auto", fixed_weights) is DetectorName.DWPOSE
    with pytest.raises(MagicPoseError, match="no pose detector available: pip install mediapipe.*yolox_l.onnx"):
        resolve_detector("auto")
    video = tmp_path / "still.mp4"
    imageio.mimwrite(video, [np.zeros((64, 64, 3), dtype=np.uint8)] * 2, fps=5, macro_block_size=16)
    result = CliRunner().invoke(app, ["extract-pose", str(video), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0 and "no pose detector available" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_align_to_detects_the_reference_with_the_same_weights(tmp_path, fixed_weights, monkeypatch):
    monkeypatch.delenv("MAGICPOSE_ANNOTATOR_DIR", raising=False)
    video = tmp_path / "two.mp4"
    imageio.mimwrite(video, [np.zeros((240, 320, 3), dtype=np.uint8)] * 2, fps=5, macro_block_size=16)
    reference = tmp_path / "reference.png"
    imageio.imwrite(reference, np.zeros((480, 640, 3), dtype=np.uint8))
    out = tmp_path / "aligned"
    arguments = ["extract-pose", str(video), "-o", str(out), "--detector", "dwpose",
                 "--annotator-dir", str(fixed_weights), "--align-to", str(reference)]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["settings"]["align_to"] == str(reference)


def test_pose_folders_need_no_detector(tmp_path, fixed_weights, monkeypatch):
    video = tmp_path / "two.mp4"
    imageio.mimwrite(video, [np.zeros((240, 320, 3), dtype=np.uint8)] * 2, fps=5, macro_block_size=16)
    out = tmp_path / "poses"
    arguments = ["extract-pose", str(video), "-o", str(out), "--detector", "dwpose",
                 "--annotator-dir", str(fixed_weights)]  # fmt: skip
    assert CliRunner().invoke(app, arguments).exit_code == 0
    for missing in ("mediapipe", "onnxruntime", "controlnet_aux"):
        monkeypatch.setitem(sys.modules, missing, None)  # not installed
    from magicpose_cli.driving import load_driving_poses

    json_folder = load_driving_poses(out)
    assert len(json_folder) == 2 and json_folder.keypoints[0].people
    maps = tmp_path / "maps"
    maps.mkdir()
    for png in sorted(out.glob("*.png")):
        (maps / png.name).write_bytes(png.read_bytes())
    assert len(load_driving_poses(maps)) == 2

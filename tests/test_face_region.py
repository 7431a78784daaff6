"""Face-region scores and the face box they use, on real photos and synthetic people with exact landmarks;
and the synthetic close-ups the demo model learns faces from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from magicpose_cli.evaluation import pair_face_boxes, score_video
from magicpose_cli.metrics.face_region import FaceBox, face_boxes, score_face_region
from magicpose_cli.metrics.images import psnr
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.synthetic import sample_pair
from magicpose_cli.synthetic.closeups import write_closeups
from test_evaluate_command import noisy, run, tiny_arcface, write_frames


def test_the_box_has_one_size_and_moves_no_more_than_the_landmarks():
    pair = sample_pair(9001, 128, 8)
    faces = [pose.people[0].face.copy() for pose in pair.target_poses]
    faces[3][:, 2] = 0  # a frame where the face was not found
    jittered = [face.copy() for face in faces]
    for index, face in enumerate(jittered):
        face[:, :2] += (-1.0) ** index * 2.0  # landmarks that jump 4 px back and forth
    boxes = face_boxes(jittered)
    assert boxes[3] is None and all(box is not None for index, box in enumerate(boxes) if index != 3)
    assert len({box.side for box in boxes if box is not None}) == 1
    centres = np.array([box.centre for box in boxes if box is not None])
    landmark_centres = np.array([(face[:68, :2].min(0) + face[:68, :2].max(0)) / 2 for index, face in enumerate(jittered) if index != 3])
    assert np.abs(np.diff(centres, axis=0)).max() < np.abs(np.diff(landmark_centres, axis=0)).max() / 2
    for box, face in zip(boxes, faces):  # and it holds the whole face
        if box is not None:
            left, top, right, bottom = box.clipped(128, 128)
            assert (face[:68, 0] >= left).all() and (face[:68, 0] <= right).all() and (face[:68, 1] >= top).all() and (face[:68, 1] <= bottom).all()
    assert FaceBox((-30.0, 5.0), 20.0).clipped(64, 64) is None and FaceBox((2.0, 60.0), 20.0).clipped(64, 64) == (0, 50, 12, 64)


def test_face_scores_see_the_face_and_only_the_face():
    pair = sample_pair(9002, 128, 4)
    target = np.stack(pair.target_frames)
    boxes = pair_face_boxes(pair)
    blurred_face, blurred_elsewhere = target.copy(), target.copy()
    for frame, box in zip(blurred_face, boxes):
        left, top, right, bottom = box.clipped(128, 128)
        frame[top:bottom, left:right] = frame[top:bottom, left:right].mean(axis=(0, 1))
    outside = np.ones(target.shape[1:3], dtype=bool)  # outside every frame's box (the temporal error cuts two frames by one box)
    for box in boxes:
        left, top, right, bottom = box.clipped(128, 128)
        outside[top:bottom, left:right] = False
    blurred_elsewhere[:, outside] = 128
    face_lost, rest_lost = score_video(blurred_face, target, faces=boxes), score_video(blurred_elsewhere, target, faces=boxes)
    assert face_lost.face_psnr < face_lost.psnr - 5 and face_lost.face_ssim < 0.5
    assert rest_lost.face_psnr == float("inf") and rest_lost.face_temporal_error == 0.0 and rest_lost.psnr < 15
    assert np.isnan(score_video(blurred_face, target).face_psnr)  # no boxes, no face scores


def test_temporal_error_in_the_box_counts_only_consecutive_frames_with_a_face():
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((64, 64)))
    frames = [photo, np.roll(photo, 3, axis=1), photo, photo]
    boxes = [FaceBox((30.0, 20.0), 20.0), FaceBox((30.0, 20.0), 20.0), None, FaceBox((30.0, 20.0), 20.0)]
    scores = score_face_region(frames, [photo] * 4, boxes, {"psnr": psnr}, numbers=[0, 1, 2, 3])
    assert scores.without_face == 1 and len(scores.frames["psnr"]) == 3
    assert len(scores.temporal_errors) == 1 and scores.temporal_errors[0] > 0.01  # frames 0-1; 1-2 and 2-3 lack a box


def test_evaluate_scores_the_face_box_of_real_photos(tmp_path, monkeypatch):
    pytest.importorskip("mediapipe")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no VGG16: face_lpips is skipped, the rest runs
    person = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    empty = np.asarray(Image.fromarray(data.coffee()).resize((256, 256)))
    spoilt = [person.copy() for _ in range(3)]
    for frame, face in zip(spoilt, noisy([person[30:110, 60:160]] * 3, 40)):
        frame[30:110, 60:160] = face  # the astronaut's face, spoilt by noise that changes from frame to frame
    write_frames(tmp_path / "gen", [*spoilt, empty])
    write_frames(tmp_path / "gt", [person, person, person, empty])
    tiny_arcface(tmp_path / "arcface.onnx")  # Face-Cos beside them: one detector serves both
    metrics = "psnr,face_cos,face_psnr,face_ssim,face_lpips,face_temporal_error"
    result = run(tmp_path / "gen", tmp_path / "gt", "--metrics", metrics, "--face-model", tmp_path / "arcface.onnx", "--json", tmp_path / "face.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "face.json").read_text())
    assert report["counts"]["face_frames"] == 3 and report["counts"]["frames_without_face"] == 1
    assert report["counts"]["face_region_frames"] == 3 and report["counts"]["face_region_frames_without_face"] == 1
    assert "leave out the 1 frame(s)" in result.output and "face_lpips" in report["skipped"]
    per_video = next(iter(report["videos"].values()))
    whole_noisy = psnr(spoilt[0], person)
    assert per_video["face_psnr"] < whole_noisy - 3  # the damage is in the face, so the face box scores it lower
    assert 0 < report["metrics"]["face_temporal_error"] and report["metrics"]["face_ssim"] < 1


def test_closeups_show_a_face_with_its_landmarks_in_the_pose_map(tmp_path):
    folder = write_closeups(tmp_path / "a", 1, 2, size=64, progress=False)[0]
    again = write_closeups(tmp_path / "b", 1, 2, size=64, progress=False)[0]
    assert (folder / "frames" / "00001.png").read_bytes() == (again / "frames" / "00001.png").read_bytes()
    pose = FramePose.load(folder / "poses" / "00000.json")
    face = pose.people[0].face[:68, :2]
    assert pose.width == pose.height == 64
    assert (face > 4).all() and (face < 60).all()  # the whole face inside the crop
    assert np.ptp(face, axis=0).max() > 20  # and large: a full-body 64x64 frame gives it about 8 pixels
    frame = np.asarray(Image.open(folder / "frames" / "00000.png"))
    eye = face[36:42].mean(axis=0).round().astype(int)
    assert frame.shape == (64, 64, 3) and frame[eye[1] - 1 : eye[1] + 2, eye[0] - 1 : eye[0] + 2].min() < 60  # the pupil (or a closed eye's line) is drawn there


def test_the_demo_evaluation_runs_retargets_face_pass_and_scores_its_face_box(one_torch_thread):
    import torch

    from magicpose_cli.evaluation import EvaluationSettings, generate_for_pair, generate_with_face_pass
    from magicpose_cli.model_store import DEMO_MODEL_DIR
    from magicpose_cli.models.loading import Scheduler, load_pipeline

    pipeline = load_pipeline(DEMO_MODEL_DIR, torch.device("cpu"), torch.float32, Scheduler("dpm"))
    settings = EvaluationSettings(size=64, num_frames=2, steps=4, guidance=7.0)
    pair, large = sample_pair(9000, 64, 2), sample_pair(9000, 320, 2)
    main = np.round(generate_for_pair(pipeline, pair, settings) * 255)
    passed = np.round(generate_with_face_pass(pipeline, pair, large, settings, strength=0.5) * 255)
    boxes = pair_face_boxes(pair)
    outside = np.ones(main.shape[:3], dtype=bool)
    for mask, box in zip(outside, boxes):
        left, top, right, bottom = box.clipped(64, 64)
        mask[max(top - 2, 0) : bottom + 2, max(left - 2, 0) : right + 2] = False  # the pass's own box is a pixel or two larger
    assert np.array_equal(main[outside], passed[outside]) and not np.array_equal(main, passed)
    scores = score_video(passed / 255, np.stack(pair.target_frames), faces=boxes)
    assert np.isfinite(scores.face_psnr) and np.isfinite(scores.face_temporal_error)

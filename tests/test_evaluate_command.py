"""`magicpose evaluate` as a user runs it: frame folders and videos the test makes from real photos, the
report, weights that are missing, bad input, Face-Cos with a tiny ArcFace-layout ONNX model, and the
test protocol (`--dataset`) end to end with the demo model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.metrics.face import ARCFACE_TEMPLATE, FaceEmbedder, align_face
from magicpose_cli.metrics.images import psnr, psnr_disco
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.pose.render import render_pose
from magicpose_cli.synthetic import sample_pair

CHEAP = "ssim,psnr,psnr_disco,l1,l1_disco,temporal_error,flicker_excess"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*arguments) -> object:
    return CliRunner().invoke(app, ["evaluate", *map(str, arguments)])


def panning(size: int = 64, frames: int = 5, photo: str = "astronaut") -> list[np.ndarray]:
    """A camera panning across a photo, one frame per step."""
    image = np.asarray(Image.fromarray(getattr(data, photo)()).resize((size * 2, size)))
    return [np.ascontiguousarray(image[:, 4 * step : 4 * step + size]) for step in range(frames)]


def noisy(frames: list[np.ndarray], sigma: float = 12.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8) for frame in frames]


def write_frames(folder: Path, frames: list[np.ndarray], names=None, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{names[index] if names else f'{index:04d}'}{suffix}")
    return folder


@pytest.fixture
def folders(tmp_path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no Inception, no VGG16 there
    monkeypatch.delenv("MAGICPOSE_EVAL_WEIGHTS", raising=False)
    truth = panning()
    return write_frames(tmp_path / "gen", noisy(truth)), write_frames(tmp_path / "gt", truth)


def test_two_frame_folders_give_the_table_json_and_csv(folders, tmp_path):
    generated, truth = folders
    result = run(generated, truth, "--json", tmp_path / "out.json", "--csv", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["frames"] == 5 and list(report["videos"]) == ["gen"] and report["videos"]["gen"]["frames"] == 5
    pairs = [(cv2.imread(str(generated / f"{i:04d}.png")), cv2.imread(str(truth / f"{i:04d}.png"))) for i in range(5)]
    grey = [[cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in pair] for pair in pairs]
    assert report["metrics"]["ssim"] == pytest.approx(np.mean([structural_similarity(a, b, full=True)[0] for a, b in grey]))
    assert report["metrics"]["psnr"] == pytest.approx(np.mean([psnr(a, b) for a, b in pairs]))
    assert report["metrics"]["psnr_disco"] == pytest.approx(np.mean([psnr_disco(a, b) for a, b in pairs]))
    assert report["metrics"]["psnr_disco"] > report["metrics"]["psnr"] + 3  # the published bug flatters noise
    assert report["paper"]["psnr_disco"] == 29.53 and report["paper"]["fid_vid"] == 46.30
    # Every network metric is skipped with its one line, and the face-box scores (no face in these crops); the others ran.
    face_region = {"face_psnr", "face_ssim", "face_lpips", "face_temporal_error"}
    assert set(report["skipped"]) == {"fid", "lpips", "lpips_disco", "fid_vid", "fvd", "face_cos", *face_region}
    assert "pt_inception-2015-12-05-6726825d.pth" in report["skipped"]["fid"] and "--weights-dir" in report["skipped"]["fvd"]
    assert all("\n" not in reason for reason in report["skipped"].values())
    for line in ("skipped fid:", "skipped lpips_disco, lpips, face_lpips:", "skipped fid_vid:", "i3d_pretrained_400.pt", "psnr_disco"):
        assert line in result.output
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert rows[0]["video"] == "gen" and float(rows[0]["ssim"]) == pytest.approx(report["metrics"]["ssim"])
    again = run(generated, truth, "--json", tmp_path / "out.json", "--metrics", "ssim")
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_two_videos_and_per_video_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    truth = panning(frames=6)
    for name, frames in (("gen.mp4", noisy(truth)), ("gt.mp4", truth)):
        imageio.mimwrite(tmp_path / name, frames, fps=10, macro_block_size=1)
    result = run(tmp_path / "gen.mp4", tmp_path / "gt.mp4", "--metrics", CHEAP, "--json", tmp_path / "videos.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "videos.json").read_text())["frames"] == 6
    for side, frames in (("gen", noisy(truth)), ("gt", truth)):
        write_frames(tmp_path / side / "dance_a", frames[:3])
        write_frames(tmp_path / side / "dance_b", frames[3:], names=["a", "b", "c"])
    result = run(tmp_path / "gen", tmp_path / "gt", "--metrics", CHEAP, "--json", tmp_path / "folders.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "folders.json").read_text())
    assert sorted(report["videos"]) == ["dance_a", "dance_b"] and report["frames"] == 6
    assert report["metrics"]["l1"] == pytest.approx(np.mean([report["videos"][v]["l1"] for v in ("dance_a", "dance_b")]))


def bad_inputs(root: Path) -> dict[str, tuple[list[Path], str]]:
    truth = panning()
    write_frames(root / "gt", truth)
    write_frames(root / "fewer", truth[:3])
    write_frames(root / "renamed", truth, names=[f"x{i}" for i in range(5)])
    write_frames(root / "small", [frame[:32, :32] for frame in truth])
    (root / "empty").mkdir()
    imageio.mimwrite(root / "five.mp4", truth, fps=10, macro_block_size=1)
    imageio.mimwrite(root / "three.mp4", truth[:3], fps=10, macro_block_size=1)
    return {
        "fewer frames": ([root / "fewer", root / "gt"], "only in GROUND_TRUTH"),
        "other names": ([root / "renamed", root / "gt"], "frame names do not match"),
        "other sizes": ([root / "small", root / "gt"], "GENERATED is 32x32 but GROUND_TRUTH is 64x64"),
        "empty folder": ([root / "empty", root / "gt"], "has no frames"),
        "other frame counts": ([root / "three.mp4", root / "five.mp4"], "GENERATED has 3 frames but GROUND_TRUTH has 5"),
        "missing": ([root / "absent", root / "gt"], "GENERATED not found"),
        "one side only": ([root / "gt"], "give GENERATED and GROUND_TRUTH"),
        "unknown metric": ([root / "gt", root / "gt", "--metrics", "ssim,fidd"], "unknown metric 'fidd'"),
        "protocol option": ([root / "gt", root / "gt", "--steps", "3"], "--steps is for --dataset only"),
    }


def test_bad_inputs_are_one_line(tmp_path):
    for case, (arguments, message) in bad_inputs(tmp_path).items():
        result = run(*arguments)
        wrong_usage = case in ("one side only", "protocol option")  # arguments that do not go together: 2, as README says
        assert result.exit_code == (2 if wrong_usage else 1), (case, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, (case, result.output)


def tiny_arcface(path: Path, dims: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An ONNX model with ArcFace's layout (N x 3 x 112 x 112 in, N x D out): an 8x8-patch convolution and a matrix."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.1, (4, 3, 8, 8)).astype(np.float32)
    matrix = rng.normal(0, 0.1, (4 * 14 * 14, dims)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input.1", "kernel"], ["patches"], strides=[8, 8]),
        helper.make_node("Flatten", ["patches"], ["flat"]),
        helper.make_node("MatMul", ["flat", "matrix"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dims])],
        initializer=[numpy_helper.from_array(kernel, "kernel"), numpy_helper.from_array(matrix, "matrix")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return kernel, matrix


def test_face_embedding_and_alignment_match_independent_computations(tmp_path):
    kernel, matrix = tiny_arcface(tmp_path / "arcface.onnx")
    embedder = FaceEmbedder(tmp_path / "arcface.onnx")
    faces = [np.asarray(Image.fromarray(data.astronaut()).resize((112, 112))), np.asarray(Image.fromarray(data.chelsea()).resize((112, 112)))]
    x = (np.stack(faces).astype(np.float64) - 127.5) / 127.5  # N x H x W x 3, RGB
    patches = x.reshape(2, 14, 8, 14, 8, 3)
    expected = np.einsum("nhpwqc,ocpq->nohw", patches, kernel).reshape(2, -1) @ matrix
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(faces), expected, atol=1e-5)
    # Five dots on a face turned, scaled and moved: aligned, they sit on ArcFace's template.
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([40.0, 25.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rotation.T * scale + shift
    canvas = np.zeros((300, 300, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x_, y_), colour in zip(points, colours):
        cv2.circle(canvas, (int(round(x_)), int(round(y_))), 4, colour, -1)
    aligned = align_face(canvas, points)
    for target, colour in zip(ARCFACE_TEMPLATE, colours):
        ys, xs = np.nonzero(np.all(np.abs(aligned.astype(int) - colour) < 60, axis=-1))
        assert np.hypot(xs.mean() - target[0], ys.mean() - target[1]) < 1.5


def test_face_cos_on_real_photos_counts_frames_without_a_face(tmp_path, monkeypatch):
    pytest.importorskip("mediapipe")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tiny_arcface(tmp_path / "arcface.onnx")
    person = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    empty = np.asarray(Image.fromarray(data.coffee()).resize((256, 256)))
    write_frames(tmp_path / "gen", [person, noisy([person], 8)[0], empty, person])
    write_frames(tmp_path / "gt", [person, person, person, empty])
    result = run(tmp_path / "gen", tmp_path / "gt", "--metrics", "face_cos", "--face-model", tmp_path / "arcface.onnx", "--json", tmp_path / "face.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "face.json").read_text())
    assert report["counts"] == {"face_frames": 3, "frames_without_face": 1, "generated_faces_not_found": 1}
    assert 0.5 < report["metrics"]["face_cos"] < 1.0  # the same face, a noisy one, and the right place without a face
    assert "arcface.onnx" in report["weights"]
    missing = run(tmp_path / "gen", tmp_path / "gt", "--metrics", "face_cos,ssim", "--weights-dir", tmp_path)
    assert missing.exit_code == 0 and "w600k_r50.onnx not found in" in missing.output and "buffalo_l.zip" in missing.output


def tiktok_dataset(root: Path, frames: int = 3) -> Path:
    """Two videos in the original test layout, 64x64: disco_test_set/<video>/*.png and their pose maps."""
    for video, seed in (("dance_1", 11), ("dance_2", 12)):
        pair = sample_pair(seed, 64, frames)
        images = list(pair.target_frames)
        if video == "dance_2":
            images[1] = np.zeros_like(images[1])  # a blank frame, skipped as the original does
        write_frames(root / "disco_test_set" / video, images, names=[f"{i + 1:04d}" for i in range(frames)])
        write_frames(root / "pose_map_disco_test_set" / video, [render_pose(pose, 64, 64) for pose in pair.target_poses],
                     names=[f"{i + 1:04d}" for i in range(frames)])  # fmt: skip
    return root


def test_dataset_protocol_generates_scores_and_resumes(tmp_path):
    dataset = tiktok_dataset(tmp_path / "TikTok")
    (tmp_path / "videos.txt").write_text("# the split\ndance_1\ndance_2\n")
    arguments = ["--dataset", dataset, "--model", DEMO_MODEL_DIR, "-o", tmp_path / "run", "--videos", tmp_path / "videos.txt",
                 "--size", 64, "--steps", 2, "--metrics", CHEAP, "--cache-dir", tmp_path / "cache"]  # fmt: skip
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["frames"] == 3 and report["videos"]["dance_1"]["frames"] == 2 and report["videos"]["dance_2"]["frames"] == 1
    assert any("dance_2: 1 blank frame" in note for note in report["notes"])
    assert sorted(p.name for p in (run_dir / "generated" / "dance_1").iterdir()) == ["0002.png", "0003.png"]
    assert Image.open(run_dir / "generated" / "dance_1" / "0002.png").size == (64, 64)
    truth = np.asarray(Image.open(run_dir / "ground_truth" / "dance_1" / "0003.png"))
    np.testing.assert_array_equal(truth, sample_pair(11, 64, 3).target_frames[2])  # 64x64 already: the crop is the frame
    assert report["protocol"]["settings"]["steps"] == 2 and report["protocol"]["settings"]["seed"] == 42
    first = (run_dir / "generated" / "dance_1" / "0003.png").read_bytes()
    again = run(*arguments, "--gt", "vae")  # resumes from the frame cache; scored against the VAE round trip
    assert again.exit_code == 0, again.output
    assert (run_dir / "generated" / "dance_1" / "0003.png").read_bytes() == first
    assert (run_dir / "ground_truth_vae" / "dance_1" / "0003.png").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["psnr"] != report["metrics"]["psnr"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("keep")
    refused = run(*arguments[:4], "-o", tmp_path / "foreign")
    assert refused.exit_code == 1 and "did not write" in refused.output


def test_a_missing_metric_package_is_one_line_saying_what_to_install(folders, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lpips", None)  # as if lpips were not installed: its import fails
    generated, truth = folders
    result = run(generated, truth, "--metrics", "lpips,ssim", "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["skipped"] == {"lpips": "needs the lpips package: pip install lpips"} and "ssim" in report["metrics"]
    nothing = run(generated, truth, "--metrics", "lpips")
    assert nothing.exit_code == 1 and "no metric can run: lpips: needs the lpips package: pip install lpips" in nothing.output

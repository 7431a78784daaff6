"""`magicpose train`: both stages on frame folders the tests make from a real photo, with the tiny model.

What each test runs is a real (tiny) training: real images, the real VAE/UNets/ControlNet, the real
optimiser and checkpoints. Resolution 32 keeps a step at a fraction of a second on a CPU.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skimage_data
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models import MagicPosePipeline, PromptEmbedding, tiny_components
from magicpose_cli.models.checkpoint_files import load_original_state_dict
from magicpose_cli.pose.keypoints import FramePose, PersonPose
from magicpose_cli.pose.render import render_pose
from magicpose_cli.training import PairDataset, TrainConfig, Trainer, find_training_videos, train
from magicpose_cli.training.checkpoints import latest_checkpoint, prune_checkpoints
from magicpose_cli.training.data import ORIGINAL_FRAMES_DIR, ORIGINAL_POSE_MAPS_DIR, PairChoice, square_crop_box
from magicpose_cli.training.stages import sample_generators
from magicpose_cli.training.stages import training_loss
from magicpose_cli.training.loss_log import read_loss_log

from conftest import FIXTURE_DIR

FRAME_WIDTH, FRAME_HEIGHT = 64, 80  # portrait, so training crops can move along the height
COMPONENTS = ("unet", "reference_unet", "controlnet", "vae")


def person_pose(frame: int) -> FramePose:
    """A standing person whose arms swing with ``frame``."""
    body = np.array(
        [(32, 15), (32, 25), (24, 25), (20, 35 + 2 * frame), (18, 45 + 2 * frame), (40, 25), (44, 35 - 2 * frame),
         (46, 45 - 2 * frame), (27, 50), (27, 62), (27, 75), (37, 50), (37, 62), (37, 75), (30, 13), (34, 13),
         (28, 14), (36, 14)], dtype=np.float32,
    )  # fmt: skip
    return FramePose(FRAME_WIDTH, FRAME_HEIGHT, [PersonPose(body=np.concatenate([body, np.ones((18, 1), np.float32)], 1))])


def astronaut_frame(video: int, frame: int) -> Image.Image:
    """A crop of the astronaut photo that drifts from frame to frame, like a moving camera."""
    top = 40 * video + 8 * frame
    return Image.fromarray(skimage_data.astronaut()[top : top + 400, 60:380]).resize((FRAME_WIDTH, FRAME_HEIGHT))


def make_frame_folders(root: Path, videos: int, frames: int, undetected: dict[int, set[int]] | None = None) -> Path:
    """The shared frame-folder layout: ``<video>/frames/NNNNN.png`` + ``<video>/poses/NNNNN.json``."""
    for video in range(videos):
        (root / f"clip{video}" / "frames").mkdir(parents=True)
        (root / f"clip{video}" / "poses").mkdir(parents=True)
        for frame in range(frames):
            astronaut_frame(video, frame).save(root / f"clip{video}" / "frames" / f"{frame:05d}.png")
            missing = frame in (undetected or {}).get(video, set())
            pose = FramePose(FRAME_WIDTH, FRAME_HEIGHT, []) if missing else person_pose(frame)
            pose.save(root / f"clip{video}" / "poses" / f"{frame:05d}.json")
    return root


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    return make_frame_folders(tmp_path_factory.mktemp("frames"), videos=2, frames=5)


@pytest.fixture(scope="module")
def init_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("init") / "model"
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(folder)
    return folder


def config(data: Path, model: Path, output: Path, **overrides) -> TrainConfig:
    settings = dict(resolution=32, batch_size=2, max_steps=2, checkpoint_every=0, sample_every=0, num_workers=0,
                    learning_rate=1e-3, seed=7)  # fmt: skip
    return TrainConfig(data=data, model=model, output_dir=output, **{"stage": "pose", **settings, **overrides})


def weights(model_dir: Path, component: str) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / component / "diffusion_pytorch_model.safetensors"))


def changed_components(before: Path, after: Path) -> set[str]:
    changed = set()
    for component in COMPONENTS:
        old, new = weights(before, component), weights(after, component)
        assert old.keys() == new.keys()
        if any(not torch.equal(old[key], new[key]) for key in old):
            changed.add(component)
    return changed


# --- data -----------------------------------------------------------------------------------------


def test_frame_folders_skip_undetected_frames_and_report_short_videos(tmp_path):
    data = make_frame_folders(tmp_path, videos=2, frames=3, undetected={0: {1}, 1: {0, 2}})
    scan = find_training_videos(data)
    assert [video.name for video in scan.videos] == ["clip0"]
    assert scan.videos[0].frame_numbers == (0, 2)
    assert scan.skipped == [("clip1", "1 usable frame(s), need 2")]


def test_original_layout_pairs_frames_with_their_pose_maps(tmp_path):
    for video in ("a", "b"):
        (tmp_path / ORIGINAL_FRAMES_DIR / video).mkdir(parents=True)
        (tmp_path / ORIGINAL_POSE_MAPS_DIR / video).mkdir(parents=True)
        for frame in range(3):
            astronaut_frame(0, frame).save(tmp_path / ORIGINAL_FRAMES_DIR / video / f"{frame:04d}.jpg")
            if not (video == "b" and frame > 0):  # video b has one pose map only
                Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), (0, 0, 255)).save(tmp_path / ORIGINAL_POSE_MAPS_DIR / video / f"{frame:04d}.jpg")
    scan = find_training_videos(tmp_path)
    assert [video.name for video in scan.videos] == ["a"] and [name for name, _ in scan.skipped] == ["b"]
    sample = PairDataset(scan.videos, 32, seed=0)[0]
    assert sample["pose_map"][2].mean() > 0.9 and sample["pose_map"][0].mean() < 0.1  # the blue map, in [0, 1]


def test_video_files_get_their_poses_from_extract_pose(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICPOSE_CACHE", str(tmp_path / "cache"))
    photo = skimage_data.astronaut()
    frames = [np.asarray(Image.fromarray(photo[8 * k : 8 * k + 480, 40:424]).resize((192, 240))) for k in range(4)]
    videos = tmp_path / "videos"
    videos.mkdir()
    imageio.mimwrite(videos / "astronaut.mp4", frames, fps=10, codec="libx264", macro_block_size=16)
    imageio.mimwrite(videos / "grey.mp4", [np.full((240, 192, 3), 128, np.uint8)] * 3, fps=10, codec="libx264", macro_block_size=16)
    scan = find_training_videos(videos)
    assert [(video.name, video.frames) for video in scan.videos] == [("astronaut.mp4", (0, 1, 2, 3))]
    assert [name for name, _ in scan.skipped] == ["grey.mp4"]
    sample = PairDataset(scan.videos, 64, seed=0)[0]
    assert sample["target"].shape == (3, 64, 64) and sample["pose_map"].max() > 0.5  # a drawn skeleton


def test_no_training_data_is_a_clear_error(tmp_path):
    with pytest.raises(MagicPoseError, match="no training data"):
        find_training_videos(tmp_path)


def test_pairs_respect_the_frame_gap_and_are_reproducible(frames_dir):
    videos = find_training_videos(frames_dir).videos
    dataset = PairDataset(videos, 32, seed=3, max_frame_gap=1)
    choices = [dataset.choose(index) for index in range(40)]
    assert all(abs(choice.reference - choice.target) == 1 for choice in choices)
    assert {choice.video for choice in choices[:2]} == {0, 1}  # each epoch visits every video once
    assert choices == [PairDataset(videos, 32, seed=3, max_frame_gap=1).choose(index) for index in range(40)]
    assert choices != [PairDataset(videos, 32, seed=4, max_frame_gap=1).choose(index) for index in range(40)]


def test_training_crops_move_along_the_height_and_keep_pose_aligned(frames_dir):
    videos = find_training_videos(frames_dir).videos
    boxes = {square_crop_box(FRAME_WIDTH, FRAME_HEIGHT, np.random.default_rng(seed)) for seed in range(30)}
    assert {left for left, _, _ in boxes} == {0} and len({top for _, top, _ in boxes}) > 5
    assert square_crop_box(FRAME_WIDTH, FRAME_HEIGHT, None) == (0, 8, 64)
    train_set = PairDataset(videos, 64, seed=0, max_frame_gap=1)
    for index in range(6):  # at full size the target crop is exact, so it must match a window of the frame
        choice, sample = train_set.choose(index), train_set[index]
        frame = np.asarray(Image.open(videos[choice.video].frames[choice.target]), dtype=np.float32) / 127.5 - 1
        target = sample["target"].permute(1, 2, 0).numpy()
        top = next(top for top in range(17) if np.allclose(frame[top : top + 64], target, atol=1e-5))
        rendered = render_pose(person_pose(choice.target), FRAME_WIDTH, FRAME_HEIGHT)[top : top + 64] / 255.0
        assert np.allclose(sample["pose_map"].permute(1, 2, 0).numpy(), rendered, atol=1e-5)
    evaluation = PairDataset(videos, 64, seed=0, train=False)
    frame = np.asarray(Image.open(videos[0].frames[0]), dtype=np.float32) / 127.5 - 1
    centred = evaluation.load(PairChoice(video=0, reference=0, target=1, random_crop=False), 0)["reference"]
    assert np.allclose(centred.permute(1, 2, 0).numpy(), frame[8:72], atol=1e-5)


# --- stages and engine ------------------------------------------------------------------------------


def test_appearance_stage_trains_only_the_appearance_model(frames_dir, init_model, tmp_path):
    trainer = Trainer(config(frames_dir, init_model, tmp_path / "run", stage="appearance"))
    model_dir = trainer.run()
    assert changed_components(init_model, model_dir) == {"reference_unet"}
    for component in ("unet", "controlnet", "vae"):  # the in-memory frozen parts too, not only the saved ones
        saved = weights(init_model, component)
        assert all(torch.equal(value, saved[key]) for key, value in trainer.pipeline.components[component].state_dict().items())
    losses = read_loss_log(tmp_path / "run")
    assert [row["step"] for row in losses] == [1, 2] and all(math.isfinite(row["loss"]) for row in losses)


def test_pose_stage_with_frozen_appearance_trains_only_the_controlnet(frames_dir, init_model, tmp_path):
    model_dir = train(config(frames_dir, init_model, tmp_path / "run", freeze_appearance=True))
    assert changed_components(init_model, model_dir) == {"controlnet"}


def test_controlnet_init_replaces_the_pose_controlnet(frames_dir, init_model, tmp_path):
    openpose = tmp_path / "openpose_controlnet"
    tiny_components(seed=1)["controlnet"].save_pretrained(openpose)
    model_dir = train(config(frames_dir, init_model, tmp_path / "run", stage="appearance", max_steps=1, controlnet_init=openpose))
    expected, saved = load_file(str(openpose / "diffusion_pytorch_model.safetensors")), weights(model_dir, "controlnet")
    assert all(torch.equal(expected[key], saved[key]) for key in expected)  # stage 1 carries it, untrained


def test_freezing_appearance_in_the_appearance_stage_is_refused(frames_dir, init_model, tmp_path):
    with pytest.raises(MagicPoseError, match="nothing to train"):
        train(config(frames_dir, init_model, tmp_path / "run", stage="appearance", freeze_appearance=True))


def test_resume_after_two_steps_equals_four_straight_steps(frames_dir, init_model, tmp_path):
    straight = train(config(frames_dir, init_model, tmp_path / "straight", max_steps=4))
    assert changed_components(init_model, straight) == {"controlnet", "reference_unet"}  # stage 2 trains both

    train(config(frames_dir, init_model, tmp_path / "resumed", max_steps=2))
    with pytest.raises(MagicPoseError, match="--resume"):
        train(config(frames_dir, init_model, tmp_path / "resumed", max_steps=4))
    resumed = train(config(frames_dir, init_model, tmp_path / "resumed", max_steps=4, resume=True))

    for component in ("controlnet", "reference_unet"):
        expected, actual = weights(straight, component), weights(resumed, component)
        assert all(torch.allclose(expected[key], actual[key], atol=1e-6, rtol=0) for key in expected), component
    assert read_loss_log(tmp_path / "straight") == read_loss_log(tmp_path / "resumed")


def test_gradient_checkpointing_changes_memory_not_results(frames_dir, init_model, tmp_path):
    plain = train(config(frames_dir, init_model, tmp_path / "plain", max_steps=1))
    checkpointed = train(config(frames_dir, init_model, tmp_path / "checkpointed", max_steps=1, gradient_checkpointing=True))
    for component in ("controlnet", "reference_unet"):
        expected, actual = weights(plain, component), weights(checkpointed, component)
        assert all(torch.allclose(expected[key], actual[key], atol=1e-6, rtol=0) for key in expected), component


def test_loss_falls_when_overfitting_a_few_pairs(frames_dir, init_model, tmp_path):
    trainer = Trainer(config(frames_dir, init_model, tmp_path / "run", max_steps=8, learning_rate=2e-3, max_frame_gap=1))
    fixed_batch = torch.utils.data.default_collate([trainer.dataset[index] for index in range(4)])

    def fixed_loss() -> float:
        with torch.no_grad():
            return np.mean([
                training_loss(trainer.loss_module, trainer.pipeline.vae, fixed_batch, trainer.prompt_embeds,
                              sample_generators(seed, list(range(4))), trainer.num_train_timesteps, uses_pose=True).item()
                for seed in range(4)
            ])  # fmt: skip

    before = fixed_loss()
    trainer.run()
    assert fixed_loss() < 0.95 * before


def test_cli_trains_samples_and_saves_a_model_that_generates(frames_dir, init_model, tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(frames_dir), "--stage", "pose", "--model", str(init_model), "-o", str(run_dir),
        "--resolution", "64", "--batch-size", "1", "--max-steps", "1", "--sample-every", "1", "--sample-count", "2",
        "--sample-steps", "2", "--num-workers", "0", "--ema",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(run_dir / "model") in result.output
    grid = Image.open(run_dir / "samples" / "step-000001.png")
    assert grid.size == (4 * 64, 2 * 64)  # reference | pose | generated | target, one row per pair
    pipeline = MagicPosePipeline.from_pretrained(run_dir / "model")
    sample = PairDataset(find_training_videos(frames_dir).videos, 64, seed=0, train=False)[0]
    frame = pipeline(
        reference_image=sample["reference"][None], pose_maps=sample["pose_map"][None], num_inference_steps=2,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images  # fmt: skip
    assert frame.shape == (1, 64, 64, 3) and np.isfinite(frame).all() and frame.std() > 0


def test_cli_reports_bad_input_in_one_line(tmp_path, init_model):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--stage", "dance", "--model", str(init_model), "-o", str(tmp_path / "r")], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "'dance' is not one of 'appearance', 'pose', 'motion'" in result.output


def test_only_the_newest_checkpoints_are_kept_and_resume_still_works(frames_dir, init_model, tmp_path):
    run_dir = tmp_path / "run"
    arguments = ["train", "--data", str(frames_dir), "--stage", "pose", "--model", str(init_model), "-o", str(run_dir),
                 "--resolution", "32", "--batch-size", "1", "--sample-every", "0", "--num-workers", "0",
                 "--checkpoint-every", "1", "--checkpoints-total-limit", "2"]  # fmt: skip
    result = CliRunner().invoke(app, [*arguments, "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    result = CliRunner().invoke(app, [*arguments, "--max-steps", "4", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "step 3" in result.output
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000003", "step-000004"]
    assert prune_checkpoints(run_dir, 0) == []  # 0 keeps them all
    assert [p.name for p in prune_checkpoints(run_dir, 1)] == ["step-000003"]
    assert latest_checkpoint(run_dir).name == "step-000004"


def _original_controlnet_file(path: Path, scale: float) -> Path:
    """The fixture's pose ControlNet as a separately published file (``control_model.*`` keys), its yaml beside it."""
    state = load_original_state_dict(FIXTURE_DIR / "model_state-tiny.th")
    prefix = "pose_control_model."
    torch.save({"control_model." + k.removeprefix(prefix): v * scale for k, v in state.items() if k.startswith(prefix)}, path)
    path.with_suffix(".yaml").write_text((FIXTURE_DIR / "model_config.yaml").read_text())
    return path


def test_a_changed_controlnet_init_file_is_converted_again(frames_dir, converted_tiny_dir, tmp_path):
    base = MagicPosePipeline.from_pretrained(converted_tiny_dir)
    init = tmp_path / "init"
    MagicPosePipeline(**{**base.components, "empty_prompt": PromptEmbedding(77, base.unet.config.cross_attention_dim)}).save_pretrained(init)
    controlnet_file, run_dir = tmp_path / "control_openpose.pth", tmp_path / "run"
    for scale in (1.0, 0.5):  # the same file name, other weights: the run must start from the new ones
        _original_controlnet_file(controlnet_file, scale)
        result = CliRunner().invoke(app, [
            "train", "--data", str(frames_dir), "--stage", "appearance", "--model", str(init), "-o", str(run_dir),
            "--controlnet-init", str(controlnet_file), "--resolution", "32", "--batch-size", "1", "--max-steps", "1",
            "--sample-every", "0", "--num-workers", "0",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        saved = weights(run_dir / "model", "controlnet")  # stage 1 carries the ControlNet untrained
        expected = base.controlnet.state_dict()
        assert all(torch.allclose(saved[key], expected[key] * scale) for key in expected), scale
        assert len(list((run_dir / "init_controlnet").iterdir())) == 1  # the stale conversion is gone
        shutil.rmtree(run_dir / "checkpoints")

"""The face pass: the pipeline's image-to-image entry, the steady face boxes, and retarget's second stage on the tiny model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_motion import tiny_adapter

from magicpose_cli.driving import load_driving_poses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.framing import fit_placement
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.motion import motion_transformers
from magicpose_cli.models.settings import RecommendedSettings
from magicpose_cli.pose.keypoints import FramePose, PersonPose
from magicpose_cli.pose.render import render_pose
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.face_boxes import HEAD_POINTS, cut_square, face_boxes, feathered_mask, frame_head
from magicpose_cli.retarget.face_pass import DEFAULT_FACE_MARGIN, face_plan_for_run
from magicpose_cli.synthetic import sample_pair

FRAMES = 6
REFERENCE_SIZE = 256  # the reference photo at 4x the canvas: its face has detail the 64x64 canvas lacks


def count_frames_per_call(module: torch.nn.Module) -> list[int]:
    calls = []
    def note(_module, args, kwargs):
        calls.append(kwargs["num_frames"] if "num_frames" in kwargs else (args[0] if args else kwargs["sample"]).shape[0])

    module.register_forward_pre_hook(note, with_kwargs=True)
    return calls


@pytest.fixture()
def pipe() -> MagicPosePipeline:
    pipe = MagicPosePipeline(**tiny_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_image_to_image_at_strength_1_is_the_plain_path_and_runs_the_last_steps_below(pipe):
    generator = torch.Generator().manual_seed(1)
    reference, poses, init = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1, torch.rand(3, 3, 64, 64, generator=generator), torch.rand(3, 3, 64, 64, generator=generator)

    def run(**image_to_image):
        return pipe(reference_image=reference, pose_maps=poses, num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                    output_type="pt", **image_to_image).images  # fmt: skip

    calls = count_frames_per_call(pipe.unet)
    plain = run()
    assert torch.equal(run(image=init, strength=1.0), plain) and len(calls) == 16  # 4 steps x 2 branches, twice
    half = run(image=list(init.permute(0, 2, 3, 1).mul(255).round().byte().numpy()), strength=0.5)  # uint8 frames take the same path
    assert len(calls) == 16 + 4 and not torch.equal(half, plain)  # the last 2 of 4 steps, guided
    untouched = run(image=init, strength=0.0)
    assert len(calls) == 20  # no step left: the init frames' latents decoded
    assert (untouched - init).abs().mean() < (plain - init).abs().mean()
    with pytest.raises(ValueError, match="init frames"):
        run(image=init[:2], strength=0.5)


def test_with_a_motion_module_the_clip_is_denoised_together_from_its_init_frames():
    pipe = MagicPosePipeline(**tiny_components(seed=0), motion_adapter=tiny_adapter(seed=1))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(1)
    reference, poses, init = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1, torch.rand(5, 3, 64, 64, generator=generator), torch.rand(5, 3, 64, 64, generator=generator)
    calls = count_frames_per_call(motion_transformers(pipe.unet)[0])
    pipe(reference_image=reference, pose_maps=poses, image=init, strength=0.5, num_inference_steps=4, output_type="latent")
    assert calls == [5] * 4  # the 2 steps left, 2 branches: all five crops in the one window every time


def jittered_poses(count: int, seed: int = 0) -> list[FramePose]:
    """The synthetic person's poses with face landmarks shaken by a few pixels each frame."""
    rng = np.random.default_rng(seed)
    poses = sample_pair(3, 64, count).target_poses
    for pose in poses:
        person = pose.people[0]
        present = person.face[:, 2] > 0
        person.face[present, :2] += rng.normal(0, 1.5, 2).astype(np.float32)
    return poses


def test_the_face_box_is_steady_one_size_and_follows_the_head_points_without_a_face():
    poses = jittered_poses(12)
    boxes = face_boxes(poses, DEFAULT_FACE_MARGIN)
    landmark_centres = np.stack([frame_head(pose)[0] for pose in poses])
    box_centres = boxes.corners + boxes.side / 2
    assert np.abs(np.diff(box_centres, axis=0)).sum() <= np.abs(np.diff(landmark_centres, axis=0)).sum() + 1  # + rounding
    assert np.abs(np.diff(box_centres, axis=0)).max() <= np.abs(np.diff(landmark_centres, axis=0)).max() + 1
    # No face landmarks: the nose, eyes and ears place it; nothing at all: the frame is not found.
    poses[3].people[0].face[:] = 0
    poses[5].people[0].face[:] = 0
    poses[5].people[0].body[HEAD_POINTS] = 0
    fallback = face_boxes(poses, DEFAULT_FACE_MARGIN)
    assert fallback.found.tolist() == [index != 5 for index in range(12)]
    assert face_boxes([FramePose(64, 64, [PersonPose()])], DEFAULT_FACE_MARGIN) is None


@pytest.fixture(scope="module")
def face_inputs(tmp_path_factory) -> Path:
    """A synthetic reference drawn at 256x256 (with its keypoints) and a 64x64 driving clip with face landmarks, in which
    frame 2 has no head at all and the heads are at the left edge (the boxes leave the frame)."""
    folder = tmp_path_factory.mktemp("face_pass")
    pair, small = sample_pair(5, REFERENCE_SIZE, FRAMES), sample_pair(5, 64, FRAMES)
    Image.fromarray(pair.reference_frame).save(folder / "reference.png")
    pair.reference_pose.save(folder / "reference.json")
    poses = small.target_poses
    poses[2].people[0].face[:] = 0
    poses[2].people[0].body[HEAD_POINTS] = 0
    for pose in poses:  # the person at the left edge: the face boxes leave the frame
        for part in pose.people[0].parts().values():
            part[part[:, 2] > 0, 0] -= 28
    (folder / "driving").mkdir()
    for index, pose in enumerate(poses):
        pose.save(folder / "driving" / f"{index:05d}.json")
    return folder


def face_options(folder: Path, tiny_model_dir: Path, name: str, **face) -> RetargetOptions:
    return RetargetOptions(
        model=tiny_model_dir, width=64, height=64, steps=2, batch_size=2, align=False, audio=False, overwrite=True,
        cache_root=folder / "cache", frames_dir=folder / name, reference_pose=folder / "reference.json", **face,
    )  # fmt: skip


def frames_of(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]


def test_the_face_pass_changes_only_the_feathered_face_boxes_and_resumes_to_the_same_bytes(face_inputs, tiny_model_dir):
    folder, notices = face_inputs, []
    run = lambda name, **face: retarget(folder / "reference.png", folder / "driving", folder / f"{name}.mp4",
                                        face_options(folder, tiny_model_dir, name, **face), on_notice=notices.append)  # fmt: skip
    run("main", face_pass=False)
    run("faces", face_pass=True, face_strength=0.5)
    assert "face pass: 5 of 6 frames" in notices
    main, faces = frames_of(folder / "main"), frames_of(folder / "faces")
    poses = load_driving_poses(folder / "driving").keypoints
    boxes = face_boxes(poses, DEFAULT_FACE_MARGIN)
    for index, (before, after) in enumerate(zip(main, faces)):
        left, top, side = boxes.box(index)
        blended = np.pad(feathered_mask(side) > 0, 64)[64 - top : 128 - top, 64 - left : 128 - left]  # the mask on the frame, clipped
        inside = blended if boxes.found[index] else np.zeros((64, 64), bool)
        assert np.array_equal(before[~inside], after[~inside]), index
        assert index == 2 or not np.array_equal(before, after), index  # frame 2 has no head: the main pass's pixels
    assert (boxes.corners[:, 0] < 0).any()  # boxes that leave the frame are clipped
    assert len(list((folder / "cache" / "frames").iterdir())) == 2  # the main frames' cache is the one without the pass

    run("zero", face_pass=True, face_strength=0.0)  # strength 0: the main pass's frames, byte for byte
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(folder / "zero"), main))

    [face_run] = [path for path in (folder / "cache" / "frames").iterdir() if "main_frames" in (path / "run.json").read_text()]
    for index in (1, 4):
        (face_run / f"{index:05d}.png").unlink()
    run("resumed", face_pass=True, face_strength=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(folder / "resumed"), faces))


def test_the_reference_face_is_cut_from_the_full_resolution_photo(face_inputs):
    folder = face_inputs
    reference = np.asarray(Image.open(folder / "reference.png"))
    driving = load_driving_poses(folder / "driving")
    options = RetargetOptions(face_pass=True, face_size=64, reference_pose=folder / "reference.json")
    plan, _ = face_plan_for_run(options, RecommendedSettings(), driving, driving.placement(64, 64, "stretch"), reference, folder / "reference.png")
    centre, size = frame_head(FramePose.load(folder / "reference.json"))
    side = round(size * (1 + 2 * DEFAULT_FACE_MARGIN))
    left, top = np.rint(centre - side / 2).astype(int)
    assert side > 64  # more photo pixels than the face canvas has
    assert np.array_equal(plan.reference_face, cut_square(reference, left, top, side, 64))
    canvas = fit_placement(REFERENCE_SIZE, REFERENCE_SIZE, 64, 64, "stretch").place_image(reference)
    from_canvas = cut_square(canvas, round(left / 4), round(top / 4), round(side / 4), 64)
    assert np.abs(np.diff(plan.reference_face.astype(float), axis=1)).mean() > np.abs(np.diff(from_canvas.astype(float), axis=1)).mean()


def test_face_pass_on_pose_maps_needs_keypoints(face_inputs, tiny_model_dir, tmp_path):
    (tmp_path / "maps").mkdir()
    for index, pose in enumerate(load_driving_poses(face_inputs / "driving").keypoints[:2]):
        Image.fromarray(render_pose(pose)).save(tmp_path / "maps" / f"{index:05d}.png")
    options = replace(face_options(face_inputs, tiny_model_dir, "maps"), face_pass=True, frames_dir=None, cache_root=tmp_path)
    with pytest.raises(MagicPoseError, match=r"--face-pass cannot apply to a folder of rendered pose maps.*video or OpenPose JSON") as error:
        retarget(face_inputs / "reference.png", tmp_path / "maps", tmp_path / "out.mp4", replace(options, align=None))
    assert "\n" not in str(error.value)


def test_the_face_options_read_from_a_jobs_file_and_the_page_and_bad_values_are_one_line(tmp_path):
    from magicpose_cli.retarget.batch import read_jobs
    from magicpose_cli.retarget.options import validate_options
    from magicpose_cli.ui.settings import options_from

    jobs = tmp_path / "jobs.toml"
    jobs.write_text('face-pass = true\nface-strength = 0.4\n[[jobs]]\nreference = "a.png"\ndriving = "d"\noutput = "o.mp4"\nface-size = 128\n')
    [job] = read_jobs(jobs)
    assert (job.options.face_pass, job.options.face_strength, job.options.face_size) == (True, 0.4, 128)
    page = options_from({"face_pass": "off", "face_strength": "0.3", "face_margin": ""})
    assert (page.face_pass, page.face_strength, page.face_margin) == (False, 0.3, None)
    assert options_from({"face_pass": ""}).face_pass is None  # empty: the model's advice
    for bad, message in [({"face_strength": 1.5}, "--face-strength must be between 0 and 1"), ({"face_size": 100}, "--face-size must be a positive multiple of 64"),
                         ({"reference_pose": tmp_path / "none.json"}, "is not a file")]:  # fmt: skip
        with pytest.raises(MagicPoseError, match=message) as error:
            validate_options(RetargetOptions(**bad))
        assert "\n" not in str(error.value)

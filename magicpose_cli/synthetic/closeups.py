"""Close-ups: synthetic people drawn large and cut around the head, as a face pass sees a face.

A full-body frame at the demo model's 64x64 gives the face about 8 pixels, too few to learn a face
from. A close-up draws the person ``zoom`` times larger, cuts a square around the face box (one size
per video, the centre smoothed, as the face pass chooses its crops) and scales it to the training
size; its keypoints are moved into the crop, so its pose map shows the face landmarks (and whatever
limbs pass through the crop). The videos have the layout of :func:`write_dataset`, so
``magicpose train`` reads a folder of both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import Progress

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.metrics.face_region import face_boxes
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.synthetic.datasets import SyntheticPair, sample_pair, write_video_folder
from magicpose_cli.synthetic.drawing import draw_person
from magicpose_cli.synthetic.identity import Identity, sample_identity
from magicpose_cli.synthetic.motion import Motion, motion_poses, sample_motion

STREAM_CLOSEUPS = 2  # datasets.py draws training videos from stream 0 and evaluation pairs from stream 1
# Box side over the face landmarks' extent, drawn per video: the face pass's margin is a user's choice.
FACE_SCALE_RANGE = (1.6, 2.6)


def cut_around_faces(frames: list[np.ndarray], poses: list[FramePose], size: int, face_scale: float) -> tuple[list[np.ndarray], list[FramePose]]:
    """Each frame's face box (one size for the video, the centre smoothed) cut out and scaled to ``size``, with its keypoints."""
    height, width = frames[0].shape[:2]
    squares = [box.inside(width, height) for box in face_boxes([pose.people[0].face for pose in poses], scale=face_scale)]
    crops = [np.asarray(Image.fromarray(frame[top : top + side, left : left + side]).resize((size, size), Image.BOX))
             for frame, (left, top, side) in zip(frames, squares)]  # fmt: skip
    scales = [np.float32(size / side) for _, _, side in squares]
    return crops, [pose.moved(scale, -np.array([left, top], np.float32) * scale, size, size)
                   for pose, (left, top, _), scale in zip(poses, squares, scales)]  # fmt: skip


def render_closeup(identity: Identity, motion: Motion, size: int, zoom: int, face_scale: float) -> tuple[list[np.ndarray], list[FramePose]]:
    """Frames (``size`` x ``size``) and keypoints of ``identity``'s head performing ``motion``."""
    large = size * zoom
    poses = motion_poses(identity, motion, large, large)
    return cut_around_faces([draw_person(identity, pose.people[0], large, large) for pose in poses], poses, size, face_scale)


def closeup_pair(seed: int, size: int = 64, num_frames: int = 8, zoom: int = 5, face_scale: float = 2.0) -> SyntheticPair:
    """:func:`sample_pair`'s evaluation case seen through close-ups: the reference's face crop (cut from
    the reference drawn ``zoom`` times larger) and the ground truth's, with its keypoints in the crops."""
    large = sample_pair(seed, size * zoom, num_frames)
    (reference,), (reference_pose,) = cut_around_faces([large.reference_frame], [large.reference_pose], size, face_scale)
    target_frames, target_poses = cut_around_faces(large.target_frames, large.target_poses, size, face_scale)
    return replace(large, reference_frame=reference, reference_pose=reference_pose, target_frames=target_frames,
                   target_poses=target_poses, driving_frames=[], driving_poses=[])  # fmt: skip


def write_closeups(out_dir: str | Path, num_videos: int, frames_per_video: int, size: int = 64, zoom: int = 5,
                   seed: int = 0, progress: bool = True) -> list[Path]:  # fmt: skip
    """Write ``num_videos`` close-up videos as ``out_dir/closeup_<index:05d>/`` (frames, poses, meta.json).

    People come from their own random stream (none is a full-body training person or an evaluation
    person); the same seed writes the same bytes. Returns the video folders.
    """
    if num_videos < 1 or frames_per_video < 1 or zoom < 1:
        raise MagicPoseError(f"need at least one video, one frame and a zoom of 1, got {num_videos}, {frames_per_video}, {zoom}")
    out_dir = Path(out_dir)
    folders = [out_dir / f"closeup_{index:05d}" for index in range(num_videos)]
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("drawing synthetic close-ups", total=num_videos)
        for index, folder in enumerate(folders):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), STREAM_CLOSEUPS, index]))
            identity, motion = sample_identity(rng), sample_motion(rng, frames_per_video)
            face_scale = float(rng.uniform(*FACE_SCALE_RANGE))
            frames, poses = render_closeup(identity, motion, size, zoom, face_scale)
            meta = {"seed": int(seed), "video_index": index, "width": size, "height": size, "zoom": zoom, "face_scale": face_scale,
                    "identity": identity.to_json(), "motion": motion.to_json()}  # fmt: skip
            write_video_folder(folder, zip(frames, poses), meta)
            bar.advance(task)
    return folders

"""Training clips for the motion stage: a run of frames of one video, their pose maps, and a reference frame.

A clip is ``clip_frames`` frames of one video, every ``clip_stride``-th usable frame (AnimateDiff
trains on 16 frames at a stride of 4), from a start drawn at random; the reference is another
frame of the same video, as in the image stages. All frames of a clip share one crop, so the clip
moves as the video does. Which clip sample ``index`` gets is a pure function of ``(seed, index)``,
so a resumed run draws exactly the clips the first run would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.pose_maps import PoseMapProcessor
from magicpose_cli.training.data import PairDataset, TrainingVideo, _crop_resize, _to_signed_tensor, square_crop_box

STREAM_CLIP = 4  # a random stream of its own (data.py uses 1 and 2, the engine 3)


def clip_span(clip_frames: int, clip_stride: int) -> int:
    """How many usable frames a clip spans: the shortest video it can come from."""
    return (clip_frames - 1) * clip_stride + 1


@dataclass(frozen=True)
class ClipChoice:
    """Which video, reference frame and clip frames a sample uses, and whether its crops are random."""

    video: int
    reference: int
    frames: tuple[int, ...]
    random_crop: bool


class ClipDataset(PairDataset):
    """Sample ``index`` -> ``{"reference": 3xSxS, "target": F x 3xSxS}`` in [-1, 1] and ``"pose_map"``
    (F x 3xSxS in [0, 1]); videos are visited in the epoch order of :class:`PairDataset`."""

    def __init__(self, videos: list[TrainingVideo], resolution: int, seed: int, clip_frames: int, clip_stride: int, train: bool = True):
        super().__init__(videos, resolution, seed, None, train)
        if clip_frames < 1 or clip_stride < 1:
            raise MagicPoseError(f"--clip-frames and --clip-stride must be at least 1, got {clip_frames} and {clip_stride}")
        short = [video.name for video in videos if len(video) < clip_span(clip_frames, clip_stride)]
        if short:
            raise MagicPoseError(f"{short[0]} has fewer than the {clip_span(clip_frames, clip_stride)} frames a clip spans")
        self.clip_frames, self.clip_stride = clip_frames, clip_stride

    def choose(self, index: int) -> ClipChoice:
        video_index = self._video_of(index)
        video = self.videos[video_index]
        rng = np.random.default_rng([self.seed, STREAM_CLIP, index])
        start = int(rng.integers(len(video) - clip_span(self.clip_frames, self.clip_stride) + 1))
        frames = tuple(range(start, start + self.clip_frames * self.clip_stride, self.clip_stride))
        return ClipChoice(video_index, int(rng.integers(len(video))), frames, random_crop=self.train)

    def load(self, choice: ClipChoice, index: int) -> dict[str, torch.Tensor]:
        video = self.videos[choice.video]
        rng = np.random.default_rng([self.seed, STREAM_CLIP, index, 1]) if choice.random_crop else None
        reference = self._reader.frame(video, choice.reference)
        frames = [self._reader.frame(video, position) for position in choice.frames]
        height, width = frames[0].shape[:2]
        reference_box, clip_box = square_crop_box(reference.shape[1], reference.shape[0], rng), square_crop_box(width, height, rng)
        poses = [self._reader.pose_map(video, position, width, height) for position in choice.frames]
        return {
            "reference": _to_signed_tensor(_crop_resize(reference, reference_box, self.resolution)),
            "target": torch.stack([_to_signed_tensor(_crop_resize(frame, clip_box, self.resolution)) for frame in frames]),
            "pose_map": torch.stack([PoseMapProcessor.to_tensor(_crop_resize(pose, clip_box, self.resolution)) for pose in poses]),
        }


def evaluation_clip(clip_frames: int, clip_stride: int) -> ClipChoice:
    """The fixed clip of the sample strips: the first video's first clip, its first frame the reference."""
    return ClipChoice(0, 0, tuple(range(0, clip_frames * clip_stride, clip_stride)), random_crop=False)

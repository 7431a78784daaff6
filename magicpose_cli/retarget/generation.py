"""Generating retarget's frames into the frame cache, batch by batch, so that a run resumes exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import Progress

import magicpose_cli
from magicpose_cli.distributed import Processes
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.framing import FitMode
from magicpose_cli.hashing import hash_arrays, hash_file, hash_folder
from magicpose_cli.models.pipeline import frame_batches
from magicpose_cli.retarget.options import Sampling


def open_frame_cache(
    cache_root: Path,
    model_folder: Path,
    reference_path: Path,
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    fit: FitMode,
    sampling: Sampling,
) -> FrameCache:
    """The cache folder of this exact run, keyed by everything that decides its frames.

    The pose maps are drawn one by one for the hash, never all held at once.
    """
    settings = {
        "size": list(reference_canvas.shape[:2]),
        "fit": FitMode(fit).value,
        "magicpose": magicpose_cli.__version__,  # a new release may compute other pixels
        **sampling.key(),
    }
    key = run_key(
        model=hash_folder(model_folder, cache_root),
        reference_file=hash_file(reference_path),
        reference_canvas=hash_arrays([reference_canvas]),
        poses=hash_arrays(pose_maps),
        settings=settings,
    )
    description = {"model": str(model_folder), "reference": str(reference_path), "frames": len(pose_maps), **settings}
    return FrameCache(cache_root, key, description)


def generate_missing_frames(
    load: Callable[[], object],
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    cache: FrameCache,
    sampling: Sampling,
    progress: Progress,
    on_batch_saved: Callable[[int, int], None] | None = None,
    processes: Processes = Processes(),
) -> int:
    """Generate every batch that has a frame missing from the cache; returns the frames generated (by all processes).

    ``load()`` gives the pipeline (only called when this process has a batch to make). A batch is
    regenerated whole, from the same shared noise, so every frame is computed exactly as in an
    uninterrupted run and a resumed video has the same bytes. Several processes deal the missing
    batches between them (the main process's list, so all agree) and need no communication until
    the last one is done; the main process's bar counts every process's frames.
    """
    batches = frame_batches(len(pose_maps), sampling.batch_size)
    missing = processes.broadcast([index for index, frames in enumerate(batches) if not all(cache.has(i) for i in frames)])
    mine = set(processes.share(missing))
    frames_task = progress.add_task("denoising frames", total=len(pose_maps), completed=cache.count(len(pose_maps)))

    def show_all_frames() -> None:  # other processes' frames too
        progress.update(frames_task, completed=cache.count(len(pose_maps)))

    def make_mine() -> int:
        if not mine:
            return 0
        import torch

        steps_task = progress.add_task("denoising steps", total=sampling.steps)
        made = load().generate_batches(
            reference_image=reference_canvas, pose_maps=pose_maps, num_inference_steps=sampling.steps,
            guidance_scale=sampling.guidance, guidance_mode=sampling.guidance_mode,
            generator=torch.Generator("cpu").manual_seed(sampling.seed), frames_per_batch=sampling.batch_size,
            output_type="np", callback_on_step_end=partial(count_step, progress, steps_task),
            skip_batch=lambda frames: frames.start // sampling.batch_size not in mine,
        )  # fmt: skip
        try:
            return save_batches(made, cache, lambda frames: after_batch(frames, steps_task))
        finally:
            progress.remove_task(steps_task)  # the per-step bar belongs to the batch under way; none is, now

    def after_batch(frames: range, steps_task) -> None:
        show_all_frames()
        progress.reset(steps_task, total=sampling.steps)
        if on_batch_saved is not None:
            on_batch_saved(frames.start // sampling.batch_size, len(batches))

    generated = processes.everywhere(make_mine, while_waiting=show_all_frames)
    show_all_frames()
    return sum(processes.gather(generated))


def count_step(progress: Progress, steps_task, _pipeline, step_index, _timestep, callback_kwargs):
    """The pipeline's step callback: the per-step bar follows the batch under way."""
    progress.update(steps_task, completed=step_index + 1)
    return callback_kwargs


def save_batches(batches, cache: FrameCache, after_batch: Callable[[range], None]) -> int:
    """Each ``(frame indices, images)`` of the pipeline into the cache as it comes; returns the frames saved."""
    saved = 0
    for frames, images in batches:
        for index, image in zip(frames, images):
            cache.save(index, to_uint8(image))
        saved += len(frames)
        after_batch(frames)
    return saved


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float HxWx3 image in [0,1] as uint8, rounding to nearest."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


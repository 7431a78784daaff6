"""Generating retarget's frames into the frame cache, batch by batch, so that a run resumes exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import Progress

import magicpose_cli
from magicpose_cli.distributed import Processes
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.framing import FitMode
from magicpose_cli.hashing import hash_arrays, hash_file, hash_folder
from magicpose_cli.images import to_uint8
from magicpose_cli.models.pipeline import frame_batches
from magicpose_cli.retarget.motion import VideoStateFile
from magicpose_cli.retarget.options import Sampling


def open_frame_cache(
    cache_root: Path,
    model_folder: Path,
    reference_path: Path,
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    fit: FitMode,
    sampling: Sampling,
    motion_module: Path | None = None,
) -> FrameCache:
    """The cache folder of this exact run, keyed by everything that decides its frames.

    The pose maps are drawn one by one for the hash, never all held at once. A run without a
    motion module has the key it had before motion modules existed.
    """
    settings = {
        "size": list(reference_canvas.shape[:2]),
        "fit": FitMode(fit).value,
        "magicpose": magicpose_cli.__version__,  # a new release may compute other pixels
        **sampling.key(),
    }
    motion = {} if motion_module is None else {"motion_module": hash_folder(motion_module, cache_root)}
    key = run_key(
        model=hash_folder(model_folder, cache_root),
        reference_file=hash_file(reference_path),
        reference_canvas=hash_arrays([reference_canvas]),
        poses=hash_arrays(pose_maps),
        settings=settings,
        **motion,
    )
    where = {"model": str(model_folder), **({"motion_module": str(motion_module)} if motion_module else {})}
    description = {**where, "reference": str(reference_path), "frames": len(pose_maps), **settings}
    return FrameCache(cache_root, key, description)


@dataclass(frozen=True)
class Redrawing:
    """A second pass over frames already made (the face pass): the pipeline's init frames ``image``
    and ``strength``, and ``finish(index, redrawn)``, the frame that goes to the cache."""

    image: Sequence
    strength: float
    finish: Callable[[int, np.ndarray], np.ndarray]
    label: str


def generate_missing_frames(
    load: Callable[[], object],
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    cache: FrameCache,
    sampling: Sampling,
    progress: Progress,
    on_batch_saved: Callable[[int, int], None] | None = None,
    on_state_saved: Callable[[int, int], None] | None = None,
    processes: Processes = Processes(),
    redrawing: Redrawing | None = None,
) -> int:
    """Generate every batch that has a frame missing from the cache; returns the frames generated (by all processes).

    ``load()`` gives the pipeline (only called when this process has work). Without a motion module a
    batch is regenerated whole, from the same noise, so every frame is computed exactly as in an
    uninterrupted run and a resumed video has the same bytes; with one, the whole video's denoising
    state is saved after every step (``on_state_saved(steps done, steps)`` hears of it) and a rerun
    goes on from it (retarget/motion.py). Several processes deal the missing batches between them
    (the main process's list, so all agree); without a motion module they need no communication
    until the last one is done, with one they share each step's context windows. The main process's
    bar counts every process's frames. ``redrawing``: redraw frames from the ones given instead (image-to-image).
    """
    batches = frame_batches(len(pose_maps), sampling.batch_size)
    missing = processes.broadcast([index for index, frames in enumerate(batches) if not all(cache.has(i) for i in frames)])
    frames_task = progress.add_task(redrawing.label if redrawing else "denoising frames", total=len(pose_maps), completed=cache.count(len(pose_maps)))

    def show_all_frames() -> None:  # other processes' frames too
        progress.update(frames_task, completed=cache.count(len(pose_maps)))

    def make_mine() -> int:
        if not processes.share(missing) and (sampling.motion is None or not missing):  # with a module, all denoise
            return 0
        import torch

        steps_task, wanted = progress.add_task("denoising steps", total=sampling.steps), set(missing)
        made = load().generate_batches(
            reference_image=reference_canvas, pose_maps=pose_maps, num_inference_steps=sampling.steps,
            guidance_scale=sampling.guidance, guidance_mode=sampling.guidance_mode,
            generator=torch.Generator("cpu").manual_seed(sampling.seed), frames_per_batch=sampling.batch_size,
            output_type="np", callback_on_step_end=partial(count_step, progress, steps_task),
            skip_batch=lambda frames: frames.start // sampling.batch_size not in wanted, processes=processes,
            guidance_interval=sampling.guidance_interval, deep_reuse_interval=sampling.deep_reuse,
            appearance_reuse_interval=sampling.appearance_reuse,
            **({"image": redrawing.image, "strength": redrawing.strength} if redrawing else {}),
            **noise_and_motion_arguments(sampling, cache, on_state_saved if processes.is_main else None, processes.is_main),
        )  # fmt: skip
        try:
            return save_batches(made, cache, lambda frames: after_batch(frames, steps_task), redrawing and redrawing.finish)
        finally:
            progress.remove_task(steps_task)  # the per-step bar belongs to the batch under way; none is, now

    def after_batch(frames: range, steps_task) -> None:
        show_all_frames()
        progress.reset(steps_task, total=sampling.steps)
        if on_batch_saved is not None:
            on_batch_saved(frames.start // sampling.batch_size, len(batches))

    generated = processes.everywhere(make_mine, while_waiting=show_all_frames)
    if sampling.motion is not None and missing:
        processes.on_main(VideoStateFile(cache).remove)  # every frame is in the cache now
    show_all_frames()
    return sum(processes.gather(generated))


def count_step(progress: Progress, steps_task, _pipeline, step_index, _timestep, callback_kwargs):
    """The pipeline's step callback: the per-step bar follows the batch under way."""
    progress.update(steps_task, completed=step_index + 1)
    return callback_kwargs


def save_batches(batches, cache: FrameCache, after_batch: Callable[[range], None], finish=None) -> int:
    """Each ``(frame indices, images)`` of the pipeline into the cache as it comes (made into frames by
    ``finish(index, image)`` if given); returns the frames saved."""
    saved = 0
    for frames, images in batches:
        for index, image in zip(frames, images):
            cache.save(index, finish(index, to_uint8(image)) if finish else to_uint8(image))
        saved += len(frames)
        after_batch(frames)
    return saved


def noise_and_motion_arguments(
    sampling: Sampling, cache: FrameCache, on_state_saved: Callable[[int, int], None] | None, saves_state: bool = True
) -> dict:
    """The pipeline's noise, and with a motion module its settings and the state that resumes and is
    saved each step (by the main process alone where several share the run: they hold the same state)."""
    if sampling.motion is None:
        return {"noise": sampling.noise}
    video_state = VideoStateFile(cache)

    def save(state) -> None:
        video_state.save(state)
        if on_state_saved is not None:
            on_state_saved(state.steps_done, state.total_steps)

    arguments = {"noise": sampling.noise, **sampling.motion.pipeline_arguments(), "resume_state": video_state.load()}
    return {**arguments, "on_state": save if saves_state else None}


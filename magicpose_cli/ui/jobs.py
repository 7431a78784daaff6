"""The work behind the page, free of Gradio: the retarget a click runs, the previews, their progress.

A job is ``retarget`` itself (the code `magicpose retarget` runs), with the loaded model kept
between jobs and the frame cache under the same root, so pressing Retarget again after a crash or
a closed tab regenerates only the frames that are missing. The page runs one job at a time
(page.py queues the rest), so nothing here runs twice at once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.progress import Progress, Task

from magicpose_cli.cache import check_cache_root
from magicpose_cli.encode import write_video
from magicpose_cli.files import default_cache_root
from magicpose_cli.framing import FitMode, side_by_side, training_scale_size
from magicpose_cli.model_store import DEMO_MODEL_DIR, DEMO_MODEL_NOTICE, configured_model, configured_setting
from magicpose_cli.models.loading import LoadedPipelines
from magicpose_cli.motion_store import MOTION_ENVIRONMENT_VARIABLE
from magicpose_cli.pose.people import FollowedPerson, draw_followed
from magicpose_cli.retarget import RetargetOptions, RetargetSummary, load_reference_image, retarget
from magicpose_cli.retarget.run import read_driving_poses
from magicpose_cli.video import FrameSource

PREVIEW_SHORT_SIDE = 256  # the skeleton preview is for looking at the motion, not for its pixels
STEPS_TASK = "denoising steps"  # retarget's per-step bar, shown as part of the frames' bar


class ProgressRelay(Progress):
    """A rich Progress that draws nothing and tells ``on_change(fraction, line)`` of the part under
    way whenever a task moves (see ``describe_progress``). Within a part the fraction never goes
    back: a batch's frames are counted a moment before its step bar starts again."""

    def __init__(self, on_change: Callable[[float | None, str], None]):
        super().__init__(disable=True)
        self._on_change = on_change
        self._shown: tuple[int | None, float | None] = (None, None)

    def _changed(self) -> None:
        part, fraction, line = describe_progress(self.tasks)
        shown_part, shown_fraction = self._shown
        if fraction is not None and shown_fraction is not None and part == shown_part:
            fraction = max(fraction, shown_fraction)
        self._shown = (part, fraction)
        self._on_change(fraction, line)


def _relayed(name: str) -> Callable:
    """Progress's method ``name``, then the relay's report."""

    def method(self: ProgressRelay, *args, **kwargs):
        result = getattr(Progress, name)(self, *args, **kwargs)
        self._changed()
        return result

    return method


for _name in ("add_task", "update", "advance", "reset", "remove_task"):  # every way a task moves
    setattr(ProgressRelay, _name, _relayed(_name))


@contextmanager
def shown_as_task(progress: Progress, description: str) -> Iterator[None]:
    """Work of unknown length shown as a task while it runs (loading a model)."""
    task = progress.add_task(description, total=None)
    try:
        yield
    finally:
        progress.remove_task(task)


def describe_progress(tasks: list[Task]) -> tuple[int | None, float | None, str]:
    """The part under way, the newest task but the step bar: its id, the fraction done (None while
    its length is unknown) and a line such as ``denoising frames 4/16, step 7/20`` (the steps of the
    batch under way count as one frame)."""
    parts = [task for task in tasks if task.description != STEPS_TASK]
    if not parts:
        return None, None, "starting"
    part = parts[-1]
    if not part.total:
        return part.id, None, part.description
    done, line = part.completed, f"{part.description} {part.completed:.0f}/{part.total:.0f}"
    steps = next((task for task in tasks if task.description == STEPS_TASK), None)
    if part.description == "denoising frames" and steps is not None and steps.total and part.completed < part.total:
        done += steps.completed / steps.total if steps.completed < steps.total else 0.0  # a finished bar: its frames come next
        line += f", step {steps.completed:.0f}/{steps.total:.0f}"
    return part.id, min(done / part.total, 1.0), line


def describe_summary(summary: RetargetSummary) -> str:
    reused = f", {summary.cache_hits} from the frame cache" if summary.cache_hits else ""
    return (
        f"done: {summary.frames} frames at {summary.fps:g} fps ({summary.generated} generated{reused}), "
        f"audio {summary.audio_codec or 'none'}, {summary.seconds:.1f} s"
    )


def default_model_line() -> str:
    """What an empty Model box runs: the configured model, else the demo model with its notice."""
    configured = configured_model()
    if configured is not None:
        return f"Model box empty: {configured[0]} (from {configured[1]})"
    if (DEMO_MODEL_DIR / "model_index.json").is_file():
        return f"Model box empty: {DEMO_MODEL_NOTICE}"
    return "Model box empty: no model is configured; give one"


def default_motion_line() -> str:
    """What an empty Motion module box runs, as `retarget` without --motion-module finds it."""
    configured = configured_setting("motion_module", MOTION_ENVIRONMENT_VARIABLE)
    if configured is not None:
        return f"Motion module box empty: {configured[0]} (from {configured[1]})"
    return "Motion module box empty: none is configured, each frame is denoised on its own"


def beside_the_followed(driving: Path, followed: FollowedPerson, maps: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """Each pose map after its driving frame with the followed person boxed: whose poses these are."""
    source = FrameSource(driving)
    for index, box, pose_map in zip(followed.source_indices, followed.boxes, maps):
        yield side_by_side([draw_followed(source.frame(index), box), pose_map], pose_map.shape[0])


class Engine:
    """Runs the page's jobs: retarget into ``output_dir``, previews into ``scratch_dir``.

    One at a time, whatever Gradio's queue does: a job whose caller went away (a cancelled API
    call) runs on to its end in its thread, keeping its frames, and the next one waits for it
    instead of sharing the loaded networks with it.
    """

    def __init__(self, output_dir: Path, scratch_dir: Path, cache_root: Path | None = None):
        self.output_dir, self.scratch_dir, self.cache_root = Path(output_dir), Path(scratch_dir), cache_root
        self.pipelines = LoadedPipelines(loading=lambda folder: shown_as_task(self._progress, f"loading the model {folder.name}"))
        self._progress = Progress(disable=True)  # the running job's
        self._previews = itertools.count(1)
        self._running = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._running.locked()

    @contextmanager
    def one_at_a_time(self, progress: Progress) -> Iterator[None]:
        if not self._running.acquire(blocking=False):
            with shown_as_task(progress, "waiting for the job before this one to finish"):
                self._running.acquire()
        try:
            yield
        finally:
            self._running.release()

    def show_reference(self, reference: str | Path) -> np.ndarray:
        """The reference as retarget reads it (upright, transparency on white)."""
        return load_reference_image(Path(reference))

    def preview_poses(self, reference: str | Path, driving: str | Path, options: RetargetOptions, progress: Progress) -> Path:
        """The driving skeleton fitted to the reference body, as retarget will use it, drawn as a video at the driving frame rate."""
        cache_root = check_cache_root(Path(self.cache_root) if self.cache_root else default_cache_root())
        with self.one_at_a_time(progress):
            poses = read_driving_poses(Path(driving), options, load_reference_image(Path(reference)), progress, cache_root)
            width, height = training_scale_size(poses.canvas_width, poses.canvas_height, PREVIEW_SHORT_SIDE)
            maps = poses.pose_maps(poses.placement(width, height, FitMode.stretch), face=options.face, hands=options.hands)
            frames = iter(maps) if poses.followed is None else beside_the_followed(Path(driving), poses.followed, maps)
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            path = self.scratch_dir / f"poses-{next(self._previews)}.mp4"
            drawing = progress.add_task("drawing poses", total=len(maps))
            write_video(frames, path, fps=poses.fps, on_frame=lambda: progress.advance(drawing))
        return path

    def retarget(self, reference: str | Path, driving: str | Path, options: RetargetOptions, progress: Progress, notes: list[str]) -> Path:
        """One job: the result video (at the driving frame rate, with its audio) in ``output_dir``;
        what retarget tells the user goes to ``notes``, line by line."""
        reference, driving = Path(reference), Path(driving)
        with self.one_at_a_time(progress):
            output = self.free_output_path(f"{reference.stem}-{driving.stem}")
            self._progress = progress
            summary = retarget(
                reference, driving, output, options, on_notice=notes.append, on_detail=notes.append, progress=progress,
                pipelines=self.pipelines,
            )  # fmt: skip
        notes.append(describe_summary(summary))
        return summary.output

    def free_output_path(self, stem: str) -> Path:
        """``output_dir/STEM.mp4``, or STEM-2.mp4, ...: a job never replaces an earlier result."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = itertools.chain([f"{stem}.mp4"], (f"{stem}-{number}.mp4" for number in itertools.count(2)))
        return next(self.output_dir / name for name in names if not (self.output_dir / name).exists())

"""The page: the uploads, the settings, the previews, the Retarget button, its progress and the
result, each event handed to :class:`magicpose_cli.ui.jobs.Engine`.

The reference is uploaded as a plain file (Gradio's image component would decode it itself and
fail with its own traceback on a broken file); retarget reads it, and the page shows it as read.
Errors a user can act on (MagicPoseError, and the file system's) become one line in the page and
nothing in the terminal. Retarget and the pose preview share one worker: one job at a time, the
others queued with their place shown.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.ui.jobs import Engine, ProgressRelay, default_model_line, default_motion_line
from magicpose_cli.ui.settings import SETTINGS, options_from

PANEL_LINES = {"model": default_model_line, "motion": default_motion_line}  # what an empty box in the panel means
ENGINE_QUEUE = "engine"  # the concurrency group of the events that run the networks or the pose detector
INTRO = """# magicpose
Make the person in a photo perform the motion of a video. Upload both, check the poses (extracted
from the video and fitted to the photo's body), press **Retarget**. This runs `magicpose retarget` on this
machine; finished frames are kept, so pressing Retarget again after a crash or a closed tab resumes."""


@dataclass
class JobLog:
    """The notes of a session's latest job, kept in that session's state so that they survive an error."""

    lines: list[str] = field(default_factory=list)


@contextmanager
def errors_as_lines(*uploads: str | None) -> Iterator[None]:
    """A MagicPoseError or an OSError becomes the page's error line, without a traceback anywhere;
    an uploaded file is named as the user named it, not by Gradio's temporary copy. Only markup is
    escaped (the page shows the line as HTML), so quotes stay quotes in the notes and the API."""
    try:
        yield
    except (MagicPoseError, OSError) as error:
        message = str(error)
        for upload in filter(None, uploads):
            message = message.replace(str(upload), Path(upload).name)
        raise gr.Error(html.escape(message, quote=False), duration=None, print_exception=False) from None


def with_settings(fn: Callable, leading: list[str], trailing: tuple[str, ...] = ()) -> Callable:
    """``fn(*leading, settings, *trailing, progress=...)`` as the event Gradio calls: its signature has
    the ``leading`` inputs, one parameter per row of SETTINGS (the API's names, each None, the
    option's default, when left out), the ``trailing`` ones (states, which the API does not show),
    and the gr.Progress that Gradio passes last. ``settings`` is a dict by name."""

    def event(*values):
        *inputs, progress = values
        first, rest = inputs[: len(leading)], inputs[len(leading) :]
        chosen = {setting.name: value for setting, value in zip(SETTINGS, rest)}
        return fn(*first, chosen, *rest[len(SETTINGS) :], progress=progress)

    def parameter(name: str, **default) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, **default)

    settings = [parameter(setting.name, default=None) for setting in SETTINGS]
    tracker = parameter("progress", default=gr.Progress())
    event.__signature__ = inspect.Signature([*map(parameter, leading), *settings, *(parameter(name, default=None) for name in trailing), tracker])
    event.__name__ = fn.__name__
    return event


def relay_to(progress: gr.Progress) -> ProgressRelay:
    """Retarget's progress on the page; a part of unknown length shows as 0 % done, since Gradio's
    page shows a description only beside a fraction (with None, a spinner alone)."""
    return ProgressRelay(lambda fraction, line: progress(0.0 if fraction is None else fraction, desc=line))


def settings_panel(model_default: str) -> dict[str, gr.components.Component]:
    """One control per row of SETTINGS, grouped by panel; ``model_default`` is the Model box's first value."""
    controls = {}
    with gr.Accordion("Settings", open=True):
        for panel in dict.fromkeys(setting.panel for setting in SETTINGS):
            with gr.Row():
                for setting in (setting for setting in SETTINGS if setting.panel == panel):
                    if setting.name == "model":
                        setting = dataclasses.replace(setting, value=model_default or None)
                    controls[setting.name] = control = setting.kind.control(gr, setting)
                    control.elem_id = f"setting-{setting.name}"
            if panel in PANEL_LINES:
                gr.Markdown(html.escape(PANEL_LINES[panel]()))
    return controls


def build_page(engine: Engine, model_default: str = "") -> gr.Blocks:
    """The Blocks app; ``model_default`` fills the Model box (empty: as configured, else the demo model)."""

    def show_reference(reference):
        if reference is None:
            return None
        with errors_as_lines(reference):
            return engine.show_reference(reference)

    def preview_poses(reference, driving, settings, progress):
        if reference is None or driving is None:
            return None
        with errors_as_lines(reference, driving):
            return engine.preview_poses(reference, driving, options_from(settings), relay_to(progress))

    def retarget(reference, driving, settings, log, progress):
        log.lines.clear()
        try:
            with errors_as_lines(reference, driving):
                if reference is None or driving is None:
                    raise MagicPoseError("upload a reference photo and a driving video first")
                options = options_from(settings, cache_root=engine.cache_root)
                return engine.retarget(reference, driving, options, relay_to(progress), log.lines)
        except gr.Error as error:
            log.lines.append(f"error: {html.unescape(error.message)}")
            raise

    with gr.Blocks(title="magicpose", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            with gr.Column():
                reference = gr.File(label="Reference photo", type="filepath", elem_id="reference")
                reference_view = gr.Image(label="The photo as retarget reads it", interactive=False, height=220, elem_id="reference-view")
            driving = gr.Video(label="Driving video", sources=["upload"], height=360, elem_id="driving")
            skeleton = gr.Video(label="Poses, fitted to the photo's body", interactive=False, loop=True, autoplay=True, height=360, elem_id="skeleton")
        controls = settings_panel(model_default)
        button = gr.Button("Retarget", variant="primary", elem_id="retarget")
        with gr.Row():
            result = gr.Video(label="Result", interactive=False, buttons=["download"], height=420, elem_id="result")
            notes = gr.Textbox(label="Notes", lines=8, interactive=False, elem_id="notes")
        log = gr.State(JobLog())

        settings = list(controls.values())
        reference.change(show_reference, reference, reference_view, api_visibility="private")
        gr.on(
            [reference.change, driving.change, *(controls[name].change for name in ("face", "hands", "max_frames", "person", "drive", "face_from"))],
            with_settings(preview_poses, ["reference", "driving"]), [reference, driving, *settings], skeleton,
            api_visibility="private", trigger_mode="always_last", concurrency_id=ENGINE_QUEUE, concurrency_limit=1,
        )  # fmt: skip
        job = button.click(
            with_settings(retarget, ["reference", "driving"], ("log",)), [reference, driving, *settings, log], result,
            api_name="retarget", concurrency_id=ENGINE_QUEUE, concurrency_limit=1,
        )  # fmt: skip
        for after in (job.success, job.failure):  # not .then: Gradio's page runs it after successes only
            after(lambda log: "\n".join(log.lines), log, notes, api_visibility="private")
    return page

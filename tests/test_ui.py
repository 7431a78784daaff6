"""`magicpose ui` end to end: the page driven by Debian's Chromium through Playwright, the
`/retarget` endpoint through gradio_client, and a server killed mid-run whose frames a new one resumes.

Needs the `ui` extra, playwright and /usr/bin/chromium (`.ci/run` installs them); without them the
tests are skipped here, and fail under CI. Set MAGICPOSE_UI_SCREENSHOT=docs/ui.png to write the
README's screenshot.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.progress import Progress
from skimage.data import astronaut
from test_encode import make_video, probe_video
from test_motion import tiny_adapter


def need(module: str):
    """The module, or a skip (a failure under CI, which installs everything these tests need)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def connect(url: str):
    """A gradio_client Client that reports nothing to anyone (it sends usage data unless told not to)."""
    return need("gradio_client").Client(url, verbose=False, analytics_enabled=False)


os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1")  # as the app sets them, for the client too
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
QUICK = {"size": 64, "steps": 2}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sliding_person(path: Path, count: int) -> Path:
    """A real photo of a person sliding right in a 4:3 frame, ``count`` frames at 8 fps, with sound."""
    person = np.asarray(Image.fromarray(astronaut()[:, 64:448]).resize((180, 240)))
    frames = []
    for index in range(count):
        canvas = np.full((240, 320, 3), 230, np.uint8)
        canvas[:, 40 + 4 * index : 220 + 4 * index] = person
        frames.append(canvas)
    return make_video(path, frames, fps=8, audio=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ui_inputs")
    Image.new("RGB", (96, 96), (120, 160, 200)).save(folder / "sky.png")  # no person in it
    (folder / "broken.png").write_bytes(b"not an image at all")
    Image.new("1", (20000, 9000)).save(folder / "huge.png")  # 180 megapixels in 30 kB
    return {
        "dance": sliding_person(folder / "dance.mp4", 4), "long_dance": sliding_person(folder / "long_dance.mp4", 16),
        "sound": folder / "dance.wav",  # the dance's sound track alone: no video stream
        **{path.stem: path for path in folder.glob("*.png")},
    }  # fmt: skip


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A tiny random motion module (MotionAdapter folder) for the tiny model."""
    folder = tmp_path_factory.mktemp("motion") / "adapter"
    tiny_adapter(seed=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def running_app(tmp_path_factory, tiny_model_dir):
    need("gradio")
    from magicpose_cli.ui.server import start_app

    root = tmp_path_factory.mktemp("ui_app")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio"))  # uploads and served copies: under the test's folder
    app = start_app(port=free_port(), output_dir=root / "results", cache_root=root / "cache", model_default=str(tiny_model_dir))
    yield app
    app.close()


def test_the_page_retargets_in_chromium_shows_errors_and_stays_usable(running_app, reference_png, inputs, tmp_path, capfd):
    """With the Model box emptied the demo model runs, at its own advice (64x64, 20 steps)."""
    sync_api = need("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        tabs = browser.new_context(viewport={"width": 1280, "height": 900})
        requested = []
        tabs.on("request", lambda request: requested.append(request.url))
        page = open_with_inputs(tabs, running_app.url, reference_png, inputs["dance"])
        page.locator("#skeleton video").wait_for(timeout=90_000)  # the poses, extracted and fitted, before any generation
        page.locator("#retarget").click()
        notes = page.locator("#notes textarea")
        sync_api.expect(notes).to_have_value(containing("done: 4 frames at 8 fps (4 generated)"), timeout=120_000)
        assert "using the tiny demo model" in notes.input_value()  # the CLI's notice

        video = page.locator("#result video")
        duration = video.evaluate("v => v.play().then(() => v.duration)")
        assert duration == pytest.approx(4 / 8, abs=0.15)
        with urllib.request.urlopen(urllib.parse.urljoin(running_app.url, video.get_attribute("src"))) as response:
            (tmp_path / "served.mp4").write_bytes(response.read())
        served = probe_video(tmp_path / "served.mp4")
        assert (len(served["frames"]), served["fps"], served["audio_codec"]) == (4, 8.0, "aac")
        page.screenshot(path=tmp_path / "ui.png", full_page=True)
        save_screenshot(tmp_path / "ui.png")

        first_poses = page.locator("#skeleton video").get_attribute("src")
        upload_reference(page, inputs["sky"])
        page.locator("#retarget").click()
        sync_api.expect(notes).to_have_value(containing("error: no person found in the reference image"), timeout=60_000)
        sync_api.expect(page.get_by_text("no person found in the reference image").first).to_be_visible()

        upload_reference(page, reference_png)
        page.locator(f'#skeleton video:not([src="{first_poses}"])').wait_for(timeout=60_000)  # its preview done: the engine is free
        page.locator("#setting-seed").get_by_role("textbox").fill("9")
        with running_app.engine.one_at_a_time(Progress(disable=True)):  # the engine busy, as with another tab's long job
            page.locator("#retarget").click()
            sync_api.expect(page.locator("#result")).to_contain_text("waiting for the job before this one to finish", timeout=30_000)
            again = open_with_inputs(tabs, running_app.url, reference_png, inputs["dance"], seed="9")
            again.locator("#retarget").click()
            sync_api.expect(again.locator("#result")).to_contain_text(re.compile(r"queue: \d+/\d+"), timeout=30_000)  # its place in line
            page.close()  # the tab goes; its job runs on once the engine is free
        again_notes = again.locator("#notes textarea")
        sync_api.expect(again_notes).to_have_value(containing("(0 generated, 4 from the frame cache)"), timeout=120_000)
        browser.close()
    assert all(url.startswith((running_app.url, "data:", "blob:")) for url in requested), sorted(set(requested))
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def open_with_inputs(tabs, url: str, reference: Path, driving: Path, seed: str = "0"):
    """A new tab with both files uploaded, the Model box emptied (the demo model) and the seed set."""
    page = tabs.new_page()
    page.goto(url)
    page.locator("#reference input[type=file]").set_input_files(reference)
    page.locator("#driving input[type=file]").set_input_files(driving)
    page.locator("#reference").get_by_label(reference.name).wait_for()  # its row in the file list: the upload is done
    page.locator("#driving video").wait_for()
    page.locator("#setting-model").get_by_role("textbox").fill("")
    page.locator("#setting-seed").get_by_role("textbox").fill(seed)
    return page


def upload_reference(page, path: Path) -> None:
    """Replace the reference photo, and wait until the upload is done."""
    page.locator("#reference button[aria-label=Clear]").click()
    page.locator("#reference input[type=file]").set_input_files(path)
    page.locator("#reference").get_by_label(path.name).wait_for()


def containing(text: str) -> re.Pattern:
    return re.compile(re.escape(text))


def save_screenshot(path: Path) -> None:
    """The README's screenshot, in 128 colours to stay small, where MAGICPOSE_UI_SCREENSHOT asks for one."""
    target = os.environ.get("MAGICPOSE_UI_SCREENSHOT")
    if target:
        image = Image.open(path).convert("RGB")
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_the_retarget_endpoint_returns_the_video_queues_jobs_and_answers_errors_in_one_line(running_app, reference_png, inputs, adapter_dir, capfd):
    client_module = need("gradio_client")
    client = connect(running_app.url)
    upload = client_module.handle_file
    result = client.predict(upload(reference_png), upload(inputs["dance"]), **QUICK, seed=3, api_name="/retarget")
    video = probe_video(Path(result))
    assert (len(video["frames"]), video["fps"], video["audio_codec"], video["size"]) == (4, 8.0, "aac", (64, 64))
    loads = running_app.engine.pipelines.loads

    first = client.submit(upload(reference_png), upload(inputs["dance"]), **QUICK, seed=4, api_name="/retarget")
    second = connect(running_app.url).submit(
        upload(reference_png), upload(inputs["dance"]), **QUICK, seed=5, api_name="/retarget"
    )
    seen = set()
    while not second.done():
        status = second.status()
        seen.add((status.code.name, status.rank))
        time.sleep(0.05)
    assert first.done() and ("IN_QUEUE", 0) in seen  # the second waited behind the first, told its place
    assert len(probe_video(Path(second.result()))["frames"]) == 4
    assert running_app.engine.pipelines.loads == loads  # three jobs, one model loaded once

    moving = client.predict(upload(reference_png), upload(inputs["dance"]), **QUICK, motion_module=str(adapter_dir), api_name="/retarget")
    assert len(probe_video(Path(moving))["frames"]) == 4 and running_app.engine.pipelines.loads == loads + 1  # with the module: another pipeline

    cases = [
        (inputs["sky"], inputs["dance"], {}, "no person found in the reference image to fit the driving poses to; --no-align uses "
         "them as they are (in the app: untick Fit the poses to the photo's body)"),  # quotes as quotes, not &#x27;
        (inputs["broken"], inputs["dance"], {}, f"cannot read reference image {inputs['broken'].name}: "),  # not Gradio's copy's path
        (reference_png, inputs["sound"], {}, "not a video that ffmpeg can decode"),
        (inputs["huge"], inputs["dance"], {}, "is too large to read safely"),
        (reference_png, inputs["dance"], {"motion_module": str(adapter_dir / "missing")}, "motion module not found: "),
        (reference_png, inputs["dance"], {"motion_module": str(adapter_dir), "no_motion": True}, "--no-motion and --motion-module contradict"),
    ]
    for reference, driving, settings, line in cases:
        with pytest.raises(client_module.exceptions.AppError, match=re.escape(line)):
            client.predict(upload(reference), upload(driving), **QUICK, **settings, api_name="/retarget")
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_magicpose_ui_prints_its_address_and_a_new_server_resumes_a_killed_ones_frames(tiny_model_dir, reference_png, inputs, tmp_path):
    client_module = need("gradio_client")
    from magicpose_cli.ui.server import start_app

    port, cache = free_port(), tmp_path / "cache"
    command = [sys.executable, "-m", "magicpose_cli", "ui", "-q", "--port", str(port), "--model", str(tiny_model_dir),
               "--cache-dir", str(cache), "--output-dir", str(tmp_path / "results")]  # fmt: skip
    environment = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        assert server.stdout.readline().strip() == f"http://127.0.0.1:{port}"
        client = connect(f"http://127.0.0.1:{port}")
        client.submit(client_module.handle_file(reference_png), client_module.handle_file(inputs["long_dance"]), size=64, steps=4, api_name="/retarget")
        deadline = time.monotonic() + 120
        while len(cached_frames(cache)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.kill()  # a crash: no chance to clean up
    early = {path.name: path.stat().st_mtime_ns for path in cached_frames(cache)}
    assert 4 <= len(early) < 16, f"{len(early)} frames cached: the first batch (4 frames) should be and the last not yet"
    assert "Traceback" not in server.communicate()[1]

    app = start_app(port=free_port(), output_dir=tmp_path / "results", cache_root=cache, model_default=str(tiny_model_dir))
    try:
        client = connect(app.url)
        result = client.predict(client_module.handle_file(reference_png), client_module.handle_file(inputs["long_dance"]), size=64, steps=4, api_name="/retarget")
    finally:
        app.close()
    assert len(probe_video(Path(result))["frames"]) == 16
    assert {path.name: path.stat().st_mtime_ns for path in cached_frames(cache) if path.name in early} == early  # kept, not made again


def cached_frames(cache: Path) -> list[Path]:
    """The frames in the frame cache, not the temporary files a frame is written to before its rename."""
    return [path for path in cache.glob("frames/*/*.png") if not path.name.startswith(".")]

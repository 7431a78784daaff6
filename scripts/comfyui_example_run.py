"""Run docs/comfyui/retarget_api.json in a running ComfyUI and picture the workflow (docs/comfyui.md, "A run in ComfyUI").

Queues the API workflow over ComfyUI's HTTP API (POST /prompt), waits for its history entry and
prints what each output node wrote; then, with --screenshot, opens ComfyUI's page in headless
Chromium (Playwright), loads the same workflow into the graph, saves the page as a PNG and the
graph in ComfyUI's UI workflow format (--ui-workflow). ComfyUI must already be serving on --url,
with the MagicPose nodes installed and the workflow's input files in its input folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import urllib.request
import uuid
from pathlib import Path

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "comfyui" / "retarget_api.json"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"]


def call(url: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def queue_and_wait(url: str, workflow: dict, timeout: float) -> dict:
    """Queue ``workflow`` and return its history entry once ComfyUI has finished it."""
    queued = call(f"{url}/prompt", {"prompt": workflow, "client_id": str(uuid.uuid4())})
    prompt_id = queued["prompt_id"]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        history = call(f"{url}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            print(f"prompt {prompt_id}: {entry['status']['status_str']} after {time.monotonic() - started:.1f} s")
            return entry
        time.sleep(1.0)
    raise SystemExit(f"prompt {prompt_id} did not finish in {timeout:.0f} s")


def picture(url: str, workflow: dict, screenshot: Path, ui_workflow: Path | None) -> None:
    """The workflow loaded in ComfyUI's page, as a PNG (and, asked for, the graph in the UI format)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        page.goto(url)
        page.wait_for_function("window.app && window.app.graph", timeout=120_000)
        page.evaluate("async (workflow) => { await window.app.loadApiJson(workflow, 'retarget_api.json'); }", workflow)
        page.wait_for_timeout(3000)
        if ui_workflow is not None:
            graph = page.evaluate("() => window.app.graph.serialize()")
            ui_workflow.write_text(json.dumps(graph, indent=1) + "\n")
        page.screenshot(path=str(screenshot))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--workflow", type=Path, default=WORKFLOW)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the run")
    parser.add_argument("--no-run", action="store_true", help="only the picture")
    parser.add_argument("--screenshot", type=Path, help="save the page with the workflow loaded here (PNG)")
    parser.add_argument("--ui-workflow", type=Path, help="save the loaded graph here, in ComfyUI's UI workflow format")
    arguments = parser.parse_args()
    workflow = json.loads(arguments.workflow.read_text())
    if not arguments.no_run:
        entry = queue_and_wait(arguments.url, workflow, arguments.timeout)
        for node_id, outputs in entry.get("outputs", {}).items():
            print(f"node {node_id} ({workflow[node_id]['class_type']}): {json.dumps(outputs)}")
    if arguments.screenshot is not None:
        picture(arguments.url, workflow, arguments.screenshot, arguments.ui_workflow)


if __name__ == "__main__":
    main()

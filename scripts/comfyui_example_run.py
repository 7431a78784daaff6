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
APP = "(window.app ?? window.comfyAPI?.app?.app)"  # the page's app object: newer frontends keep it under comfyAPI only
LITEGRAPH = "(window.LiteGraph ?? window.__COMFY_LITEGRAPH_INSTANCE__)"
# The API format has no positions: lay the graph out in columns.
LAYOUT = f"""() => {{
    const app = {APP}, graph = app.canvas.graph;
    graph.arrange(80);
    app.canvas.setDirty(true, true);
}}"""
OFFLINE_SCRIPT = "window.ace = window.ace || {config: {set() {}}};"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"]


def call(url: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return json.loads(body) if body else {}


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
        page = browser.new_page(viewport={"width": 2300, "height": 1000})
        # Offline, a page script fetched from a CDN never loads; the pip fork's eval_python extension awaits
        # ace.js from one at start-up and would hold the whole page back, so it gets a stand-in.
        page.route("https://**/*", lambda route: route.fulfill(status=200, content_type="text/javascript", body=OFFLINE_SCRIPT))
        page.route("**/object_info", patch_object_info)
        page.goto(url)
        page.wait_for_function(f"!!({APP}?.canvas?.graph && {LITEGRAPH}?.registered_node_types?.MagicPoseRetarget)", timeout=300_000)
        page.evaluate(f"async (workflow) => {{ await {APP}.loadApiJson(workflow, 'retarget_api.json'); }}", workflow)
        page.wait_for_timeout(5000)  # the previews of the loaded image and video take their room first
        page.evaluate(LAYOUT)
        page.wait_for_timeout(2000)
        graph = with_fixed_seed(page.evaluate(f"async () => (await {APP}.graphToPrompt()).workflow"))
        page.evaluate(f"async (graph) => {{ await {APP}.loadGraphData(graph); }}", graph)
        page.wait_for_timeout(5000)
        if ui_workflow is not None:
            ui_workflow.write_text(json.dumps(graph, indent=1) + "\n")
        page.screenshot(path=str(screenshot))
        browser.close()


def with_fixed_seed(value):
    """The UI workflow with the seed kept as given: the page's default control draws a new seed every run."""
    if isinstance(value, dict):
        return {key: with_fixed_seed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_fixed_seed(item) for item in value]
    return "fixed" if value == "randomize" else value


def patch_object_info(route) -> None:
    """The node definitions as the page asks for them, each with a python_module: the pip fork leaves two of
    its own nodes without one, on which this frontend's set-up stops before the graph is drawn."""
    definitions = route.fetch().json()
    for definition in definitions.values():
        definition["python_module"] = definition.get("python_module") or "nodes"
    route.fulfill(json=definitions)


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

"""Serving the page on this machine: its address printed, nothing sent anywhere else.

Gradio reports usage to its makers unless told not to and can open share links through their
servers; the app turns both off, asks the Hub for no telemetry, renders no page on a Node server
and opens no browser. The page itself loads only from this server (its fonts are Gradio's own).
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860  # Gradio's usual port
DEFAULT_OUTPUT_DIR = Path("magicpose-ui")
QUIET_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # Gradio's usage reports and version check (gradio/analytics.py)
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
INSTALL_HINT = "magicpose ui needs Gradio, which is not installed: pip install 'magicpose-cli[ui]'"


@dataclass
class RunningApp:
    page: object  # gradio.Blocks
    url: str
    engine: object  # magicpose_cli.ui.jobs.Engine
    scratch: tempfile.TemporaryDirectory

    def close(self) -> None:
        self.page.close()
        self.scratch.cleanup()


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds before Gradio tries it (its own message names its API)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: a recently closed port is free
        try:
            probe.bind((host, port))
        except OSError as error:
            raise MagicPoseError(f"cannot listen on {url_of(host, port)}: {error.strerror}; {_listening_fix(error, host)}") from None


def _listening_fix(error: OSError, host: str) -> str:
    """What to change when the server cannot listen: the port when it is taken or reserved, else the host."""
    if error.errno == errno.EADDRINUSE:
        return "another program listens there: pass another --port"
    if error.errno == errno.EACCES:
        return f"ports below 1024 need administrator rights: pass --port {DEFAULT_PORT}"
    return f"{host} is not an address of this machine: pass --host {DEFAULT_HOST} (this machine only) or one of its addresses"


def import_gradio():
    """Gradio, quietened, or the line that says how to install it."""
    os.environ.update(QUIET_ENVIRONMENT)
    try:
        import gradio
    except ImportError:
        raise MagicPoseError(INSTALL_HINT) from None
    return gradio


def start_app(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, output_dir: Path = DEFAULT_OUTPUT_DIR,
    cache_root: Path | None = None, model_default: str = "",
) -> RunningApp:  # fmt: skip
    """Serve the page in the background (for ``serve`` and the tests); ``close()`` stops it."""
    import_gradio()
    check_port(host, port)
    from magicpose_cli.ui.jobs import Engine
    from magicpose_cli.ui.page import build_page

    output_dir = Path(output_dir).expanduser().resolve()
    scratch = tempfile.TemporaryDirectory(prefix="magicpose-ui-")
    engine = Engine(output_dir, Path(scratch.name), cache_root)
    page = build_page(engine, model_default)
    page.queue(default_concurrency_limit=1)
    page.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True, quiet=True,
        show_error=True, allowed_paths=[str(output_dir), scratch.name], ssr_mode=False, mcp_server=False,
    )  # fmt: skip
    return RunningApp(page, url_of(host, port), engine, scratch)


def serve(on_ready: Callable[[RunningApp], None], **settings) -> bool:
    """Serve the page until Ctrl-C, which stops it (a normal end, not an error); True when a job
    was under way then (its thread cannot be stopped: the caller must end the process)."""
    app = start_app(**settings)
    try:
        on_ready(app)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cut_short = app.engine.busy
        app.close()
    return cut_short

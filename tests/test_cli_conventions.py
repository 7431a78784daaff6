"""The conventions every command keeps: --version, -q/-v, exit codes, plain text off a terminal or with
NO_COLOR, and progress bars that end finished."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_retarget import QUICK, json_folder, run_cli  # noqa: F401  (json_folder: a fixture)
from typer.testing import CliRunner

import magicpose_cli
from magicpose_cli.cli import app

COMMANDS = sorted(command.name for command in app.registered_commands)
ESCAPE = re.compile(r"\x1b\[")
CURSOR_MOVES = re.compile(r"\x1b\[\d*[ABK]|\r")  # up, down, erase line, carriage return: a bar redrawn in place


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"magicpose {magicpose_cli.__version__}\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_quiet_verbose_and_lists_the_exit_codes(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for text in ("--quiet", "-q", "--verbose", "-v", "Exit codes: 0 done; 1 a problem", "2 wrong usage", "130 interrupted"):
        assert text in result.output, (name, text)


def test_exit_codes_usage_2_user_error_1(tmp_path):
    assert CliRunner().invoke(app, ["retarget", "--no-such-option"]).exit_code == 2
    assert CliRunner().invoke(app, ["retarget", "-q", "-v", "a.png", "b.mp4", "-o", str(tmp_path / "o.mp4")]).exit_code == 2
    missing = CliRunner().invoke(app, ["retarget", str(tmp_path / "absent.png"), str(tmp_path), "-o", str(tmp_path / "o.mp4")])
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines() == [f"error: reference image not found: {tmp_path / 'absent.png'} (check the path)"]


def test_a_finished_run_shows_finished_bars_and_plain_text_off_a_terminal(tiny_model_dir, reference_png, json_folder, tmp_path):
    """Off a terminal (CliRunner's streams are none) the bars are drawn once, finished; the per-step
    bar of the last batch is gone; no terminal codes. The same from the cache."""
    arguments = [reference_png, json_folder, "-o", tmp_path / "out.mp4", "--model", tiny_model_dir, "--no-align", *QUICK]
    for run in ("generated", "cached"):
        result = run_cli(*arguments, "--cache-dir", tmp_path / "cache", "--overwrite")
        assert result.exit_code == 0, result.output
        assert not ESCAPE.search(result.stderr) and "\r" not in result.stderr, run
        bars = [line.split() for line in result.stderr.splitlines() if line.startswith(("denoising", "encoding"))]
        assert [(bar[0], bar[1], bar[-3]) for bar in bars] == [("denoising", "frames", "5/5"), ("encoding", "━" * 40, "5/5")], (run, result.stderr)


def test_quiet_prints_only_the_output_path_and_verbose_the_sources_and_timings(tiny_model_dir, reference_png, json_folder, tmp_path):
    arguments = [reference_png, json_folder, "-o", tmp_path / "out.mp4", "--model", tiny_model_dir, "--no-align", *QUICK]
    quiet = run_cli(*arguments, "--cache-dir", tmp_path / "cache", "-q")
    assert quiet.exit_code == 0, quiet.output
    assert (quiet.stdout, quiet.stderr) == (f"{tmp_path / 'out.mp4'}\n", "")
    verbose = run_cli(*arguments, "--cache-dir", tmp_path / "cache", "--overwrite", "-v")
    assert verbose.exit_code == 0, verbose.output
    for text in ("steps 2 (given)", "guidance 7.0 (default)", "device cpu (auto), dtype float32 (auto)", f"model: {tiny_model_dir} (--model)",
                 "frame cache: ", "timings: finding the model", "generation", "retarget took"):  # fmt: skip
        assert text in verbose.stderr, text


def run_in_terminal(arguments: list[str], env: dict[str, str]) -> str:
    """What a real terminal would show of ``python -m magicpose_cli ARGUMENTS`` (stdout and stderr)."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "magicpose_cli", *arguments], stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert process.wait(timeout=300) == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_no_color_in_a_terminal_gives_plain_text_without_animation(tiny_model_dir, reference_png, json_folder, tmp_path):
    arguments = ["retarget", str(reference_png), str(json_folder), "--model", str(tiny_model_dir), "--no-align", *QUICK, "--cache-dir", str(tmp_path / "cache")]
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"} | {"COLUMNS": "120", "TERM": "xterm-256color"}
    animated = run_in_terminal([*arguments, "-o", str(tmp_path / "a.mp4")], env)
    assert CURSOR_MOVES.search(animated.replace("\r\n", "\n")), "a terminal without NO_COLOR animates (the test's control)"
    plain = run_in_terminal([*arguments, "-o", str(tmp_path / "b.mp4"), "--force"], env | {"NO_COLOR": "1"})
    assert not ESCAPE.search(plain) and not CURSOR_MOVES.search(plain.replace("\r\n", "\n")), plain
    assert "denoising frames" in plain and "5/5" in plain

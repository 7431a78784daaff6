"""`magicpose cache` on a cache root filled by the real writers: frames, extracted poses, a converted model."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from skimage import data as skimage_data
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.frame_cache import FrameCache
from magicpose_cli.models.conversion import convert_checkpoint
from magicpose_cli.driving import default_work_dir
from magicpose_cli.pose.extract import PoseSettings, extract_poses

from conftest import FIXTURE_DIR

DAY = 24 * 3600


def write_frames(root: Path, key: str, count: int, age_days: float = 0.0) -> Path:
    """A retarget run's cached frames (crops of a real photo), last written ``age_days`` ago."""
    cache = FrameCache(root, key, {"test": key})
    photo = skimage_data.astronaut()
    for index in range(count):
        cache.save(index, photo[index * 16 : index * 16 + 64, 100:164])
    when = cache.folder.stat().st_mtime - age_days * DAY
    for path in [cache.folder, *cache.folder.iterdir()]:
        os.utime(path, (when, when))
    return cache.folder


@pytest.fixture
def filled_cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MAGICPOSE_CACHE", str(root))
    write_frames(root, "run-a", 3)
    write_frames(root, "run-b", 2)
    video = tmp_path / "dance.mp4"
    frames = [np.ascontiguousarray(skimage_data.astronaut()[8 * k : 8 * k + 256, 128:384]) for k in range(2)]
    imageio.mimwrite(video, frames, fps=10, codec="libx264", macro_block_size=16)
    extract_poses(video, default_work_dir(video), settings=PoseSettings(smooth=False), write_maps=False)
    convert_checkpoint(FIXTURE_DIR / "model_state-tiny.th", root / "models" / "tiny", FIXTURE_DIR / "model_config.yaml")
    (root / "notes.txt").write_text("not the cache's: never deleted")
    return root


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by kind: [entries, size number, size unit, ...]."""
    cells = [line.replace("│", " ").split() for line in output.splitlines() if "│" in line]
    return {cell[0]: cell[1:] for cell in cells if cell}


def test_cache_shows_each_kind_and_clears_one_kind_or_all(filled_cache):
    runner = CliRunner()
    shown = runner.invoke(app, ["cache"], env={"COLUMNS": "160"})
    assert shown.exit_code == 0, shown.output
    table = rows(shown.output)
    assert [table[kind][0] for kind in ("frames", "poses", "models", "total")] == ["2", "1", "1", "4"]
    assert table["models"][2] in ("KB", "MB")

    cleared = runner.invoke(app, ["cache", "--clear", "frames"], env={"COLUMNS": "160"})
    assert cleared.exit_code == 0, cleared.output
    assert "deleted 2 entries" in cleared.output
    assert list((filled_cache / "frames").iterdir()) == []
    assert len(list((filled_cache / "poses").iterdir())) == 1 and len(list((filled_cache / "models").iterdir())) == 1

    everything = runner.invoke(app, ["cache", "--clear", "all"], env={"COLUMNS": "160"})
    assert everything.exit_code == 0, everything.output
    assert rows(everything.output)["total"][0] == "0"
    assert sorted(p.name for p in filled_cache.rglob("*") if p.is_file()) == ["notes.txt"]


def test_max_size_deletes_the_least_recently_used_runs_first(tmp_path):
    root = tmp_path / "cache"
    oldest = write_frames(root, "oldest", 2, age_days=30)
    used_again = write_frames(root, "used-again", 2, age_days=20)
    recent = write_frames(root, "recent", 2, age_days=1)
    FrameCache(root, "used-again")  # a rerun opens its cache: it counts as used now
    one_run = sum(p.stat().st_size for p in recent.iterdir())
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(root), "--max-size", str(2 * one_run + 100)])
    assert result.exit_code == 0, result.output
    assert not oldest.exists() and used_again.is_dir() and recent.is_dir()
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(root), "--max-size", "0"])
    assert result.exit_code == 0 and list((root / "frames").iterdir()) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--cache-dir", "{root}", "--clear", "frames", "--max-size", "lots"], "not a size: 'lots'"),
        (["--cache-dir", "{root}", "--max-size", "-5G"], "not a size"),
        (["--cache-dir", "{file}", "--clear", "all"], "is a file, not a folder"),
    ],
)
def test_bad_arguments_are_one_line_and_delete_nothing(tmp_path, arguments, message):
    root = tmp_path / "cache"
    folder = write_frames(root, "run", 1)
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["cache", *(argument.format(root=root, file=tmp_path / "file") for argument in arguments)])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert folder.is_dir() and (tmp_path / "file").read_text() == "x"

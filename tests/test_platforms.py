"""The package works where mediapipe and decord publish no wheels (Python 3.13, macOS arm64, Linux
aarch64), and its source stays valid for the oldest Python it supports."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Importing a name mapped to None in sys.modules fails as if the package were not installed.
WITHOUT_OPTIONAL_PACKAGES = "import sys\nsys.modules['mediapipe'] = None\nsys.modules['decord'] = None\n"


def run_without_mediapipe_and_decord(tmp_path: Path, code: str) -> dict:
    script = tmp_path / "run.py"
    script.write_text(WITHOUT_OPTIONAL_PACKAGES + textwrap.dedent(code))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_commands_poses_and_video_work_without_mediapipe_and_decord(tmp_path):
    frames = [np.full((48, 64, 3), 30 * k, np.uint8) for k in range(5)]
    imageio.mimwrite(tmp_path / "clip.mp4", frames, fps=5, codec="libx264", quality=9, macro_block_size=16)
    report = run_without_mediapipe_and_decord(
        tmp_path,
        """
        import json
        from pathlib import Path

        import numpy as np
        from typer.testing import CliRunner
        from magicpose_cli.cli import app
        from magicpose_cli.driving import load_driving_poses
        from magicpose_cli.pose.render import render_pose
        from magicpose_cli.synthetic import motion_poses, sample_identity, sample_motion
        from magicpose_cli.video import FrameSource
        from PIL import Image

        rng = np.random.default_rng(0)
        poses = motion_poses(sample_identity(rng), sample_motion(rng, 4), 64, 64)
        for folder in ("json", "maps"):
            Path(folder).mkdir()
        for index, pose in enumerate(poses):
            pose.save(f"json/{index:05d}.json")
            Image.fromarray(np.asarray(render_pose(pose), dtype=np.uint8)).save(f"maps/{index:05d}.png")
        video = FrameSource("clip.mp4")
        print(json.dumps({
            "help": [CliRunner().invoke(app, [name, "--help"]).exit_code for name in ("retarget", "extract-pose", "train", "convert", "demo")],
            "json": len(load_driving_poses("json")),
            "maps": [len(maps := load_driving_poses("maps")), maps.map_files is not None],
            "video": [video.reader, video.frame_count, round(float(video.frame(4).mean()))],
        }))
        """,
    )
    assert report["help"] == [0, 0, 0, 0, 0]
    assert report["json"] == 4 and report["maps"] == [4, True]
    assert report["video"][:2] == ["pyav", 5] and abs(report["video"][2] - 120) < 4


def test_source_is_valid_python_3_10():
    """No syntax, module or library call newer than 3.10 (vermin reads the source; CI also runs the tests on 3.10)."""
    vermin = Path(sys.executable).with_name("vermin")
    if not vermin.exists():
        vermin = shutil.which("vermin")
        if vermin is None:
            pytest.skip("vermin is not installed (pip install -e '.[dev]')")
    folders = ["magicpose_cli", "scripts", "benchmarks", "tests"]
    command = [str(vermin), "--target=3.10-", "--violations", "--eval-annotations", "--no-tips", *folders]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]

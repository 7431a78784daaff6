"""Build the wheel and check that pip can install it, from wheels only, on every supported platform.

    python scripts/check_install_matrix.py [--python 3.10 3.13] [--platform macos-arm64]

For each Python version x platform cell, ``pip install --dry-run --only-binary=:all: --python-version
V --platform P`` resolves the built wheel and all its dependencies for that interpreter and platform
(nothing is installed), so a dependency without wheels there, or a marker that lets one in, fails the
cell; then the same with each extra (``ui``: Gradio, for ``magicpose ui``; ``openpose``: controlnet_aux), which must resolve
everywhere the package does. pip evaluates environment markers (``sys_platform``, ``platform_machine``...) for the machine it
runs on even with ``--platform``, so pip runs here with the target's marker values. Prints the matrix
with the video reader and pose detector each cell gets, and exits non-zero if any cell does not
resolve. Run by CI (.ci/run); needs the package registry, no compiler.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def _manylinux(arch: str) -> list[str]:
    """glibc 2.35 (Ubuntu 22.04) and every older manylinux tag a wheel may carry."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(35, 4, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


# pip widens a macOS tag to the older releases itself; manylinux tags must be listed.
PLATFORM_TAGS = {
    "linux-x86_64": _manylinux("x86_64"),
    "linux-aarch64": _manylinux("aarch64"),
    "macos-arm64": ["macosx_14_0_arm64"],
    "windows-amd64": ["win_amd64"],
}
MARKERS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
}
RUN_PIP_WITH_MARKERS = "--run-pip-with-markers"
_NOT_SOURCES = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "runs", "out")
EXTRAS = ("", "ui", "openpose")  # the package alone, and with each extra
VIDEO_READERS = ("decord", "av")
DETECTORS = {"mediapipe": "mediapipe", "onnxruntime": "dwpose-onnx"}
OPENCV_BUILDS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
"""Each installs the same cv2 folder: the package alone must get exactly one (docs/platforms.md)."""


def build_wheel(project: Path, output: Path) -> Path:
    """Built from a copy of the sources, so a build beside it (CI installs the project meanwhile) is left alone."""
    sources = output / "sources"
    shutil.copytree(project, sources, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(output), str(sources)],
        check=True,
    )
    (wheel,) = output.glob("*.whl")
    return wheel


def resolve(wheel: Path, python: str, platform: str, scratch: Path, extra: str = "") -> dict:
    """The packages pip would install for one cell (with ``extra``), or the reason it cannot."""
    scratch.mkdir(parents=True)
    report = scratch / "report.json"
    markers = {**MARKERS[platform], "python_version": python, "python_full_version": f"{python}.0"}
    command = [sys.executable, __file__, RUN_PIP_WITH_MARKERS, json.dumps(markers), "install", "--dry-run", "--quiet", "--ignore-installed",
               "--only-binary=:all:", "--python-version", python, "--target", str(scratch / "target"),
               "--report", str(report)]
    for tag in PLATFORM_TAGS[platform]:
        command += ["--platform", tag]
    result = subprocess.run(command + [f"{wheel}[{extra}]" if extra else str(wheel)], capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        return {"ok": False, "error": (errors or result.stderr.splitlines() or ["pip failed"])[0]}
    installed = json.loads(report.read_text())["install"]
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installed}
    builds = opencv_builds(versions)
    if not extra and len(builds) != 1:
        return {"ok": False, "error": f"{len(builds)} OpenCV builds instead of one: {', '.join(builds) or 'none'}"}
    return {"ok": True, "versions": versions}


def opencv_builds(versions: dict) -> list[str]:
    return [name for name in OPENCV_BUILDS if name in versions]


def describe(cell: dict, ui_cell: dict) -> str:
    if not cell["ok"]:
        return "FAILS"
    versions = cell["versions"]
    reader = next((name for name in VIDEO_READERS if name in versions), "no reader")
    detector = next((label for name, label in DETECTORS.items() if name in versions), "no detector")
    torch = f"torch {versions.get('torch', '?')}/vision {versions.get('torchvision', '?')}"
    opencv = opencv_builds(versions)[0].removeprefix("opencv-")
    ui = f"gradio {ui_cell['versions'].get('gradio', '?')}" if ui_cell["ok"] else "ui FAILS"
    return f"ok: {torch}, {reader}, {detector}, {opencv}, {ui}"


def print_matrix(pythons: list[str], platforms: list[str], cells: dict) -> None:
    """One line per platform, one column per Python; then each failure's reason."""
    shown = {(platform, python): describe(cells[platform, python, ""], cells[platform, python, "ui"]) for platform in platforms for python in pythons}
    width = max(map(len, shown.values())) + 2
    print("platform".ljust(15) + "".join(f"Python {python}".ljust(width) for python in pythons))
    for platform in platforms:
        print(platform.ljust(15) + "".join(shown[platform, python].ljust(width) for python in pythons))
    for (platform, python, extra), cell in sorted(cells.items()):
        if not cell["ok"]:
            print(f"{platform} / Python {python}{f' / [{extra}]' if extra else ''}: {cell['error']}")


def run_pip_with_markers(markers: dict, pip_args: list[str]) -> int:
    """pip's own command line, with environment markers evaluated as on the target machine."""
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging import markers as pip_markers

    host_environment = pip_markers.default_environment
    pip_markers.default_environment = lambda: {**host_environment(), **markers}
    return pip_main(pip_args)


def main() -> int:
    if sys.argv[1:2] == [RUN_PIP_WITH_MARKERS]:
        return run_pip_with_markers(json.loads(sys.argv[2]), sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=list(PYTHONS), choices=PYTHONS)
    parser.add_argument("--platform", nargs="+", default=list(PLATFORM_TAGS), choices=list(PLATFORM_TAGS))
    parser.add_argument("--jobs", type=int, default=4, help="cells resolved at once (pip mostly waits on the network)")
    args = parser.parse_args()
    project = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        wheel = build_wheel(project, scratch / "dist")
        print(f"resolving {wheel.name}, alone and with each of {', '.join(filter(None, EXTRAS))}, for {len(args.python) * len(args.platform)} cells", flush=True)
        keys = [(platform, python, extra) for platform in args.platform for python in args.python for extra in EXTRAS]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = pool.map(lambda key: resolve(wheel, key[1], key[0], scratch / "-".join(filter(None, key)), key[2]), keys)
            cells = dict(zip(keys, results))
    print_matrix(args.python, args.platform, cells)
    failed = sum(not cell["ok"] for cell in cells.values())
    print(f"{len(cells) - failed} of {len(cells)} resolutions succeed (each cell alone and with each extra)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

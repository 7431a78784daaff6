"""Draw the pictures of docs/poses.md's "Several people" and "What the video drives" from clips made
of scikit-image's astronaut: ``python scripts/driving_figures.py [--out docs]`` (MediaPipe, about a minute)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw
from skimage import data, transform

from magicpose_cli.framing import side_by_side
from magicpose_cli.images import save_png
from magicpose_cli.pose.detectors import detect_reference_pose
from magicpose_cli.pose.extract import PoseSettings, extract_poses
from magicpose_cli.pose.people import draw_followed
from magicpose_cli.pose.render import render_pose
from magicpose_cli.video import FrameSource

ROW_HEIGHT = 200
TILTS = (-14, -7, 0, 7, 14)


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    imageio.mimwrite(path, frames, fps=10, codec="libx264", quality=9, macro_block_size=16)
    return path


def crossing_clip(folder: Path) -> Path:
    """The astronaut and a mirrored copy in a blue suit crossing once, the blue one in front."""
    first = (transform.resize(data.astronaut()[:, 40:360], (256, 160), anti_aliasing=True) * 255).astype(np.uint8)
    second = np.ascontiguousarray(first[:, ::-1, ::-1])
    frames = []
    for t in range(12):
        canvas = np.full((256, 448, 3), 90, dtype=np.uint8)
        step = round(272 * t / 11)
        canvas[:, 16 + step : 176 + step] = first
        canvas[:, 288 - step : 448 - step] = second
        frames.append(canvas)
    return write_clip(folder / "crossing.mp4", frames)


def astronaut_clips(folder: Path) -> tuple[Path, Path]:
    """A head tilting (the whole picture turning about the face) and a body walking right."""
    person = transform.resize(data.astronaut(), (256, 256), anti_aliasing=True)
    tilting = [(transform.rotate(person, angle, center=(128, 90)) * 255).astype(np.uint8) for angle in TILTS]
    walking = []
    for t in range(len(TILTS)):
        canvas = np.zeros((256, 320, 3), dtype=np.uint8)
        canvas[:, 16 * t : 16 * t + 256] = (person * 255).astype(np.uint8)
        walking.append(canvas)
    return write_clip(folder / "tilting.mp4", tilting), write_clip(folder / "walking.mp4", walking)


def labelled(image: np.ndarray, label: str) -> np.ndarray:
    picture = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 8 + 6 * len(label), 14), fill=(60, 60, 60))
    draw.text((4, 2), label, fill=(255, 255, 255))
    return np.asarray(picture)


def row(label: str, pictures: list[np.ndarray]) -> np.ndarray:
    return labelled(side_by_side(pictures, ROW_HEIGHT), label)


def people_figure(folder: Path, out: Path, frames: tuple[int, ...] = (2, 8)) -> None:
    """Each --person: the driving frame with the followed person boxed, and its pose map."""
    clip = crossing_clip(folder)
    source = FrameSource(clip)
    rows = []
    for person in ("1", "2"):
        result = extract_poses(clip, folder / f"person-{person}", settings=PoseSettings(person=person))
        panels = []
        for t in frames:
            panels += [draw_followed(source.frame(t), result.followed.boxes[t]), render_pose(result.poses[t])]
        rows.append(row(f"--person {person}", panels))
    save_png(out / "people.png", np.concatenate(rows, axis=0))


def drive_figure(folder: Path, out: Path, frames: tuple[int, ...] = (0, 2, 4)) -> None:
    """--drive all|face|body on a tilting head, and --face-from joining a walking body with it."""
    reference = folder / "reference.png"
    Image.fromarray(data.astronaut()).save(reference)
    tilting, walking = astronaut_clips(folder)
    own_pose = render_pose(detect_reference_pose(reference))
    rows = [row("reference | tilting.mp4", [imageio.imread(reference), *(FrameSource(tilting).frame(t) for t in frames)])]
    for drive in ("all", "face", "body"):
        result = extract_poses(tilting, folder / "tilting", settings=PoseSettings(align_to=str(reference), drive=drive))
        rows.append(row(f"--drive {drive}", [own_pose, *(render_pose(result.poses[t]) for t in frames)]))
    rows.append(row("walking.mp4", [np.zeros((256, 256, 3), np.uint8), *(FrameSource(walking).frame(t) for t in frames)]))
    joined = extract_poses(walking, folder / "walking", settings=PoseSettings(align_to=str(reference), face_from=str(tilting)))
    rows.append(row("walking.mp4 --face-from tilting.mp4", [own_pose, *(render_pose(joined.poses[t]) for t in frames)]))
    width = max(picture.shape[1] for picture in rows)
    rows = [np.pad(picture, ((0, 0), (0, width - picture.shape[1]), (0, 0))) for picture in rows]
    save_png(out / "drive.png", np.concatenate(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        people_figure(Path(folder), arguments.out)
        drive_figure(Path(folder), arguments.out)


if __name__ == "__main__":
    main()

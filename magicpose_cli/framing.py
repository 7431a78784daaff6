"""Fitting pictures of any shape to the model's generation size, and restoring the shape after.

By default the canvas follows the driving poses' shape at the scale the model was trained at
(:func:`training_scale_size`: the short side at 512 for the published weights, the long side from
the aspect ratio), so the person is as large as in training, nothing is cut and nothing letterboxed.
A fixed ``--width/--height`` canvas takes a picture of another shape in one of three ways:

- ``pad`` (default): scaled to fit inside and letterboxed; the padding is cropped off the
  generated frames afterwards and they are resized back to the driving video's aspect ratio.
- ``crop``: scaled to cover the canvas, the overhang cut off; the output keeps the canvas shape.
- ``stretch``: scaled to the canvas, distorting it; the output is stretched back.

Poses are placed by moving their keypoints (then rendered sharp at the canvas size); images by
resizing and pasting, with the same integer placement so both line up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import FramePose

SIZE_MULTIPLE = 64
DEFAULT_GENERATION_SIZE = 512


class FitMode(str, Enum):
    pad = "pad"
    crop = "crop"
    stretch = "stretch"


def generation_size(width: int | None, height: int | None, default: int = DEFAULT_GENERATION_SIZE) -> tuple[int, int]:
    """The (width, height) to generate at; a side not given takes the other's value or ``default``."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and (value <= 0 or value % SIZE_MULTIPLE):  # 0 is refused, not taken for "not given"
            raise MagicPoseError(f"--{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value}")
    width = next(side for side in (width, height, default) if side is not None)
    return width, width if height is None else height


def training_scale_size(source_width: int, source_height: int, short_side: int = DEFAULT_GENERATION_SIZE) -> tuple[int, int]:
    """The (width, height) that keeps a source's aspect ratio with its short side at ``short_side``
    (the size the model was trained at), the long side rounded to the nearest multiple of 64.

    512 gives 512x896 for a 9:16 portrait video and 896x512 for 16:9; the rounding's distortion
    (at most half a multiple over the long side) is undone when the frames are restored.
    """
    if short_side <= 0 or short_side % SIZE_MULTIPLE:
        raise MagicPoseError(f"--size must be a positive multiple of {SIZE_MULTIPLE}, got {short_side}")
    if source_width <= 0 or source_height <= 0:
        raise MagicPoseError(f"cannot fit a picture of size {source_width}x{source_height}")
    long_side = max(source_width, source_height) / min(source_width, source_height) * short_side
    rounded = max(short_side, SIZE_MULTIPLE * round(long_side / SIZE_MULTIPLE))
    return (rounded, short_side) if source_width > source_height else (short_side, rounded)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


@dataclass(frozen=True)
class Placement:
    """Where a ``source_width`` x ``source_height`` picture lands on the generation canvas.

    The source is resized to ``scaled_width`` x ``scaled_height`` and its top-left corner put at
    (``offset_x``, ``offset_y``) of the canvas (negative offsets when cropping).
    """

    mode: FitMode
    source_width: int
    source_height: int
    canvas_width: int
    canvas_height: int
    scaled_width: int
    scaled_height: int
    offset_x: int
    offset_y: int

    @property
    def scale_x(self) -> float:
        return self.scaled_width / self.source_width

    @property
    def scale_y(self) -> float:
        return self.scaled_height / self.source_height

    def content_box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the canvas covered by the source picture."""
        left, top = max(0, self.offset_x), max(0, self.offset_y)
        right = min(self.canvas_width, self.offset_x + self.scaled_width)
        bottom = min(self.canvas_height, self.offset_y + self.scaled_height)
        return left, top, right, bottom

    def output_size(self) -> tuple[int, int]:
        """Even (width, height) of the restored frames: the source's aspect ratio, unless cropped."""
        if self.mode is FitMode.crop:
            return self.canvas_width, self.canvas_height
        fit = min(self.canvas_width / self.source_width, self.canvas_height / self.source_height)
        return _even(self.source_width * fit), _even(self.source_height * fit)

    def place_image(self, image: np.ndarray, fill: str = "black") -> np.ndarray:
        """Put an HxWx3 uint8 picture of the source size on the canvas; ``fill`` black or edge."""
        if image.shape[:2] != (self.source_height, self.source_width):
            image = np.asarray(Image.fromarray(image).resize((self.source_width, self.source_height), Image.LANCZOS))
        scaled = np.asarray(Image.fromarray(image).resize((self.scaled_width, self.scaled_height), Image.LANCZOS))
        pad_left, pad_top = max(0, self.offset_x), max(0, self.offset_y)
        cut_left, cut_top = max(0, -self.offset_x), max(0, -self.offset_y)
        left, top, right, bottom = self.content_box()
        visible = scaled[cut_top : cut_top + bottom - top, cut_left : cut_left + right - left]
        pad_widths = (
            (pad_top, self.canvas_height - bottom),
            (pad_left, self.canvas_width - right),
            (0, 0),
        )
        if fill == "edge":
            return np.pad(visible, pad_widths, mode="edge")
        return np.pad(visible, pad_widths, mode="constant")

    def place_pose(self, frame_pose: FramePose) -> FramePose:
        """Move keypoints from source pixels to canvas pixels; points that leave the canvas stay (the renderer clips)."""
        scale = np.array([self.scale_x, self.scale_y], dtype=np.float32)
        offset = np.array([self.offset_x, self.offset_y], dtype=np.float32)
        return frame_pose.moved(scale, offset, self.canvas_width, self.canvas_height)

    def restore(self, generated: np.ndarray) -> np.ndarray:
        """Cut a generated canvas back to the source's visible area and shape (``output_size``)."""
        left, top, right, bottom = self.content_box()
        visible = generated[top:bottom, left:right]
        output_width, output_height = self.output_size()
        if visible.shape[:2] == (output_height, output_width):
            return np.ascontiguousarray(visible)
        return np.asarray(Image.fromarray(visible).resize((output_width, output_height), Image.LANCZOS))


def fit_placement(
    source_width: int, source_height: int, canvas_width: int, canvas_height: int, mode: FitMode | str = FitMode.pad
) -> Placement:
    """How to put a source picture on the canvas with the given fit mode."""
    mode = FitMode(mode)
    if source_width <= 0 or source_height <= 0:
        raise MagicPoseError(f"cannot fit a picture of size {source_width}x{source_height}")
    if mode is FitMode.stretch:
        return Placement(mode, source_width, source_height, canvas_width, canvas_height, canvas_width, canvas_height, 0, 0)
    pick = min if mode is FitMode.pad else max
    scale = pick(canvas_width / source_width, canvas_height / source_height)
    scaled_width = max(1, round(source_width * scale))
    scaled_height = max(1, round(source_height * scale))
    offset_x = (canvas_width - scaled_width) // 2
    offset_y = (canvas_height - scaled_height) // 2
    return Placement(
        mode, source_width, source_height, canvas_width, canvas_height, scaled_width, scaled_height, offset_x, offset_y
    )


def side_by_side(images: list[np.ndarray], height: int) -> np.ndarray:
    """Join HxWx3 pictures left to right, each resized to ``height`` (the ``--grid`` layout).

    A whole-number enlargement repeats pixels (nearest neighbour), so a small model's output is
    shown as it is, sharp-edged, rather than smoothed into something it did not generate.
    """
    resized = []
    for image in images:
        if image.shape[0] != height:
            width = _even(image.shape[1] * height / image.shape[0])
            whole_number = height % image.shape[0] == 0 and width == image.shape[1] * height // image.shape[0]
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST if whole_number else Image.LANCZOS))
        resized.append(image)
    return np.concatenate(resized, axis=1)

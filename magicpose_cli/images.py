"""Reading an image file the way a viewer shows it, as 8-bit RGB.

Every image the tool reads (the reference photo, ``--align-to``, image-folder inputs, training
frames) goes through :func:`read_image`, so all commands see the same pixels: the EXIF orientation a
phone camera writes is applied, transparency is laid on white, and high-bit-depth and float images
are scaled into 0..255 rather than clipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path, check_exists

_TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# Full scale of integer and float images by the largest value found: 8-bit values stored wide,
# 16-bit (PNG, TIFF), or anything else normalised by its maximum. Floats at most 1 are 0..1 images.
_FULL_SCALES = (255.0, 65535.0)


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB, upright, or a MagicPoseError naming ``what`` it was."""
    path = Path(path)
    if path.is_dir():
        raise MagicPoseError(f"{what} not found: {path} is a folder, not an image file")
    check_exists(path, what)
    try:
        with Image.open(path) as image:
            return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise MagicPoseError(f"{what} {path} is too large to read safely: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MagicPoseError(f"cannot read {what} {path}: {error}") from None


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image as ``(H, W, 3)`` uint8 RGB: transparency on white, wide values scaled to 8 bits."""
    if image.mode in _TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if image.mode.startswith("I") or image.mode.startswith("F"):
        grey = _scale_to_uint8(np.asarray(image), floating=image.mode.startswith("F"))
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def _scale_to_uint8(values: np.ndarray, floating: bool) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max(initial=0.0))
    if floating and peak <= 1.0:
        full_scale = 1.0
    else:
        full_scale = next((scale for scale in _FULL_SCALES if peak <= scale), peak)
    return np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def to_uint8(frames) -> np.ndarray:
    """Frames as uint8 0..255 (floats in [0, 1] are rounded to the nearest level, as when saved to PNG)."""
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """``image`` (uint8 HxWx3) as a PNG, written atomically."""
    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")

"""Images are read as a viewer shows them: EXIF orientation applied, every mode a camera or editor
writes turned into the right 8-bit RGB, transparency laid on white, in every command."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.images import read_image
from magicpose_cli.pose.keypoints import BODY
from magicpose_cli.retarget import load_reference_image

PHOTO = data.astronaut()  # 512x512 RGB photo of a person
PORTRAIT = PHOTO[:, 96:416]  # 512 high, 320 wide
GREY = np.asarray(Image.fromarray(PHOTO).convert("L"))
EXIF_ORIENTATION = 0x0112
# What a camera stores for each EXIF orientation, given the upright picture (EXIF 2.3, tag 274).
STORED_FOR_ORIENTATION = {
    1: lambda upright: upright,
    2: lambda upright: upright[:, ::-1],
    3: lambda upright: upright[::-1, ::-1],
    4: lambda upright: upright[::-1],
    5: lambda upright: upright.swapaxes(0, 1),
    6: lambda upright: np.rot90(upright, 1),  # shown after turning 90 degrees clockwise
    7: lambda upright: upright[::-1, ::-1].swapaxes(0, 1),
    8: lambda upright: np.rot90(upright, -1),  # shown after turning 90 degrees counter-clockwise
}


def save_phone_jpeg(path: Path, upright: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](upright))
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return path


def mean_error(first: np.ndarray, second: np.ndarray) -> float:
    assert first.shape == second.shape
    return float(np.abs(first.astype(float) - second.astype(float)).mean())


@pytest.mark.parametrize("orientation", sorted(STORED_FOR_ORIENTATION))
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = save_phone_jpeg(tmp_path / "phone.jpg", PORTRAIT, orientation)
    assert mean_error(read_image(path), PORTRAIT) < 3  # JPEG at quality 95


def _with_alpha(pixels: np.ndarray) -> np.ndarray:
    """The photo with its left half fully transparent (and black underneath)."""
    alpha = np.full(pixels.shape[:2], 255, np.uint8)
    alpha[:, :256] = 0
    dark = pixels.copy()
    dark[:, :256] = 0
    return np.dstack([dark, alpha])


def _on_white(pixels: np.ndarray) -> np.ndarray:
    expected = np.array(pixels if pixels.ndim == 3 else np.dstack([pixels] * 3))
    expected[:, :256] = 255
    return expected


def _palette(transparent: bool) -> tuple[Image.Image, np.ndarray]:
    image = Image.fromarray(PHOTO).quantize(64)
    expected = np.asarray(image.convert("RGB")).copy()
    if transparent:
        image.info["transparency"] = int(np.asarray(image)[0, 0])
        expected[np.asarray(image) == image.info["transparency"]] = 255
    return image, expected


def _mode_cases() -> dict:
    grey16 = GREY.astype(np.uint16) * 257
    rgb_grey = np.dstack([GREY] * 3)
    return {
        "L": (Image.fromarray(GREY), ".png", rgb_grey, 0),
        "I;16 PNG (16-bit scaled, not clipped)": (Image.fromarray(grey16), ".png", rgb_grey, 0.5),
        "I TIFF (16-bit values in 32 bits)": (Image.fromarray(grey16.astype(np.int32)), ".tif", rgb_grey, 0.5),
        "F TIFF (0..1 floats)": (Image.fromarray(GREY.astype(np.float32) / 255), ".tif", rgb_grey, 0.5),
        "RGBA": (Image.fromarray(_with_alpha(PHOTO)), ".png", _on_white(PHOTO), 0),
        "LA": (Image.fromarray(_with_alpha(GREY[..., None]).squeeze(), "LA"), ".png", _on_white(GREY), 0),
        "P": (*_palette(transparent=False)[:1], ".png", _palette(transparent=False)[1], 0),
        "P with transparency": (*_palette(transparent=True)[:1], ".png", _palette(transparent=True)[1], 0),
        "CMYK JPEG": (Image.fromarray(PHOTO).convert("CMYK"), ".jpg", PHOTO, 4),
        "1 (bilevel)": (Image.fromarray(GREY > 128), ".png", np.dstack([(GREY > 128) * np.uint8(255)] * 3), 0),
    }


@pytest.mark.parametrize("case", list(_mode_cases()))
def test_every_image_mode_becomes_the_right_8bit_rgb(tmp_path, case):
    image, suffix, expected, tolerance = _mode_cases()[case]
    path = tmp_path / f"image{suffix}"
    image.save(path)
    pixels = read_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    assert mean_error(pixels, expected) <= tolerance


def test_reference_reader_is_the_shared_one(tmp_path):
    """retarget's reference and extract-pose --align-to read the same pixels (transparency on white)."""
    path = tmp_path / "cutout.png"
    Image.fromarray(_with_alpha(PHOTO)).save(path)
    assert np.array_equal(load_reference_image(path), read_image(path))
    assert (load_reference_image(path)[:, :256] == 255).all()
    with pytest.raises(MagicPoseError, match="reference image not found"):
        load_reference_image(tmp_path / "missing.png")


def test_bad_and_huge_images_give_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MagicPoseError, match="cannot read image"):
        read_image(tmp_path / "empty.png")
    Image.fromarray(PHOTO).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # 512x512 is over twice this: a "bomb"
    with pytest.raises(MagicPoseError, match="too large to read safely"):
        read_image(tmp_path / "big.png")


@pytest.mark.parametrize("kind", ["sideways phone JPEG", "16-bit greyscale PNG"])
def test_person_is_found_upright_in_phone_and_16bit_photos(tmp_path, kind):
    """The --align-to path: before, the first was detected lying down and the second was blank."""
    from magicpose_cli.pose.detectors import detect_reference_pose

    if kind == "sideways phone JPEG":
        path = save_phone_jpeg(tmp_path / "phone.jpg", PHOTO, orientation=6)
    else:
        path = tmp_path / "scan.png"
        Image.fromarray(GREY.astype(np.uint16) * 257).save(path)
    body = detect_reference_pose(path).people[0].body
    nose, neck = body[BODY["nose"]], body[BODY["neck"]]
    assert nose[2] > 0 and neck[2] > 0
    assert nose[1] < neck[1] - 20 and abs(nose[0] - neck[0]) < 60  # head above the shoulders

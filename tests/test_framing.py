"""Placing pictures and poses on the generation canvas and restoring the driving shape."""

from __future__ import annotations

import numpy as np
import pytest

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.framing import FitMode, fit_placement, generation_size, side_by_side, training_scale_size
from magicpose_cli.pose.keypoints import FramePose, PersonPose


def test_generation_size_defaults_and_multiples_of_64():
    assert generation_size(None, None) == (512, 512)
    assert generation_size(384, None) == (384, 384)
    assert generation_size(512, 768) == (512, 768)
    with pytest.raises(MagicPoseError, match="--height must be a positive multiple of 64"):
        generation_size(512, 500)


def test_pad_letterboxes_and_restores_the_aspect_ratio():
    placement = fit_placement(320, 180, 128, 128, FitMode.pad)
    assert (placement.scaled_width, placement.scaled_height, placement.offset_x, placement.offset_y) == (128, 72, 0, 28)
    white = np.full((180, 320, 3), 255, np.uint8)
    canvas = placement.place_image(white)
    assert canvas.shape == (128, 128, 3)
    assert canvas[:28].max() == 0 and canvas[100:].max() == 0 and canvas[28:100].min() == 255
    restored = placement.restore(canvas)
    assert restored.shape == (72, 128, 3) and restored.min() == 255
    assert restored.shape[1] / restored.shape[0] == pytest.approx(320 / 180, rel=0.02)


def test_pad_with_edge_fill_continues_the_picture():
    placement = fit_placement(100, 200, 64, 64, FitMode.pad)
    image = np.zeros((200, 100, 3), np.uint8)
    image[:, :50] = 200
    canvas = placement.place_image(image, fill="edge")
    assert canvas[:, 0].min() == 200 and canvas[:, -1].max() == 0


def test_crop_covers_the_canvas_and_keeps_its_shape():
    placement = fit_placement(200, 100, 64, 64, FitMode.crop)
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 90:110] = 255  # a bar in the middle survives the crop
    canvas = placement.place_image(image)
    assert placement.offset_x == -32 and canvas.shape == (64, 64, 3)
    assert canvas[:, 30:34].min() > 200 and canvas[:, :20].max() == 0
    assert placement.restore(canvas).shape == (64, 64, 3)


def test_stretch_fills_the_canvas_and_stretches_back():
    placement = fit_placement(200, 100, 64, 64, FitMode.stretch)
    canvas = placement.place_image(np.full((100, 200, 3), 9, np.uint8))
    assert canvas.shape == (64, 64, 3) and canvas.min() == 9
    assert placement.restore(canvas).shape == (32, 64, 3)


@pytest.mark.parametrize("mode", list(FitMode))
def test_poses_land_where_the_image_pixels_land(mode):
    placement = fit_placement(300, 200, 128, 128, mode)
    image = np.zeros((200, 300, 3), np.uint8)
    image[118:123, 208:213] = 255  # a dot at (210, 120)
    body = np.zeros((18, 3), np.float32)
    body[0] = (210, 120, 1.0)  # the same place as a keypoint; body[1] stays missing
    placed = placement.place_pose(FramePose(300, 200, [PersonPose(body=body)]))
    x, y, confidence = placed.people[0].body[0]
    canvas = placement.place_image(image)
    rows, columns = np.nonzero(canvas[..., 0] > 100)
    assert (placed.width, placed.height, confidence) == (128, 128, 1.0)
    assert x == pytest.approx(columns.mean(), abs=1.0) and y == pytest.approx(rows.mean(), abs=1.0)
    assert tuple(placed.people[0].body[1]) == (0, 0, 0)


def test_side_by_side_joins_at_one_height():
    pictures = [np.zeros((80, 60, 3), np.uint8), np.ones((20, 20, 3), np.uint8), np.ones((40, 50, 3), np.uint8)]
    assert side_by_side(pictures, height=40).shape == (40, 30 + 40 + 50, 3)


def test_side_by_side_enlarges_by_whole_numbers_with_sharp_pixels():
    checkerboard = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = np.stack([checkerboard] * 3, axis=-1)
    enlarged = side_by_side([small], height=32)
    assert np.array_equal(enlarged, small.repeat(4, axis=0).repeat(4, axis=1))  # each pixel a 4x4 block, no blur
    softened = side_by_side([small], height=20)  # 2.5x is not whole: a smooth resize
    assert len(np.unique(softened)) > 2


@pytest.mark.parametrize(
    "source, short_side, expected",
    [
        ((1080, 1920), 512, (512, 896)),  # 9:16 phone video: 910 rounds to 896
        ((1920, 1080), 512, (896, 512)),  # 16:9 landscape
        ((720, 720), 512, (512, 512)),  # square
        ((640, 480), 512, (704, 512)),  # 4:3: 683 rounds to 704
        ((604, 1080), 512, (512, 896)),  # the original repository's TikTok pose sequences
        ((180, 320), 64, (64, 128)),  # a small model's training scale
    ],
)
def test_training_scale_keeps_the_short_side_and_the_aspect(source, short_side, expected):
    assert training_scale_size(*source, short_side) == expected


@pytest.mark.parametrize("source", [(1080, 1920), (1920, 1080), (720, 720)])
def test_the_default_canvas_neither_cuts_nor_letterboxes(source):
    canvas = training_scale_size(*source)
    placement = fit_placement(*source, *canvas, FitMode.stretch)
    assert placement.content_box() == (0, 0, *canvas)  # every canvas pixel shows the picture
    assert abs(placement.scale_x / placement.scale_y - 1) < 0.04  # only the rounding to 64 is stretched
    # the person is at training scale: the short side maps to 512 (the pad default shrank a 9:16 one to 288)
    assert min(placement.scaled_width, placement.scaled_height) == 512
    width, height = placement.output_size()
    assert abs(width / height - source[0] / source[1]) < 0.01  # restored to the driving aspect


def test_training_scale_refuses_sizes_the_model_cannot_take():
    with pytest.raises(MagicPoseError, match="--size must be a positive multiple of 64"):
        training_scale_size(1080, 1920, 500)

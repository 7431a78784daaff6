"""Tiny ONNX graphs with the signatures of the published DWPose models, for tests and benchmarks.

``yolox_l.onnx``: images 1x3x640x640 -> output 1x8400x85; ``dw-ll_ucoco_384.onnx``: input 1x3x384x288
-> simcc_x 1x133x576, simcc_y 1x133x768. The detector always reports the same boxes
(``tiny_detections``); the pose model either answers fixed SimCC vectors (``tiny_simcc``) or ones
that peak where its input's first channel is brightest (every keypoint on a bright spot), so
the pre- and post-processing around them can be checked by hand. Needs the ``onnx`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from magicpose_cli.pose.dwpose_onnx import YOLOX_FILE, DWPOSE_FILE

ANCHORS, POSE_POINTS = 8400, 133
POSE_HEIGHT, POSE_WIDTH = 384, 288
STRIDE32_START = 80 * 80 + 40 * 40  # anchors of strides 8 and 16 come first


def _save_graph(path, nodes, inputs, outputs, initializers=()):
    from onnx import helper, save

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _constant_model(path, input_name, input_shape, outputs: dict[str, np.ndarray]):
    """A graph whose outputs are fixed arrays (plus 0 x the input's mean, so the input is used)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.float32(0.0), "zero")]
    for name, array in outputs.items():
        initializers.append(numpy_helper.from_array(array.astype(np.float32), f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
    _save_graph(
        path,
        nodes,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)) for name, array in outputs.items()],
        initializers,
    )


def _spot_pose_model(path):
    """SimCC vectors that peak where the input's first channel is brightest: every keypoint is the spot."""
    from onnx import TensorProto, helper, numpy_helper

    duplicate_x = np.repeat(np.eye(POSE_WIDTH, dtype=np.float32), 2, axis=1)  # pixel j -> bins 2j, 2j+1
    duplicate_y = np.repeat(np.eye(POSE_HEIGHT, dtype=np.float32), 2, axis=1)
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["red"]),
        helper.make_node("ReduceMax", ["red"], ["columns"], axes=[2], keepdims=1),  # 1x1x1x288
        helper.make_node("ReduceMax", ["red"], ["rows"], axes=[3], keepdims=0),  # 1x1x384
        helper.make_node("Reshape", ["columns", "row_shape"], ["columns_flat"]),
        helper.make_node("MatMul", ["columns_flat", "duplicate_x"], ["x_bins"]),
        helper.make_node("MatMul", ["rows", "duplicate_y"], ["y_bins"]),
        helper.make_node("Expand", ["x_bins", "shape_x"], ["simcc_x"]),
        helper.make_node("Expand", ["y_bins", "shape_y"], ["simcc_y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([1, 1, POSE_WIDTH], dtype=np.int64), "row_shape"),
        numpy_helper.from_array(duplicate_x, "duplicate_x"),
        numpy_helper.from_array(duplicate_y, "duplicate_y"),
        numpy_helper.from_array(np.array([1, POSE_POINTS, 2 * POSE_WIDTH], dtype=np.int64), "shape_x"),
        numpy_helper.from_array(np.array([1, POSE_POINTS, 2 * POSE_HEIGHT], dtype=np.int64), "shape_y"),
    ]
    _save_graph(
        path,
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, POSE_HEIGHT, POSE_WIDTH])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, POSE_POINTS, 2 * POSE_WIDTH]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, POSE_POINTS, 2 * POSE_HEIGHT]),
        ],
        initializers,
    )


def tiny_detections() -> np.ndarray:
    """Raw YOLOX rows: one person at stride-32 cell (row 5, column 7), centred in its cell, 4 x 8 cells
    big -> centre (240, 176), size 128 x 256 in the 640x640 input; a weaker overlapping person that
    NMS must drop; a confident non-person (class 3) elsewhere."""
    raw = np.zeros((1, ANCHORS, 85), dtype=np.float32)
    person = STRIDE32_START + 5 * 20 + 7
    raw[0, person, :5] = (0.5, 0.5, np.log(4.0), np.log(8.0), 0.9)
    raw[0, person, 5] = 0.8
    raw[0, person + 1, :5] = (0.0, 0.5, np.log(4.0), np.log(8.0), 0.6)  # 24 px to the right, IoU ~0.68
    raw[0, person + 1, 5] = 0.8
    car = STRIDE32_START + 15 * 20 + 15
    raw[0, car, :6] = (0.5, 0.5, np.log(2.0), np.log(2.0), 0.95, 0.0)
    raw[0, car, 5 + 3] = 0.9
    return raw


def tiny_simcc() -> tuple[np.ndarray, np.ndarray]:
    """Keypoint k peaks at x = 10 + k, y = 20 + k model pixels (SimCC bins 2x that), score 0.9;
    keypoint 3 (COCO left ear) scores 0.1, under the 0.3 cut-off."""
    simcc_x = np.zeros((1, POSE_POINTS, 2 * POSE_WIDTH), dtype=np.float32)
    simcc_y = np.zeros((1, POSE_POINTS, 2 * POSE_HEIGHT), dtype=np.float32)
    for k in range(POSE_POINTS):
        peak = 0.1 if k == 3 else 0.9
        simcc_x[0, k, 2 * (10 + k)] = peak
        simcc_y[0, k, 2 * (20 + k)] = peak
    return simcc_x, simcc_y




def write_tiny_dwpose(folder: Path, pose_model: str = "fixed") -> Path:
    """Write the tiny ``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx`` into ``folder``; ``pose_model`` is
    "fixed" (tiny_simcc) or "spot" (keypoints on the input's brightest red spot)."""
    folder.mkdir(parents=True, exist_ok=True)
    _constant_model(folder / YOLOX_FILE, "images", (1, 3, 640, 640), {"output": tiny_detections()})
    if pose_model == "spot":
        _spot_pose_model(folder / DWPOSE_FILE)
    else:
        simcc_x, simcc_y = tiny_simcc()
        outputs = {"simcc_x": simcc_x, "simcc_y": simcc_y}
        _constant_model(folder / DWPOSE_FILE, "input", (1, 3, POSE_HEIGHT, POSE_WIDTH), outputs)
    return folder

"""Pose extraction on CPU: speed of each detector path, and how close MediaPipe lands to OpenPose.

    .venv/bin/python benchmarks/bench_extract.py [--frames 30] [--size 512]
        [--annotator-dir DIR]          # time DWPose on the real ONNX files instead of tiny graphs
        [--openpose-pairs DIR]         # NAME.png/.jpg + NAME.json (OpenPose JSON of that image)

Speed: frames per second of `extract_poses` (detect, fill, smooth, render, write) on a video made
from a real photo, for MediaPipe and for DWPose through ONNX Runtime. Without real DWPose weights
the DWPose path runs on the tiny graphs of `magicpose_cli.pose.dwpose_tiny`, which times our pre-
and post-processing, not the networks.

Conventions: for every image of ``--openpose-pairs`` MediaPipe's person (as `extract-pose` gives
it) is compared with the OpenPose person nearest to it, at 512 px on the long side: the median
over limbs of the mean distance of the limb's two ends, and the median distance of the face
points when both have a face. The figures in docs/poses.md come from three public pairs, copied into one folder
as NAME.jpg|png + NAME.json (not in this repository; their licences differ):

    facebookresearch/pifuhd  sample_images/test.png + sample_images/test_keypoints.json
    nkolot/ProHMR            example_data/images/pexels-anete-lusina-4793258.jpg
                             + example_data/keypoints/pexels-anete-lusina-4793258_keypoints.json
    nkolot/SPIN              examples/im1010.jpg + examples/im1010_openpose.json

and, with OpenPose face points, 17 pairs from three more (see docs/poses.md, "OpenPose conventions"):

    HyeonJeong00/smplifyx__openpose  smplify-x/data_folder/images/COCO_val2014_*.jpg
                                     + smplify-x/data_folder/keypoints/COCO_val2014_*_keypoints.json
    muelea/smplify-xmc               data/example_input/singleview/subject1/{images,keypoints}/pose{1,2}/*
    NVlabs/imaginaire                dataset/unit_test/raw/vid2vid/pose/{images,poses-openpose}/001_001/*
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from skimage import data, transform

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.detectors import DetectorName, detect_reference_pose
from magicpose_cli.pose.extract import PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import load_openpose_frames
from magicpose_cli.pose.render import BODY_LIMBS
from magicpose_cli.video import read_image

COMPARISON_SIZE = 512


def make_video(path: Path, frames: int, size: int) -> Path:
    person = (transform.resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    width = size + size // 4
    images = []
    for t in range(frames):
        canvas = np.zeros((size, width, 3), dtype=np.uint8)
        offset = int((size // 4) * (0.5 + 0.5 * np.sin(2 * np.pi * t / frames)))
        canvas[:, offset : offset + size] = person
        images.append(canvas)
    imageio.mimwrite(path, images, fps=30, codec="libx264", quality=8, macro_block_size=16)
    return path


def time_detector(video: Path, work: Path, detector: str, annotator_dir: Path | None) -> str:
    settings = PoseSettings(detector=detector)
    started = time.perf_counter()
    result = extract_poses(video, work / detector, settings=settings, annotator_dir=annotator_dir, force=True)
    seconds = time.perf_counter() - started
    return f"{detector}: {len(result.poses) / seconds:.1f} frames/s end to end, {result.detected} frames with a person"


def limb_distances(body: np.ndarray, reference: np.ndarray) -> list[float]:
    both = (body[:, 2] > 0) & (reference[:, 2] > 0)
    joint = np.linalg.norm(body[:, :2] - reference[:, :2], axis=1)
    return [(joint[a] + joint[b]) / 2 for a, b in BODY_LIMBS if both[a] and both[b]]


def compare_with_openpose(pairs: Path) -> None:
    for json_path in sorted(pairs.glob("*.json")):
        image_path = next((p for p in json_path.parent.glob(json_path.stem + ".*") if p.suffix != ".json"), None)
        if image_path is None:
            continue
        image = read_image(image_path)
        scale = COMPARISON_SIZE / max(image.shape[:2])
        (frame_pose,), _ = load_openpose_frames([json_path], (image.shape[1], image.shape[0]))
        try:
            ours = detect_reference_pose(image, DetectorName.MEDIAPIPE).people[0]
        except MagicPoseError as error:
            print(f"{image_path.name}: {error}")
            continue
        openpose = min(frame_pose.people, key=lambda person: np.median(limb_distances(ours.body, person.body) or [1e9]))
        limbs = np.median(limb_distances(ours.body, openpose.body)) * scale
        line = f"{image_path.name}: median limb distance {limbs:.2f} px at {COMPARISON_SIZE}"
        both = (ours.face[:, 2] > 0) & (openpose.face[:, 2] > 0)
        if both.any():
            face = np.median(np.linalg.norm(ours.face[both, :2] - openpose.face[both, :2], axis=1)) * scale
            line += f", median face point distance {face:.2f} px"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=512, help="frame height in pixels")
    parser.add_argument("--annotator-dir", type=Path, help="folder with yolox_l.onnx and dw-ll_ucoco_384.onnx")
    parser.add_argument("--openpose-pairs", type=Path, help="folder of images with their OpenPose JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        video = make_video(work / "bench.mp4", args.frames, args.size)
        print(f"{args.frames} frames of {args.size + args.size // 4}x{args.size}")
        print(time_detector(video, work, DetectorName.MEDIAPIPE.value, None))
        annotator_dir = args.annotator_dir
        if annotator_dir is None:
            from magicpose_cli.pose.dwpose_tiny import write_tiny_dwpose

            annotator_dir = write_tiny_dwpose(work / "tiny_dwpose")
            print("dwpose on tiny graphs (pre/post-processing and ONNX Runtime overhead only):")
        print(time_detector(video, work, DetectorName.DWPOSE.value, annotator_dir))
    if args.openpose_pairs:
        compare_with_openpose(args.openpose_pairs)


if __name__ == "__main__":
    main()

"""Scorers: each metric family fed the frames of every video once, in order, then asked for its results.

A scorer sees ``start_video(name)``, then ``add(number, generated, target)`` for each frame pair
(uint8 HxWx3, in time order), and finally ``finish(results)``, where it writes its pooled values,
its per-video values, counts and notes. Per-frame metrics are the mean over all frames of all
videos pooled (as the original's scripts average one flat folder) and, per video, over its frames;
the Fréchet distances exist only pooled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from magicpose_cli.metrics.face_region import face_boxes, score_face_region
from magicpose_cli.metrics.fid import frechet_distance, inception_features
from magicpose_cli.metrics.images import DISCO_IDENTICAL_PSNR, l1, l1_disco, psnr, psnr_disco, ssim
from magicpose_cli.metrics.perceptual import lpips_distances
from magicpose_cli.metrics.temporal import flicker_excess, temporal_error, temporal_psnr
from magicpose_cli.metrics.video import ClipMetric, ClipWindows, clip_features, clip_input, resize_frame

IMAGE_METRICS = {
    "ssim": ssim,
    "psnr": partial(psnr, identical=DISCO_IDENTICAL_PSNR),
    "psnr_disco": psnr_disco,
    "l1": l1,
    "l1_disco": l1_disco,
}
TEMPORAL_METRICS = {
    "temporal_error": temporal_error,
    "temporal_psnr": partial(temporal_psnr, identical=DISCO_IDENTICAL_PSNR),
    "flicker_excess": flicker_excess,
}


@dataclass
class Results:
    """What the scorers found: pooled values, values per video, counts, notes and metrics that could not be computed."""

    metrics: dict[str, float] = field(default_factory=dict)
    videos: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class FrameMeans:
    """Values per frame (or per pair of frames), by metric and video."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, metric: str, video: str, value: float) -> None:
        self.values[metric][video].append(value)

    def write(self, results: Results) -> None:
        for metric, by_video in self.values.items():
            results.metrics[metric] = float(np.mean([value for values in by_video.values() for value in values]))
            for video, values in by_video.items():
                results.videos[video][metric] = float(np.mean(values))


class Scorer:
    metrics: tuple[str, ...] = ()

    def start_video(self, name: str) -> None:
        self.video = name

    def add(self, number: int, generated: np.ndarray, target: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self, results: Results) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageScorer(Scorer):
    def __init__(self, metrics: list[str]):
        self.metrics, self.means = tuple(metrics), FrameMeans()

    def add(self, number, generated, target):
        for metric in self.metrics:
            self.means.add(metric, self.video, IMAGE_METRICS[metric](generated, target))

    def finish(self, results):
        self.means.write(results)


class TemporalScorer(Scorer):
    """The temporal metrics of each pair of consecutive frames (frame numbers one apart)."""

    def __init__(self, metrics: list[str]):
        self.metrics, self.means, self.previous = tuple(metrics), FrameMeans(), None

    def start_video(self, name):
        super().start_video(name)
        self.previous = None

    def add(self, number, generated, target):
        if self.previous is not None and self.previous[0] == number - 1:
            pair_generated, pair_target = np.stack([self.previous[1], generated]), np.stack([self.previous[2], target])
            for metric in self.metrics:
                self.means.add(metric, self.video, TEMPORAL_METRICS[metric](pair_generated, pair_target))
        self.previous = (number, generated, target)

    def finish(self, results):
        self.means.write(results)
        if not self.means.values:
            for metric in self.metrics:
                results.skipped[metric] = "no two consecutive frames"


class LpipsScorer(Scorer):
    def __init__(self, metrics: list[str], network, device):
        self.metrics, self.network, self.device, self.means = tuple(metrics), network, device, FrameMeans()

    def add(self, number, generated, target):
        values = dict(zip(("lpips", "lpips_disco"), lpips_distances(self.network, generated, target, self.device)))
        for metric in self.metrics:
            self.means.add(metric, self.video, values[metric])

    def finish(self, results):
        self.means.write(results)


class FaceScorer(Scorer):
    metrics = ("face_cos",)

    def __init__(self, face_cos):
        self.face_cos, self.means = face_cos, FrameMeans()
        self.without_face = self.generated_not_found = 0

    def add(self, number, generated, target):
        value, found = self.face_cos.similarity(generated, target)
        if value is None:
            self.without_face += 1
            return
        self.generated_not_found += not found
        self.means.add("face_cos", self.video, value)

    def finish(self, results):
        self.means.write(results)
        results.counts.update(face_frames=sum(map(len, self.means.values["face_cos"].values())), frames_without_face=self.without_face,
                              generated_faces_not_found=self.generated_not_found)  # fmt: skip
        if "face_cos" not in results.metrics:
            results.skipped["face_cos"] = "no face found in any ground-truth frame"

    def close(self):
        self.face_cos.close()


class FaceRegionScorer(Scorer):
    """PSNR, SSIM, LPIPS and the temporal error inside the face box of each video.

    The box comes from the ground truth's face landmarks, one size per video and its centre smoothed
    (:func:`magicpose_cli.metrics.face_region.face_boxes`), so a video's frames are held until it
    ends. Frames whose ground truth shows no face are counted and left out.
    """

    def __init__(self, metrics: list[str], face_landmarks, lpips=None, unavailable: dict[str, str] | None = None):
        self.unavailable = unavailable or {}
        self.metrics = tuple(name for name in metrics if name not in self.unavailable)
        self.face_landmarks, self.lpips, self.means = face_landmarks, lpips, FrameMeans()
        self.held: list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.scored = self.without_face = 0

    def frame_metrics(self) -> dict:
        chosen = {"face_psnr": IMAGE_METRICS["psnr"], "face_ssim": IMAGE_METRICS["ssim"], "face_lpips": self.lpips}
        return {name: chosen[name] for name in self.metrics if name != "face_temporal_error"}

    def start_video(self, name):
        self.score_held()
        super().start_video(name)

    def add(self, number, generated, target):
        self.held.append((number, generated, target, self.face_landmarks(target)))

    def score_held(self) -> None:
        if not self.held:
            return
        numbers, generated, target, faces = zip(*self.held)
        self.held = []
        scores = score_face_region(generated, target, face_boxes(faces), self.frame_metrics(), numbers)
        for metric, values in scores.frames.items():
            for value in values:
                self.means.add(metric, self.video, value)
        if "face_temporal_error" in self.metrics:
            for value in scores.temporal_errors:
                self.means.add("face_temporal_error", self.video, value)
        self.scored += len(generated) - scores.without_face
        self.without_face += scores.without_face

    def finish(self, results):
        self.score_held()
        self.means.write(results)
        results.skipped.update(self.unavailable)
        results.counts.update(face_region_frames=self.scored, face_region_frames_without_face=self.without_face)
        for metric in self.metrics:
            if metric not in results.metrics:
                results.skipped[metric] = "no face found in any ground-truth frame" if not self.scored else "no two consecutive frames with a face"
        if self.without_face:
            results.notes.append(f"face_* scores leave out the {self.without_face} frame(s) whose ground truth shows no face")

    def close(self):
        self.face_landmarks.close()


class FeatureScorer(Scorer):
    """Network features of generated and ground-truth inputs, computed a batch at a time, for a Fréchet distance."""

    def __init__(self, network, device, batch_size: int):
        self.network, self.device, self.batch_size = network, device, batch_size
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.features: tuple[list, list] = ([], [])

    def featurize(self, inputs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def queue(self, generated: np.ndarray, target: np.ndarray) -> None:
        self.pending.append((generated, target))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            for side, inputs in zip(self.features, zip(*self.pending)):
                side.append(self.featurize(list(inputs)))
            self.pending = []

    def all_features(self) -> tuple[np.ndarray, np.ndarray]:
        self.flush()
        return tuple(np.concatenate(side) if side else np.zeros((0, 1)) for side in self.features)

    def write_distance(self, results: Results, name: str, samples: str) -> None:
        """The Fréchet distance of the two feature sets as ``name``, noted when the samples are too few to trust it."""
        generated, target = self.all_features()
        if len(generated) < 2:
            results.skipped[name] = f"needs at least two {samples}, the videos give {len(generated)}"
            return
        results.metrics[name] = frechet_distance(generated, target)
        if len(generated) <= generated.shape[1]:
            results.notes.append(f"{name} from {len(generated)} {samples}: with no more samples than its {generated.shape[1]} features it is biased high")


class FidScorer(FeatureScorer):
    """pytorch-fid features of every frame, batched by size, and their Fréchet distance."""

    metrics = ("fid",)

    def __init__(self, network, device, batch_size: int = 50):
        super().__init__(network, device, batch_size)

    def featurize(self, inputs):
        return inception_features(self.network, inputs, self.device)

    def add(self, number, generated, target):
        if self.pending and self.pending[0][0].shape != generated.shape:
            self.flush()
        self.queue(generated, target)

    def finish(self, results):
        self.write_distance(results, "fid", "frames")


class ClipScorer(FeatureScorer):
    """FID-VID or FVD: clips of consecutive frames through a video network, and the Fréchet distance."""

    def __init__(self, metric: ClipMetric, network, device, batch_size: int = 4):
        super().__init__(network, device, batch_size)
        self.metric, self.metrics = metric, (metric.name,)
        self.windows = (ClipWindows(), ClipWindows())

    def featurize(self, inputs):
        return clip_features(self.network, inputs, self.device)

    def start_video(self, name):
        super().start_video(name)
        for windows in self.windows:
            windows.reset()

    def add(self, number, generated, target):
        clips = [windows.push(number, resize_frame(frame, self.metric.size)) for windows, frame in zip(self.windows, (generated, target))]
        if clips[0] is not None:
            self.queue(*(clip_input(self.metric, clip) for clip in clips))

    def finish(self, results):
        results.counts[f"{self.metric.name}_clips"] = len(self.all_features()[0])
        self.write_distance(results, self.metric.name, "clips of 16 consecutive frames")

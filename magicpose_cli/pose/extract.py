"""Extracting a pose sequence from a video or image folder, with a resumable on-disk cache,
and the loaders that retarget uses for its driving input and its reference photo.

Output folder layout::

    OUT/00000.json, 00001.json, ...   OpenPose JSON per output frame (after filling/smoothing/alignment)
    OUT/00000.png,  00001.png,  ...   rendered control maps
    OUT/manifest.json                 source, fps, frames, detector, settings, per-frame status
    OUT/.cache/key.json               what the raw detections below were computed from
    OUT/.cache/raw/<source index>.json  raw detections, one per source frame, written as they finish
    OUT/.cache/people.json            the people found by their faces (pose/people.py), per selection
    OUT/.cache/person/                key.json and raw/ as above, of the one followed of several people
    OUT/.cache/face-from/             the --face-from video's own extraction

Raw detections depend only on the input's bytes, the detector and, for a tracking detector
(MediaPipe), the selected frames since the last restart of tracking (every TRACKING_SEGMENT-th
source frame, recorded in each raw file): an interrupted, shorter or longer run (or one with other
smoothing/alignment settings) reuses every frame already detected and gives exactly the keypoints
of one uninterrupted run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text, removed_on_failure
from magicpose_cli.hashing import hash_file
from magicpose_cli.images import save_png
from magicpose_cli.pose.drive import DriveMode, FaceSource, aligned_drive, check_drive
from magicpose_cli.pose.detectors import DetectorName, detect_reference_pose, make_detector, resolve_detector
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.pose.people import PERSON_AUTO, FollowedPerson, Track, detect_person, followed_boxes, followed_person
from magicpose_cli.pose.render import render_pose
from magicpose_cli.pose.temporal import (
    STATUS_DETECTED,
    STATUS_FILLED,
    fill_gaps,
    frame_statuses,
    poses_to_track,
    smooth_track,
    track_to_poses,
)
from magicpose_cli.video import FrameSelection, FrameSource

MANIFEST_NAME = "manifest.json"
CACHE_DIR_NAME = ".cache"
# A tracking detector restarts at every multiple of this many source frames (about 2 s at 30 fps):
# a resumed or longer run re-feeds at most one segment, and every run gives the same detections.
TRACKING_SEGMENT = 64
TRACKING_FEED_KEY = "magicpose_tracking_feed"


@dataclass(frozen=True)
class PoseSettings:
    """Everything besides the input that decides the output files."""

    detector: str = DetectorName.AUTO.value
    face: bool = True
    hands: bool = True
    smooth: bool = True
    smooth_strength: float = 1.0
    align_to: str | None = None
    align_to_hash: str | None = None
    person: str = PERSON_AUTO  # auto, or the number of the person to follow (pose/people.py)
    drive: str = DriveMode.ALL.value  # what the video drives; the rest is the reference's (pose/drive.py)
    face_from: str | None = None  # a video the face comes from (with align_to)
    face_from_hash: str | None = None


@dataclass
class ExtractionResult:
    output_dir: Path
    poses: list[FramePose]
    statuses: list[str]
    source_indices: list[int]
    fps: float
    detected_now: int = 0
    reused: int = 0
    seconds: float = 0.0
    from_cache: bool = False
    notice: str | None = None  # worth telling the user (which of several people is followed)
    followed: FollowedPerson | None = None  # where the followed one of several people is, frame by frame

    @property
    def detected(self) -> int:
        return self.statuses.count(STATUS_DETECTED)

    @property
    def filled(self) -> int:
        return self.statuses.count(STATUS_FILLED)


def _frame_name(index: int, suffix: str) -> str:
    return f"{index:05d}{suffix}"


def _prepare_raw_cache(cache_dir: Path, key: dict, force: bool) -> Path:
    """The raw-detection folder for ``key``; emptied when it holds another input's or detector's frames."""
    raw_dir = cache_dir / "raw"
    key_path = cache_dir / "key.json"
    stale = force or not key_path.is_file() or json.loads(key_path.read_text()) != key
    if stale and raw_dir.is_dir():
        for file in raw_dir.iterdir():
            file.unlink()
    raw_dir.mkdir(parents=True, exist_ok=True)
    if stale:
        atomic_write_text(key_path, json.dumps(key, indent=1))
    return raw_dir


def _with_reference_hash(settings: PoseSettings) -> PoseSettings:
    """``settings`` with the hashes of the ``--align-to`` image and the ``--face-from`` video, so that
    another reference or face video makes another output."""
    check_drive(settings.drive, settings.face_from, aligned=bool(settings.align_to))
    hashes = {}
    for option, name, hash_name in (("--align-to image", "align_to", "align_to_hash"), ("--face-from video", "face_from", "face_from_hash")):
        path = getattr(settings, name)
        if path and not getattr(settings, hash_name):
            if not Path(path).is_file():
                raise MagicPoseError(f"{option} not found: {path}")
            hashes[hash_name] = hash_file(Path(path))
    return replace(settings, **hashes)


def extract_poses(
    input_path: str | Path,
    output_dir: str | Path,
    selection: FrameSelection = FrameSelection(),
    settings: PoseSettings = PoseSettings(),
    annotator_dir: str | Path | None = None,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    write_maps: bool = True,
) -> ExtractionResult:
    """Detect, fill, smooth, optionally align and render the poses of ``input_path`` into ``output_dir``.

    ``on_progress(done, total)`` is called after every frame; an exception it raises stops the run,
    and the next run resumes from the frames already detected.
    """
    started = time.perf_counter()
    settings = replace(settings, detector=resolve_detector(settings.detector, annotator_dir).value)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise MagicPoseError(f"output folder {output_dir} is a file; pass -o a new or existing folder")
    source = FrameSource(input_path)
    indices = selection.indices(source.frame_count, source.fps)
    if not indices:
        raise MagicPoseError(f"no frames selected from {source.path} ({source.frame_count} frames, start {selection.start})")
    fps = selection.output_fps(source.fps)
    content_hash = source.content_hash()
    settings = _with_reference_hash(settings)
    output_key = {
        "content_hash": content_hash,
        "indices": indices,
        "settings": asdict(settings),
        "write_maps": write_maps,
    }
    manifest_path = output_dir / MANIFEST_NAME
    if not force and manifest_path.is_file():
        cached = _load_finished(output_dir, manifest_path, output_key)
        if cached is not None:
            if on_progress:
                on_progress(len(indices), len(indices))
            return cached

    with removed_on_failure(output_dir):  # a failed first run leaves no folder; an interrupted one resumes
        # The reference first: a bad --align-to must fail before minutes of detection, not after.
        reference = detect_reference_pose(settings.align_to, settings.detector, annotator_dir) if settings.align_to else None
        cache_dir, raw_key = output_dir / CACHE_DIR_NAME, {"content_hash": content_hash, "detector": settings.detector, "tracking_segment": TRACKING_SEGMENT}
        followed, notice = followed_person(source, indices, settings.person, cache_dir, content_hash, force)
        if followed is not None:  # its own raw detections, keyed by where the person was found
            cache_dir, raw_key = cache_dir / "person", {**raw_key, "faces": {str(t): box.tolist() for t, box in followed.faces.items()}}
        raw_dir = _prepare_raw_cache(cache_dir, raw_key, force)
        raw_poses, detected_now = _detect_raw_poses(source.frame, indices, raw_dir, settings.detector, annotator_dir, on_progress, followed)
        face_source = _face_source(settings, output_dir / CACHE_DIR_NAME / "face-from", annotator_dir, force)
        poses, statuses = postprocess(raw_poses, fps, settings, source.path, reference, face_source)
        for position, frame_pose in enumerate(poses):
            frame_pose.save(output_dir / _frame_name(position, ".json"))
            if write_maps:
                save_png(output_dir / _frame_name(position, ".png"), render_pose(frame_pose, face=settings.face, hands=settings.hands))
        _remove_stale_outputs(output_dir, len(poses))
        shown = followed and followed_boxes(followed, indices, raw_poses[0].width, raw_poses[0].height)
        manifest = {**_manifest(source, fps, selection, output_key, poses, statuses), "notice": notice, "followed": shown and shown.boxes}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    reused = len(indices) - detected_now
    return ExtractionResult(
        output_dir, poses, statuses, indices, fps, detected_now, reused, time.perf_counter() - started, notice=notice, followed=shown
    )


def _detect_raw_poses(
    frame_of: Callable[[int], np.ndarray],
    indices: list[int],
    raw_dir: Path | None,
    detector_name: str,
    annotator_dir: str | Path | None,
    on_progress: Callable[[int, int], None] | None,
    followed: Track | None = None,
) -> tuple[list[FramePose], int]:
    """The raw detection of every selected frame (``frame_of(index)``; of the ``followed`` person only,
    when given), and how many were detected now.

    A tracking detector (MediaPipe) restarts at every TRACKING_SEGMENT-th source frame, so a
    frame's detection depends only on the selected frames of its segment up to it (its feed),
    never on where an earlier run started or stopped. A cached frame is reused when its feed is
    this run's; a segment with frames missing is fed again from its start (the frames already
    cached there are passed through the tracker to rebuild its state, and kept). Each new frame
    is saved the moment it is found, so an interrupted run loses at most one frame (frames in
    memory have no ``raw_dir``).
    """
    tracking = detector_name == DetectorName.MEDIAPIPE.value and followed is None  # a followed person: each crop on its own
    face_at = {indices[position]: face for position, face in followed.faces.items()} if followed is not None else {}
    unique = list(dict.fromkeys(indices))
    found: dict[int, FramePose] = {}
    detected_now = 0
    detector = None
    try:
        for segment in _segments(unique):
            feeds = [segment[: position + 1] if tracking else [] for position in range(len(segment))]
            cached = [_load_raw(raw_dir, index, feed) for index, feed in zip(segment, feeds)]
            missing = [position for position, pose in enumerate(cached) if pose is None]
            if missing and detector is None:
                detector = make_detector(detector_name, annotator_dir, tracking=followed is None)
            elif missing and tracking:
                detector.restart_tracking()
            for position, index in enumerate(segment):
                if cached[position] is None:
                    image = frame_of(index)
                    frame_pose = detector.detect(image) if followed is None else detect_person(detector, image, face_at.get(index))
                    found[index] = _save_raw(raw_dir, index, frame_pose, feeds[position])
                    detected_now += 1
                else:
                    if tracking and missing and position < missing[-1]:
                        detector.detect(frame_of(index))  # rebuilds the tracker's state; the cached pose is the same
                    found[index] = cached[position]
                if on_progress:
                    on_progress(len(found), len(unique))
    finally:
        if detector is not None:
            detector.close()
    return [found[index] for index in indices], detected_now


def _segments(indices: list[int]) -> list[list[int]]:
    """``indices`` (increasing) cut where the tracking segment changes: what each restart of the tracker sees."""
    segments: list[list[int]] = []
    for index in indices:
        if not segments or segments[-1][0] // TRACKING_SEGMENT != index // TRACKING_SEGMENT:
            segments.append([])
        segments[-1].append(index)
    return segments


def _save_raw(raw_dir: Path | None, index: int, frame_pose: FramePose, feed: list[int]) -> FramePose:
    """Save a raw detection with its feed in ``raw_dir`` (if any); returns it as it reads back (rounded
    as every later run reads it)."""
    if raw_dir is None:
        return frame_pose
    text = json.dumps({**frame_pose.to_openpose(), TRACKING_FEED_KEY: feed})
    atomic_write_text(raw_dir / _frame_name(index, ".json"), text)
    return FramePose.from_openpose(json.loads(text))


def _load_raw(raw_dir: Path | None, index: int, feed: list[int]) -> FramePose | None:
    """The cached raw detection of source frame ``index`` if it was made from this ``feed``, else None."""
    path = raw_dir / _frame_name(index, ".json") if raw_dir is not None else None
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return FramePose.from_openpose(data) if data.get(TRACKING_FEED_KEY) == feed else None


def poses_of_frames(
    frames: Sequence[np.ndarray],
    fps: float,
    settings: PoseSettings = PoseSettings(),
    annotator_dir: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    what: str = "the frames",
) -> list[FramePose]:
    """The poses of frames already in memory (HxWx3 uint8, in order: a ComfyUI video loader's), detected,
    filled and smoothed as ``extract_poses`` does a video's; ``fps`` paces the smoothing. Nothing is cached."""
    if not len(frames):
        raise MagicPoseError(f"no frames in {what}")
    detector = resolve_detector(settings.detector, annotator_dir).value
    raw_poses, _ = _detect_raw_poses(frames.__getitem__, list(range(len(frames))), None, detector, annotator_dir, on_progress)
    return postprocess(raw_poses, fps, settings, Path(what))[0]


def _manifest(
    source: FrameSource, fps: float, selection: FrameSelection, output_key: dict, poses: list[FramePose], statuses: list[str]
) -> dict:
    """What ``manifest.json`` says about a finished extraction (``output_key`` decides whether a rerun can reuse it)."""
    return {
        "source": str(source.path),
        "content_hash": output_key["content_hash"],
        "fps": fps,
        "source_fps": source.fps,
        "source_frame_count": source.frame_count,
        "frame_count": len(poses),
        "width": poses[0].width,
        "height": poses[0].height,
        "detector": output_key["settings"]["detector"],
        "settings": output_key["settings"],
        "selection": asdict(selection),
        "output_key": output_key,
        "frames": [
            {"index": position, "source_index": index, "status": status}
            for position, (index, status) in enumerate(zip(output_key["indices"], statuses))
        ],
    }


def _face_source(settings: PoseSettings, work_dir: Path, annotator_dir: str | Path | None, force: bool) -> FaceSource | None:
    """The poses of the ``--face-from`` video (extracted with the same detector and filtering into ``work_dir``)."""
    if not settings.face_from:
        return None
    face_settings = replace(settings, align_to=None, align_to_hash=None, face_from=None, face_from_hash=None, drive=DriveMode.ALL.value, person=PERSON_AUTO)
    result = extract_poses(settings.face_from, work_dir, settings=face_settings, annotator_dir=annotator_dir, force=force, write_maps=False)
    return FaceSource(result.poses, result.fps)


def postprocess(
    raw_poses: list[FramePose], fps: float, settings: PoseSettings, source: Path, reference: FramePose | None = None,
    face_source: FaceSource | None = None,
) -> tuple[list[FramePose], list[str]]:
    """Gap filling, smoothing, dropping face/hands when not wanted, and alignment to ``reference`` when
    given, keeping of it what ``settings.drive`` keeps, with the face of ``face_source`` when given."""
    track, found = poses_to_track(raw_poses)
    if not found.any():
        raise MagicPoseError(f"no person found in any frame of {source}; give a video in which a whole person is visible")
    track = fill_gaps(track, found)
    statuses = frame_statuses(found, track)
    if settings.smooth:
        width, height = raw_poses[0].width, raw_poses[0].height
        track = smooth_track(track, fps, float(max(width, height)), settings.smooth_strength)
    poses = track_to_poses(track, [(pose.width, pose.height) for pose in raw_poses])
    for frame_pose in poses:
        for person in frame_pose.people:
            if not settings.face:
                person.face[:] = 0.0
            if not settings.hands:
                person.left_hand[:] = 0.0
                person.right_hand[:] = 0.0
    if reference is not None:
        poses = aligned_drive(poses, fps, reference, settings.drive, face_source, settings.align_to or "the reference")
    return poses, statuses


def _load_finished(output_dir: Path, manifest_path: Path, output_key: dict) -> ExtractionResult | None:
    """The finished result of an earlier run with the same input and settings, if all its files are there."""
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("output_key") != output_key:
        return None
    count = manifest["frame_count"]
    suffixes = (".json", ".png") if output_key["write_maps"] else (".json",)
    if not all((output_dir / _frame_name(i, suffix)).is_file() for i in range(count) for suffix in suffixes):
        return None
    poses = [FramePose.load(output_dir / _frame_name(i, ".json")) for i in range(count)]
    frames = manifest["frames"]
    return ExtractionResult(
        output_dir,
        poses,
        [frame["status"] for frame in frames],
        [frame["source_index"] for frame in frames],
        manifest["fps"],
        from_cache=True,
        notice=manifest.get("notice"),
        followed=FollowedPerson([frame["source_index"] for frame in frames], manifest["followed"]) if manifest.get("followed") else None,
    )


def _remove_stale_outputs(output_dir: Path, count: int) -> None:
    """Delete numbered outputs beyond ``count`` left by an earlier, longer run."""
    for path in output_dir.iterdir():
        if path.suffix in (".json", ".png") and path.stem.isdigit() and int(path.stem) >= count:
            path.unlink()

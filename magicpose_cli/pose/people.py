"""Several people in a driving video: find each one, follow each through the clip, pick one.

People are found by their faces (MediaPipe's bundled full-range face detector, offline). Each
face is followed from frame to frame by where it is (its predicted place, and its size) and by
what its person looks like: a hue-saturation histogram of the body box below the face, which
keeps two people apart where they cross. A person unseen for up to ``MAX_UNSEEN`` frames (turned
away, behind someone) is picked up again by the same measures. ``--person N`` counts the people
from left to right where each is first found; ``auto`` takes the most visible one (the largest
faces over the most frames). The landmarks of the followed person are then detected on a crop
around that person (MediaPipe, which sees one person) or picked from the whole frame's people
(DWPose, OpenPose) and given back in frame coordinates.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text
from magicpose_cli.pose.keypoints import FramePose, PersonPose
from magicpose_cli.video import FrameSource

PERSON_AUTO = "auto"
MAX_UNSEEN = 15  # frames a person may be unseen and still be the same person
# A face this far from a person's predicted place (in face widths), or this unlike them, is someone else.
MAX_JUMP_FACES = 3.0
MAX_APPEARANCE_DISTANCE = 0.55
APPEARANCE_WEIGHT = 2.0  # appearance counts this much more than position when two people are close
MIN_FRAMES_SEEN = 0.1  # of the clip's frames: fewer is a stray detection, not a person
_HISTOGRAM_BINS = (16, 8)  # hue, saturation
# The body box around a face, in face sizes: what the landmarks see and what the histogram measures.
_BODY_HALF_WIDTH, _BODY_ABOVE, _BODY_BELOW = 2.5, 0.8, 7.0


def parse_person(value: str | int | None, what: str = "--person") -> int | None:
    """``--person``: None for auto, else the person's number from 1, or one line saying what is expected."""
    text = str(value if value is not None else PERSON_AUTO).strip().lower()
    if text == PERSON_AUTO:
        return None
    if not text.isdigit() or int(text) < 1:
        raise MagicPoseError(f"{what} must be auto or a number from 1 (people counted from the left), got {value!r}")
    return int(text)


def body_box(face: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the part of the picture the person of ``face`` (x0, y0, x1, y1) can fill."""
    size = max(face[2] - face[0], face[3] - face[1])
    centre = (face[0] + face[2]) / 2
    box = (centre - _BODY_HALF_WIDTH * size, face[1] - _BODY_ABOVE * size, centre + _BODY_HALF_WIDTH * size, face[3] + _BODY_BELOW * size)
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    return x0, y0, min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))


def appearance(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The normalised hue-saturation histogram of the torso under ``face``: what tells two people apart."""
    import cv2

    height, width = image.shape[:2]
    size = face[2] - face[0]
    x0, x1 = max(0, int(face[0] - 0.5 * size)), min(width, int(face[2] + 0.5 * size))
    y0, y1 = max(0, int(face[1])), min(height, int(face[3] + 2.5 * size))
    region = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
    if region.size == 0:
        return np.full(int(np.prod(_HISTOGRAM_BINS)), 1.0 / np.prod(_HISTOGRAM_BINS), dtype=np.float32)
    hsv = cv2.cvtColor(region, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, list(_HISTOGRAM_BINS), [0, 180, 0, 256]).reshape(-1)
    return (histogram / max(float(histogram.sum()), 1.0)).astype(np.float32)


def appearance_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Hellinger distance of two normalised histograms: 0 the same, 1 nothing in common."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sqrt(first * second).sum()))))


class FaceFinder:
    """MediaPipe's full-range face detector (bundled with mediapipe; people up to about 5 m away)."""

    def __init__(self):
        try:
            import mediapipe as mp
        except ImportError:
            raise MagicPoseError("--person needs mediapipe to find people: pip install mediapipe==0.10.14 (Python 3.10-3.12)") from None
        from magicpose_cli.pose.mediapipe_detector import _native_stderr_silenced

        with _native_stderr_silenced():
            self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def faces(self, image: np.ndarray) -> np.ndarray:
        """``(N, 4)`` face boxes x0, y0, x1, y1 in pixels."""
        height, width = image.shape[:2]
        result = self._detector.process(np.ascontiguousarray(image[..., :3], dtype=np.uint8))
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            boxes.append((box.xmin * width, box.ymin * height, (box.xmin + box.width) * width, (box.ymin + box.height) * height))
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    def close(self) -> None:
        self._detector.close()


@dataclass(frozen=True)
class FollowedPerson:
    """Where the followed person is in each driving frame (for showing it): the source frame
    indices, and the person's box x0, y0, x1, y1 in each (None where they were not seen)."""

    source_indices: list[int]
    boxes: list[tuple[int, int, int, int] | None]


def followed_boxes(track: Track, indices: list[int], width: int, height: int) -> FollowedPerson:
    """Where ``track``'s person is in each of the frames ``indices`` of a ``width`` x ``height`` video."""
    faces = [track.faces.get(position) for position in range(len(indices))]
    return FollowedPerson(indices, [None if face is None else body_box(face, width, height) for face in faces])


def draw_followed(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """``image`` with the followed person's box drawn in yellow (unchanged where they were not seen)."""
    import cv2

    drawn = np.ascontiguousarray(image[..., :3]).copy()
    if box is not None:
        thickness = max(2, round(max(image.shape[:2]) / 150))
        cv2.rectangle(drawn, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1), (255, 220, 0), thickness)
    return drawn


@dataclass
class Track:
    """One person through the clip: their face box at each frame position where they were seen."""

    faces: dict[int, np.ndarray] = field(default_factory=dict)
    histogram: np.ndarray | None = None  # running mean of the appearance

    def predicted(self, position: int) -> np.ndarray:
        """Where the face should be at ``position``: the last box moved on at the last speed."""
        seen = sorted(self.faces)
        last = self.faces[seen[-1]]
        if len(seen) < 2:
            return last
        before = self.faces[seen[-2]]
        speed = (last - before) / (seen[-1] - seen[-2])
        return last + speed * min(position - seen[-1], 3)

    def cost(self, position: int, face: np.ndarray, histogram: np.ndarray) -> float | None:
        """How unlike this person the ``face`` at ``position`` is; None when it cannot be them."""
        expected = self.predicted(position)
        size = max(float(expected[2] - expected[0]), 1.0)
        jump = float(np.linalg.norm((face[:2] + face[2:]) / 2 - (expected[:2] + expected[2:]) / 2)) / size
        unlike = appearance_distance(self.histogram, histogram)
        if jump > MAX_JUMP_FACES * (1 + (position - max(self.faces)) / 4) or unlike > MAX_APPEARANCE_DISTANCE:
            return None
        return jump + APPEARANCE_WEIGHT * unlike

    def add(self, position: int, face: np.ndarray, histogram: np.ndarray) -> None:
        self.faces[position] = face
        self.histogram = histogram if self.histogram is None else 0.8 * self.histogram + 0.2 * histogram

    @property
    def visibility(self) -> float:
        return float(sum((face[2] - face[0]) * (face[3] - face[1]) for face in self.faces.values()))


def follow_people(found: list[tuple[np.ndarray, list[np.ndarray]]]) -> list[Track]:
    """Every person through the clip from each frame's (face boxes, appearances), numbered from the
    left where each was first found; stray detections (seen in under MIN_FRAMES_SEEN of the frames) dropped."""
    tracks: list[Track] = []
    for position, (faces, histograms) in enumerate(found):
        live = [track for track in tracks if position - max(track.faces) <= MAX_UNSEEN]
        pairs = sorted(
            (cost, track_index, face_index)
            for track_index, track in enumerate(live)
            for face_index, (face, histogram) in enumerate(zip(faces, histograms))
            if (cost := track.cost(position, face, histogram)) is not None
        )
        taken_tracks, taken_faces = set(), set()
        for _, track_index, face_index in pairs:  # the closest pairs first
            if track_index in taken_tracks or face_index in taken_faces:
                continue
            live[track_index].add(position, faces[face_index], histograms[face_index])
            taken_tracks.add(track_index)
            taken_faces.add(face_index)
        for face_index in set(range(len(faces))) - taken_faces:
            tracks.append(Track())
            tracks[-1].add(position, faces[face_index], histograms[face_index])
    least = max(1, int(np.ceil(MIN_FRAMES_SEEN * len(found))))
    people = [track for track in tracks if len(track.faces) >= least]
    return sorted(people, key=lambda track: float(track.faces[min(track.faces)][[0, 2]].mean()))


def find_people(source: FrameSource, indices: list[int]) -> list[Track]:
    """The people of the selected frames of ``source``, followed through them (see follow_people)."""
    finder = FaceFinder()
    found = []
    try:
        for index in indices:
            image = source.frame(index)
            faces = finder.faces(image)
            found.append((faces, [appearance(image, face) for face in faces]))
    finally:
        finder.close()
    return follow_people(found)


def choose_person(tracks: list[Track], person: int | None, source_name: str) -> tuple[Track | None, str | None]:
    """The track ``--person`` names, and a line to tell the user. None (and no line) where the whole
    frame's main person is right: auto with at most one person found."""
    if person is None:
        if len(tracks) <= 1:
            return None, None
        chosen = max(range(len(tracks)), key=lambda number: tracks[number].visibility)
        return tracks[chosen], (
            f"{len(tracks)} people in {source_name}: following person {chosen + 1} from the left, the most visible "
            f"(--person 1..{len(tracks)} picks another)"
        )
    if person > len(tracks):
        found = f"{len(tracks)} {'person was' if len(tracks) == 1 else 'people were'}"
        raise MagicPoseError(f"--person {person}: {found} found in {source_name}; choose --person 1..{max(len(tracks), 1)} or auto")
    return tracks[person - 1], None


def followed_person(
    source: FrameSource, indices: list[int], person: str, cache_dir: Path, content_hash: str, force: bool
) -> tuple[Track | None, str | None]:
    """The person ``--person`` follows (None: the whole frame's main person, as with one person in
    view), and the line saying so; the people found are cached in ``cache_dir``. Without mediapipe,
    auto is the whole frame's main person."""
    number = parse_person(person)
    if number is None and importlib.util.find_spec("mediapipe") is None:
        return None, None
    key = {"content_hash": content_hash, "indices": indices}
    tracks = people_cached(cache_dir / "people.json", key, lambda: find_people(source, indices), force)
    return choose_person(tracks, number, str(source.path))


def people_cached(cache_file: Path, key: dict, compute: Callable[[], list[Track]], force: bool = False) -> list[Track]:
    """The people of a selection, from ``cache_file`` when it was written for ``key`` (and not ``force``), else computed and saved."""
    if cache_file.is_file() and not force:
        saved = json.loads(cache_file.read_text())
        if saved.get("key") == key:
            return [Track({int(t): np.asarray(box, dtype=np.float32) for t, box in faces.items()}) for faces in saved["people"]]
    tracks = compute()
    people = [{str(t): [round(float(v), 2) for v in box] for t, box in track.faces.items()} for track in tracks]
    atomic_write_text(cache_file, json.dumps({"key": key, "people": people}))
    return people_cached(cache_file, key, lambda: tracks)  # read back: the rounding is what later runs see


def nearest_person(frame_pose: FramePose, face: np.ndarray) -> FramePose:
    """Only the person whose head points lie nearest the centre of ``face``."""
    centre = (face[:2] + face[2:]) / 2

    def distance(person: PersonPose) -> float:
        head = np.concatenate([person.body[[0, 14, 15, 16, 17]], person.face])
        head = head[head[:, 2] > 0, :2]
        return float(np.linalg.norm(head.mean(axis=0) - centre)) if len(head) else np.inf

    people = [person for person in frame_pose.people if np.isfinite(distance(person))]
    size = float(face[2] - face[0])
    best = min(people, key=distance, default=None)
    keep = [best] if best is not None and distance(best) <= 2 * size else []
    return FramePose(frame_pose.width, frame_pose.height, keep)


def detect_person(detector, image: np.ndarray, face: np.ndarray | None) -> FramePose:
    """The followed person's poses in one frame (none where they were not seen): MediaPipe, which
    sees one person, on the crop around them; a several-people detector on the whole frame; of
    what was found, the person whose head is at ``face``."""
    height, width = image.shape[:2]
    if face is None:
        return FramePose(width, height, [])
    if detector.name == "mediapipe":
        x0, y0, x1, y1 = body_box(face, width, height)
        found = detector.detect(np.ascontiguousarray(image[y0:y1, x0:x1])).moved((1.0, 1.0), (x0, y0), width, height)
    else:
        found = detector.detect(image)
    return nearest_person(found, face)

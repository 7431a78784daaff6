"""Procedural 2D people drawn from an OpenPose skeleton, with exact keypoints for every frame.

Real dance videos with trustworthy keypoints and ground truth for "person A doing person B's
motion" do not exist, so the demo model is trained and evaluated on people drawn here.
A person is an :class:`Identity` (colours, clothing, hair, background, body proportions) and a
:class:`Motion` (per-frame joint angles and facial expression channels, free of body size).
Forward kinematics turns the two into OpenPose keypoints (18 body, 2 x 21 hand, 70 face points),
and :func:`draw_person` draws the person from those keypoints alone plus the identity, so what
is drawn always sits where the keypoints say. Driving one identity's proportions with another
person's motion gives exact retargeting ground truth (:func:`sample_pair`).

Everything is plain numpy + OpenCV and deterministic per seed. The package's rooms: ``identity``
(what a person looks like), ``motion`` (how they move, and forward kinematics to keypoints),
``drawing`` (pixels from keypoints) and ``datasets`` (videos on disk, evaluation pairs).
"""

from magicpose_cli.synthetic.datasets import SyntheticPair, render_video, sample_pair, write_dataset
from magicpose_cli.synthetic.drawing import EYE_WHITE, MOUTH_INSIDE, draw_background, draw_person
from magicpose_cli.synthetic.identity import HAIR_STYLES, LEGWEAR, SHIRT_PATTERNS, SLEEVES, Identity, sample_identity, sleeve_colour
from magicpose_cli.synthetic.motion import MOTION_CHANNELS, Motion, motion_poses, pose_at, sample_motion

__all__ = [
    "EYE_WHITE", "HAIR_STYLES", "LEGWEAR", "MOTION_CHANNELS", "MOUTH_INSIDE", "SHIRT_PATTERNS", "SLEEVES",
    "Identity", "Motion", "SyntheticPair",
    "draw_background", "draw_person", "motion_poses", "pose_at", "render_video", "sample_identity",
    "sample_motion", "sample_pair", "sleeve_colour", "write_dataset",
]  # fmt: skip

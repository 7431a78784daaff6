"""magicpose: make the person in one photo perform the motion of a driving video (MagicPose)."""

__version__ = "0.1.0"

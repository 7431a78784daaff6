"""Poses: OpenPose-format keypoints, detectors, rendering, smoothing, alignment and caching."""

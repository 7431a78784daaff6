"""magicpose: make the person in one photo perform the motion of a driving video (MagicPose)."""

from magicpose_cli.threads import wait_without_spinning

__version__ = "0.1.0"

wait_without_spinning()  # before anything loads torch (magicpose_cli/threads.py)

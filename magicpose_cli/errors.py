"""Errors a user can act on: the CLI prints their message in one line, without a traceback."""


class MagicPoseError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class MissingWeightsError(MagicPoseError):
    """Weights that the requested work needs are not on disk; the message says what to fetch."""

"""The failures a stage expects: bad input, reported as one line and exit status 1.

Every error class a stage raises for what it was given (params.yaml, a dataset file, a
mirror, a video) derives from `InputError`, so the stage entry point (dl4cv.pipeline.cli)
needs one `except`, not a list that every new error class must remember to join.
"""

from __future__ import annotations


class InputError(Exception):
    """What a stage was given is not what it needs. The message is one line that names the
    file or key and what was expected."""


class DatasetError(InputError):
    """A dataset file is not what its declared format says: not a zip archive, a class
    without a single usable image, arrays missing from an .npz."""

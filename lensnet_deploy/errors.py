"""Exceptions with one-line messages; the CLI prints them and exits non-zero."""

from __future__ import annotations


class LensNetDeployError(Exception):
    """Base class: a problem with the user's input, stated in one line."""

    exit_code = 2


class CheckpointError(LensNetDeployError):
    """A checkpoint is missing, unreadable, or not a LENS-Net of the asked shape."""


class DatasetError(LensNetDeployError):
    """Images or masks are missing, unreadable, unpaired or of an unusable size."""


class ResourceError(LensNetDeployError):
    """A model does not fit the asked neuromorphic board."""

"""Exceptions with one-line messages; the CLI prints them and exits with their ``exit_code``.

``LensNetDeployError`` and its subclasses are problems with what the user
gave (exit 2), with what a target can hold (exit 3) or with what this machine
lacks (exit 4: the input is fine, the system cannot run it). Anything else that
escapes a command is a bug in lensnet-deploy (exit 1); :class:`InternalError`
marks the invariants the code checks itself.
"""

from __future__ import annotations


class LensNetDeployError(Exception):
    """Base class: a problem with the user's input, stated in one line."""

    exit_code = 2


class CheckpointError(LensNetDeployError):
    """A checkpoint is missing, unreadable, or not a LENS-Net of the asked shape."""


class ModelError(LensNetDeployError, ValueError):
    """A LENS-Net configuration, variant or input size that the architecture cannot take."""


class DatasetError(LensNetDeployError):
    """Images or masks are missing, unreadable, unpaired or of an unusable size."""


class GraphError(LensNetDeployError):
    """A graph breaks the rules of its operations (operand count, shapes, parameters)."""


class ResourceError(LensNetDeployError):
    """A model does not fit the asked neuromorphic board."""

    exit_code = 3


class UnavailableError(LensNetDeployError):
    """Valid input that this machine cannot run: a system or extension is missing (Intel's
    lava-loihi for ``deploy``). Exit 4, so scripts tell it apart from bad input (2)."""

    exit_code = 4


class DesignRuleError(LensNetDeployError):
    """A layer breaks one of a target's design rules (a width, a format, a limit).

    Carries the ``layer``, the ``rule``, the ``limit`` and the offending ``value``,
    so that tools can act on it; the message says all four in one line."""

    exit_code = 3

    def __init__(self, layer: str, rule: str, limit: object, value: object, detail: str = "") -> None:
        self.layer, self.rule, self.limit, self.value = layer, rule, limit, value
        text = f"layer {layer}: design rule {rule!r} broken: {value} (limit {limit})"
        super().__init__(text + (f"; {detail}" if detail else ""))


class InternalError(RuntimeError):
    """An invariant of lensnet-deploy itself does not hold: a bug, never the user's input."""

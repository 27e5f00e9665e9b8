"""Shared by the folding passes: fold a per-channel affine map ``y·factor + offset`` into the
convolution that produces ``y`` (its only consumer being the folded node)."""

from __future__ import annotations

import numpy as np

from ...errors import GraphError
from ..ir import Graph, Node
from ..ops import Conv


def producing_conv(g: Graph, node: Node) -> Node:
    """The convolution ``node`` reads, if ``node`` is its only consumer; else a one-line error."""
    (src,) = node.inputs
    conv = g.nodes[src]
    if not isinstance(conv.op, Conv) or len(g.consumers(src)) != 1:
        raise GraphError(f"{node.kind} {node.name} does not follow a convolution it can fold into")
    return conv


def fold_affine(conv: Node, factor: np.ndarray, offset: np.ndarray | None = None) -> None:
    """``conv'(x) = conv(x)·factor + offset`` per output channel (float64)."""
    op: Conv = conv.op  # type: ignore[assignment]
    op.weight = op.weight * factor[:, None, None, None]
    if op.bias is None and offset is None:
        return
    scaled = op.bias * factor if op.bias is not None else np.zeros_like(factor)
    op.bias = scaled + offset if offset is not None else scaled

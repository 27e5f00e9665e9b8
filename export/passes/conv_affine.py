"""Shared by the folding passes: fold a per-channel affine map ``y·factor + offset`` into the
convolution that produces ``y`` (its only consumer being the folded node)."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node


def producing_conv(g: Graph, node: Node) -> Node:
    """The convolution ``node`` reads, if ``node`` is its only consumer; else a one-line error."""
    (src,) = node.inputs
    conv = g.nodes[src]
    if conv.op != "conv" or len(g.consumers(src)) != 1:
        raise ValueError(f"{node.op} {node.name} does not follow a convolution it can fold into")
    return conv


def fold_affine(conv: Node, factor: np.ndarray, offset: np.ndarray | None = None) -> None:
    """``conv'(x) = conv(x)·factor + offset`` per output channel (float64)."""
    conv.attrs["weight"] = conv.attrs["weight"] * factor[:, None, None, None]
    bias = conv.attrs["bias"]
    if bias is None and offset is None:
        return
    scaled = bias * factor if bias is not None else np.zeros_like(factor)
    conv.attrs["bias"] = scaled + offset if offset is not None else scaled

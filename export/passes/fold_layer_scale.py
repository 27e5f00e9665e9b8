"""Fold per-channel scales (transformer layer scales) into the convolution before them."""

from __future__ import annotations

from ..ir import Graph
from ..ops import Scale
from .conv_affine import fold_affine, producing_conv


def fold_layer_scale(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.of(Scale):
        fold_affine(producing_conv(g, node), node.op.scale)  # type: ignore[attr-defined]
        g.bypass(node.name)
    return g

"""Fold per-channel scales (transformer layer scales) into the convolution before them."""

from __future__ import annotations

from ..ir import Graph
from .conv_affine import fold_affine, producing_conv


def fold_layer_scale(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.of_op("scale"):
        fold_affine(producing_conv(g, node), node.attrs["scale"])
        g.bypass(node.name)
    return g

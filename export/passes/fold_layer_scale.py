"""Fold per-channel scales (transformer layer scales) into the convolution before them."""

from __future__ import annotations

from ..ir import Graph


def fold_layer_scale(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.of_op("scale"):
        (src,) = node.inputs
        conv = g.nodes[src]
        if conv.op != "conv" or len(g.consumers(src)) != 1:
            raise ValueError(f"scale {node.name} does not follow a convolution it can fold into")
        s = node.attrs["scale"]
        conv.attrs["weight"] = conv.attrs["weight"] * s[:, None, None, None]
        if conv.attrs["bias"] is not None:
            conv.attrs["bias"] = conv.attrs["bias"] * s
        g.bypass(node.name)
    return g

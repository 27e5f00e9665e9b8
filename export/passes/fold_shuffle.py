"""Fold a channel shuffle into the input channels of the convolutions after it.

``conv(MS(x[perm]))`` equals ``conv'(MS(x))`` with ``w'[:, perm[c]] = w[:, c]``:
the spike function is elementwise, so the permutation passes it and lands
in the weights. The spike layer then sees unshuffled channels; its
``sources`` record the permutation for comparisons with PyTorch.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph


def fold_shuffle(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.of_op("shuffle"):
        perm = np.asarray(node.attrs["perm"])
        spikes = g.consumers(node.name)
        convs = [c for s in spikes for c in g.consumers(s.name)]
        if not spikes or any(s.op != "spike" for s in spikes) or any(
                c.op != "conv" or c.attrs["groups"] != 1 for c in convs):
            raise ValueError(f"shuffle {node.name} is not followed by spikes feeding dense convolutions")
        inverse = np.argsort(perm)
        for conv in convs:
            conv.attrs["weight"] = conv.attrs["weight"][:, inverse]
        for s in spikes:
            s.attrs["sources"] = [{"call": src["call"], "views": [{"op": "permute", "perm": perm.tolist()},
                                                                   *src["views"]]}
                                  for src in s.attrs["sources"]]
        g.bypass(node.name)
    return g

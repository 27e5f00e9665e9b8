"""Fold a channel shuffle into the input channels of the convolutions after it.

``conv(MS(x[perm]))`` equals ``conv'(MS(x))`` with ``w'[:, perm[c]] = w[:, c]``:
the spike function is elementwise, so the permutation passes it and lands
in the weights. The spike layer then sees unshuffled channels; its
``sources`` record the permutation for comparisons with PyTorch.
"""

from __future__ import annotations

import numpy as np

from ...errors import GraphError
from ..ir import Graph
from ..ops import Conv, Shuffle, Spike


def fold_shuffle(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.of(Shuffle):
        perm = np.asarray(node.op.perm)  # type: ignore[attr-defined]
        spikes = g.consumers(node.name)
        convs = [c for s in spikes for c in g.consumers(s.name)]
        if not spikes or any(not isinstance(s.op, Spike) for s in spikes) or any(
                not isinstance(c.op, Conv) or c.op.groups != 1 for c in convs):
            raise GraphError(f"shuffle {node.name} is not followed by spikes feeding dense convolutions")
        inverse = np.argsort(perm)
        for conv in convs:
            conv.op.weight = conv.op.weight[:, inverse]  # type: ignore[attr-defined]
        for s in spikes:
            op: Spike = s.op  # type: ignore[assignment]
            op.sources = [{"call": src["call"], "views": [{"op": "permute", "perm": perm.tolist()}, *src["views"]]}
                          for src in op.sources]
        g.bypass(node.name)
    return g

"""Merge spike nodes that read the same value with the same D (one neuron layer, many calls).

In LENS-Net the SMCB applies three spike modules to one tensor, and after
:func:`commute_spike` the SCAB max branch spikes the same tensor as the
decoder's gate; each merged layer keeps every PyTorch call it reproduces.
"""

from __future__ import annotations

from ..ir import Graph
from ..ops import Spike


def dedupe_spikes(graph: Graph) -> Graph:
    g = graph.copy()
    first: dict[tuple, str] = {}
    for spike in g.of(Spike):
        op: Spike = spike.op  # type: ignore[assignment]
        key = (spike.inputs[0], op.D, op.out_scale)
        if key not in first:
            first[key] = spike.name
            continue
        keeper = g.nodes[first[key]]
        keeper.op.sources = keeper.op.sources + op.sources  # type: ignore[attr-defined]
        g.rewire(spike.name, keeper.name)
        del g.nodes[spike.name]
    return g

"""Move each spike layer's 1/D normalisation into what consumes it.

Afterwards every spike node outputs integer counts. Convolutions take the
factor into their weights; attention and gating take it into their scale;
nearest upsampling and max pooling (positively homogeneous) pass it on to
their own consumers.
"""

from __future__ import annotations

from ...errors import GraphError
from ..ir import Graph
from ..ops import Attention, Conv, Gate, MaxPool, Spike, Upsample

PASS_THROUGH = (Upsample, MaxPool)


def _absorb(g: Graph, producer: str, factor: float) -> None:
    for c in g.consumers(producer):
        op = c.op
        if isinstance(op, Conv):
            op.weight = op.weight * factor
        elif isinstance(op, Attention) or (isinstance(op, Gate) and c.inputs[1] == producer
                                           and c.inputs[0] != producer):
            op.scale = op.scale * factor ** c.inputs.count(producer)
        elif isinstance(op, PASS_THROUGH):
            _absorb(g, c.name, factor)
        else:
            raise GraphError(f"{c.kind} node {c.name} cannot absorb the spike scale of {producer}")


def fold_spike_scale(graph: Graph) -> Graph:
    g = graph.copy()
    for spike in g.of(Spike):
        op: Spike = spike.op  # type: ignore[assignment]
        if op.out_scale != 1.0:
            _absorb(g, spike.name, op.out_scale)
            op.out_scale = 1.0
    return g



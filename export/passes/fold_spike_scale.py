"""Move each spike layer's 1/D normalisation into what consumes it.

Afterwards every spike node outputs integer counts. Convolutions take the
factor into their weights; attention and gating take it into their scale;
nearest upsampling and max pooling (positively homogeneous) pass it on to
their own consumers.
"""

from __future__ import annotations

from ..ir import Graph

PASS_THROUGH = ("upsample", "maxpool")


def _absorb(g: Graph, producer: str, factor: float) -> None:
    for c in g.consumers(producer):
        if c.op == "conv":
            c.attrs["weight"] = c.attrs["weight"] * factor
        elif c.op == "attention" or (c.op == "gate" and c.inputs[1] == producer and c.inputs[0] != producer):
            c.attrs["scale"] = c.attrs["scale"] * factor ** c.inputs.count(producer)
        elif c.op in PASS_THROUGH:
            _absorb(g, c.name, factor)
        else:
            raise ValueError(f"{c.op} node {c.name} cannot absorb the spike scale of {producer}")


def fold_spike_scale(graph: Graph) -> Graph:
    g = graph.copy()
    for spike in g.of_op("spike"):
        factor = spike.attrs["out_scale"]
        if factor != 1.0:
            _absorb(g, spike.name, factor)
            spike.attrs["out_scale"] = 1.0
    return g



"""Move the spike function before global max pooling and nearest upsampling.

The spike function is monotone and elementwise, so ``MS(maxpool(x)) =
maxpool(MS(x))`` and ``MS(up(x)) = up(MS(x))`` exactly. Afterwards pooling
and upsampling act on integer spike counts (a relay on hardware; max pooling
of spike planes is expressible in standard NIR), and the upsampled layer
needs a quarter of the neurons. Each moved spike records the view
(``global_max`` or ``upsample``) that turns its counts back into the
counts of the PyTorch call it reproduces.
"""

from __future__ import annotations

import dataclasses

from ..ir import Graph, Node
from ..ops import MaxPool, Spike, Upsample

COMMUTING = {MaxPool: "global_max", Upsample: "upsample"}


def commute_spike(graph: Graph) -> Graph:
    g = graph.copy()
    for spike in g.of(Spike):
        (src,) = spike.inputs
        pool = g.nodes[src]
        if type(pool.op) not in COMMUTING or len(g.consumers(src)) != 1:
            continue
        (x,) = pool.inputs
        view = {"op": COMMUTING[type(pool.op)],
                **({"factor": pool.op.factor} if isinstance(pool.op, Upsample) else {})}
        op: Spike = spike.op  # type: ignore[assignment]
        sources = [{"call": s["call"], "views": [view, *s["views"]]} for s in op.sources]
        moved = Node(f"{spike.name}.pre", op.replace(sources=sources), [x], g.nodes[x].shape)
        g.insert_after(x, moved)
        relay = Node(f"{pool.name}.spikes", dataclasses.replace(pool.op), [moved.name], pool.shape)
        g.insert_after(moved.name, relay)
        g.rewire(spike.name, relay.name)
        del g.nodes[spike.name]
        del g.nodes[pool.name]
    return g

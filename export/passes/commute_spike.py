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

from ..ir import Graph, Node

COMMUTING = {"maxpool": "global_max", "upsample": "upsample"}


def commute_spike(graph: Graph) -> Graph:
    g = graph.copy()
    for spike in g.of_op("spike"):
        (src,) = spike.inputs
        pool = g.nodes[src]
        if pool.op not in COMMUTING or len(g.consumers(src)) != 1:
            continue
        (x,) = pool.inputs
        view = {"op": COMMUTING[pool.op], **({"factor": pool.attrs["factor"]} if pool.op == "upsample" else {})}
        moved = Node(f"{spike.name}.pre", "spike", [x], g.nodes[x].shape, dict(spike.attrs))
        moved.attrs["sources"] = [{"call": s["call"], "views": [view, *s["views"]]} for s in spike.attrs["sources"]]
        g.insert_after(x, moved)
        relay = Node(f"{pool.name}.spikes", pool.op, [moved.name], pool.shape, dict(pool.attrs))
        g.insert_after(moved.name, relay)
        g.rewire(spike.name, relay.name)
        del g.nodes[spike.name]
        del g.nodes[pool.name]
    return g

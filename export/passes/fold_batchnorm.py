"""Fold inference BatchNorm into the convolution before it (in float64).

``bn(conv(x)) = conv'(x)`` with ``w' = w·γ/√(σ²+ε)`` per output channel and
``b' = (b − μ)·γ/√(σ²+ε) + β``. Float64 keeps the folded pre-activations
within ~1e-15 of the exact algebra; float32 folding flips spikes.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph


def fold_batchnorm(graph: Graph) -> Graph:
    g = graph.copy()
    for bn in g.of_op("batchnorm"):
        (src,) = bn.inputs
        conv = g.nodes[src]
        if conv.op != "conv" or len(g.consumers(src)) != 1:
            raise ValueError(f"batchnorm {bn.name} does not follow a convolution it can fold into")
        a = bn.attrs
        factor = a["weight"] / np.sqrt(a["var"] + a["eps"])
        bias = conv.attrs["bias"] if conv.attrs["bias"] is not None else np.zeros_like(factor)
        conv.attrs["weight"] = conv.attrs["weight"] * factor[:, None, None, None]
        conv.attrs["bias"] = (bias - a["mean"]) * factor + a["bias"]
        g.bypass(bn.name)
    return g

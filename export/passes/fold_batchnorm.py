"""Fold inference BatchNorm into the convolution before it (in float64).

``bn(conv(x)) = conv'(x)`` with ``w' = w·γ/√(σ²+ε)`` per output channel and
``b' = (b − μ)·γ/√(σ²+ε) + β``. Float64 keeps the folded pre-activations
within ~1e-15 of the exact algebra; float32 folding flips spikes.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ops import BatchNorm
from .conv_affine import fold_affine, producing_conv


def fold_batchnorm(graph: Graph) -> Graph:
    g = graph.copy()
    for bn in g.of(BatchNorm):
        conv = producing_conv(g, bn)
        a: BatchNorm = bn.op  # type: ignore[assignment]
        factor = a.weight / np.sqrt(a.var + a.eps)
        fold_affine(conv, factor, a.bias - a.mean * factor)
        g.bypass(bn.name)
    return g

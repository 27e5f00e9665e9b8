"""Convolutions of the integer graph as Lava's own synapse processes (``lava.proc``).

Two routes compute ``Σ W·x << e`` exactly with Lava's fixed_pt models:

- ``Sparse`` from ``conv_to_sparse`` (PyTorch order: C×H×W data, correlation),
  connected through flattening ports. Its bit-accurate model reads mixed-sign
  weights as 8-bit mantissas in units of 2 (it clips to −256..255 and clears
  the lowest bit), so it gets ``2·W`` and ``weight_exp = e − 1``: the
  accumulated sum is even and the right shift by one is exact.
- ``Conv`` with Lava's X×Y×C layout (transposing ports on both sides) and
  kernels flipped (Lava convolves; the graph correlates). Its fixed_pt model
  ignores ``weight_exp`` (lava-nc issue 803), so it gets ``W << e`` as int32
  weights, which it does not clip.

Both add one timestep of latency, like every Lava synapse, and neither has a
bias: the receiving process adds it (on Loihi the bias lives in the neuron).
"""

from __future__ import annotations

import numpy as np

from ..errors import InternalError
from ..export.ir import Node

SYNAPSE_ROUTES = ("own", "sparse", "conv")
MESSAGE_BITS = 24  # graded payloads: spike counts and centred pixels


def lava_kernel(w: np.ndarray) -> np.ndarray:
    """Correlation weights (O, I, kh, kw) as a Lava convolution kernel (O, X, Y, I): transposed and flipped."""
    return np.ascontiguousarray(np.asarray(w).transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


def _xyc_to_chw(index: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat X×Y×C indices → flat C×H×W indices of the same neurons."""
    c, h, w = shape
    x, y, ch = index // (h * c), (index // c) % h, index % c
    return ch * h * w + y * w + x


def sparse_weights(n: Node, in_shape: tuple[int, int, int]):
    """The CSR matrix (outputs × inputs, C-order flattening of C×H×W) of a convolution node's ``W``, ×2.

    Built in Lava's own X×Y×C order and re-indexed: ``conv_to_sparse`` with
    ``TensorOrder.NCHW`` (lava-nc 0.10) reorders the kernel wrongly (it flips the
    input-channel axis instead of the second spatial one)."""
    from lava.proc.conv.utils import conv_to_sparse
    from scipy.sparse import csr_matrix

    op = n.op
    kernel = lava_kernel(op.w_int)
    c, h, w = in_shape
    co, ho, wo = n.shape
    sh, sw = op.stride
    ph, pw = op.padding
    dst, src, val = conv_to_sparse((w, h, c), (wo, ho, co), kernel, (sw, sh), (pw, ph), (1, 1), op.groups)
    rows, cols = _xyc_to_chw(np.asarray(dst), n.shape), _xyc_to_chw(np.asarray(src), in_shape)
    return csr_matrix((2 * np.asarray(val, dtype=np.int32), (rows, cols)), shape=(co * ho * wo, c * h * w))


def sparse_synapse(n: Node, in_shape: tuple[int, int, int]):
    """``lava.proc.sparse.Sparse`` computing the node's ``Σ W·x << e`` (no bias)."""
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    return Sparse(weights=sparse_weights(n, in_shape), weight_exp=n.op.exp - 1, num_weight_bits=8,
                  sign_mode=SignMode.MIXED, num_message_bits=MESSAGE_BITS, name=f"{n.name}/sparse")


def conv_synapse(n: Node, in_shape: tuple[int, int, int]):
    """``lava.proc.conv.Conv`` computing the node's ``Σ W·x << e`` (no bias), in X×Y×C layout."""
    from lava.proc.conv.process import Conv

    op = n.op
    c, h, wd = in_shape
    sh, sw = op.stride
    ph, pw = op.padding
    return Conv(weight=lava_kernel(op.weight).astype(np.int32), input_shape=(wd, h, c), padding=(pw, ph),
                stride=(sw, sh), groups=op.groups, num_message_bits=MESSAGE_BITS, name=f"{n.name}/conv")


def connect_synapse(route: str, n: Node, in_shape: tuple[int, int, int], source_port, target_port):
    """Build the route's synapse for node ``n`` between a C×H×W out-port and a C×H×W in-port."""
    if route == "sparse":
        syn = sparse_synapse(n, in_shape)
        source_port.flatten().connect(syn.s_in)
        syn.a_out.reshape(n.shape).connect(target_port)
    elif route == "conv":
        syn = conv_synapse(n, in_shape)
        source_port.transpose([2, 1, 0]).connect(syn.s_in)
        syn.a_out.transpose([2, 1, 0]).connect(target_port)
    else:
        raise InternalError(f"unknown synapse route {route!r} (available: sparse, conv)")
    return syn

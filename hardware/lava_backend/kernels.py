"""Integer kernels for the Lava process models (numpy int64, exact; no torch inside Lava)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lensnet_deploy.export import ops as O
from lensnet_deploy.hardware import ops as I
from lensnet_deploy.hardware import reference as R


def conv(x: np.ndarray, op: I.IntConv) -> np.ndarray:
    """``(Σ W·x) << exp + b`` as one int64 tensor contraction per group (exact)."""
    w = op.w_int
    c_out, per_in, kh, kw = w.shape
    ph, pw = op.padding
    sh, sw = op.stride
    xp = np.pad(x.astype(np.int64), ((0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # C, OH, OW, kh, kw
    per_out = c_out // op.groups
    out = np.empty((c_out, win.shape[1], win.shape[2]), dtype=np.int64)
    for g in range(op.groups):
        patch = win[g * per_in:(g + 1) * per_in]
        out[g * per_out:(g + 1) * per_out] = np.einsum("ihwyx,oiyx->ohw", patch, w[g * per_out:(g + 1) * per_out])
    return (out << op.exp) + op.b_int.reshape(-1, 1, 1)


def apply(op: O.Op | str, args: list[np.ndarray]) -> np.ndarray:
    """One integer operation of docs/integer_semantics.md on unbatched C×H×W arrays."""
    if isinstance(op, I.IntConv):
        return conv(args[0], op)
    if op == "identity" or isinstance(op, O.Add):  # a residual join: Lava sums every connection into the port
        return args[0]
    if isinstance(op, tuple) and op[0] == "bias":  # a Lava synapse's Σ W·x << e plus the convolution's bias
        return args[0] + np.asarray(op[1], np.int64).reshape(-1, 1, 1)
    return R.RULES[type(op)](op, *[a[None] for a in args])[0]

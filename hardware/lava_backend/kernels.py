"""Integer kernels for the Lava process models (numpy int64, exact; no torch inside Lava)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lensnet_deploy.hardware import reference as R


def conv(x: np.ndarray, p: dict) -> np.ndarray:
    """``(Σ W·x) << exp + b`` as one int64 tensor contraction per group (exact)."""
    w = np.asarray(p["w_int"], np.int64)
    c_out, per_in, kh, kw = w.shape
    ph, pw = p["padding"]
    sh, sw = p["stride"]
    xp = np.pad(x.astype(np.int64), ((0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # C, OH, OW, kh, kw
    groups = int(p["groups"])
    per_out = c_out // groups
    out = np.empty((c_out, win.shape[1], win.shape[2]), dtype=np.int64)
    for g in range(groups):
        patch = win[g * per_in:(g + 1) * per_in]
        out[g * per_out:(g + 1) * per_out] = np.einsum("ihwyx,oiyx->ohw", patch, w[g * per_out:(g + 1) * per_out])
    return (out << int(p["exp"])) + np.asarray(p["b_int"], np.int64).reshape(-1, 1, 1)


def apply(op: str, args: list[np.ndarray], p: dict) -> np.ndarray:
    """One integer operation of docs/integer_semantics.md on unbatched C×H×W arrays."""
    if op == "conv":
        return conv(args[0], p)
    if op == "identity":  # a residual join: Lava sums every connection into the port
        return args[0]
    if op == "bias":  # a Lava synapse's Σ W·x << e plus the convolution's bias (the neuron's part on Loihi)
        return args[0] + np.asarray(p["b_int"], np.int64).reshape(-1, 1, 1)
    batched = [a[None] for a in args]
    if op == "spike":
        return R.spike(batched[0], np.asarray(p["theta"]))[0]
    if op == "avgpool":
        return args[0].sum(axis=(1, 2), keepdims=True)
    if op == "maxpool":
        return args[0].max(axis=(1, 2), keepdims=True)
    if op == "upsample":
        f = int(p["factor"])
        return np.repeat(np.repeat(args[0], f, axis=1), f, axis=2)
    if op == "attention":
        return R.attention(*batched, heads=int(p["heads"]))[0]
    if op == "sigmoid":
        return R.sigmoid_gate_value(batched[0], p["z_shift"], p["z_lo"], p["z_hi"], np.asarray(p["lut"]))[0]
    if op == "gate":
        return R.gate(batched[0], batched[1], np.asarray(p["mult"]), int(p["r"]))[0]
    if op == "bilinear":
        return R.bilinear(batched[0], int(p["factor"]))[0]
    raise ValueError(f"no Lava kernel for op {op!r}")

"""The int64 reference of docs/integer_semantics.md: slow, plain numpy, one rule per op.

It shares no code with the fast simulator (``int_sim``): every operation is
written out from the document with int64 numpy arithmetic (convolutions as
explicit sums over kernel taps), so that the two can be compared bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..datasets import IMAGENET_MEAN, IMAGENET_STD
from ..export.ir import Graph


def centred_pixels(images: np.ndarray) -> np.ndarray:
    """Normalised float images (B×3×H×W) → ``p − round(255·mean)`` as int64."""
    mean = np.asarray(IMAGENET_MEAN, np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float64).reshape(1, 3, 1, 1)
    p = np.clip(np.rint((images.astype(np.float64) * std + mean) * 255), 0, 255).astype(np.int64)
    offset = np.rint(255 * mean).astype(np.int64)
    return p - offset


def conv(x: np.ndarray, w: np.ndarray, exp: int, bias: np.ndarray, stride, padding, groups: int) -> np.ndarray:
    """``acc[c] = (Σ_taps W[c]·x) << exp + b[c]``, taps summed one by one in int64."""
    b, c_in, h, wd = x.shape
    c_out, per_in, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    xp = np.zeros((b, c_in, h + 2 * ph, wd + 2 * pw), dtype=np.int64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((b, c_out, oh, ow), dtype=np.int64)
    per_out = c_out // groups
    for co in range(c_out):
        g = co // per_out
        for ci in range(per_in):
            src = xp[:, g * per_in + ci]
            for dy in range(kh):
                for dx in range(kw):
                    tap = src[:, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
                    out[:, co] += int(w[co, ci, dy, dx]) * tap
    return (out << exp) + bias.reshape(1, -1, 1, 1)


def spike(m: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``count = #{k : m > θ[c, k]}``."""
    count = np.zeros_like(m)
    for k in range(theta.shape[1]):
        count += (m > theta[:, k].reshape(1, -1, 1, 1)).astype(np.int64)
    return count


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Per head: ``KV = kᵀ v`` over tokens, then ``Y = q · KV``, int64."""
    b, cq, h, w = q.shape
    cv = v.shape[1]
    dq, dv = cq // heads, cv // heads
    out = np.zeros((b, cv, h, w), dtype=np.int64)
    for i in range(b):
        for hd in range(heads):
            qh = q[i, hd * dq:(hd + 1) * dq].reshape(dq, -1)  # dq × N
            kh = k[i, hd * dq:(hd + 1) * dq].reshape(dq, -1)
            vh = v[i, hd * dv:(hd + 1) * dv].reshape(dv, -1)
            kv = kh @ vh.T  # dq × dv
            out[i, hd * dv:(hd + 1) * dv] = (kv.T @ qh).reshape(dv, h, w)
    return out


def sigmoid_gate_value(z: np.ndarray, z_shift, z_lo, z_hi, lut) -> np.ndarray:
    b, c = z.shape[:2]
    g = np.zeros((b, c, 1, 1), dtype=np.int64)
    for i in range(b):
        for ch in range(c):
            idx = min(max(int(z[i, ch, 0, 0]) >> int(z_shift[ch]), int(z_lo[ch])), int(z_hi[ch])) - int(z_lo[ch])
            g[i, ch, 0, 0] = lut[ch, idx]
    return g


def gate(g: np.ndarray, x: np.ndarray, mult: np.ndarray, r: int) -> np.ndarray:
    return (g * x * mult.reshape(1, -1, 1, 1) + (1 << (r - 1))) >> r


def bilinear(p: np.ndarray, f: int) -> np.ndarray:
    """``(2f)²`` × bilinear ×f (align_corners False), integer taps, border clamped."""
    def taps(size: int) -> list[tuple[int, int, int, int]]:
        rows = []
        for o in range(size * f):
            num = 2 * o + 1 - f  # source coordinate times 2f
            if num < 0:
                rows.append((0, 0, 2 * f, 0))
                continue
            lo, frac = divmod(num, 2 * f)
            rows.append((min(lo, size - 1), min(lo + 1, size - 1), 2 * f - frac, frac))
        return rows

    b, c, h, w = p.shape
    rows = np.zeros((b, c, h * f, w), dtype=np.int64)
    for o, (lo, hi, wl, wh) in enumerate(taps(h)):
        rows[:, :, o] = p[:, :, lo] * wl + p[:, :, hi] * wh
    out = np.zeros((b, c, h * f, w * f), dtype=np.int64)
    for o, (lo, hi, wl, wh) in enumerate(taps(w)):
        out[:, :, :, o] = rows[:, :, :, lo] * wl + rows[:, :, :, hi] * wh
    return out


def run_reference(graph: Graph, images: np.ndarray,
                  keep: dict[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Raw integer outputs (model order) and spike counts of a quantized IR graph;
    pass a dict as ``keep`` to receive every node's value."""
    values: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for n in graph:
        a = n.attrs
        x = [values[i] for i in n.inputs]
        if n.op == "input":
            v = centred_pixels(images)
        elif n.op == "conv":
            v = conv(x[0], np.asarray(a["w_int"]), int(a["exp"]), np.asarray(a["b_int"]), a["stride"], a["padding"],
                     int(a["groups"]))
        elif n.op == "spike":
            v = counts[n.name] = spike(x[0], np.asarray(a["theta"]))
        elif n.op == "add":
            v = sum(x[1:], x[0].copy())
        elif n.op == "avgpool":
            v = x[0].sum(axis=(2, 3), keepdims=True)
        elif n.op == "maxpool":
            v = x[0].max(axis=(2, 3), keepdims=True)
        elif n.op == "upsample":
            f = int(a["factor"])
            v = np.repeat(np.repeat(x[0], f, axis=2), f, axis=3)
        elif n.op == "attention":
            v = attention(x[0], x[1], x[2], int(a["heads"]))
        elif n.op == "sigmoid":
            v = sigmoid_gate_value(x[0], a["z_shift"], a["z_lo"], a["z_hi"], np.asarray(a["lut"]))
        elif n.op == "gate":
            v = gate(x[0], x[1], np.asarray(a["mult"]), int(a["r"]))
        elif n.op == "bilinear":
            v = bilinear(x[0], int(a["factor"]))
        elif n.op == "output":
            v = x[0]
        else:
            raise ValueError(f"no reference rule for op {n.op} ({n.name})")
        values[n.name] = v
    if keep is not None:
        keep.update(values)
    return [values[o.name] for o in graph.outputs()], counts


def first_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], order: list[str]) -> tuple[str, int] | None:
    """The first node (in ``order``) whose integers differ, with how many differ; None if all equal."""
    for name in order:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            return name, int(max(x.size, y.size))
        diff = int((x != y).sum())
        if diff:
            return name, diff
    return None

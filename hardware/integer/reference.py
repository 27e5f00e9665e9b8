"""The int64 reference of docs/integer_semantics.md: plain numpy, one rule per operation.

The independent oracle: it shares no kernel with the fast simulator or the
Lava network. Every operation is written out from the document with int64
numpy arithmetic (convolutions as sums over kernel taps), so that the
backends can be compared with it bit for bit (tests, ``first_difference``,
``simulate(backend="reference")``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ...errors import GraphError
from ...export import ops as O
from ...export.ir import Graph
from . import ops as I
from .result import SimResult
from .semantics import centred_pixels


def conv(x: np.ndarray, op: I.IntConv) -> np.ndarray:
    """``acc[c] = (Σ_taps W[c]·x) << exp + b[c]``, one int64 product per kernel tap."""
    b, c_in, h, wd = x.shape
    w = op.w_int
    c_out, per_in, kh, kw = w.shape
    sh, sw = op.stride
    ph, pw = op.padding
    xp = np.zeros((b, c_in, h + 2 * ph, wd + 2 * pw), dtype=np.int64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((b, c_out, oh, ow), dtype=np.int64)
    per_out = c_out // op.groups
    for g in range(op.groups):
        src = xp[:, g * per_in:(g + 1) * per_in]
        rows = slice(g * per_out, (g + 1) * per_out)
        for dy in range(kh):
            for dx in range(kw):
                tap = src[:, :, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
                out[:, rows] += np.einsum("bihw,oi->bohw", tap, w[rows, :, dy, dx])
    return (out << op.exp) + op.b_int.reshape(1, -1, 1, 1)


def spike(m: np.ndarray, op: I.IntSpike) -> np.ndarray:
    """``count = #{k : m > θ[c, k]}``."""
    count = np.zeros_like(m)
    for k in range(op.theta.shape[1]):
        count += (m > op.theta[:, k].reshape(1, -1, 1, 1)).astype(np.int64)
    return count


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, op: I.IntAttention) -> np.ndarray:
    """Per head: ``KV = kᵀ v`` over tokens, then ``Y = q · KV``, int64."""
    b, cq, h, w = q.shape
    cv = v.shape[1]
    dq, dv = cq // op.heads, cv // op.heads
    out = np.zeros((b, cv, h, w), dtype=np.int64)
    for i in range(b):
        for hd in range(op.heads):
            qh = q[i, hd * dq:(hd + 1) * dq].reshape(dq, -1)  # dq × N
            kh = k[i, hd * dq:(hd + 1) * dq].reshape(dq, -1)
            vh = v[i, hd * dv:(hd + 1) * dv].reshape(dv, -1)
            kv = kh @ vh.T  # dq × dv
            out[i, hd * dv:(hd + 1) * dv] = (kv.T @ qh).reshape(dv, h, w)
    return out


def sigmoid_table(z: np.ndarray, op: I.SigmoidTable) -> np.ndarray:
    b, c = z.shape[:2]
    g = np.zeros((b, c, 1, 1), dtype=np.int64)
    for i in range(b):
        for ch in range(c):
            idx = min(max(int(z[i, ch, 0, 0]) >> int(op.z_shift[ch]), int(op.z_lo[ch])), int(op.z_hi[ch]))
            g[i, ch, 0, 0] = op.lut[ch, idx - int(op.z_lo[ch])]
    return g


def gate(g: np.ndarray, x: np.ndarray, op: I.IntGate) -> np.ndarray:
    return (g * x * op.mult.reshape(1, -1, 1, 1) + (1 << (op.r - 1))) >> op.r


def bilinear(p: np.ndarray, op: I.IntBilinear) -> np.ndarray:
    """``(2f)²`` × bilinear ×f (align_corners False), integer taps, border clamped."""
    f = op.factor

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


def _add(op: O.Add, *xs: np.ndarray) -> np.ndarray:
    return sum(xs[1:], xs[0].copy())


RULES: dict[type[O.Op], Callable[..., np.ndarray]] = {
    I.IntConv: lambda op, x: conv(x, op),
    I.IntSpike: lambda op, m: spike(m, op),
    O.Add: _add,
    I.SumPool: lambda op, x: x.sum(axis=(2, 3), keepdims=True),
    O.MaxPool: lambda op, x: x.max(axis=(2, 3), keepdims=True),
    O.Upsample: lambda op, x: np.repeat(np.repeat(x, op.factor, axis=2), op.factor, axis=3),
    I.IntAttention: lambda op, q, k, v: attention(q, k, v, op),
    I.SigmoidTable: lambda op, z: sigmoid_table(z, op),
    I.IntGate: lambda op, g, x: gate(g, x, op),
    I.IntBilinear: lambda op, x: bilinear(x, op),
    I.IntOutput: lambda op, x: x,
}


def run_reference(graph: Graph, images: torch.Tensor | np.ndarray,
                  keep: dict[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Raw integer outputs (model order) and spike counts of an integer IR graph; pass a dict as
    ``keep`` to receive every node's value."""
    values: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    x = torch.as_tensor(images)
    for n in graph:
        if isinstance(n.op, O.Input):
            values[n.name] = centred_pixels(x).numpy()
            continue
        rule = RULES.get(type(n.op))
        if rule is None:
            raise GraphError(f"no reference rule for {n.kind} node {n.name} (not an integer graph?)")
        v = values[n.name] = rule(n.op, *[values[i] for i in n.inputs])
        if isinstance(n.op, I.IntSpike):
            counts[n.name] = v
    if keep is not None:
        keep.update(values)
    return [values[o.name] for o in graph.outputs()], counts


def simulate_reference(graph: Graph, images: torch.Tensor, keep: bool = False) -> SimResult:
    """``run_reference`` as a :class:`SimResult` (the ``reference`` backend)."""
    kept: dict[str, np.ndarray] = {}
    raw, counts = run_reference(graph, images, kept if keep else None)
    scales = [torch.as_tensor(o.op.real_scale).view(1, -1, 1, 1) for o in graph.outputs()]  # type: ignore
    raw_t = tuple(torch.from_numpy(r) for r in raw)
    return SimResult(tuple(r.double() * s for r, s in zip(raw_t, scales)), raw_t,
                     {k: torch.from_numpy(v.astype(np.uint8)) for k, v in counts.items()},
                     values={k: torch.from_numpy(v) for k, v in kept.items()})


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

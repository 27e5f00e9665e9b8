"""The fast bit-exact integer simulator: exact integers carried in float32.

A quantized graph's membranes are proven below 2^23 (docs/integer_semantics.md),
so they, and every partial sum of the convolutions that make them, are
integers float32 represents exactly, whatever order a kernel sums in. Keeping
them in float32 from one node to the next (instead of int64 with conversions
around every convolution) lets the simulator run at the speed of the float
model. ``prepare`` derives a static magnitude bound for every node from the
integer parameters themselves and gives each node the narrowest exact type:
float32 below 2^24, float64 below 2^53, int64 beyond, so exactness is checked
per graph rather than assumed. The multi-spike neuron uses the thresholds'
structure: when ``θ[c, k] = θ[c, 1] + (k − 1)·2^j`` (every threshold after a
convolution or join), ``count = clamp(floor((m − c0)·2^−j), 0, D)`` with
``c0 = θ[c, 1] + 1 − 2^j``, exact in float32; other thresholds are compared
one by one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import GraphError, InternalError
from ...export import ops as O
from ...export.ir import Graph, Node
from . import ops as I
from .bounds import Bound, static_bounds
from .result import SimResult
from .semantics import centred_pixels

F32_EXACT = 2**24
F64_EXACT = 2**53


def exact_dtype(magnitude: int) -> torch.dtype:
    """The narrowest type holding every integer of absolute value ≤ ``magnitude`` exactly."""
    if magnitude < F32_EXACT:
        return torch.float32
    if magnitude < F64_EXACT:
        return torch.float64
    return torch.int64


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Full IEEE float32 in oneDNN convolutions and matrix products for the duration
    (a user's bf16/tf32 setting would make float32 kernels inexact)."""
    mk = torch.backends.mkldnn
    saved = (mk.conv.fp32_precision, mk.matmul.fp32_precision, torch.get_float32_matmul_precision())
    mk.conv.fp32_precision = "ieee"
    mk.matmul.fp32_precision = "ieee"
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:  # the global setting also sets mkldnn's matmul flag: restore it first
        torch.set_float32_matmul_precision(saved[2])
        mk.conv.fp32_precision, mk.matmul.fp32_precision = saved[0], saved[1]


@dataclass
class Step:
    """One node, ready to run: its output type, static bound and prepared tensors.

    ``bound`` is the per-channel worst case of |value| (float64 holds these
    integers exactly below 2^53, which is all the type choice needs)."""

    node: Node
    dtype: torch.dtype
    bound: np.ndarray
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def magnitude(self) -> int:
        return int(self.bound.max(initial=0))


def _step(n: Node, bound: np.ndarray | float, tensors: dict | None = None,
          dtype: torch.dtype | None = None) -> Step:
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n.shape[0],)).copy()
    return Step(n, dtype or exact_dtype(int(b.max(initial=0))), b, tensors or {})


def _channel(t: np.ndarray | list, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(t)).to(dtype).view(1, -1, 1, 1)


def _arithmetic_thresholds(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(c0, 2^j) per channel when every row of θ is arithmetic with a power-of-two step."""
    d = theta.shape[1]
    step = theta[:, 1] - theta[:, 0] if d > 1 else np.ones(theta.shape[0], dtype=np.int64)
    if d > 1 and not (np.diff(theta, axis=1) == step[:, None]).all():
        return None
    if (step <= 0).any() or (step & (step - 1)).any():
        return None
    return theta[:, 0] + 1 - step, step


# --- prepare: every node's exact type and tensors, from its static bound (``bounds``) ----------

def _prepare_input(n: Node, src: list[Step], b: Bound) -> Step:
    return _step(n, b.value, dtype=torch.float32)


def _prepare_conv(n: Node, src: list[Step], b: Bound) -> Step:
    op: I.IntConv = n.op  # type: ignore[assignment]
    s = _step(n, b.value)
    if s.dtype == torch.int64:
        raise GraphError(f"convolution {n.name}: worst case {s.magnitude:,} exceeds exact float64")
    s.tensors = {"w": torch.from_numpy(op.weight).to(s.dtype), "b": torch.from_numpy(op.b_int).to(s.dtype)}
    return s


def _prepare_spike(n: Node, src: list[Step], b: Bound) -> Step:
    op: I.IntSpike = n.op  # type: ignore[assignment]
    theta, d, x = op.theta, op.D, src[0]
    arith = _arithmetic_thresholds(theta)
    if arith is not None and x.dtype != torch.int64:
        c0, step = arith
        limit = F32_EXACT if x.dtype == torch.float32 else F64_EXACT
        if (x.bound + np.abs(c0)).max() < limit:
            return _step(n, b.value, {"c0": _channel(c0, x.dtype),
                                      "inv": _channel(1.0 / step.astype(np.float64), x.dtype)}, torch.float32)
    # compare plane by plane; thresholds beyond the input's range change no comparison
    reach = x.magnitude + 1
    planes = [_channel(np.clip(theta[:, k], -reach, reach), x.dtype) for k in range(d)]
    return _step(n, b.value, {f"theta{k}": p for k, p in enumerate(planes)}, torch.float32)


def _prepare_attention(n: Node, src: list[Step], b: Bound) -> Step:
    s = _step(n, b.value, dtype=exact_dtype(b.wide))
    if s.dtype == torch.int64:
        raise GraphError(f"attention {n.name}: worst case {b.wide:,} exceeds exact float64")
    return s


def _prepare_sigmoid(n: Node, src: list[Step], b: Bound) -> Step:
    op: I.SigmoidTable = n.op  # type: ignore[assignment]
    return _step(n, b.value, {"shift": torch.as_tensor(op.z_shift).view(1, -1),
                              "lo": torch.as_tensor(op.z_lo).view(1, -1),
                              "hi": torch.as_tensor(op.z_hi).view(1, -1),
                              "lut": torch.from_numpy(op.lut)}, torch.float32)


def _prepare_gate(n: Node, src: list[Step], b: Bound) -> Step:
    op: I.IntGate = n.op  # type: ignore[assignment]
    top = src[0].bound * src[1].bound * np.abs(op.mult)  # the product before its rounding shift
    if top.max(initial=0) + 2**op.r >= F64_EXACT:
        raise GraphError(f"gate {n.name}: product {int(top.max()):,} exceeds exact float64")
    return _step(n, b.value, {"mult": torch.from_numpy(op.mult).double().view(1, -1, 1, 1)})


PREPARE: dict[type[O.Op], Callable[[Node, list[Step], Bound], Step]] = {
    O.Input: _prepare_input,
    I.IntConv: _prepare_conv,
    I.IntSpike: _prepare_spike,
    O.Add: lambda n, src, b: _step(n, b.value),
    I.SumPool: lambda n, src, b: _step(n, b.value),
    O.MaxPool: lambda n, src, b: _step(n, b.value, dtype=src[0].dtype),
    O.Upsample: lambda n, src, b: _step(n, b.value, dtype=src[0].dtype),
    I.IntAttention: _prepare_attention,
    I.SigmoidTable: _prepare_sigmoid,
    I.IntGate: _prepare_gate,
    I.IntBilinear: lambda n, src, b: _step(n, b.value, dtype=torch.int64),
    I.IntOutput: lambda n, src, b: _step(n, b.value, {"scale": torch.as_tensor(n.op.real_scale).view(1, -1, 1, 1)},
                                         torch.int64),
}


def prepare(graph: Graph) -> list[Step]:
    """Every node with its static per-channel bound, exact type and prepared tensors."""
    for n in graph:
        if type(n.op) not in PREPARE:
            raise GraphError(f"the fast simulator cannot run {n.kind} node {n.name} (not an integer graph?)")
    bounds = static_bounds(graph)
    steps: dict[str, Step] = {}
    for n in graph:
        steps[n.name] = PREPARE[type(n.op)](n, [steps[i] for i in n.inputs], bounds[n.name])
    return list(steps.values())


# --- run: one kernel per operation ----------------------------------------------------------------

def _conv(s: Step, x: torch.Tensor) -> torch.Tensor:
    op: I.IntConv = s.node.op  # type: ignore[assignment]
    x = x if x.dtype == s.dtype else x.to(s.dtype)
    return F.conv2d(x, s.tensors["w"], s.tensors["b"], stride=op.stride, padding=op.padding, groups=op.groups)


def _spike(s: Step, x: torch.Tensor) -> torch.Tensor:
    t = s.tensors
    if "c0" in t:
        return torch.sub(x, t["c0"]).mul_(t["inv"]).floor_().clamp_(0, s.magnitude).to(torch.float32)
    count = torch.zeros(x.shape, dtype=torch.float32)
    for k in range(s.magnitude):
        count += x > t[f"theta{k}"]
    return count


def _add(s: Step, *xs: torch.Tensor) -> torch.Tensor:
    v = xs[0].to(s.dtype, copy=True)
    for x in xs[1:]:
        v += x.to(s.dtype)
    return v


def _sumpool(s: Step, x: torch.Tensor) -> torch.Tensor:
    if s.dtype == torch.int64:
        return x.to(torch.int64).sum(dim=(2, 3), keepdim=True)
    return x.sum(dim=(2, 3), keepdim=True, dtype=s.dtype)


def _attention(s: Step, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    heads = s.node.op.heads  # type: ignore[attr-defined]
    b, cq, h, w = q.shape
    cv = v.shape[1]
    qh = q.reshape(b, heads, cq // heads, h * w).to(s.dtype)
    kh = k.reshape(b, heads, cq // heads, h * w).to(s.dtype)
    vh = v.reshape(b, heads, cv // heads, h * w).to(s.dtype)
    y = qh.transpose(2, 3) @ (kh @ vh.transpose(2, 3))
    return y.transpose(2, 3).reshape(b, cv, h, w)


def _sigmoid(s: Step, z: torch.Tensor) -> torch.Tensor:
    t = s.tensors
    zi = z[:, :, 0, 0].to(torch.int64) >> t["shift"]
    idx = torch.minimum(torch.maximum(zi, t["lo"]), t["hi"]) - t["lo"]
    g = torch.gather(t["lut"].unsqueeze(0).expand(zi.shape[0], -1, -1), 2, idx.unsqueeze(-1))[..., 0]
    return g.to(torch.float32)[:, :, None, None]


def _gate(s: Step, g: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    r = s.node.op.r  # type: ignore[attr-defined]
    coeff = g.double() * s.tensors["mult"]  # per (image, channel), exact below 2^53
    v = torch.addcmul(torch.full((), float(1 << (r - 1)), dtype=torch.float64), count.double(), coeff)
    return v.mul_(2.0**-r).floor_().to(s.dtype)


def bilinear(p: torch.Tensor, f: int) -> torch.Tensor:
    """Integer bilinear ×f (align_corners False): (2f)² times the real result, exactly (int64)."""
    def axis_weights(size: int):
        out = torch.arange(size * f)
        num = 2 * out + 1 - f  # source coordinate × 2f
        lo = torch.div(num, 2 * f, rounding_mode="floor")
        frac = num - lo * 2 * f  # 0..2f-1
        lo_c = lo.clamp(0, size - 1)
        hi_c = (lo + 1).clamp(0, size - 1)
        neg = num < 0  # before the first pixel: all weight on pixel 0
        w_hi = torch.where(neg, torch.zeros_like(frac), frac)
        w_lo = 2 * f - w_hi
        lo_c = torch.where(neg, torch.zeros_like(lo_c), lo_c)
        return lo_c, hi_c, w_lo, w_hi

    h, w = p.shape[-2:]
    lo, hi, wl, wh = axis_weights(h)
    rows = p[..., lo, :] * wl.view(-1, 1) + p[..., hi, :] * wh.view(-1, 1)
    lo, hi, wl, wh = axis_weights(w)
    return rows[..., lo] * wl + rows[..., hi] * wh


def _upsample(s: Step, x: torch.Tensor) -> torch.Tensor:
    f = s.node.op.factor  # type: ignore[attr-defined]
    return x.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)


RUN: dict[type[O.Op], Callable[..., torch.Tensor]] = {
    I.IntConv: _conv,
    I.IntSpike: _spike,
    O.Add: _add,
    I.SumPool: _sumpool,
    O.MaxPool: lambda s, x: torch.amax(x, dim=(2, 3), keepdim=True),
    O.Upsample: _upsample,
    I.IntAttention: _attention,
    I.SigmoidTable: _sigmoid,
    I.IntGate: _gate,
    I.IntBilinear: lambda s, x: bilinear(x.to(torch.int64), s.node.op.factor),
    I.IntOutput: lambda s, x: x,
}
OBSERVED = (I.IntConv, O.Add, I.IntGate)  # the membranes whose largest |value| a run can report


def _observe(v: torch.Tensor) -> int:
    lo, hi = torch.aminmax(v)
    return int(max(-lo.item(), hi.item()))


class FastSimulator:
    """An integer IR graph prepared once (exact types, float32 weights) and run on batches."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.steps = prepare(graph)
        self.outputs = [o.name for o in graph.outputs()]
        self.readers = {s.node.name: 0 for s in self.steps}
        for s in self.steps:
            for i in s.node.inputs:
                self.readers[i] += 1

    def __call__(self, images: torch.Tensor, keep: bool | Collection[str] = False,
                 observe: bool = False) -> SimResult:
        """``keep``: return every node's integers (int64), or those of the named nodes;
        ``observe``: the largest |membrane| of every convolution, join and gate."""
        wanted = {s.node.name for s in self.steps} if keep is True else set(keep or ())
        with torch.no_grad(), ieee_float32():
            return self._run(images, wanted, observe)

    def _run(self, images: torch.Tensor, keep: set[str], observe: bool) -> SimResult:
        values: dict[str, torch.Tensor] = {}
        kept: dict[str, torch.Tensor] = {}
        left = dict(self.readers)
        counts: dict[str, torch.Tensor] = {}
        observed: dict[str, int] = {}
        for s in self.steps:
            n = s.node
            if isinstance(n.op, O.Input):
                v = centred_pixels(images).to(torch.float32)
            else:
                v = RUN[type(n.op)](s, *[values[i] for i in n.inputs])
            if isinstance(n.op, I.IntSpike):
                counts[n.name] = v.to(torch.uint8)  # counts ≤ D ≤ 16: one byte per neuron
            values[n.name] = v
            if observe and isinstance(n.op, OBSERVED):
                observed[n.name] = _observe(v)
            if n.name in keep:
                kept[n.name] = v if v.dtype == torch.int64 else v.to(torch.int64)
            for i in n.inputs:  # free what no later node reads
                left[i] -= 1
                if left[i] == 0 and i not in self.outputs:
                    del values[i]
        if any(values[o].dtype != torch.int64 for o in self.outputs):
            raise InternalError("an output of the fast simulator is not int64")
        raw = tuple(values[o] for o in self.outputs)
        logits = tuple(r.double() * self.scale(o) for r, o in zip(raw, self.outputs))
        return SimResult(logits, raw, counts, observed, kept)

    def scale(self, output: str) -> torch.Tensor:
        return next(s for s in self.steps if s.node.name == output).tensors["scale"]

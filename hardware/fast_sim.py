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
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..export.ir import Graph, Node
from .int_sim import IntRun, bilinear_int, pixels_from_images

F32_EXACT = 2**24
F64_EXACT = 2**53
PIXEL_MAGNITUDE = 152  # max |p − round(255·mean)| over the three channels


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


def _prepare_spike(n: Node, src: Step) -> Step:
    theta = np.asarray(n.attrs["theta"], dtype=np.int64)
    d = theta.shape[1]
    arith = _arithmetic_thresholds(theta)
    if arith is not None and src.dtype != torch.int64:
        c0, step = arith
        limit = F32_EXACT if src.dtype == torch.float32 else F64_EXACT
        if (src.bound + np.abs(c0)).max() < limit:
            return _step(n, d, {"c0": _channel(c0, src.dtype),
                                "inv": _channel(1.0 / step.astype(np.float64), src.dtype)}, torch.float32)
    # compare plane by plane; thresholds beyond the input's range change no comparison
    reach = src.magnitude + 1
    planes = [_channel(np.clip(theta[:, k], -reach, reach), src.dtype) for k in range(d)]
    return _step(n, d, {f"theta{k}": p for k, p in enumerate(planes)}, torch.float32)


def _attention_bounds(q: Step, k: Step, v: Step, n: Node, heads: int) -> tuple[int, int]:
    """Bounds of ``kᵀv`` (Σ over N tokens) and of ``q·(kᵀv)`` (Σ over a head's d channels)."""
    tokens = n.shape[1] * n.shape[2]
    dq = q.node.shape[0] // heads
    kv = tokens * k.magnitude * v.magnitude
    return kv, dq * q.magnitude * kv


def prepare(graph: Graph) -> list[Step]:
    """Every node with its static per-channel bound, exact type and prepared tensors."""
    steps: dict[str, Step] = {}
    for n in graph:
        a = n.attrs
        src = [steps[i] for i in n.inputs]
        if n.op == "input":
            s = _step(n, PIXEL_MAGNITUDE, dtype=torch.float32)
        elif n.op == "conv":
            w = np.asarray(a["w_int"], dtype=np.int64) << int(a["exp"])
            b = np.asarray(a["b_int"], dtype=np.int64)
            bound = np.abs(w).reshape(w.shape[0], -1).sum(axis=1) * float(src[0].magnitude) + np.abs(b)
            s = _step(n, bound)
            if s.dtype == torch.int64:
                raise ValueError(f"convolution {n.name}: worst case {s.magnitude:,} exceeds exact float64")
            s.tensors = {"w": torch.from_numpy(w).to(s.dtype), "b": torch.from_numpy(b).to(s.dtype)}
        elif n.op == "spike":
            s = _prepare_spike(n, src[0])
        elif n.op == "add":
            s = _step(n, sum(x.bound for x in src))
        elif n.op == "avgpool":
            hw = src[0].node.shape[1] * src[0].node.shape[2]
            s = _step(n, hw * src[0].bound)
        elif n.op in ("maxpool", "upsample"):
            s = _step(n, src[0].bound, dtype=src[0].dtype)
        elif n.op == "attention":
            kv, mag = _attention_bounds(*src, n, int(a["heads"]))
            s = _step(n, mag, dtype=exact_dtype(max(kv, mag)))
            if s.dtype == torch.int64:
                raise ValueError(f"attention {n.name}: worst case {mag:,} exceeds exact float64")
        elif n.op == "sigmoid":
            lut = np.asarray(a["lut"], dtype=np.int64)
            s = _step(n, lut.max(axis=1), {
                "shift": torch.as_tensor(np.asarray(a["z_shift"], dtype=np.int64)).view(1, -1),
                "lo": torch.as_tensor(np.asarray(a["z_lo"], dtype=np.int64)).view(1, -1),
                "hi": torch.as_tensor(np.asarray(a["z_hi"], dtype=np.int64)).view(1, -1),
                "lut": torch.from_numpy(lut)}, torch.float32)
        elif n.op == "gate":
            mult = np.asarray(a["mult"], dtype=np.int64)
            r = int(a["r"])
            top = src[0].bound * src[1].bound * np.abs(mult)
            if top.max(initial=0) + 2**r >= F64_EXACT:
                raise ValueError(f"gate {n.name}: product {int(top.max()):,} exceeds exact float64")
            s = _step(n, np.floor((top + 2 ** (r - 1)) / 2**r),
                      {"mult": torch.from_numpy(mult).double().view(1, -1, 1, 1)})
        elif n.op == "bilinear":
            f = int(a["factor"])
            s = _step(n, (2 * f) ** 2 * src[0].bound, dtype=torch.int64)
        elif n.op == "output":
            s = _step(n, src[0].bound,
                      {"scale": torch.as_tensor(np.asarray(a["real_scale"], dtype=np.float64)).view(1, -1, 1, 1)},
                      torch.int64)
        else:
            raise ValueError(f"cannot simulate op {n.op} ({n.name})")
        steps[n.name] = s
    return list(steps.values())


def _spike(x: torch.Tensor, s: Step) -> torch.Tensor:
    t = s.tensors
    if "c0" in t:
        return torch.sub(x, t["c0"]).mul_(t["inv"]).floor_().clamp_(0, s.magnitude).to(torch.float32)
    count = torch.zeros(x.shape, dtype=torch.float32)
    for k in range(s.magnitude):
        count += x > t[f"theta{k}"]
    return count


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    b, cq, h, w = q.shape
    cv = v.shape[1]
    qh = q.reshape(b, heads, cq // heads, h * w).to(dtype)
    kh = k.reshape(b, heads, cq // heads, h * w).to(dtype)
    vh = v.reshape(b, heads, cv // heads, h * w).to(dtype)
    y = qh.transpose(2, 3) @ (kh @ vh.transpose(2, 3))
    return y.transpose(2, 3).reshape(b, cv, h, w)


def _sigmoid(z: torch.Tensor, s: Step) -> torch.Tensor:
    t = s.tensors
    zi = z[:, :, 0, 0].to(torch.int64) >> t["shift"]
    idx = torch.minimum(torch.maximum(zi, t["lo"]), t["hi"]) - t["lo"]
    g = torch.gather(t["lut"].unsqueeze(0).expand(zi.shape[0], -1, -1), 2, idx.unsqueeze(-1))[..., 0]
    return g.to(torch.float32)[:, :, None, None]


def _gate(g: torch.Tensor, count: torch.Tensor, s: Step) -> torch.Tensor:
    r = int(s.node.attrs["r"])
    coeff = g.double() * s.tensors["mult"]  # per (image, channel), exact below 2^53
    v = torch.addcmul(torch.full((), float(1 << (r - 1)), dtype=torch.float64), count.double(), coeff)
    return v.mul_(2.0**-r).floor_().to(s.dtype)


def _observe(v: torch.Tensor) -> int:
    lo, hi = torch.aminmax(v)
    return int(max(-lo.item(), hi.item()))


class FastSimulator:
    """A quantized IR graph prepared once (exact types, float32 weights) and run on batches."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.steps = prepare(graph)
        self.outputs = [o.name for o in graph.outputs()]
        self.readers = {s.node.name: 0 for s in self.steps}
        for s in self.steps:
            for i in s.node.inputs:
                self.readers[i] += 1

    def __call__(self, images: torch.Tensor, keep: bool | Collection[str] = False, observe: bool = False) -> IntRun:
        """``keep``: return every node's integers (int64), or those of the named nodes;
        ``observe``: the largest |membrane| of every convolution, join and gate."""
        wanted = {s.node.name for s in self.steps} if keep is True else set(keep or ())
        with torch.no_grad(), ieee_float32():
            return self._run(images, wanted, observe)

    def _run(self, images: torch.Tensor, keep: set[str], observe: bool) -> IntRun:
        values: dict[str, torch.Tensor] = {}
        kept: dict[str, torch.Tensor] = {}
        left = dict(self.readers)
        counts: dict[str, torch.Tensor] = {}
        observed: dict[str, int] = {}
        raw, logits = [], []
        for s in self.steps:
            n, a = s.node, s.node.attrs
            args = [values[i] for i in n.inputs]
            if n.op == "input":
                v = pixels_from_images(images).to(torch.float32)
            elif n.op == "conv":
                x = args[0] if args[0].dtype == s.dtype else args[0].to(s.dtype)
                v = F.conv2d(x, s.tensors["w"], s.tensors["b"], stride=tuple(a["stride"]),
                             padding=tuple(a["padding"]), groups=int(a["groups"]))
            elif n.op == "spike":
                v = _spike(args[0], s)
                counts[n.name] = v.to(torch.uint8)  # counts ≤ D ≤ 16: one byte per neuron
            elif n.op == "add":
                v = args[0].to(s.dtype, copy=True)
                for x in args[1:]:
                    v += x.to(s.dtype)
            elif n.op == "avgpool":
                if s.dtype == torch.int64:
                    v = args[0].to(torch.int64).sum(dim=(2, 3), keepdim=True)
                else:
                    v = args[0].sum(dim=(2, 3), keepdim=True, dtype=s.dtype)
            elif n.op == "maxpool":
                v = torch.amax(args[0], dim=(2, 3), keepdim=True)
            elif n.op == "upsample":
                f = int(a["factor"])
                v = args[0].repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
            elif n.op == "attention":
                v = _attention(*args, heads=int(a["heads"]), dtype=s.dtype)
            elif n.op == "sigmoid":
                v = _sigmoid(args[0], s)
            elif n.op == "gate":
                v = _gate(args[0], args[1], s)
            elif n.op == "bilinear":
                v = bilinear_int(args[0].to(torch.int64), int(a["factor"]))
            else:  # output
                v = args[0]
                raw.append(v)
                logits.append(v.double() * s.tensors["scale"])
            values[n.name] = v
            if observe and n.op in ("conv", "add", "gate"):
                observed[n.name] = _observe(v)
            if n.name in keep:
                kept[n.name] = v if v.dtype == torch.int64 else v.to(torch.int64)
            for i in n.inputs:  # free what no later node reads
                left[i] -= 1
                if left[i] == 0 and i not in self.outputs:
                    del values[i]
        order = {name: k for k, name in enumerate(self.outputs)}
        pairs = sorted(zip([s.node.name for s in self.steps if s.node.op == "output"], raw, logits),
                       key=lambda p: order[p[0]])
        return IntRun(tuple(p[1] for p in pairs), tuple(p[2] for p in pairs), counts, observed, kept)

"""Integer simulation of a quantized IR graph (docs/integer_semantics.md, v0).

``simulate_int`` runs either the float64 torch path of this module, where every
value is an exact integer held in int64 and convolutions and matrix products
run in float64 (exact below 2^53), or, with ``fast=True``, the float32 path of
``fast_sim`` (exact integers carried in float32, proven below 2^24).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..datasets import IMAGENET_MEAN, IMAGENET_STD
from ..export.ir import Graph, Node


@dataclass
class IntRun:
    raw: tuple[torch.Tensor, ...]
    logits: tuple[torch.Tensor, ...]
    spike_counts: dict[str, torch.Tensor] = field(default_factory=dict)
    observed_max: dict[str, int] = field(default_factory=dict)  # max |membrane| per conv/join/gate
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # the nodes asked for with ``keep``


def pixels_from_images(images: torch.Tensor) -> torch.Tensor:
    """Centred pixels ``p − round(255·mean)`` (int64) of ImageNet-normalised images made from uint8 files."""
    from .quantize import PIXEL_OFFSET

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    p = torch.round((images.double() * std + mean) * 255).clamp(0, 255).to(torch.int64)
    return p - torch.tensor(PIXEL_OFFSET, dtype=torch.int64).view(1, 3, 1, 1)


def _exact_conv(x: torch.Tensor, n: Node, dtype: torch.dtype) -> torch.Tensor:
    a = n.attrs
    w = torch.as_tensor(a["w_int"])
    y = F.conv2d(x.to(dtype), w.to(dtype), None, stride=tuple(a["stride"]), padding=tuple(a["padding"]),
                 groups=int(a["groups"]))
    out = torch.round(y).to(torch.int64) << int(a["exp"])
    return out + torch.as_tensor(a["b_int"]).view(1, -1, 1, 1)


def bilinear_int(p: torch.Tensor, f: int) -> torch.Tensor:
    """Integer bilinear ×f (align_corners False): (2f)² times the real result, exactly."""
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


def _attention_int(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    b, cq, h, w = q.shape
    cv = v.shape[1]
    qh = q.reshape(b, heads, cq // heads, h * w).double()
    kh = k.reshape(b, heads, cq // heads, h * w).double()
    vh = v.reshape(b, heads, cv // heads, h * w).double()
    y = qh.transpose(2, 3) @ (kh @ vh.transpose(2, 3))  # exact: integers far below 2^53
    return torch.round(y).to(torch.int64).transpose(2, 3).reshape(b, cv, h, w)


def simulate_int(graph: Graph, images: torch.Tensor, fast: bool = False, keep: bool | Collection[str] = False,
                 observe: bool = False) -> IntRun:
    """Run a quantized IR graph: ``fast`` carries exact integers in float32 (``fast_sim``),
    otherwise int64 values and float64 kernels. ``keep`` returns every node's integers;
    ``observe`` the largest |membrane| of every convolution, join and gate."""
    if fast:
        from .fast_sim import FastSimulator

        return FastSimulator(graph)(images, keep=keep, observe=observe)
    dtype = torch.float64
    wanted = set(graph.nodes) if keep is True else set(keep or ())
    values: dict[str, torch.Tensor] = {}
    outputs = {o.name for o in graph.outputs()} | {i for o in graph.outputs() for i in o.inputs} | wanted
    remaining = {n.name: len(graph.consumers(n.name)) for n in graph}
    counts: dict[str, torch.Tensor] = {}
    observed: dict[str, int] = {}
    raw, logits = [], []
    for n in graph:
        a = n.attrs
        args = [values[i] for i in n.inputs]
        if n.op == "input":
            v = pixels_from_images(images)
        elif n.op == "conv":
            v = _exact_conv(args[0], n, dtype)
        elif n.op == "spike":
            theta = torch.as_tensor(a["theta"])  # C × D
            v = torch.zeros_like(args[0])
            for k in range(theta.shape[1]):
                v = v + (args[0] > theta[:, k].view(1, -1, 1, 1)).to(torch.int64)
            counts[n.name] = v.to(torch.uint8)  # counts ≤ D ≤ 16: one byte per neuron
        elif n.op == "add":
            v = args[0]
            for x in args[1:]:
                v = v + x
        elif n.op == "avgpool":
            v = args[0].sum(dim=(2, 3), keepdim=True)
        elif n.op == "maxpool":
            v = torch.amax(args[0], dim=(2, 3), keepdim=True)
        elif n.op == "upsample":
            f = int(a["factor"])
            v = args[0].repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
        elif n.op == "attention":
            v = _attention_int(*args, heads=int(a["heads"]))
        elif n.op == "sigmoid":
            z = args[0][:, :, 0, 0] >> torch.as_tensor(a["z_shift"]).view(1, -1)
            lo = torch.as_tensor(a["z_lo"]).view(1, -1)
            hi = torch.as_tensor(a["z_hi"]).view(1, -1)
            idx = torch.minimum(torch.maximum(z, lo), hi) - lo
            lut = torch.as_tensor(a["lut"])
            v = torch.gather(lut.unsqueeze(0).expand(z.shape[0], -1, -1), 2, idx.unsqueeze(-1))[..., 0]
            v = v[:, :, None, None]
        elif n.op == "gate":
            mult = torch.as_tensor(a["mult"]).view(1, -1, 1, 1)
            r = int(a["r"])
            v = (args[0] * args[1] * mult + (1 << (r - 1))) >> r
        elif n.op == "bilinear":
            v = bilinear_int(args[0], int(a["factor"]))
        elif n.op == "output":
            v = args[0]
        else:
            raise ValueError(f"cannot simulate op {n.op} ({n.name})")
        values[n.name] = v
        if observe and n.op in ("conv", "add", "gate"):
            observed[n.name] = int(v.abs().max())
        for i in n.inputs:  # free what no later node reads
            remaining[i] -= 1
            if remaining[i] == 0 and i not in outputs:
                del values[i]
    for out in graph.outputs():
        raw.append(values[out.name])
        logits.append(values[out.name].double() * torch.as_tensor(out.attrs["real_scale"]).view(1, -1, 1, 1))
    return IntRun(tuple(raw), tuple(logits), counts, observed, {k: values[k] for k in wanted})

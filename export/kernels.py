"""Float64 kernels for every operation of the IR and the NIR extension convention.

One definition per operation, shared by the IR executor and the NIR
interpreter, so a pass test and an export test compute the same numbers.
Tensors are B×C×H×W float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, groups: int,
           dilation=(1, 1)) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                    groups=groups)


def spike_planes(u: torch.Tensor, D: int) -> list[torch.Tensor]:
    """The D binary planes ``u > k − 0.5`` (k = 1..D) whose sum is the spike count.

    Strict comparisons (NIR ``Threshold``): an exact tie at k + 0.5 rounds
    down, where ``torch.round`` rounds half to even.
    """
    return [(u > (k - 0.5)).to(u.dtype) for k in range(1, D + 1)]


def spike_count(u: torch.Tensor, D: int) -> torch.Tensor:
    total = torch.zeros_like(u)
    for plane in spike_planes(u, D):
        total = total + plane
    return total


def global_avgpool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=x.shape[-2:], stride=x.shape[-2:])


def global_maxpool(x: torch.Tensor) -> torch.Tensor:
    return torch.amax(x, dim=(2, 3), keepdim=True)


def upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """``scale · q (kᵀ v)`` per head over the N = H·W tokens (the cheap order).

    Channel c belongs to head c // (C / heads). With integer spike counts the
    products are exact integers in float64, so the order of the two matrix
    products does not change the result.
    """
    b, cq, h, w = q.shape
    cv = v.shape[1]

    def heads_of(t: torch.Tensor, c: int) -> torch.Tensor:
        return t.reshape(b, heads, c // heads, h * w)  # B, heads, d, N

    qh, kh, vh = heads_of(q, cq), heads_of(k, cq), heads_of(v, cv)
    kv = kh @ vh.transpose(2, 3)  # B, heads, dq, dv  (kᵀ v)
    y = qh.transpose(2, 3) @ kv  # B, heads, N, dv
    return (y * scale).transpose(2, 3).reshape(b, cv, h, w)


def gate(g: torch.Tensor, x: torch.Tensor, scale: float) -> torch.Tensor:
    """Channel gate: ``g`` (B×C×1×1) times ``x`` (B×C×H×W) times ``scale``."""
    return g * x * scale if scale != 1.0 else g * x

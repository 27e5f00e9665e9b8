"""Spike-driven Transformer v3 encoder of LENS-Net (``backbone.*`` keys).

Module and attribute names follow the authors' checkpoints so their
``state_dict`` files load strictly; spike modules hold no parameters, so they
sit at the ``nn.Sequential`` indices the checkpoints imply.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .spike import MultiSpike


def conv_bn(c_in: int, c_out: int, kernel: int = 1, padding: int = 0, groups: int = 1) -> nn.Sequential:
    """Bias-free convolution followed by BatchNorm (keys ``0.weight``, ``1.*``)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, 1, padding, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class DownSampling(nn.Module):
    """[MS →] strided conv (with bias) → BN. The first one sees raw pixels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 first: bool, max_count: int) -> None:
        super().__init__()
        self.encode_spike = None if first else MultiSpike(max_count)
        self.encode_conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.encode_bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encode_spike is not None:
            x = self.encode_spike(x)
        return self.encode_bn(self.encode_conv(x))


class SepConvSpike(nn.Module):
    """Inverted separable conv: MS → 1×1 (C→2C) → MS → depthwise k×k → MS → 1×1 (2C→C)."""

    def __init__(self, dim: int, kernel: int, max_count: int, expansion: int = 2) -> None:
        super().__init__()
        mid = dim * expansion
        self.spike1 = MultiSpike(max_count)
        self.pwconv1 = conv_bn(dim, mid)
        self.spike2 = MultiSpike(max_count)
        self.dwconv = conv_bn(mid, mid, kernel, kernel // 2, groups=mid)
        self.spike3 = MultiSpike(max_count)
        self.pwconv2 = conv_bn(mid, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(self.spike1(x))
        x = self.dwconv(self.spike2(x))
        return self.pwconv2(self.spike3(x))


class ConvBlock(nn.Module):
    """``x += SepConv(x)``; then ``x += bn2(conv2(MS(bn1(conv1(MS(x))))))`` (3×3 convs, C→rC→C)."""

    def __init__(self, dim: int, mlp_ratio: int, max_count: int) -> None:
        super().__init__()
        self.Conv = SepConvSpike(dim, kernel=7, max_count=max_count)
        self.spike1 = MultiSpike(max_count)
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.spike2 = MultiSpike(max_count)
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv(x) + x
        y = self.bn1(self.conv1(self.spike1(x)))
        y = self.bn2(self.conv2(self.spike2(y)))
        return x + y


class SpikeMLP(nn.Module):
    """Token MLP on flattened maps: MS → Conv1d (C→rC) + BN1d → MS → Conv1d (rC→C) + BN1d."""

    def __init__(self, dim: int, hidden: int, max_count: int) -> None:
        super().__init__()
        self.fc1_spike = MultiSpike(max_count)
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_spike = MultiSpike(max_count)
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2)
        t = self.fc1_bn(self.fc1_conv(self.fc1_spike(t)))
        t = self.fc2_bn(self.fc2_conv(self.fc2_spike(t)))
        return t.reshape(b, c, h, w)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """B×C×H×W → B×heads×N×(C/heads); channel c goes to head c // (C/heads)."""
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2).reshape(b, h * w, heads, c // heads)
    return t.permute(0, 2, 1, 3).contiguous()


def merge_heads(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`split_heads`: B×heads×N×d → B×(heads·d)×H×W."""
    b, heads, n, d = x.shape
    return x.transpose(2, 3).reshape(b, heads * d, h, w)


class SpikeLinearAttention(nn.Module):
    """Linear spike attention: ``MS((q kᵀ) v · 2/√(C/heads))`` then 1×1 proj + BN.

    q, k, v are spike tensors (values count/D), so the product is one of two
    spike tensors: no static synapse computes it.
    """

    def __init__(self, dim: int, heads: int, max_count: int, v_ratio: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.head_spike = MultiSpike(max_count)
        self.q_conv = conv_bn(dim, dim)
        self.q_spike = MultiSpike(max_count)
        self.k_conv = conv_bn(dim, dim)
        self.k_spike = MultiSpike(max_count)
        self.v_conv = conv_bn(dim, dim * v_ratio)
        self.v_spike = MultiSpike(max_count)
        self.attn_spike = MultiSpike(max_count)
        self.proj_conv = conv_bn(dim * v_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        s = self.head_spike(x)
        q = split_heads(self.q_spike(self.q_conv(s)), self.heads)
        k = split_heads(self.k_spike(self.k_conv(s)), self.heads)
        v = split_heads(self.v_spike(self.v_conv(s)), self.heads)
        a = (q @ k.transpose(-2, -1)) @ v * (self.scale * 2)
        return self.proj_conv(self.attn_spike(merge_heads(a, h, w)))


class TransformerBlock(nn.Module):
    """``x += conv(x)·ls1; x += attn(x)·ls2; x += mlp(x)·ls3`` with per-channel layer scales."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, max_count: int) -> None:
        super().__init__()
        self.conv = SepConvSpike(dim, kernel=3, max_count=max_count)
        self.attn = SpikeLinearAttention(dim, heads, max_count)
        self.mlp = SpikeMLP(dim, dim * mlp_ratio, max_count)
        self.layer_scale1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.layer_scale2 = nn.Parameter(torch.full((dim,), 1e-6))
        self.layer_scale3 = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv(x) * self.layer_scale1.view(1, -1, 1, 1)
        x = x + self.attn(x) * self.layer_scale2.view(1, -1, 1, 1)
        return x + self.mlp(x) * self.layer_scale3.view(1, -1, 1, 1)


class SpikeEncoder(nn.Module):
    """Four-stage encoder returning x1 (H/2), x2 (H/4), x3 (H/8), x4 (H/16)."""

    def __init__(self, dims: tuple[int, int, int, int], heads: int, mlp_ratio: int,
                 conv_blocks: tuple[int, int, int, int], transformer_blocks: tuple[int, int],
                 max_count: int) -> None:
        super().__init__()
        d0, d1, d2, d3 = dims
        D = max_count

        def convs(dim: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(ConvBlock(dim, mlp_ratio, D) for _ in range(n))

        def blocks(dim: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, D) for _ in range(n))

        self.downsample1_1 = DownSampling(3, d0 // 2, 7, 2, 3, first=True, max_count=D)
        self.ConvBlock1_1 = convs(d0 // 2, conv_blocks[0])
        self.downsample1_2 = DownSampling(d0 // 2, d0, 3, 2, 1, first=False, max_count=D)
        self.ConvBlock1_2 = convs(d0, conv_blocks[1])
        self.downsample2 = DownSampling(d0, d1, 3, 2, 1, first=False, max_count=D)
        self.ConvBlock2_1 = convs(d1, conv_blocks[2])
        self.ConvBlock2_2 = convs(d1, conv_blocks[3])
        self.downsample3 = DownSampling(d1, d2, 3, 2, 1, first=False, max_count=D)
        self.block3 = blocks(d2, transformer_blocks[0])
        self.downsample4 = DownSampling(d2, d3, 3, 1, 1, first=False, max_count=D)
        self.block4 = blocks(d3, transformer_blocks[1])

    @staticmethod
    def _run(x: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        for layer in layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self._run(self.downsample1_1(x), self.ConvBlock1_1)
        x2 = self._run(self.downsample1_2(x1), self.ConvBlock1_2)
        x3 = self._run(self._run(self.downsample2(x2), self.ConvBlock2_1), self.ConvBlock2_2)
        x = self._run(self.downsample3(x3), self.block3)
        x4 = self._run(self.downsample4(x), self.block4)
        return [x1, x2, x3, x4]

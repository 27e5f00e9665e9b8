"""SpikeMAD decoder of LENS-Net (``decoder.*`` keys): SCAB, SMCB, SUCB."""

from __future__ import annotations

import math

import torch
from torch import nn

from .spike import MultiSpike


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet permutation: view as (groups, C/groups), transpose, flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def shuffle_permutation(channels: int, groups: int) -> list[int]:
    """Source channel of every output channel of :func:`channel_shuffle`."""
    per = channels // groups
    return [g * per + j for j in range(per) for g in range(groups)]


class SCAB(nn.Module):
    """Spike channel attention: ``sigmoid(fc2(MS(fc1(MS(avg)))) + fc4(MS(fc3(MS(max)))))``."""

    def __init__(self, channels: int, max_count: int, ratio: int = 16) -> None:
        super().__init__()
        ratio = min(ratio, channels)
        reduced = channels // ratio
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.activation = MultiSpike(max_count)
        self.activation2 = MultiSpike(max_count)
        self.fc1 = nn.Sequential(nn.Conv2d(channels, reduced, 1, bias=False))
        self.fc2 = nn.Sequential(nn.Conv2d(reduced, channels, 1, bias=False))
        self.fc3 = nn.Sequential(nn.Conv2d(channels, reduced, 1, bias=False))
        self.fc4 = nn.Sequential(nn.Conv2d(reduced, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.activation2(self.fc1(self.activation(self.avg_pool(x)))))
        mx = self.fc4(self.activation2(self.fc3(self.activation(self.max_pool(x)))))
        return torch.sigmoid(avg + mx)


def spike_conv_bn(c_in: int, c_out: int, kernel: int, groups: int, max_count: int) -> nn.Sequential:
    """MS → bias-free conv → BN (keys ``1.weight``, ``2.*``)."""
    return nn.Sequential(
        MultiSpike(max_count),
        nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class SMDC(nn.Module):
    """Parallel depthwise convolutions of several kernel sizes on spikes."""

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...], max_count: int) -> None:
        super().__init__()
        self.dwconvs = nn.ModuleList(
            spike_conv_bn(channels, channels, k, channels, max_count) for k in kernel_sizes
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [dw(x) for dw in self.dwconvs]


class SMCB(nn.Module):
    """Multi-scale conv block: pconv1 → Σ SMDC → channel shuffle → pconv2, plus identity skip."""

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...], expansion: int,
                 max_count: int) -> None:
        super().__init__()
        wide = channels * expansion
        self.groups = math.gcd(wide, channels)
        self.pconv1 = spike_conv_bn(channels, wide, 1, 1, max_count)
        self.smdc = SMDC(wide, kernel_sizes, max_count)
        self.pconv2 = spike_conv_bn(wide, channels, 1, 1, max_count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | int = 0
        for branch in self.smdc(self.pconv1(x)):
            total = total + branch
        out = self.pconv2(channel_shuffle(total, self.groups))  # type: ignore[arg-type]
        return x + out


class SUCB(nn.Module):
    """Up-convolution: nearest ×2 → MS → depthwise 3×3 → BN → MS → 1×1 (bias) → BN.

    The authors' forward evaluates ``up_dwc`` twice and discards one result;
    in eval mode that changes nothing, so it runs once here. Their channel
    shuffle with groups = C is the identity and is omitted.
    """

    def __init__(self, c_in: int, c_out: int, max_count: int, kernel: int = 3) -> None:
        super().__init__()
        self.up_dwc = nn.Sequential(
            nn.Upsample(scale_factor=2),
            MultiSpike(max_count),
            nn.Conv2d(c_in, c_in, kernel, 1, kernel // 2, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            MultiSpike(max_count),
        )
        self.pwc = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwc(self.up_dwc(x))


class SpikeMAD(nn.Module):
    """Decoder: ``d = SCAB(d)·MS(d) + d; d = SMCB(d)`` per stage, SUCB + skip between stages."""

    def __init__(self, channels: tuple[int, int, int, int], kernel_sizes: tuple[int, ...],
                 expansion: int, max_count: int) -> None:
        super().__init__()
        c4, c3, c2, c1 = channels

        def smcb(c: int) -> nn.Sequential:
            return nn.Sequential(SMCB(c, kernel_sizes, expansion, max_count))

        self.smcb4, self.smcb3, self.smcb2, self.smcb1 = smcb(c4), smcb(c3), smcb(c2), smcb(c1)
        self.sucb3 = SUCB(c4, c3, max_count)
        self.sucb2 = SUCB(c3, c2, max_count)
        self.sucb1 = SUCB(c2, c1, max_count)
        self.scab4, self.scab3 = SCAB(c4, max_count), SCAB(c3, max_count)
        self.scab2, self.scab1 = SCAB(c2, max_count), SCAB(c1, max_count)
        self.sfa = MultiSpike(max_count)

    def _attend(self, scab: SCAB, x: torch.Tensor) -> torch.Tensor:
        return scab(x) * self.sfa(x) + x

    def forward(self, x4: torch.Tensor, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        x3, x2, x1 = skips
        d4 = self.smcb4(self._attend(self.scab4, x4))
        d3 = self.smcb3(self._attend(self.scab3, self.sucb3(d4) + x3))
        d2 = self.smcb2(self._attend(self.scab2, self.sucb2(d3) + x2))
        d1 = self.smcb1(self._attend(self.scab1, self.sucb1(d2) + x1))
        return [d4, d3, d2, d1]

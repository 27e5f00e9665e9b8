"""Graph capture: a LENS-Net module → the unfolded IR (one node per PyTorch operation).

Capture walks the model's own structure in forward order, so every
BatchNorm, layer scale, channel shuffle and spike normalisation appears as
its own node; the passes fold them afterwards. Spike nodes carry the name
of the PyTorch call they reproduce (``module`` or ``module#k`` for the k-th
call of a shared module), the same names :func:`record_spikes` uses.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn

from ..model_zoo import LensNet, MultiSpike, check_input_size
from ..model_zoo.decoder import SCAB, SMCB, SUCB, shuffle_permutation
from ..model_zoo.encoder import ConvBlock, DownSampling, SepConvSpike, SpikeLinearAttention, SpikeMLP, TransformerBlock
from .ir import Graph
from .ops import (
    Add,
    Attention,
    AvgPool,
    BatchNorm,
    Bilinear,
    Conv,
    Gate,
    Input,
    MaxPool,
    Output,
    Scale,
    Shuffle,
    Sigmoid,
    Spike,
    Upsample,
)


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


class _Capture:
    def __init__(self, model: LensNet) -> None:
        self.g = Graph()
        self.names = {id(m): n for n, m in model.named_modules()}
        self.calls: Counter[str] = Counter()

    def name(self, module: nn.Module) -> str:
        return self.names[id(module)]

    def shape(self, node: str) -> tuple[int, ...]:
        return self.g.nodes[node].shape

    # --- leaf operations -------------------------------------------------
    def spike(self, m: MultiSpike, x: str) -> str:
        base = self.name(m)
        self.calls[base] += 1
        k = self.calls[base]
        call = base if k == 1 else f"{base}#{k}"
        return self.g.add(call, Spike(D=m.max_count, out_scale=1.0 / m.max_count,
                                      sources=[{"call": call, "views": []}]), [x], self.shape(x))

    def conv(self, m: nn.Conv1d | nn.Conv2d, x: str) -> str:
        c, h, w = self.shape(x)
        weight = _f64(m.weight)
        if isinstance(m, nn.Conv1d):  # token MLP on flattened maps: a 1×1 convolution
            weight = weight[..., None]
            stride, padding = (1, 1), (0, 0)
        else:
            stride, padding = tuple(m.stride), tuple(m.padding)  # type: ignore[arg-type]
        kh, kw = weight.shape[2:]
        oh = (h + 2 * padding[0] - kh) // stride[0] + 1
        ow = (w + 2 * padding[1] - kw) // stride[1] + 1
        bias = None if m.bias is None else _f64(m.bias)
        op = Conv(weight=weight, bias=bias, stride=stride, padding=padding, groups=int(m.groups))
        return self.g.add(self.name(m), op, [x], (weight.shape[0], oh, ow))

    def bn(self, m: nn.modules.batchnorm._BatchNorm, x: str) -> str:
        op = BatchNorm(mean=_f64(m.running_mean), var=_f64(m.running_var), eps=float(m.eps), weight=_f64(m.weight),
                       bias=_f64(m.bias))
        return self.g.add(self.name(m), op, [x], self.shape(x))

    def conv_bn(self, seq: nn.Sequential, x: str, start: int = 0) -> str:
        return self.bn(seq[start + 1], self.conv(seq[start], x))

    def add(self, name: str, *xs: str) -> str:
        return self.g.add(name, Add(), list(xs), self.shape(xs[0]))

    def scale(self, name: str, param: torch.Tensor, x: str) -> str:
        return self.g.add(name, Scale(scale=_f64(param)), [x], self.shape(x))

    # --- encoder -----------------------------------------------------------
    def downsample(self, m: DownSampling, x: str) -> str:
        if m.encode_spike is not None:
            x = self.spike(m.encode_spike, x)
        return self.bn(m.encode_bn, self.conv(m.encode_conv, x))

    def sepconv(self, m: SepConvSpike, x: str) -> str:
        x = self.conv_bn(m.pwconv1, self.spike(m.spike1, x))
        x = self.conv_bn(m.dwconv, self.spike(m.spike2, x))
        return self.conv_bn(m.pwconv2, self.spike(m.spike3, x))

    def conv_block(self, m: ConvBlock, x: str) -> str:
        p = self.name(m)
        x = self.add(f"{p}.add_sepconv", self.sepconv(m.Conv, x), x)
        y = self.bn(m.bn1, self.conv(m.conv1, self.spike(m.spike1, x)))
        y = self.bn(m.bn2, self.conv(m.conv2, self.spike(m.spike2, y)))
        return self.add(f"{p}.add_conv", x, y)

    def attention(self, m: SpikeLinearAttention, x: str) -> str:
        s = self.spike(m.head_spike, x)
        q = self.spike(m.q_spike, self.conv_bn(m.q_conv, s))
        k = self.spike(m.k_spike, self.conv_bn(m.k_conv, s))
        v = self.spike(m.v_spike, self.conv_bn(m.v_conv, s))
        a = self.g.add(f"{self.name(m)}.product", Attention(heads=m.heads, scale=float(m.scale * 2)), [q, k, v],
                       self.shape(v))
        return self.conv_bn(m.proj_conv, self.spike(m.attn_spike, a))

    def mlp(self, m: SpikeMLP, x: str) -> str:
        x = self.bn(m.fc1_bn, self.conv(m.fc1_conv, self.spike(m.fc1_spike, x)))
        return self.bn(m.fc2_bn, self.conv(m.fc2_conv, self.spike(m.fc2_spike, x)))

    def transformer_block(self, m: TransformerBlock, x: str) -> str:
        p = self.name(m)
        x = self.add(f"{p}.add_conv", x, self.scale(f"{p}.layer_scale1", m.layer_scale1, self.sepconv(m.conv, x)))
        x = self.add(f"{p}.add_attn", x, self.scale(f"{p}.layer_scale2", m.layer_scale2, self.attention(m.attn, x)))
        return self.add(f"{p}.add_mlp", x, self.scale(f"{p}.layer_scale3", m.layer_scale3, self.mlp(m.mlp, x)))

    # --- decoder -----------------------------------------------------------
    def scab_gate(self, m: SCAB, x: str) -> str:
        p = self.name(m)
        c = self.shape(x)[0]
        avg = self.g.add(f"{p}.avg_pool", AvgPool(), [x], (c, 1, 1))
        avg = self.conv(m.fc2[0], self.spike(m.activation2, self.conv(m.fc1[0], self.spike(m.activation, avg))))
        mx = self.g.add(f"{p}.max_pool", MaxPool(), [x], (c, 1, 1))
        mx = self.conv(m.fc4[0], self.spike(m.activation2, self.conv(m.fc3[0], self.spike(m.activation, mx))))
        return self.g.add(f"{p}.sigmoid", Sigmoid(), [self.add(f"{p}.add", avg, mx)], (c, 1, 1))

    def attend(self, scab: SCAB, sfa: MultiSpike, x: str) -> str:
        gate = self.scab_gate(scab, x)
        p = self.name(scab)
        gated = self.g.add(f"{p}.gate", Gate(scale=1.0), [gate, self.spike(sfa, x)], self.shape(x))
        return self.add(f"{p}.add_gated", gated, x)

    def smcb(self, m: SMCB, x: str) -> str:
        p = self.name(m)
        e = self.conv_bn(m.pconv1, self.spike(m.pconv1[0], x), start=1)
        branches = [self.conv_bn(dw, self.spike(dw[0], e), start=1) for dw in m.smdc.dwconvs]
        total = self.add(f"{p}.smdc.sum", *branches)
        c = self.shape(total)[0]
        shuffled = self.g.add(f"{p}.shuffle", Shuffle(perm=np.array(shuffle_permutation(c, m.groups))), [total],
                              self.shape(total))
        out = self.conv_bn(m.pconv2, self.spike(m.pconv2[0], shuffled), start=1)
        return self.add(f"{p}.add_skip", x, out)

    def sucb(self, m: SUCB, x: str) -> str:
        c, h, w = self.shape(x)
        up = self.g.add(f"{self.name(m)}.upsample", Upsample(factor=2), [x], (c, 2 * h, 2 * w))
        y = self.conv_bn(m.up_dwc, self.spike(m.up_dwc[1], up), start=2)
        return self.conv_bn(m.pwc, self.spike(m.up_dwc[4], y))

    def head(self, model: LensNet, index: int, spike: MultiSpike, d: str, factor: int) -> str:
        conv = getattr(model, f"out_head{index}")
        logits = self.conv(conv, self.spike(spike, d))
        c, h, w = self.shape(logits)
        up = self.g.add(f"out_head{index}.bilinear", Bilinear(factor=factor), [logits], (c, h * factor, w * factor))
        return self.g.add(f"p{index}", Output(), [up], self.shape(up))


def capture_lensnet(model: LensNet, input_size: tuple[int, int]) -> Graph:
    """The unfolded IR of ``model`` for B×3×H×W inputs of ``input_size``."""
    check_input_size(input_size)
    cap = _Capture(model)
    g = cap.g
    h, w = (int(s) for s in input_size)
    x = g.add("input", Input(), [], (3, h, w))
    enc, dec = model.backbone, model.decoder

    def run(layers: nn.ModuleList, x: str, fn) -> str:
        for layer in layers:
            x = fn(layer, x)
        return x

    x1 = run(enc.ConvBlock1_1, cap.downsample(enc.downsample1_1, x), cap.conv_block)
    x2 = run(enc.ConvBlock1_2, cap.downsample(enc.downsample1_2, x1), cap.conv_block)
    x3 = run(enc.ConvBlock2_1, cap.downsample(enc.downsample2, x2), cap.conv_block)
    x3 = run(enc.ConvBlock2_2, x3, cap.conv_block)
    x = run(enc.block3, cap.downsample(enc.downsample3, x3), cap.transformer_block)
    x4 = run(enc.block4, cap.downsample(enc.downsample4, x), cap.transformer_block)

    d4 = cap.smcb(dec.smcb4[0], cap.attend(dec.scab4, dec.sfa, x4))
    d3 = cap.add("decoder.skip3", cap.sucb(dec.sucb3, d4), x3)
    d3 = cap.smcb(dec.smcb3[0], cap.attend(dec.scab3, dec.sfa, d3))
    d2 = cap.add("decoder.skip2", cap.sucb(dec.sucb2, d3), x2)
    d2 = cap.smcb(dec.smcb2[0], cap.attend(dec.scab2, dec.sfa, d2))
    d1 = cap.add("decoder.skip1", cap.sucb(dec.sucb1, d2), x1)
    d1 = cap.smcb(dec.smcb1[0], cap.attend(dec.scab1, dec.sfa, d1))

    cap.head(model, 1, model.spike4, d1, 2)
    cap.head(model, 2, model.spike3, d2, 4)
    cap.head(model, 3, model.spike2, d3, 8)
    cap.head(model, 4, model.spike1, d4, 16)
    g.meta.update({"input_size": [h, w], "D": model.config.max_count, "config": model.config.to_dict(),
                   "outputs": ["p1", "p2", "p3", "p4"]})
    g.validate()
    return g

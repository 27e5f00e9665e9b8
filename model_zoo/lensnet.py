"""LENS-Net: the spike-driven encoder, the SpikeMAD decoder and four heads.

``LensNet(config)`` builds the authors' architecture (the default config) or
a smaller variant; its ``state_dict`` keys follow the authors' checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .decoder import SpikeMAD
from .encoder import SpikeEncoder
from .spike import MultiSpike

INPUT_MULTIPLE = 16


@dataclass(frozen=True)
class LensNetConfig:
    """Shape of a LENS-Net variant. The defaults are the authors' model."""

    embed_dims: tuple[int, int, int, int] = (64, 128, 256, 320)
    heads: int = 8
    mlp_ratio: int = 4
    conv_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    transformer_blocks: tuple[int, int] = (6, 2)
    max_count: int = 4
    decoder_expansion: int = 2
    decoder_kernels: tuple[int, ...] = (1, 3, 5)
    input_size: tuple[int, int] = field(default=(352, 352))

    def __post_init__(self) -> None:
        d = self.embed_dims
        if len(d) != 4 or any(int(c) <= 0 for c in d):
            raise ModelError(f"embed_dims needs four positive widths, got {d}")
        if d[0] % 2:
            raise ModelError(f"embed_dims[0] must be even (the stem has half its width), got {d[0]}")
        for c in (d[2], d[3]):
            if c % self.heads:
                raise ModelError(f"transformer width {c} is not divisible by {self.heads} heads")
        if not 1 <= self.max_count <= 16:
            raise ModelError(f"max spike count D must be in 1..16, got {self.max_count}")
        check_input_size(self.input_size)

    @property
    def decoder_channels(self) -> tuple[int, int, int, int]:
        """Decoder widths at H/16, H/8, H/4, H/2 (= x4, x3, x2, x1 widths)."""
        d = self.embed_dims
        return (d[3], d[1], d[0], d[0] // 2)

    def scaled(self, width: float = 1.0, **changes: object) -> LensNetConfig:
        """A copy with every width multiplied by ``width`` (rounded to multiples of heads)."""
        heads = int(changes.get("heads", self.heads))  # type: ignore[arg-type]
        dims = tuple(max(heads, int(round(c * width / heads)) * heads) for c in self.embed_dims)
        if dims[0] % 2:
            dims = (dims[0] + heads,) + dims[1:]
        return LensNetConfig(**{**asdict(self), "embed_dims": dims, **changes})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LensNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown LENS-Net config keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # type: ignore[arg-type]


def check_input_size(size: tuple[int, int]) -> None:
    """Height and width must be positive multiples of 16 (four stride-2 stages)."""
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0 or h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
        raise ModelError(
            f"input size {h}x{w} is not supported: height and width must be positive "
            f"multiples of {INPUT_MULTIPLE}"
        )


class LensNet(nn.Module):
    """LENS-Net returning the logits ``(p1, p2, p3, p4)`` at the input resolution."""

    def __init__(self, config: LensNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or LensNetConfig()
        cfg = self.config
        D = cfg.max_count
        self.backbone = SpikeEncoder(cfg.embed_dims, cfg.heads, cfg.mlp_ratio, cfg.conv_blocks,
                                     cfg.transformer_blocks, D)
        channels = cfg.decoder_channels
        self.decoder = SpikeMAD(channels, cfg.decoder_kernels, cfg.decoder_expansion, D)
        self.out_head4 = nn.Conv2d(channels[0], 1, 1)
        self.out_head3 = nn.Conv2d(channels[1], 1, 1)
        self.out_head2 = nn.Conv2d(channels[2], 1, 1)
        self.out_head1 = nn.Conv2d(channels[3], 1, 1)
        self.spike1 = MultiSpike(D)
        self.spike2 = MultiSpike(D)
        self.spike3 = MultiSpike(D)
        self.spike4 = MultiSpike(D)
        self.input_size: tuple[int, int] = tuple(cfg.input_size)  # type: ignore[assignment]
        for name, module in self.named_modules():
            if isinstance(module, MultiSpike):
                module.name = name

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ModelError(f"LENS-Net expects a B×3×H×W image tensor, got shape {tuple(x.shape)}")
        check_input_size((x.shape[2], x.shape[3]))
        x1, x2, x3, x4 = self.backbone(x)
        d4, d3, d2, d1 = self.decoder(x4, [x3, x2, x1])
        p4 = self.out_head4(self.spike1(d4))
        p3 = self.out_head3(self.spike2(d3))
        p2 = self.out_head2(self.spike3(d2))
        p1 = self.out_head1(self.spike4(d1))
        return (
            F.interpolate(p1, scale_factor=2, mode="bilinear"),
            F.interpolate(p2, scale_factor=4, mode="bilinear"),
            F.interpolate(p3, scale_factor=8, mode="bilinear"),
            F.interpolate(p4, scale_factor=16, mode="bilinear"),
        )

    def set_input_size(self, size: tuple[int, int]) -> None:
        """Make ``size`` the input this model is evaluated and deployed at (config and attribute
        together: both are saved with the checkpoint, and the weights do not depend on it)."""
        check_input_size(size)
        self.config = replace(self.config, input_size=(int(size[0]), int(size[1])))
        self.input_size = tuple(self.config.input_size)  # type: ignore[assignment]

    def spiking_modules(self) -> dict[str, MultiSpike]:
        """Every multi-spike neuron module by its qualified name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, MultiSpike)}


def record_spikes(model: LensNet, images: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Run ``model`` and return its logits plus the integer spike counts of every neuron call."""
    record: dict[str, torch.Tensor] = {}
    modules = model.spiking_modules().values()
    for m in modules:
        m.recorder = record
    try:
        with torch.no_grad():
            out = model(images)
    finally:
        for m in modules:
            m.recorder = None
    return out, record

"""The multi-spike neuron: an integer spike count in {0..D}, normalised by D.

Forward: ``round(clamp(x, 0, D)) / D`` with ``torch.round`` (ties to even), the
LENS-Net authors' numerics. Backward (training only): the "sigmoid soft
surrogate" ``grad * sigmoid(10 x) * sigmoid(10 (D - x))``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError

SURROGATE_ALPHA = 10.0


class _SpikeCount(torch.autograd.Function):
    """Integer spike count with a smooth surrogate gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, max_count: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.max_count = max_count
        return torch.round(torch.clamp(x, min=0, max=max_count))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        window = torch.sigmoid(SURROGATE_ALPHA * x) * torch.sigmoid(
            SURROGATE_ALPHA * (ctx.max_count - x)
        )
        return grad * window, None


def spike_count(x: torch.Tensor, max_count: int = 4) -> torch.Tensor:
    """Integer-valued spike count ``round(clamp(x, 0, max_count))`` (ties to even)."""
    return _SpikeCount.apply(x, max_count)


class MultiSpike(nn.Module):
    """Parameter-free multi-spike neuron; outputs ``count / D`` in [0, 1].

    Recording: when ``self.recorder`` is a dict, every call stores its integer
    counts under ``self.name`` (``name#2``, ``name#3`` for later calls of a
    shared module), so exporters and simulators can compare spike maps.
    """

    def __init__(self, max_count: int = 4) -> None:
        super().__init__()
        if not 1 <= int(max_count) <= 16:
            raise ModelError(f"spike count limit D must be in 1..16, got {max_count}")
        self.max_count = int(max_count)
        self.recorder: dict[str, torch.Tensor] | None = None
        self.name = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = spike_count(x, self.max_count)
        if self.recorder is not None:
            key, k = self.name, 1
            while key in self.recorder:
                k += 1
                key = f"{self.name}#{k}"
            self.recorder[key] = counts.detach().to(torch.int64)
        return counts / self.max_count

    def extra_repr(self) -> str:
        return f"D={self.max_count}"

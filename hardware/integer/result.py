"""The one result type every integer backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SimResult:
    """``logits`` in real units (sigmoid gives saliency), ``raw`` the exact integers (int64),
    ``spike_counts`` every neuron layer's integer counts (uint8, one byte per neuron),
    ``observed_max`` the largest |membrane| of every convolution, join and gate (when asked),
    ``values`` the integers of the nodes asked for with ``keep`` (int64)."""

    logits: tuple[torch.Tensor, ...]
    raw: tuple[torch.Tensor, ...]
    spike_counts: dict[str, torch.Tensor] = field(default_factory=dict)
    observed_max: dict[str, int] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)

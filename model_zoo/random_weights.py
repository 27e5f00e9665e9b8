"""Deterministic random weights that exercise every path of a LENS-Net.

A freshly built model has identity BatchNorm statistics and layer scales of
1e-6, which hide most of the arithmetic; tests and benchmarks that compare two
implementations need weights whose every branch matters.
"""

from __future__ import annotations

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill BatchNorm statistics and affine terms, biases and layer scales with
    seeded random values (convolution weights keep PyTorch's default init,
    re-drawn from the same seed). Returns the model for chaining."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return torch.rand(shape, generator=gen, dtype=torch.float64).float() * (high - low) + low

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                bound = fan_in**-0.5
                module.weight.copy_(uniform(module.weight.shape, -bound, bound))
                if module.bias is not None:
                    module.bias.copy_(uniform(module.bias.shape, -0.5, 0.5))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(uniform((c,), -0.4, 0.4))
                module.running_var.copy_(uniform((c,), 0.3, 1.8))
                module.weight.copy_(uniform((c,), 0.5, 2.0))
                module.bias.copy_(uniform((c,), -0.3, 0.9))
        for name, param in model.named_parameters():
            if "layer_scale" in name:
                param.copy_(uniform(param.shape, 0.2, 1.0))
    return model

"""The authors' hybrid loss: 0.3·BCE-with-logits + 0.7·IoU on each of the four outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

BCE_WEIGHT, IOU_WEIGHT = 0.3, 0.7


def iou_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``1 − Σ(p·t) / (Σp + Σt − Σ(p·t))`` per image."""
    inter = (prob * target).flatten(1).sum(1)
    union = prob.flatten(1).sum(1) + target.flatten(1).sum(1) - inter
    return (1 - inter / union).mean()


def hybrid_loss(logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Sum over outputs of 0.3·BCE + 0.7·IoU (target B×1×H×W in [0, 1])."""
    total = logits[0].new_zeros(())
    for p in logits:
        total = total + BCE_WEIGHT * F.binary_cross_entropy_with_logits(p, target)
        total = total + IOU_WEIGHT * iou_loss(torch.sigmoid(p), target)
    return total

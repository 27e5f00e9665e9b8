"""Constants and the input encoding of docs/integer_semantics.md, in one place.

Target widths (weights, state, graded payloads) come from the target files
(``targets``); what is here is fixed by the semantics document itself.
"""

from __future__ import annotations

import torch

from ...normalization import PIXEL_OFFSET, to_pixels

VERSION = "docs/integer_semantics.md v3"
WIDE_BITS = 64  # words of embedded cores and the host (global pool sums, the attention product)
WIDE_MAX = 2 ** (WIDE_BITS - 2)  # what the quantiser allows a wide value to reach
GATE_BITS = 12  # the sigmoid table's resolution: g in 0..2^12
GATE_SHIFT = 16  # the gate's rounding shift r
GATE_TABLE_BITS = 8  # table entries every 2^−8 in real units of z
GATE_RANGE = 16.0  # |z| beyond which the sigmoid is saturated in the table


def centred_pixels(images: torch.Tensor) -> torch.Tensor:
    """The integer model's input: ``p − round(255·mean)`` (int64, B×3×H×W) of uint8 pixels
    ``p`` (B×3×H×W or B×H×W×3) or of ImageNet-normalised images made from them, torchvision's
    normalisation or ours (``normalization.to_pixels`` recovers ``p`` exactly). Other values
    (the simulators' own tests feed noise) take the nearest pixel; the public API refuses them."""
    p = to_pixels(images, strict=False).to(torch.int64)
    return p - torch.tensor(PIXEL_OFFSET, dtype=torch.int64).view(1, 3, 1, 1)


def count_bits(D: int) -> int:
    """Payload bits of a spike count 0..D (a graded spike; 1 bit is a binary spike)."""
    return max(1, int(D).bit_length())

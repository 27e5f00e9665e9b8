"""Named LENS-Net variants (shapes only; trained weights live in the zoo registry)."""

from __future__ import annotations

from ..errors import ModelError
from .lensnet import LensNetConfig

FULL = LensNetConfig()

VARIANTS: dict[str, LensNetConfig] = {
    # The authors' architecture: 17.97 M parameters, 352×352 input.
    "lensnet": FULL,
    # Half width (32/64/128/160), 176×176: 4.55 M parameters.
    "lensnet-half": FULL.scaled(0.5, input_size=(176, 176)),
    # Quarter width (16/32/64/80), 128×128: 1.17 M parameters; trains on a CPU.
    "lensnet-tiny": FULL.scaled(0.25, input_size=(128, 128)),
    # Smallest useful shape for tests: quarter width, one block per stage.
    "lensnet-micro": FULL.scaled(0.25, transformer_blocks=(1, 1), input_size=(64, 64)),
}


def variant_config(variant: str | LensNetConfig | dict | None) -> LensNetConfig:
    """Resolve a variant name, a config dict or a config to a :class:`LensNetConfig`."""
    if variant is None:
        return FULL
    if isinstance(variant, LensNetConfig):
        return variant
    if isinstance(variant, dict):
        return LensNetConfig.from_dict(variant)
    if variant in VARIANTS:
        return VARIANTS[variant]
    raise ModelError(f"unknown LENS-Net variant {variant!r}; known: {', '.join(VARIANTS)}")

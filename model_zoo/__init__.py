"""LENS-Net definitions, variants, and the model zoo registry."""

from .lensnet import LensNet, LensNetConfig, check_input_size, record_spikes
from .spike import MultiSpike, spike_count
from .variants import VARIANTS, variant_config

__all__ = [
    "LensNet",
    "LensNetConfig",
    "MultiSpike",
    "VARIANTS",
    "check_input_size",
    "record_spikes",
    "spike_count",
    "variant_config",
]

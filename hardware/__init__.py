"""Integer semantics, quantization, simulators, Lava backend, Loihi targets (lensnet_deploy.hardware)."""

from .targets import Target, load_target

__all__ = ["Target", "load_target"]

"""PyTorch → NIR export, the NIR interpreter, ONNX (``lensnet_deploy.export``)."""

from .interpreter import run_nir, run_nir_full
from .nir_export import export_nir
from .nir_io import read_nir, write_nir

__all__ = ["export_nir", "read_nir", "run_nir", "run_nir_full", "write_nir"]

"""``export_nir``: a LENS-Net module → an exact float64 NIR graph."""

from __future__ import annotations

import nir
from torch import nn

from ..model_zoo import LensNet
from .capture import capture_lensnet
from .passes import run_passes
from .to_nir import to_nir


def export_nir(model: nn.Module, input_size: tuple[int, int] | None = None) -> nir.NIRGraph:
    """Capture ``model`` for ``input_size`` (default: ``model.input_size``), fold and lower it.

    Pipeline: capture (one node per PyTorch op) → fold BatchNorm → fold layer
    scales → move spikes before max pooling and upsampling → merge duplicate
    spike layers → fold channel shuffles → fold the 1/D spike scale → NIR
    (standard primitives + the lensnet extension convention). All folding is
    in float64.
    """
    if not isinstance(model, LensNet):
        raise TypeError(f"export_nir needs a LensNet module, got {type(model).__name__}")
    size = tuple(input_size or model.input_size)
    return to_nir(run_passes(capture_lensnet(model.eval(), size)))  # type: ignore[arg-type]

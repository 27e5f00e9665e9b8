"""lensnet-deploy: LENS-Net checkpoint → NIR → integers → Lava/Loihi, bit-exact.

Importing this package also makes lava-nc 0.10 importable on Python 3.11
(see :mod:`lensnet_deploy.lava_compat`).
"""

from __future__ import annotations

from . import lava_compat as _lava_compat

_lava_compat.install()

from .api import IntegerModel, SimResult, prepare, quantize, simulate  # noqa: E402
from .checkpoint import load_lensnet, save_lensnet  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    DatasetError,
    DesignRuleError,
    GraphError,
    LensNetDeployError,
    ResourceError,
)
from .export import export_nir, run_nir  # noqa: E402
from .hardware.build import Build, load_build  # noqa: E402
from .hardware.build import compile_graph as compile  # noqa: E402, A001
from .hardware.targets import Target, load_target  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Build",
    "DesignRuleError",
    "GraphError",
    "IntegerModel",
    "Target",
    "load_target",
    "prepare",
    "compile",
    "load_build",
    "CheckpointError",
    "DatasetError",
    "LensNetDeployError",
    "ResourceError",
    "SimResult",
    "export_nir",
    "load_lensnet",
    "quantize",
    "run_nir",
    "simulate",
    "save_lensnet",
]

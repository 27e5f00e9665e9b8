"""lensnet-deploy: LENS-Net checkpoint → NIR → integers → Lava/Loihi, bit-exact.

Importing this package also makes lava-nc 0.10 importable on Python 3.11
(see :mod:`lensnet_deploy.lava_compat`). The public names below load their
modules on first use, so ``import lensnet_deploy.errors`` (or the CLI's
``--help``) does not pay for torch, nir and Lava.
"""

from __future__ import annotations

import importlib as _importlib

from . import lava_compat as _lava_compat

# A meta-path finder that imports nothing of Lava: registered here so that Lava can be
# imported through this package whatever is touched first.
_lava_compat.install()

__version__ = "0.1.0"

# public name -> (module, relative to this package, and the name there)
_LAZY: dict[str, tuple[str, str]] = {
    "Build": (".hardware.build", "Build"),
    "CheckpointError": (".errors", "CheckpointError"),
    "DatasetError": (".errors", "DatasetError"),
    "DesignRuleError": (".errors", "DesignRuleError"),
    "GraphError": (".errors", "GraphError"),
    "IntegerModel": (".api", "IntegerModel"),
    "LensNetDeployError": (".errors", "LensNetDeployError"),
    "ModelError": (".errors", "ModelError"),
    "ResourceError": (".errors", "ResourceError"),
    "UnavailableError": (".errors", "UnavailableError"),
    "SimResult": (".api", "SimResult"),
    "Target": (".hardware", "Target"),
    "compile": (".hardware.build", "compile_graph"),
    "export_nir": (".export", "export_nir"),
    "load_build": (".hardware.build", "load_build"),
    "load_lensnet": (".checkpoint", "load_lensnet"),
    "load_target": (".hardware", "load_target"),
    "prepare": (".api", "prepare"),
    "quantize": (".api", "quantize"),
    "run_nir": (".export", "run_nir"),
    "save_lensnet": (".checkpoint", "save_lensnet"),
    "simulate": (".api", "simulate"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Load a public name's module on first use (then it is an ordinary global); other
    names are submodules (``lensnet_deploy.export`` without importing it first)."""
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(_importlib.import_module(module, __name__), attr)
    elif not name.startswith("__"):
        try:
            value = _importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

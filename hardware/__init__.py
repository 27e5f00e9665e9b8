"""Integer semantics, quantization, simulators, Lava backend, Loihi targets (lensnet_deploy.hardware).

The names below load their modules on first use (Lava, torch and numpy only when asked for).
"""

from __future__ import annotations

import importlib as _importlib

# public name -> module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "LavaNetwork": ".lava.runner",
    "Target": ".target.chips",
    "TemporalModel": ".model",
    "compile_temporal": ".build",
    "lava_network": ".model",
    "load_target": ".target.chips",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

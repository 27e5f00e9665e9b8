"""Make lava-nc 0.10 and lava-dl 0.6 importable on Python 3.11.

Python 3.11 rejects unhashable dataclass defaults, and
``lava/magma/compiler/var_model.py`` declares ``x: ByteEncoder = ByteEncoder()``.
A meta-path finder loads that one module from its own source with those
defaults turned into ``field(default_factory=ByteEncoder)``; site-packages
stay untouched. :func:`install` runs when ``lensnet_deploy`` is imported, so
users never call a shim by hand.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types

PATCHED_MODULE = "lava.magma.compiler.var_model"
_DEFAULT = re.compile(r"^(\s+\w+): ByteEncoder = ByteEncoder\(\)\s*$", re.MULTILINE)


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    """Source loader that rewrites the mutable dataclass defaults before compiling."""

    def get_data(self, path: str) -> bytes:  # type: ignore[override]
        data = super().get_data(path)
        if not path.endswith(".py"):
            return data
        text = data.decode("utf-8")
        text = _DEFAULT.sub(r"\1: ByteEncoder = field(default_factory=ByteEncoder)", text)
        text = text.replace(
            "from dataclasses import dataclass, InitVar",
            "from dataclasses import dataclass, InitVar, field",
        )
        return text.encode("utf-8")

    def path_stats(self, path: str):  # type: ignore[override]
        raise OSError("never use the cached bytecode of the unpatched module")


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        loader = _PatchedLoader(fullname, spec.origin)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def install() -> None:
    """Register the finder once (idempotent, imports nothing of Lava)."""
    if sys.version_info < (3, 11):
        return
    if not any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _VarModelFinder())


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__path__ = []  # type: ignore[attr-defined]
    return module


def import_slayer() -> types.ModuleType:
    """Import ``lava.lib.dl.slayer``; its module-level torchvision/cv2 imports get
    inert stand-ins when those packages are absent (only object detection uses them)."""
    install()
    for name in ("torchvision", "cv2"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _stand_in(name)
            if name == "torchvision":
                for sub in ("transforms", "ops", "datasets", "models", "io"):
                    sys.modules[f"torchvision.{sub}"] = _stand_in(f"torchvision.{sub}")
    import lava.lib.dl.slayer as slayer

    return slayer

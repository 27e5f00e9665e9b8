"""The model zoo registry: ``registry.json`` beside this file lists trained checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = ZOO_DIR / "registry.json"


def zoo_entries() -> dict[str, dict[str, Any]]:
    """All registered models by name (empty when none is trained yet)."""
    if not REGISTRY_FILE.exists():
        return {}
    data = json.loads(REGISTRY_FILE.read_text())
    return dict(data.get("models", {}))


def zoo_entry(name: str) -> dict[str, Any] | None:
    return zoo_entries().get(name)


def zoo_checkpoint(name: str) -> Path | None:
    """Path of a registered model's checkpoint, or None when ``name`` is not registered."""
    entry = zoo_entry(name)
    return None if entry is None else ZOO_DIR / entry["file"]

"""``deploy``: run a saved build on a Loihi 2 system through Lava's ``Loihi2HwCfg``.

Needs Intel's non-public lava-loihi extension (and neuro-core ProcessModels
for our processes, which only that extension can provide). Without it,
``deploy`` says exactly what is missing; the build folder stays as written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LensNetDeployError
from .build import load_build


def loihi2_available() -> tuple[bool, str]:
    """Whether a Loihi 2 system can be reached, and why not."""
    from .. import lava_compat

    lava_compat.install()

    try:
        from lava.utils.system import Loihi2
    except ImportError as err:  # pragma: no cover - lava is part of the install
        return False, f"lava is not importable ({err})"
    if not Loihi2.is_loihi2_available:
        return False, ("Intel's lava-loihi extension is not installed (lava.utils.system.Loihi2."
                       "is_loihi2_available is False), so Loihi2HwCfg cannot run")
    return True, "Loihi 2 available"


def deploy(build_dir: str | os.PathLike[str]) -> None:
    """Check the build, then run it on the chip (when the system and its extension are present)."""
    folder = Path(build_dir)
    build = load_build(folder)
    ok, why = loihi2_available()
    if not ok:
        raise LensNetDeployError(f"cannot deploy {folder}: {why}; the build ({build.placement.chips} chips, "
                                 f"{build.placement.cores:,} cores on {build.board}) is complete in {folder}")
    raise LensNetDeployError(f"cannot deploy {folder}: neuro-core ProcessModels for the lensnet processes come "
                             f"with Intel's lava-loihi extension and are not part of this tool yet")

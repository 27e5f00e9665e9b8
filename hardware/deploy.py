"""``deploy``: run a saved build on a Loihi 2 system through Lava's ``Loihi2HwCfg``.

The build holds the integer graph and the description of its network (``network.json``): the
same Lava library processes that ``simulate(backend="lava")`` runs on the CPU, with ours on
embedded cores and the host. Running it on a chip needs Intel's non-public lava-loihi
extension (the neuro-core models of the library processes); without it, ``deploy`` says
exactly what is missing and the build folder stays as written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnavailableError
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
    """Check the build, then build its network for the chip (when the system and its extension
    are present)."""
    folder = Path(build_dir)
    build = load_build(folder)
    ok, why = loihi2_available()
    processes = (build.description or {}).get("process_count", "?")
    if not ok:
        raise UnavailableError(f"cannot deploy {folder}: {why}; the build ({build.placement.chips} chips, "
                               f"{build.placement.cores:,} cores on {build.board}, {processes} Lava processes) "
                               f"is complete in {folder}, its network described in network.json")
    from lava.magma.core.run_configs import Loihi2HwCfg  # noqa: F401  (the chip's run configuration)

    raise UnavailableError(f"cannot deploy {folder}: the network's processes of ours (embedded cores, host) "
                           f"have Python models only; running them beside the chip needs lava-loihi's "
                           f"host/embedded runtime, which this tool has not been tried with")

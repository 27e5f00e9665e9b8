"""Resource limits: what a command may allocate, refused before it allocates.

One figure, the memory limit (default 4 GiB; the CLI's ``--max-memory GIB``, or the
environment variable ``LENSNET_MAX_MEMORY`` in GiB), bounds what an input may ask for:

* the data a NIR file declares (each HDF5 dataset's shape × item size, summed: ``nir.read``
  loads all of it), checked before anything is read, so a small file of compressed zeros
  that would expand to gigabytes is one line;
* the activations of ``predict`` and ``export`` at the asked input size (an estimate from
  the model's width, see ``activation_bytes``);
* the pixels of an image: ``limit / 48``, which at the default is PIL's own
  decompression-bomb limit (89,478,485 pixels); raising the limit raises it.

Beyond the limit is bad input (:class:`LimitError`, exit 2), not a bug: the line says what
was asked, the limit and how to raise it. (Exit 3 is a model too big for a board.)
"""

from __future__ import annotations

import os

from ..errors import LensNetDeployError

ENV = "LENSNET_MAX_MEMORY"
DEFAULT_GIB = 4.0
IMAGE_BYTES_PER_PIXEL = 48  # 4 GiB / 48 = 89,478,485 pixels: PIL's own default limit
# predict's measured peak is 28–39 bytes per input pixel per first-stage channel for the zoo's
# variants (lensnet 352² and tiny 256², batch 1–4; docs in activation_bytes): twice that, rounded up
ACTIVATION_BYTES_PER_PIXEL_CHANNEL = 64
GIB = 2**30


class LimitError(LensNetDeployError):
    """An input asks for more memory than the limit allows (exit 2; raise it with ``--max-memory``)."""


def max_memory() -> int:
    """The memory limit in bytes (``LENSNET_MAX_MEMORY`` GiB, else the default)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return int(DEFAULT_GIB * GIB)
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not gib > 0 or gib == float("inf"):
        raise LimitError(f"{ENV}={raw!r}: the memory limit must be a positive number of GiB")
    return int(gib * GIB)


def set_max_memory(gib: float) -> None:
    """Set the limit for this process and the processes it starts."""
    os.environ[ENV] = repr(float(gib))


def size_text(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", GIB), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n):,} bytes"


def check_memory(need: int, what: str) -> None:
    """Refuse when ``need`` bytes exceed the limit; the line reads ``"{what} {need}, beyond …"``
    (``what``: "x.nir: its datasets declare", "predict at 100000x100000: activations of about")."""
    limit = max_memory()
    if need > limit:
        raise LimitError(f"{what} {size_text(need)}, beyond the memory limit of {size_text(limit)} "
                         f"(raise it with --max-memory GIB or {ENV})")


def max_image_pixels() -> int:
    return max_memory() // IMAGE_BYTES_PER_PIXEL


def activation_bytes(first_channels: int, height: int, width: int, batch: int = 1) -> int:
    """Estimated memory of a forward pass: ``batch × H × W × 64 × first_channels`` bytes.

    LENS-Net's activations scale with the input's pixels and the network's width; measured
    peaks of predict (float32, no gradients) are 28–39 bytes per input pixel per channel of
    the first stage (lensnet: 1,807 B/px with 64 channels at 352²; lensnet-tiny: 587 with
    16 at 256²), so this over-estimates by about two."""
    return int(batch) * int(height) * int(width) * ACTIVATION_BYTES_PER_PIXEL_CHANNEL * int(first_channels)

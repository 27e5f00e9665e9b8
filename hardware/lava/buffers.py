"""Shared-memory buffers between the runner (parent) and the host processes (Lava's children).

A folder (under /dev/shm when present) holds ``control.npy`` (int64: the step of image 0 and
the number of images of the current batch), ``images.npy`` (the batch's centred pixels) and
one ``out<i>.npy`` per observed part of the readout. Files are memory maps: the parent writes
a batch, runs, and reads the results without copying them through Lava's channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def open_array(folder: str | Path, name: str, mode: str = "r+") -> np.ndarray:
    return np.load(Path(folder) / f"{name}.npy", mmap_mode=mode)


def create_array(folder: str | Path, name: str, shape: tuple, dtype) -> np.ndarray:
    return np.lib.format.open_memmap(Path(folder) / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))

"""Memory of a Lava run: glibc's allocator settings and the shared-memory folder of its buffers."""

from __future__ import annotations

import tempfile
from pathlib import Path


def release_freed_memory() -> None:
    """glibc keeps freed blocks of up to 32 MB in its heaps once a large one was freed (a dynamic
    mmap threshold) and gives every thread an arena: with hundreds of actors freeing per-step
    messages, resident memory grows to several times what is live. A fixed 128 KB threshold maps
    every large array on its own (returned on free) and two arenas bound the rest. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def shm_dir() -> Path:
    """A fresh folder for the run's buffers, in /dev/shm where there is one."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="lensnet-lava-", dir=base))

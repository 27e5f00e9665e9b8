"""Progress bars (tqdm on stderr; silent when not a terminal unless forced)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from tqdm import tqdm

# tqdm's default lock is a multiprocessing lock: creating one fixes the multiprocessing start
# method, and Lava, imported later, then fails setting its own ('context has already been set')
tqdm.set_lock(threading.RLock())

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, total: int | None = None, unit: str = "img") -> Iterator[T]:
    """Iterate ``items`` with a progress bar (one tick per item)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                    disable=None, dynamic_ncols=True)


def batch_bar(groups: Iterable[list[T]], total: int, desc: str, unit: str = "img") -> Iterator[list[T]]:
    """Iterate batches while counting their items."""
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None,
              dynamic_ncols=True) as b:
        for group in groups:
            yield group
            b.update(len(group))

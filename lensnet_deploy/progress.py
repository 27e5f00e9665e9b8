"""Progress bars (tqdm on stderr; silent when not a terminal unless forced).

Phases that know their size (images, Lava steps) show a rate and an ETA; phases that do not
(building a graph, Lava's compiler) show their elapsed time, refreshed while they work, so that
no bar sits still for a minute."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from tqdm import tqdm

# tqdm's default lock is a multiprocessing lock: creating one fixes the multiprocessing start
# method, and Lava, imported later, then fails setting its own ('context has already been set')
tqdm.set_lock(threading.RLock())

T = TypeVar("T")
TICK = 0.5  # seconds between refreshes of a bar whose phase reports nothing meanwhile


ELAPSED = "{desc}: {elapsed}"  # the bar of a phase that cannot count its work


def _bar(desc: str, total: int | None, unit: str, leave: bool = True, bar_format: str | None = None) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True, leave=leave,
                bar_format=bar_format)


def bar(items: Iterable[T], desc: str, total: int | None = None, unit: str = "img") -> Iterator[T]:
    """Iterate ``items`` with a progress bar (one tick per item)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                    disable=None, dynamic_ncols=True)


def batch_bar(groups: Iterable[list[T]], total: int, desc: str, unit: str = "img") -> Iterator[list[T]]:
    """Iterate batches while counting their items."""
    with _bar(desc, total, unit) as b:
        for group in groups:
            yield group
            b.update(len(group))


class _Ticker:
    """Refreshes a bar every ``TICK`` seconds from a daemon thread (its elapsed time moves on)."""

    def __init__(self, b: tqdm) -> None:
        self.bar, self.stop = b, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if not b.disable:
            self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(TICK):
            self.bar.refresh()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


@contextlib.contextmanager
def phase(desc: str) -> Iterator[None]:
    """A bar showing the elapsed time of a phase of unknown length (export, compile, …)."""
    b = _bar(desc, None, "s", leave=False, bar_format=ELAPSED)
    ticker = _Ticker(b)
    try:
        yield
    finally:
        ticker.close()
        b.close()


class Phases:
    """Progress callback ``(phase, done, total)`` of a job made of phases (the Lava network: build,
    compile and start, steps): one bar per phase; ``total`` 0 means the phase cannot count its work,
    so its bar shows the elapsed time only."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name: str | None = None
        self.bar: tqdm | None = None
        self.ticker: _Ticker | None = None

    def __call__(self, name: str, done: int, total: int) -> None:
        if name != self.name:
            self.close()
            self.name = name
            self.bar = _bar(f"{self.prefix} {name}", total or None, "step", leave=False,
                            bar_format=None if total else ELAPSED)
            if not total:
                self.ticker = _Ticker(self.bar)
        assert self.bar is not None
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self.ticker is not None:
            self.ticker.close()
            self.ticker = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.name = None

"""Lava's runtime with every actor a thread of this process.

Lava 0.10's runtime starts one OS process per ProcessModel (fork), about 20 MB each: the
LENS-Net networks have hundreds of processes. While ``thread_actors()`` is active, the same
runtime, compiler and models run with each actor a thread instead, joined by in-process channels
with Lava's channel contract (``channel.ThreadChannel``). Lava has no such option:
``MultiProcessing``'s actor, channel and start/stop methods are swapped while the runtime starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Callable, Iterator

from ....errors import LensNetDeployError


class _ThreadActor(threading.Thread):
    """Lava's actor (a ProcessModel or runtime service loop) as a thread; like Lava's
    ``SystemProcess`` it keeps an exception for the runtime to report."""

    def __init__(self, target: Callable, kwargs: dict) -> None:
        super().__init__(daemon=True, name=f"lava-actor-{id(self)}")
        self._target_fn, self._kwargs = target, kwargs
        self._parent_pid = os.getpid()
        self._exception = None

    def run(self) -> None:
        try:
            self._target_fn(**self._kwargs)
        except Exception as err:  # noqa: BLE001 - reported through ``exception``, as Lava's processes do
            self._exception = (err, traceback.format_exc())

    @property
    def exception(self):
        return self._exception


@contextlib.contextmanager
def thread_actors() -> Iterator[None]:
    """While Lava starts a runtime, build its actors as threads of this process, joined by
    in-process channels (``ThreadChannel``) instead of shared memory, so no shared-memory
    manager process is started either."""
    from lava.magma.compiler.channels.interfaces import ChannelType
    from lava.magma.runtime.message_infrastructure.multiprocessing import MultiProcessing

    from .channel import ThreadChannel

    original = {name: getattr(MultiProcessing, name) for name in ("build_actor", "channel_class", "start")}

    def build_actor(self, target_fn, builder, exception_q=None):
        actor = _ThreadActor(target_fn, {"builder": builder, "exception_q": exception_q})
        actor.start()
        self._actors.append(actor)
        return actor

    def channel_class(self, channel_type):
        if channel_type != ChannelType.PyPy:
            raise LensNetDeployError(f"the threads runtime has only Python-to-Python channels, not {channel_type!r}")
        return ThreadChannel

    def start(self):
        self._smm = None
        # ``stop`` runs after this block (when the network closes): this instance's own, no manager to shut
        self.stop = lambda: [actor.join() for actor in self._actors]

    patched = {"build_actor": build_actor, "channel_class": channel_class, "start": start}
    for name, fn in patched.items():
        setattr(MultiProcessing, name, fn)
    try:
        yield
    finally:
        for name, fn in original.items():
            setattr(MultiProcessing, name, fn)

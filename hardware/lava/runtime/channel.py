"""A Lava channel between two actors of one OS process (the ``threads`` runtime).

Lava's ``PyPyChannel`` joins two OS processes: every message is copied into shared memory,
a process semaphore wakes a helper thread on the receiving side, which wakes the receiver,
which copies the message out and releases another semaphore, which wakes a helper thread on
the sending side. With every actor a thread of one process, the four wake-ups per message
and the two copies are the cost of a step (hundreds of ports, a message each per step).

``ThreadChannel`` keeps Lava's CSP contract (a bounded FIFO of ``size`` messages; ``send``
blocks while it is full and casts to the channel's dtype as an assignment into Lava's buffer
does; ``recv`` blocks while it is empty; ``peek`` and ``probe`` do not consume; an ``observer``
is called when the other side may proceed, as ``CspSelector`` expects) with one lock and one
copy per message: the sender's array is copied once, and the receiver owns that copy.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from lava.magma.compiler.channels.interfaces import Channel
from lava.magma.compiler.channels.pypychannel import CspRecvPort, CspSendPort
from lava.magma.compiler.channels.watchdog import NoOPWatchdog
from scipy.sparse import csr_matrix


class _Pipe:
    """The FIFO both ends share."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: deque[np.ndarray] = deque()
        self.changed = threading.Condition()


class _End:
    def __init__(self, name: str, pipe: _Pipe, shape: tuple[int, ...], dtype: Any, io_watchdog: Any,
                 join_watchdog: Any) -> None:
        self._name, self._pipe, self._shape, self._dtype = name, pipe, tuple(shape), np.dtype(dtype)
        self._io_watchdog, self._join_watchdog = io_watchdog, join_watchdog
        self.observer: Callable[[], Any] | None = None
        self.peer: _End | None = None
        self._done = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def d_type(self) -> np.dtype:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def size(self) -> int:
        return self._pipe.size

    def start(self) -> None:
        """Nothing to start: no helper thread, no shared buffer."""

    def join(self) -> None:
        with self._join_watchdog:
            self._done = True

    def _wake_peer(self) -> None:
        observer = self.peer.observer if self.peer is not None else None
        if observer is not None:
            observer()


class ThreadSendPort(_End, CspSendPort):
    """Sending end (a ``CspSendPort`` to Lava's builders, which sort ports by that class)."""

    def probe(self) -> bool:
        """True when ``send`` would not block."""
        return len(self._pipe.items) < self._pipe.size

    def send(self, data: np.ndarray) -> None:
        with self._io_watchdog:
            if data.shape != self._shape:
                raise AssertionError(f"{data.shape=} {self._shape=} Mismatch")
            if isinstance(data, csr_matrix):
                data = data.toarray()
            message = np.array(data, dtype=self._dtype, copy=True)
            pipe = self._pipe
            with pipe.changed:
                while len(pipe.items) >= pipe.size:
                    pipe.changed.wait()
                pipe.items.append(message)
                pipe.changed.notify_all()
        self._wake_peer()


class ThreadRecvPort(_End, CspRecvPort):
    """Receiving end (a ``CspRecvPort`` to Lava's builders)."""

    def probe(self) -> bool:
        """True when ``recv`` would not block."""
        return len(self._pipe.items) > 0

    def _first(self) -> np.ndarray:
        pipe = self._pipe
        while not pipe.items:
            pipe.changed.wait()
        return pipe.items[0]

    def peek(self) -> np.ndarray:
        """The next message, left on the channel (a copy: the receiver may change what it gets)."""
        with self._pipe.changed:
            return self._first().copy()

    def recv(self) -> np.ndarray:
        with self._io_watchdog:
            pipe = self._pipe
            with pipe.changed:
                message = self._first()
                pipe.items.popleft()
                pipe.changed.notify_all()
        self._wake_peer()
        return message


class ThreadChannel(Channel):
    """Drop-in for Lava's ``PyPyChannel`` (same constructor) when both actors are threads of this process."""

    def __init__(self, message_infrastructure: Any, src_name: str, dst_name: str, shape: tuple[int, ...],
                 dtype: Any, size: int, src_send_watchdog: Any = None, src_join_watchdog: Any = None,
                 dst_recv_watchdog: Any = None, dst_join_watchdog: Any = None) -> None:
        def watchdog(w: Any) -> Any:
            return w if w is not None else NoOPWatchdog(None)

        pipe = _Pipe(int(size))
        self._src = ThreadSendPort(src_name, pipe, shape, dtype, watchdog(src_send_watchdog),
                                   watchdog(src_join_watchdog))
        self._dst = ThreadRecvPort(dst_name, pipe, shape, dtype, watchdog(dst_recv_watchdog),
                                   watchdog(dst_join_watchdog))
        self._src.peer, self._dst.peer = self._dst, self._src

    @property
    def src_port(self) -> ThreadSendPort:
        return self._src

    @property
    def dst_port(self) -> ThreadRecvPort:
        return self._dst

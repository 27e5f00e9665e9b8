"""Ctrl-C that is never lost: Python drops a KeyboardInterrupt raised inside a weakref callback
or ``__del__`` ("Exception ignored in …"), so the handler also records it and long jobs check
the record at their step boundaries."""

from __future__ import annotations

import signal
import threading

_INTERRUPTED = threading.Event()


def _on_sigint(signum, frame) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT (main thread only; where SIGINT is ignored, as for background jobs, keep that)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        _INTERRUPTED.clear()
        signal.signal(signal.SIGINT, _on_sigint)


def check() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that arrived where it could not be raised."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt

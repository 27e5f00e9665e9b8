"""Atomic file writes: a reader never sees half a file, a failure leaves no debris."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    The name is chosen before the file exists and the file is created inside the ``try``, so
    a Ctrl-C at any point (even right after creation) leaves nothing behind."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix or '.tmp'}"
    try:
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            yield tmp_path
        except OSError as err:
            if err.filename is None and err.errno is not None:  # a failed write (disk full): name the output
                raise OSError(err.errno, err.strerror, str(target)) from err
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # created 0600; give the file the usual mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))

"""Atomic file writes: a reader never sees half a file, a failure leaves no debris."""

from __future__ import annotations

import contextlib
import errno
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
    tmp_path = target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix or '.tmp'}"

    def about_target(err: OSError) -> OSError:
        """The user's path in the message, never the temporary name (no permission, a folder
        where the file should go, a file where its folder should be)."""
        return OSError(err.errno, err.strerror, str(target)) if err.errno is not None else err

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be
        blocker = next((p for p in [target.parent, *target.parent.parents] if p.exists() and not p.is_dir()),
                       target.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder", str(target)) from None
    except OSError as err:
        raise about_target(err) from None

    try:
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as err:
            raise about_target(err) from None
        try:
            yield tmp_path
        except OSError as err:
            # a failed write (disk full) names the output, also through a nested atomic write
            if err.errno is not None and (err.filename is None or str(err.filename) == str(tmp_path)):
                raise OSError(err.errno, err.strerror, str(target)) from err
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # created 0600; give the file the usual mode
        try:
            os.replace(tmp_path, target)
        except OSError as err:
            raise about_target(err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))

"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the target's directory (so the final rename stays on
one file system) and is moved into place with :func:`os.replace`. A failure removes the
temporary file and leaves the previous version untouched. ``durable=True`` also flushes the
file and its directory to disk, for files whose loss after a power cut would matter (keys).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: Path | str,
    write: Callable[[Path], None],
    *,
    mode: int | None = None,
    durable: bool = False,
) -> Path:
    """Create ``path`` through ``write(temporary_path)`` and rename it into place.

    Parameters
    ----------
    path
        The file to create or replace; its directory is created if needed.
    write
        Writes the complete content to the path it is given (e.g. ``pq.write_table``).
    mode
        Permission bits of the new file (e.g. ``0o600``); the umask default when ``None``.
    durable
        fsync the file before and its directory after the rename.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        if durable:
            with temporary.open("rb+") as stream:
                os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(target.parent)
    return target


def atomic_write_bytes(
    path: Path | str, payload: bytes, *, mode: int | None = None, durable: bool = False
) -> Path:
    """Write ``payload`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(payload), mode=mode, durable=durable)


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

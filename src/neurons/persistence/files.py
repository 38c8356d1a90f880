"""Durable files: written under a temporary name, fsync'd, renamed, and the directory fsync'd,
so that after a crash at any moment a name holds either nothing or all of its bytes.

A rename is atomic on POSIX file systems, but only the directory's own fsync makes the new
name survive a power cut; without the file's fsync first, the name could survive pointing at
a file whose data did not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fsync_dir", "sha256_of", "write_durably"]

PART = ".part"  # suffix of a file still being written


def sha256_of(data: bytes) -> str:
    """The hex SHA-256 of ``data``.

    >>> sha256_of(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a created or renamed name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``path.part``: fsync the file, rename it, fsync
    the directory. A crash leaves at most a ``.part`` file beside the old state."""
    part = path.with_name(path.name + PART)
    with part.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, path)
    fsync_dir(path.parent)

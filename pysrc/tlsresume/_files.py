"""Writing files that hold secrets: mode 0600, atomically, durably.

Used for ticket key files and client session cache files: a reader sees the old
file or the new one, never a mix, and never a file others could read.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_private"]


def write_private(path: str, data: bytes) -> None:
    """Temp file beside ``path``, 0600, fsync, rename over ``path``, fsync the directory.

    The temporary file never outlives this call, whatever is raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, 0o600)  # mkstemp's 0600 is still subject to the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def _unlink_quietly(path: str) -> None:
    """Remove ``path`` if it exists; ignore errors (we are already failing)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory: str) -> None:
    """Make the rename durable. Best effort: the file is already in place."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

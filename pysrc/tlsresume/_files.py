"""Files that hold secrets: written mode 0600, atomically, durably; read only when
they are regular files, with a bound on their size.

Used for ticket key files and client session cache files: a reader sees the old
file or the new one, never a mix, and never a file others could read; reading
never blocks on a FIFO or device put where such a file should be.
"""

from __future__ import annotations

import os
import stat
import tempfile

__all__ = ["read_regular", "write_private"]


def read_regular(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """At most ``limit + 1`` bytes of the regular file ``path``, and its status.

    Opened non-blocking and checked through the descriptor before any read, so a
    FIFO (whose open and read would wait for a writer forever), a device or a
    directory is refused whatever the path's name says. The caller compares the
    length with ``limit``.

    Raises:
        OSError: it cannot be opened or read (``FileNotFoundError`` when missing).
        ValueError: it is not a regular file; the message names what it is.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file (a {_file_kind(st.st_mode)})")
        data = bytearray()
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data), st
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


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

"""Where named regions live: one private directory per user, on tmpfs.

A named key ring or session store is the file ``tlsresume.<kind>.<name>`` (mode
0600) in a directory that only this user can write. Names in a directory other
users can write (``/dev/shm`` itself) could be taken by any of them first, which
would stop every server using that name from starting; names in a directory of
our own cannot.

The directory is the first usable one of (:func:`candidates`, a pure function of
the environment and the uid, so every process of a user computes the same list):

1. ``$TLSRESUME_RUNTIME_DIR`` when set. It is then the only candidate: when it is
   unusable, nothing else is tried and the error says why.
2. For root: ``/run/tlsresume``. Only root can create names in ``/run``, so nobody
   can take it. When ``/run`` is not tmpfs (some containers) the key material
   must not go there; the directory then holds one small file, ``shm-dir``, with
   the path of a directory of random name that root made in ``/dev/shm``, and that
   directory holds the regions. The file is written and read under a lock on
   ``/run/tlsresume``, so all of root's processes agree on one directory.
3. ``$XDG_RUNTIME_DIR/tlsresume`` when ``XDG_RUNTIME_DIR`` is ours and not
   writable by group or others (systemd-logind's ``/run/user/<uid>``).
4. ``/dev/shm/tlsresume-<uid>``. Another user can create this name first; it is
   then skipped (logged once) and, with nothing after it, the error names the
   directory, its owner and the fix.

A directory is used only after the C core has opened it (``O_NOFOLLOW``) and
checked the open descriptor: a directory, owned by us, mode 0700, on tmpfs. From
then on every region file is reached with ``openat`` relative to that descriptor
and must be a regular file of ours, mode 0600, so nothing of another user's is
ever mapped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._binding import ffi, lib
from .errors import SharedMemoryError

__all__ = ["ENV_VAR", "Candidate", "candidates", "region_dir", "describe_status"]

log = logging.getLogger("tlsresume")

#: Environment variable that names the directory explicitly.
ENV_VAR = "TLSRESUME_RUNTIME_DIR"

_ROOT_DIR = "/run/tlsresume"
_POINTER = "shm-dir"
_SHM = "/dev/shm"

_announced: set[str] = set()


@dataclass(frozen=True)
class Candidate:
    """One place the region directory may be."""

    path: str
    source: str  # what put it on the list, for messages
    explicit: bool = False  # the user named it: no fallback past it
    anchor: bool = False  # may be off tmpfs: then it points at a tmpfs directory
    parent_owned: bool = False  # its parent must be ours and not group/other writable


def candidates(env: Mapping[str, str], euid: int) -> list[Candidate]:
    """The directories to try, in order (pure: no file system access).

    Raises:
        ValueError: ``TLSRESUME_RUNTIME_DIR`` is set but not an absolute path.
    """
    explicit = env.get(ENV_VAR, "")
    if explicit:
        if not os.path.isabs(explicit):
            raise ValueError(
                f"{ENV_VAR}={explicit!r} is not an absolute path; set it to a directory on "
                "tmpfs that only this user can write, e.g. /run/user/$UID/tlsresume"
            )
        return [Candidate(os.path.normpath(explicit), ENV_VAR, explicit=True)]
    out = []
    if euid == 0:
        out.append(Candidate(_ROOT_DIR, "root's /run", anchor=True))
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        out.append(
            Candidate(
                os.path.join(os.path.normpath(xdg), "tlsresume"),
                "XDG_RUNTIME_DIR",
                parent_owned=True,
            )
        )
    out.append(Candidate(f"{_SHM}/tlsresume-{euid}", "/dev/shm"))
    return out


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def describe_status(status: Any) -> str:
    """Why the C core refused a directory, from its ``tlsr_dir_status``."""
    reason = status.reason
    if reason == lib.TLSR_DIR_OWNER:
        return f"it belongs to {_user(status.uid)}, not to this user ({_user(os.geteuid())})"
    if reason == lib.TLSR_DIR_MODE:
        return f"its mode is {status.mode:04o}, not 0700"
    if reason == lib.TLSR_DIR_NOTDIR:
        return "it is a symlink or not a directory"
    if reason == lib.TLSR_DIR_NOTTMPFS:
        return (
            f"it is not on tmpfs (file system type {status.fstype:#x}), and key "
            "material must never reach a disk"
        )
    if reason == lib.TLSR_DIR_MISSING:
        return "its parent directory does not exist"
    return f"it cannot be opened ({os.strerror(status.err)})"


class _Unusable(Exception):
    pass


def _check(path: str, *, create: bool, adopt: bool) -> Any:
    """Run the C core's check on ``path``; raise _Unusable with the reason."""
    status = ffi.new("tlsr_dir_status *")
    rc = lib.tlsr_dir_check(path.encode(), int(create), int(adopt), status)
    if rc < 0:
        raise _Unusable(describe_status(status))
    return status


def _parent_is_private(path: str, uid: int) -> None:
    parent = os.path.dirname(path)
    try:
        st = os.lstat(parent)
    except OSError as exc:
        raise _Unusable(f"{parent} cannot be read ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise _Unusable(f"{parent} is not a directory of this user that only it can write")


def _via_pointer(anchor: str) -> str:
    """The tmpfs directory ``anchor``'s pointer file names, made if need be.

    ``anchor`` has been checked (ours, 0700, not a symlink) but is not on tmpfs.
    """
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
        target = _read_pointer(fd)
        if target is not None:
            try:
                _check(target, create=False, adopt=False)
                return target
            except _Unusable as exc:
                log.warning(
                    "tlsresume: %s/%s names %s, which is unusable (%s); making a new directory",
                    anchor,
                    _POINTER,
                    target,
                    exc,
                )
        # Random name: nobody can have made it first, and mkdtemp makes it 0700.
        target = tempfile.mkdtemp(prefix=f"tlsresume-{os.geteuid()}-", dir=_SHM)
        tmp = f".{_POINTER}.{os.getpid()}"
        try:  # left by an earlier process with our pid that died here
            os.unlink(tmp, dir_fd=fd)
        except FileNotFoundError:
            pass
        pfd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=fd,
        )
        try:
            os.write(pfd, target.encode() + b"\n")
        finally:
            os.close(pfd)
        os.replace(tmp, _POINTER, src_dir_fd=fd, dst_dir_fd=fd)
        return target
    finally:
        os.close(fd)


def _read_pointer(dir_fd: int) -> str | None:
    try:
        fd = os.open(_POINTER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        text = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not text.startswith(_SHM + "/tlsresume-") or "/" in text[len(_SHM) + 1 :]:
        return None
    return text


def _try(cand: Candidate, uid: int) -> str:
    if cand.parent_owned:
        _parent_is_private(cand.path, uid)
    if cand.anchor:
        if uid != 0:
            raise _Unusable("only root's processes use it")
        parent = os.path.dirname(cand.path)
        try:
            st = os.lstat(parent)
        except OSError as exc:
            raise _Unusable(f"{parent} cannot be read ({exc.strerror})") from None
        if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
            raise _Unusable(f"{parent} is writable by users other than root")
        status = _check(cand.path, create=True, adopt=False)
        if status.reason == lib.TLSR_DIR_NOTTMPFS:
            target = _via_pointer(cand.path)
            _check(target, create=False, adopt=True)
            return target
    _check(cand.path, create=True, adopt=True)
    return cand.path


def region_dir() -> str:
    """Choose (and make, if missing) this user's directory of named regions, and
    make it the C core's: the path of the directory in use.

    Raises:
        SharedMemoryError: no candidate is usable; the message names each one, why
            it was refused (e.g. who owns it) and how to fix it.
        ValueError: ``TLSRESUME_RUNTIME_DIR`` is not an absolute path.
    """
    uid = os.geteuid()
    refused: list[str] = []
    for cand in candidates(os.environ, uid):
        try:
            path = _try(cand, uid)
        except (_Unusable, OSError) as exc:
            reason = str(exc) if isinstance(exc, _Unusable) else exc.strerror or str(exc)
            if cand.explicit:
                raise SharedMemoryError(
                    f"{ENV_VAR}={cand.path} cannot hold tlsresume's named regions: {reason}. "
                    f"Point {ENV_VAR} at a directory on tmpfs that only this user can "
                    "write (mode 0700; tlsresume creates it if its parent exists)"
                ) from None
            refused.append(f"{cand.path} ({cand.source}): {reason}")
            continue
        if refused and path not in _announced:
            _announced.add(path)
            log.warning("tlsresume: named regions go to %s; skipped %s", path, "; ".join(refused))
        return path
    raise SharedMemoryError(
        "no private directory for tlsresume's named regions: "
        + "; ".join(refused)
        + f". Set {ENV_VAR} to a directory on tmpfs that only this user can write "
        "(mode 0700), e.g. one under /run/user/<uid>, or remove the directory another "
        "user made"
    )

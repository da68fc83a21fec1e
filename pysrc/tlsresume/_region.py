"""What every Python handle on a shared region of the C core has in common.

A handle holds one reference to a region (a key ring or a session store). Closing
it drops that reference; OpenSSL contexts the region was installed on hold their
own, so closing never pulls memory from under a live server. Named regions are
files in this user's private directory on tmpfs (see ``_rundir``); they can be
unlinked, and travel to spawned processes as their name.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import resource
import threading
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from . import _binding, _rundir
from ._binding import lib
from .errors import RingClosedError, StateError

__all__ = ["SharedRegion", "check_region_name", "region_name"]

log = logging.getLogger("tlsresume")

_NAME_RE = re.compile(rf"^[A-Za-z0-9._-]{{1,{lib.TLSR_RING_NAME_MAX}}}$")


def check_region_name(name: str, what: str) -> bytes:
    """The name as bytes for the C core, or ValueError/TypeError naming the rule."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, not {type(name).__name__}")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use 1-{lib.TLSR_RING_NAME_MAX} letters, digits, "
            "'.', '_' or '-'"
        )
    return name.encode()


def region_name(name: str, what: str) -> bytes:
    """:func:`check_region_name`, after making sure the C core uses this user's
    private region directory (see :func:`tlsresume._rundir.region_dir`)."""
    cname = check_region_name(name, what)
    _rundir.region_dir()
    return cname


class SharedRegion:
    """Base of :class:`TicketKeyRing` and :class:`SessionStore`."""

    _what: ClassVar[str]  # "key ring", "session store"
    _release: ClassVar[Callable[[Any], None]]
    _unlink: ClassVar[Callable[[bytes], int]]
    _relock: ClassVar[Callable[[Any], int]]  # mlock again in this process: 1 locked

    _ptr: Any = None
    _name: str | None = None

    def _adopt(self, ptr: Any, name: str | None) -> None:
        self._ptr = ptr
        self._name = name
        self._close_lock = threading.Lock()
        _LIVE.add(self)
        if not self.locked_in_memory:
            _memlock_refused(self._label())

    def _meta(self) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def locked_in_memory(self) -> bool:
        """Whether this process locked the region's pages against swapping (each
        process locks its own, forked children included: mlock is not inherited)."""
        return bool(self._meta().mlocked)

    @property
    def name(self) -> str | None:
        """The region's name, or ``None`` for an anonymous region."""
        return self._name

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _label(self) -> str:
        return f"{self._what} {self._name or '(anonymous)'}"

    def _handle(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise RingClosedError(f"{self._label()} is closed; create or attach a new one")
        return ptr

    def _on_close(self) -> None:
        """Hook for subclasses: stop what they run beside the region."""

    def close(self) -> None:
        """Drop this object's hold. Contexts it was installed on keep working; the
        memory goes when the last of them is freed. Idempotent."""
        lock = getattr(self, "_close_lock", None)
        if lock is None:
            return
        with lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._on_close()
            type(self)._release(ptr)

    def unlink(self) -> None:
        """Remove the name so no new process can attach; those attached keep it."""
        if self._name is None:
            raise StateError(f"an anonymous {self._what} has no name to unlink")
        rc = type(self)._unlink(region_name(self._name, self._what))
        if rc < 0 and -rc != lib.TLSR_E_NOTFOUND:
            _binding.check(rc, f"unlinking {self._label()}")

    def _remove_name_at_exit(self) -> None:
        """Unlink this region's name when this process exits normally (``atexit``;
        not on SIGKILL or ``os._exit``). Forked children inherit the handler but do
        not run it: only the process that asked removes the name."""
        if self._name is None:
            raise StateError(f"an anonymous {self._what} has no name to remove")
        cname = region_name(self._name, self._what)
        unlink = type(self)._unlink
        pid = os.getpid()

        def remove() -> None:
            if os.getpid() == pid:
                unlink(cname)

        atexit.register(remove)

    @classmethod
    def attach(cls, name: str) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # multiprocessing (spawn) pickles arguments: a named region travels as its name.
        if self._name is None:
            kind = type(self).__name__
            raise TypeError(
                f"an anonymous {kind} is shared with processes forked after it was made; "
                f"give it a name ({kind}(name=...)) to share it with spawned processes"
            )
        return (type(self).attach, (self._name,))


# Every open handle, so that a forked child locks what it inherited.
_LIVE: weakref.WeakSet[SharedRegion] = weakref.WeakSet()
_memlock_warned = False


def _memlock_refused(label: str) -> None:
    """Warn, once per process (forked children inherit the flag), that a region
    holding keys or sessions could not be locked in RAM."""
    global _memlock_warned
    if _memlock_warned:
        return
    _memlock_warned = True
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    log.warning(
        "tlsresume: could not lock the %s in RAM (mlock); RLIMIT_MEMLOCK is %s in "
        "process %d, so its keys or sessions may be swapped to disk: raise the limit "
        "(ulimit -l, LimitMEMLOCK= in systemd) or use a smaller store (warned once "
        "per process)",
        label,
        limit,
        os.getpid(),
    )


def _relock_after_fork() -> None:
    """In a forked child: lock every region this process maps (the parent's locks
    are not inherited). Never raises: a region that cannot be locked still works."""
    for region in list(_LIVE):
        ptr = region._ptr
        try:
            if ptr is not None and not type(region)._relock(ptr):
                _memlock_refused(region._label())
        except Exception as exc:  # pragma: no cover - the C call does not fail
            log.debug("could not lock %s after fork: %s", region._label(), exc)


os.register_at_fork(after_in_child=_relock_after_fork)

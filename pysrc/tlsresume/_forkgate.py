"""Fork safety for the library's own threads: no ``os.fork()`` while one of them is
inside a unit of work.

A pre-fork server forks while tlsresume's background threads run (the Redis key
sync, the Redis session tier's writer, a key file's watcher). A fork in the middle
of one of their rounds could leave the child with a lock held by a thread it does
not have: OpenSSL's (HMAC, AES-GCM, TLS to ``rediss://``), redis-py's or a
buffered file's, and its first handshake would hang forever. Each such thread holds
a :class:`ForkGate` for each round; an ``os.register_at_fork`` hook takes every
gate before the fork (waiting for rounds in progress, each bounded by its own
timeouts) and gives them back in both processes after it.

CPython 3.12+ still warns (``DeprecationWarning: This process ... is
multi-threaded``) since the threads exist; the gates make that fork safe.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from types import TracebackType

__all__ = ["ForkGate"]

log = logging.getLogger("tlsresume")


class ForkGate:
    """A lock a library thread holds for each round of its work, and that fork
    takes first.

    Args:
        what: what the thread does, for the warning when a round outlasts ``wait``.
        wait: the longest a fork waits for a round in progress (seconds); a round
            must be bounded by its own timeouts well within it.
    """

    def __init__(self, what: str, wait: float = 5.0) -> None:
        self.what = what
        self.wait = wait
        self._lock = threading.Lock()
        self._held_for_fork = False
        _gates.add(self)

    def __enter__(self) -> ForkGate:
        self._lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    def _close_for_fork(self) -> None:
        self._held_for_fork = self._lock.acquire(timeout=self.wait)
        if not self._held_for_fork:
            log.warning(
                "tlsresume: %s was still busy after %g s; forking anyway (the child "
                "may inherit a lock that thread held)",
                self.what,
                self.wait,
            )

    def _open_after_fork(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()


_gates: weakref.WeakSet[ForkGate] = weakref.WeakSet()
_closed: list[ForkGate] = []


def _before_fork() -> None:
    # Gates are independent (no thread holds two), so the order does not matter;
    # the list keeps them alive until they are opened again.
    _closed[:] = list(_gates)
    for gate in _closed:
        gate._close_for_fork()


def _after_fork() -> None:
    # In the parent the gates' threads resume; in the child the copies of the locks
    # are released so the objects stay usable (their threads are the parent's).
    for gate in _closed:
        gate._open_after_fork()
    _closed.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)

"""How the ``tlsresume serve`` master restarts dead workers: a capped exponential
backoff per worker slot (pure), and the master's counters in a small shared memory
page every worker reads for the stats URL.

The master never gives up: a slot whose workers keep dying is retried every
:data:`BACKOFF_CAP` seconds for as long as the server runs, with the listening socket
open (connections queue in its backlog meanwhile).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
from dataclasses import dataclass
from typing import Any

#: The first respawn of a slot waits this long (seconds).
BACKOFF_FIRST = 0.1
#: Each quick death doubles the wait, up to this.
BACKOFF_CAP = 5.0
#: A worker that lived this long resets its slot's backoff.
STABLE_AFTER = 10.0


@dataclass
class SlotBackoff:
    """The respawn delay of one worker slot."""

    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    stable_after: float = STABLE_AFTER
    delay: float = 0.0  # the delay the last death got (0: none yet, or reset)

    def on_death(self, lived: float) -> float:
        """The delay before restarting a slot whose worker lived ``lived`` seconds."""
        if lived >= self.stable_after or self.delay <= 0.0:
            self.delay = self.first
        else:
            self.delay = min(self.cap, self.delay * 2)
        return self.delay


def shared_page(name: str) -> int:
    """A memfd of one page (``MFD_CLOEXEC``; ``--spawn`` workers get it in
    ``pass_fds``), for state the master and its workers share."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, mmap.PAGESIZE)
    except BaseException:
        os.close(fd)
        raise
    return fd


# deaths, respawns, failed starts, the last dead worker's pid, its signal (0: it
# exited) and exit code (-1: killed).
_LAYOUT = struct.Struct("<QQQqqq")
_FIELDS = (
    "worker_deaths",
    "respawns",
    "start_failures",
    "last_death_pid",
    "last_death_signal",
    "last_death_exit_code",
)


class SupervisorCounters:
    """The master's counters, in a memfd page the master writes and workers read.

    Forked workers inherit the mapping; ``--spawn`` workers get :attr:`fd` and map
    it with :meth:`from_fd`. Only the master writes; a reader may see a field of an
    update before another (these are statistics, not state).
    """

    def __init__(self, fd: int, *, writable: bool) -> None:
        self.fd = fd
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self._map = mmap.mmap(fd, mmap.PAGESIZE, access=access)
        self._writable = writable

    @classmethod
    def create(cls) -> SupervisorCounters:
        fd = shared_page("tlsresume-serve-supervisor")
        try:
            return cls(fd, writable=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls, fd: int) -> SupervisorCounters:
        """A worker's read-only view of the master's counters."""
        return cls(fd, writable=False)

    def _values(self) -> list[int]:
        return list(_LAYOUT.unpack_from(self._map, 0))

    def _store(self, values: list[int]) -> None:
        assert self._writable, "only the master writes the supervisor counters"
        _LAYOUT.pack_into(self._map, 0, *values)

    def death(self, pid: int, status: int) -> None:
        """Count a worker that exited with wait status ``status``."""
        v = self._values()
        v[0] += 1
        v[3] = pid
        v[4] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        v[5] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        self._store(v)

    def count(self, field: str) -> None:
        """Add one to ``"respawns"`` or ``"start_failures"``."""
        v = self._values()
        v[_FIELDS.index(field)] += 1
        self._store(v)

    def report(self) -> dict[str, Any]:
        """The counters as the stats URL shows them (``last_death_signal`` by name)."""
        out: dict[str, Any] = dict(zip(_FIELDS, self._values(), strict=True))
        sig = out["last_death_signal"]
        if sig:
            try:
                out["last_death_signal"] = signal.Signals(sig).name
            except ValueError:
                pass
        else:
            out["last_death_signal"] = None
        if out["last_death_pid"] == 0:
            out["last_death_pid"] = out["last_death_exit_code"] = None
        return out

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)

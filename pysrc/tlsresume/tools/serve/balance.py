"""Spreading connections evenly over a ``tlsresume serve``'s workers: each worker
steps back from ``accept()`` for a moment while it has accepted noticeably more than
the least busy of the others (like nginx's ``accept_disabled``).

Why: a worker serves most connections on its accepting thread and goes straight
back to ``accept()``. Under a saturating load it then never blocks there, so it
takes the next connection from the backlog before the kernel's wake-up of a worker
that is blocked can; one worker ends up with most connections. With ``--no-share``
(each worker its own keys) a client resumes only on the worker that made its
session, so an uneven spread inflates that baseline (2 workers resumed 67-71 %
instead of about 1/2) and misstates what sharing is worth.

The workers' accept counts live in one shared memory page, a slot per worker: the
worker in a slot writes its own count and pid, the master clears the pid when it
reaps the worker, so a dead or empty slot never holds the others back.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from .supervisor import shared_page

#: A worker this many accepts ahead of the least busy live other steps back.
LEAD = 2
#: A lead larger than this is forgotten (the worker counts itself this far ahead
#: only), so a worker that fell behind for a while (a slow client served inline, a
#: pause) is not handed every connection afterwards until it catches up.
LEAD_CAP = 16
#: One step back: this long (seconds), at most :data:`MAX_STEPS` times before one
#: accept; a peer that is busy or stuck costs a connection at most their product.
STEP = 0.0002
MAX_STEPS = 2

_SLOT = struct.Struct("<qQ")  # the worker's pid (0: no live worker), its accept count


class AcceptBalance:
    """The workers' accept counts, in a page the master makes before any worker.

    Forked workers inherit the mapping; ``--spawn`` workers map :attr:`fd`. Each
    slot has one writer at a time: its worker (count and pid) while it lives, then
    the master (pid 0) once it has reaped it. A reader may see a count a connection
    old; the rule only needs it roughly right.
    """

    def __init__(self, fd: int, workers: int) -> None:
        if workers * _SLOT.size > mmap.PAGESIZE:
            raise ValueError(f"{workers} workers do not fit the accept balance page")
        self.fd = fd
        self.workers = workers
        self._map = mmap.mmap(fd, mmap.PAGESIZE)
        self._slot = -1
        self._count = 0

    @classmethod
    def create(cls, workers: int) -> AcceptBalance:
        fd = shared_page("tlsresume-serve-balance")
        try:
            return cls(fd, workers)
        except BaseException:
            os.close(fd)
            raise

    def _others(self) -> list[int]:
        """The accept counts of the other slots that have a live worker."""
        counts = []
        for slot in range(self.workers):
            if slot != self._slot:
                pid, count = _SLOT.unpack_from(self._map, slot * _SLOT.size)
                if pid:
                    counts.append(count)
        return counts

    def _write(self) -> None:
        _SLOT.pack_into(self._map, self._slot * _SLOT.size, os.getpid(), self._count)

    # -- in a worker --------------------------------------------------------------

    def join(self, slot: int) -> None:
        """Take ``slot`` in this (the worker) process. The count starts at the least
        of the live others': a restarted worker is neither starved nor flooded."""
        self._slot = slot
        others = self._others()
        self._count = min(others) if others else 0
        self._write()

    def step_back(self) -> int:
        """Before ``accept()``: while this worker is :data:`LEAD` or more accepts
        ahead of the least busy live other, sleep :data:`STEP` (the others, woken by
        the kernel, take the queued connections meanwhile), at most
        :data:`MAX_STEPS` times. Returns how many steps it slept."""
        steps = 0
        while steps < MAX_STEPS:
            others = self._others()
            if not others:
                break
            floor = min(others)
            if self._count > floor + LEAD_CAP:
                self._count = floor + LEAD_CAP
                self._write()
            if self._count - floor < LEAD:
                break
            time.sleep(STEP)
            steps += 1
        return steps

    def accepted(self) -> None:
        """After ``accept()`` returned a connection."""
        self._count += 1
        self._write()

    # -- in the master ------------------------------------------------------------

    def vacate(self, slot: int) -> None:
        """The worker of ``slot`` is gone (reaped): the others stop waiting for it."""
        pid_field = struct.Struct("<q")
        pid_field.pack_into(self._map, slot * _SLOT.size, 0)

    def counts(self) -> list[tuple[int, int]]:
        """``[(pid, accepts)]`` per slot, for tests and diagnostics."""
        return [_SLOT.unpack_from(self._map, s * _SLOT.size) for s in range(self.workers)]

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)

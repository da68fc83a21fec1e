"""The server-side session store shared by all workers.

It serves the resumptions that do not use tickets: clients resuming by session ID
(TLS 1.2), and TLS 1.3 clients of a server that turned tickets off
(``ssl.OP_NO_TICKET`` makes TLS 1.3 tickets stateful: just IDs into this store).
OpenSSL's own cache lives in each worker's memory and drops a session whenever a
connection closes without close_notify, which is how most Python servers close;
this store is shared, keeps those sessions, and drops a session only when it
expires, when space runs out (least recently used first) or after a fatal alert
from a party that proved it holds the session's keys: one received after the
handshake finished, or sent by the server after it for a reason other than bytes
that failed authentication. An alert during a handshake (anyone who saw the
session ID in a TLS 1.2 ServerHello can send one) costs only that connection and
is counted as ``kept_on_unproven_alert``.

Sizing follows nginx: a size in bytes (``"10M"``); an ordinary session takes one
256-byte slot, so a megabyte holds about 4,000 sessions.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from . import _binding
from ._binding import ffi, lib
from ._region import SharedRegion, region_name

__all__ = ["SessionStore", "parse_size", "DEFAULT_STORE_SIZE"]

log = logging.getLogger("tlsresume")

DEFAULT_STORE_SIZE = 10 * 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_COUNTERS = (
    ("lookups", lib.TLSR_SC_LOOKUPS),
    ("hits", lib.TLSR_SC_HITS),
    ("misses", lib.TLSR_SC_MISSES),
    ("stores", lib.TLSR_SC_STORES),
    ("evictions", lib.TLSR_SC_EVICTIONS),
    ("expirations", lib.TLSR_SC_EXPIRATIONS),
    ("oversize", lib.TLSR_SC_OVERSIZE),
    ("errors", lib.TLSR_SC_ERRORS),
    ("removals", lib.TLSR_SC_REMOVALS),
    ("kept_on_unclean_close", lib.TLSR_SC_KEPT_ON_UNCLEAN_CLOSE),
    ("consumed", lib.TLSR_SC_CONSUMED),
    ("repairs", lib.TLSR_SC_REPAIRS),
    ("lock_timeouts", lib.TLSR_SC_LOCK_TIMEOUTS),
    ("remote_hits", lib.TLSR_SC_REMOTE_HITS),
    ("remote_misses", lib.TLSR_SC_REMOTE_MISSES),
    ("kept_on_unproven_alert", lib.TLSR_SC_KEPT_ON_UNPROVEN_ALERT),
)


def parse_size(size: int | str) -> int:
    """Bytes from ``10485760``, ``"10M"``, ``"512k"``, ``"1GiB"``.

    Raises:
        ValueError: not a size.
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise TypeError(f"a store size is bytes (int) or a string like '10M', not {size!r}")
    if isinstance(size, int):
        value = size
    else:
        match = _SIZE_RE.match(size)
        if not match:
            raise ValueError(f"cannot read store size {size!r}: use bytes or e.g. '512K', '10M'")
        value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    minimum = 64 * 1024
    if value < minimum:
        raise ValueError(f"a session store needs at least 64K, got {value} bytes")
    return value


def _check_name(name: str) -> bytes:
    return region_name(name, "store")


class SessionStore(SharedRegion):
    """Server sessions in memory shared by every worker.

    Args:
        size: bytes of shared memory (``int`` or ``"10M"``-style string).
        name: ``None`` makes an anonymous region shared with processes forked after
            this call; a name makes a file (mode 0600) in this user's private
            directory on tmpfs (see ``TLSRESUME_RUNTIME_DIR``) that separately
            started processes join with :meth:`attach`/:meth:`open`.
        single_use: a TLS 1.3 stateful ticket resumes once: the lookup that uses it
            removes it, so a replayed ticket gets a full handshake on every worker.
            Costs a full handshake for clients that reuse one ticket on parallel
            connections (browsers and OpenSSL clients keep several tickets).
        lock_timeout: longest a handshake waits for the store's lock, in seconds
            (default 10 ms); past it the lookup is a miss.

    Raises:
        ValueError: bad size or name.
        SharedMemoryError: the region could not be made.
    """

    _what = "session store"
    _release = staticmethod(lib.tlsr_store_release)
    _unlink = staticmethod(lib.tlsr_store_unlink)
    _relock = staticmethod(lib.tlsr_store_relock)

    def __init__(
        self,
        size: int | str = DEFAULT_STORE_SIZE,
        *,
        name: str | None = None,
        single_use: bool = False,
        lock_timeout: float = 0.010,
    ) -> None:
        self._open(name, parse_size(size), single_use, create=True, exclusive=True)
        self.lock_timeout = lock_timeout

    def _open(
        self, name: str | None, size: int, single_use: bool, create: bool, exclusive: bool
    ) -> None:
        flags = lib.TLSR_STORE_SINGLE_USE if single_use else 0
        err = ffi.new("int *")
        cname = ffi.NULL if name is None else _check_name(name)
        if exclusive and name is not None:
            # Exclusive creation: refuse to adopt someone else's store by accident.
            probe = lib.tlsr_store_open(cname, size, flags, 0, err)
            if probe != ffi.NULL:
                lib.tlsr_store_release(probe)
                raise _binding.error_for(lib.TLSR_E_EXISTS, f"cannot create session store {name!r}")
        ptr = lib.tlsr_store_open(cname, size, flags, int(create), err)
        if ptr == ffi.NULL:
            what = f"session store {name or '(anonymous)'}"
            if err[0] == lib.TLSR_E_NOTFOUND:
                raise _binding.error_for(
                    err[0],
                    f"cannot attach to {what} (create it first with SessionStore(name={name!r}))",
                )
            raise _binding.error_for(err[0], f"cannot open {what}")
        self._adopt(ptr, name)
        meta = self._meta()
        if meta.reinitialised:
            log.warning(
                "tlsresume: session store %r was corrupt or of another version; "
                "it has been rebuilt empty",
                name,
            )

    @classmethod
    def attach(cls, name: str) -> SessionStore:
        """Join a named store another process created."""
        store = cls.__new__(cls)
        store._open(name, DEFAULT_STORE_SIZE, False, create=False, exclusive=False)
        return store

    @classmethod
    def open(
        cls, name: str, size: int | str = DEFAULT_STORE_SIZE, *, single_use: bool = False
    ) -> SessionStore:
        """Attach to the named store, creating it if missing (and rebuilding it,
        with a warning, if it is corrupt or from another version)."""
        store = cls.__new__(cls)
        store._open(name, parse_size(size), single_use, create=True, exclusive=False)
        return store

    # ---- properties ----------------------------------------------------------------

    def _meta(self) -> Any:
        meta = ffi.new("tlsr_store_meta *")
        lib.tlsr_store_get_meta(self._handle(), meta)
        return meta

    @property
    def size(self) -> int:
        return int(self._meta().size)

    @property
    def capacity(self) -> int:
        """Slots in the store: the number of ordinary sessions it can hold."""
        return int(self._meta().slots)

    @property
    def single_use(self) -> bool:
        return bool(self._meta().flags & lib.TLSR_STORE_SINGLE_USE)

    @property
    def lock_timeout(self) -> float:
        return float(self._meta().lock_timeout_us) / 1e6

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        if not 0 < seconds <= 1:
            raise ValueError(f"lock_timeout must be in (0, 1] seconds, got {seconds}")
        _binding.check(
            lib.tlsr_store_set_lock_timeout(self._handle(), int(seconds * 1e6)),
            "setting lock timeout",
        )

    def __len__(self) -> int:
        return int(self._meta().entries)

    # ---- operations ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters aggregated over every process using this store, plus its fill."""
        out = ffi.new("uint64_t[]", lib.TLSR_STORE_NCOUNTERS)
        lib.tlsr_store_stats(self._handle(), out, lib.TLSR_STORE_NCOUNTERS)
        stats = {label: int(out[index]) for label, index in _COUNTERS}
        meta = self._meta()
        stats.update(
            entries=int(meta.entries),
            used_slots=int(meta.used_slots),
            capacity=int(meta.slots),
            size_bytes=int(meta.size),
        )
        return stats

    def clear(self) -> None:
        """Drop every session."""
        _binding.check(lib.tlsr_store_clear(self._handle()), "clearing session store")

    def verify(self) -> int:
        """Check every entry and rebuild the index; returns how many were dropped."""
        return _binding.check(lib.tlsr_store_verify(self._handle()), "verifying session store")

    def put(
        self, session_id: bytes, der: bytes, expires: float, *, now: float | None = None
    ) -> bool:
        """Store raw session bytes (what OpenSSL's callback does in C). For tools and
        tests; returns False if the session was too large and skipped."""
        _check_id(session_id)
        if not der:
            raise ValueError("session bytes must not be empty")
        now_ms = int((time.time() if now is None else now) * 1000)
        return bool(
            _binding.check(
                lib.tlsr_store_put(
                    self._handle(),
                    session_id,
                    len(session_id),
                    der,
                    len(der),
                    int(expires * 1000),
                    now_ms,
                ),
                "storing session",
            )
        )

    def get(
        self, session_id: bytes, *, consume: bool = False, now: float | None = None
    ) -> bytes | None:
        """The stored bytes for ``session_id``, or None (missing or expired)."""
        _check_id(session_id)
        now_ms = int((time.time() if now is None else now) * 1000)
        buf = ffi.new("uint8_t[]", lib.TLSR_STORE_MAX_DER)
        n = _binding.check(
            lib.tlsr_store_get(
                self._handle(),
                session_id,
                len(session_id),
                buf,
                lib.TLSR_STORE_MAX_DER,
                int(consume),
                now_ms,
            ),
            "reading session",
        )
        return bytes(ffi.buffer(buf, n)) if n else None

    def set_remote(self, tier: Any) -> None:
        """Put a second tier (e.g. Redis, see :mod:`tlsresume.remote`) behind this
        store, in this process: local misses ask it, stored sessions are handed to
        it. ``None`` removes it. Processes forked afterwards inherit it."""
        from . import remote

        if tier is None:
            remote.detach_remote(self._handle())
        else:
            remote.attach_remote(self._handle(), tier)

    def remove(self, session_id: bytes) -> bool:
        _check_id(session_id)
        return bool(
            _binding.check(
                lib.tlsr_store_remove(self._handle(), session_id, len(session_id)),
                "removing session",
            )
        )

    def __repr__(self) -> str:
        if self._ptr is None:
            return f"<SessionStore {self._name or '(anonymous)'} closed>"
        meta = self._meta()
        return (
            f"<SessionStore {self._name or '(anonymous)'} {meta.entries}/{meta.slots} "
            f"sessions, {meta.size // 1024} KiB>"
        )


def _check_id(session_id: bytes) -> None:
    if not isinstance(session_id, (bytes, bytearray)):
        raise TypeError("a session ID is bytes")
    if not 1 <= len(session_id) <= lib.TLSR_STORE_MAX_ID:
        raise ValueError(f"a session ID is 1-{lib.TLSR_STORE_MAX_ID} bytes, got {len(session_id)}")

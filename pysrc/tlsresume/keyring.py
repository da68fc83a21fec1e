"""Session-ticket key rings shared by processes, and the static single key.

A :class:`TicketKeyRing` lives in shared memory. One key encrypts new tickets
(``current``); the pre-published ``next`` key and the ``retired`` keys still inside
their acceptance window decrypt. The ring rotates itself: the first process that
issues a ticket after the current key's period has run out rotates under the
region's lock, so there is no leader and no timer thread. A TLS 1.2 ticket stays
under the key that encrypted it until its session ends (renewing it would put the
same master secret under a newer key); every TLS 1.3 resumption gets a fresh
ticket under the current key.

Defaults: rotate every hour, accept a retired key for two more hours (CPython's
default session timeout, so no ticket that OpenSSL would still honour is refused).

One module (a little over 500 lines): the ring's create/attach/rotate/file-fed paths
share one C handle and its checks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _binding
from ._binding import ffi, lib
from ._forkgate import ForkGate
from ._region import SharedRegion, region_name
from .errors import KeyFileError, RingClosedError, SharedMemoryError, StateError, TLSResumeError
from .keys import TicketKey
from .policy import (
    DEFAULT_ACCEPTANCE_WINDOW,
    DEFAULT_ROTATION_PERIOD,
    KeyRecord,
    check_periods,
)
from .store import DEFAULT_STORE_SIZE, SessionStore, parse_size

__all__ = [
    "TicketKeyRing",
    "StaticTicketKey",
    "KeyStatus",
    "KeyRecord",
    "DEFAULT_ROTATION_PERIOD",
    "DEFAULT_ACCEPTANCE_WINDOW",
]

log = logging.getLogger("tlsresume")

_LOCK_TIMEOUT_MS = 2000

_ROLES = {
    lib.TLSR_KEY_NEXT: "next",
    lib.TLSR_KEY_CURRENT: "current",
    lib.TLSR_KEY_RETIRED: "retired",
}

_COUNTERS = (
    ("tickets_issued", lib.TLSR_RC_TICKETS_ISSUED),
    ("resumed_current", lib.TLSR_RC_RESUMED_CURRENT),
    ("resumed_older_key", lib.TLSR_RC_RESUMED_OLDER_KEY),
    ("rejected_unknown", lib.TLSR_RC_REJECTED_UNKNOWN),
    ("rejected_expired", lib.TLSR_RC_REJECTED_EXPIRED),
    ("rotations", lib.TLSR_RC_ROTATIONS),
    ("errors", lib.TLSR_RC_ERRORS),
    ("lock_recoveries", lib.TLSR_RC_LOCK_RECOVERIES),
    ("ticket_key_found_current", lib.TLSR_RC_KEY_FOUND_CURRENT),
    ("ticket_key_found_older_key", lib.TLSR_RC_KEY_FOUND_OLDER_KEY),
    ("repaired_lock", lib.TLSR_RC_REPAIRED_LOCK),
    ("repaired_sequence", lib.TLSR_RC_REPAIRED_SEQUENCE),
    ("repaired_state", lib.TLSR_RC_REPAIRED_STATE),
    ("withheld_stale_key", lib.TLSR_RC_WITHHELD_STALE_KEY),
)


def _now_ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)


def _check_name(name: str) -> bytes:
    return region_name(name, "ring")


class _KeyInfo(NamedTuple):
    """One ``tlsr_key_info`` copied into Python values."""

    name: bytes
    role: int
    secret_len: int
    created_ms: int
    activated_ms: int
    retired_ms: int
    hmac: bytes
    aes: bytes


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about a key: its name (sent in clear in every ticket),
    role and times. Never the secret parts."""

    name: str
    role: str
    size: int
    created: float
    activated: float | None
    retired: float | None


class TicketKeyRing(SharedRegion):
    """A ring of session-ticket keys in memory shared between processes.

    Args:
        rotation_period: seconds a key encrypts before the next one takes over.
        acceptance_window: seconds a retired key still decrypts (default: twice the
            rotation period, i.e. two hours by default). At most 14 periods.
        name: ``None`` makes an anonymous region that processes forked *after* this
            call share. A name makes a file (mode 0600) in this user's private
            directory on tmpfs (see ``TLSRESUME_RUNTIME_DIR``) that processes
            started separately join with :meth:`attach`.
        auto_rotate: rotate when the period is over (default). ``False`` keeps the
            keys until :meth:`rotate` or :meth:`load_keys` is called.
        session_cache: a :class:`~tlsresume.SessionStore` made beside the ring and
            shared the same way (anonymous with an anonymous ring; a named ring's
            is named ``<name>.sessions``), which :func:`tlsresume.install` adds to every
            context it installs the ring on, so clients that resume by session ID
            (curl over TLS 1.2) resume on every worker too. ``True`` (default):
            :data:`~tlsresume.DEFAULT_STORE_SIZE` (10 MiB, about 40,000 sessions;
            clients that take tickets do not use it). A size (``"1M"``): that
            size. ``False``: none, tickets only. See :attr:`session_store`.

    Raises:
        ValueError: bad periods or name.
        SharedMemoryError: the region could not be created (e.g. the name is taken).
    """

    def __init__(
        self,
        rotation_period: float = DEFAULT_ROTATION_PERIOD,
        acceptance_window: float | None = None,
        *,
        name: str | None = None,
        auto_rotate: bool = True,
        session_cache: bool | int | str = True,
    ) -> None:
        period, window = check_periods(rotation_period, acceptance_window)
        size = _companion_size(session_cache)
        cname = ffi.NULL if name is None else _check_name(name)
        err = ffi.new("int *")
        flags = lib.TLSR_RING_AUTO_ROTATE if auto_rotate else 0
        ptr = lib.tlsr_ring_create(
            cname, int(period * 1000), int(window * 1000), flags, _now_ms(None), err
        )
        if ptr == ffi.NULL:
            raise _binding.error_for(err[0], f"cannot create key ring {name or '(anonymous)'}")
        self._setup(ptr, name, owner=True)
        if size:
            try:
                self._store = _open_companion(name, size)
            except BaseException:
                self.close()
                raise

    _store: SessionStore | None = None  # made beside the ring (session_cache)
    _what = "key ring"
    _release = staticmethod(lib.tlsr_ring_release)
    _unlink = staticmethod(lib.tlsr_ring_unlink)
    _relock = staticmethod(lib.tlsr_ring_relock)

    def _setup(self, ptr: Any, name: str | None, owner: bool) -> None:
        self._adopt(ptr, name)
        self._owner = owner
        self._watcher: _FileWatcher | None = None
        self._store = None

    # ---- joining -------------------------------------------------------------------

    @classmethod
    def attach(cls, name: str) -> TicketKeyRing:
        """Join the named ring another process created.

        Raises:
            SharedMemoryError: no such ring, or it is not a tlsresume ring of this
                version, or it belongs to another user.
        """
        err = ffi.new("int *")
        ptr = lib.tlsr_ring_attach(_check_name(name), err)
        if ptr == ffi.NULL:
            if err[0] == lib.TLSR_E_NOTFOUND:
                raise _binding.error_for(
                    err[0],
                    f"cannot attach to key ring {name!r} (create it first with "
                    f"TicketKeyRing(name={name!r}) or TicketKeyRing.open({name!r}))",
                )
            raise _binding.error_for(err[0], f"cannot attach to key ring {name!r}")
        ring = cls.__new__(cls)
        ring._setup(ptr, name, owner=False)
        ring._store = _attach_companion(name)
        return ring

    @classmethod
    def open(
        cls,
        name: str,
        rotation_period: float = DEFAULT_ROTATION_PERIOD,
        acceptance_window: float | None = None,
        *,
        auto_rotate: bool = True,
        session_cache: bool | int | str = True,
        remove_at_exit: bool = False,
    ) -> TicketKeyRing:
        """Attach to the named ring, creating it if it does not exist yet.

        For servers whose workers start independently and all run the same setup
        code (uvicorn/hypercorn ``--workers``): the first one creates, the others
        attach. The periods only matter to the creator. Decides by the core's error
        code (``SharedMemoryError.code``), not by message text.

        A named ring outlives the processes using it (its file stays in the region
        directory, so a restarted service finds its keys again) until it is
        unlinked: :meth:`unlink`, ``tlsresume stats --cleanup`` (removes regions no
        process uses), or ``remove_at_exit``.

        Args:
            remove_at_exit: when this call creates the ring, remove its name when
                this process exits normally (atexit; not on SIGKILL). Processes
                still attached keep using it; later ones make a new ring. Ignored
                when the ring already existed: only its creator removes it.
        """
        for _ in range(3):
            try:
                ring = cls(
                    rotation_period,
                    acceptance_window,
                    name=name,
                    auto_rotate=auto_rotate,
                    session_cache=session_cache,
                )
            except SharedMemoryError as exc:
                if exc.code != lib.TLSR_E_EXISTS:
                    raise
            else:
                if remove_at_exit:
                    ring._remove_name_at_exit()
                    if ring._store is not None:
                        ring._store._remove_name_at_exit()  # its session store's too
                return ring
            try:
                return cls.attach(name)
            except SharedMemoryError as exc:
                if exc.code != lib.TLSR_E_NOTFOUND:
                    raise
            # Removed again between our create and attach: try both once more.
        raise SharedMemoryError(f"key ring {name!r} keeps appearing and disappearing")

    @classmethod
    def from_file(
        cls,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        format: str,
        *,
        name: str | None = None,
        poll_interval: float | None = 5.0,
        session_cache: bool | int | str = True,
    ) -> TicketKeyRing:
        """A ring whose keys come from key file(s) in ``format`` (see ``keyfile``).

        The ring does not rotate by itself: the file is the authority. This process
        checks the file every ``poll_interval`` seconds (``None``: never; call
        :meth:`reload`) and loads it when it changed; processes sharing the ring see
        the new keys at once. A file that cannot be read or parsed keeps the old
        keys and is logged, never breaking handshakes.

        Raises:
            KeyFileError: the file is missing or malformed at creation.
        """
        from . import keyfile

        keyset = keyfile.read(paths, format)
        ring = cls(
            DEFAULT_ROTATION_PERIOD,
            None,
            name=name,
            auto_rotate=False,
            session_cache=session_cache,
        )
        try:
            ring._load_keyset(keyset)
            ring._watcher = _FileWatcher(ring, paths, format, poll_interval)
        except BaseException:
            ring.close()
            raise
        return ring

    # ---- properties ----------------------------------------------------------------

    def _meta(self) -> Any:
        meta = ffi.new("tlsr_ring_meta *")
        _binding.check(lib.tlsr_ring_get_meta(self._handle(), meta), "reading key ring")
        return meta

    @property
    def rotation_period(self) -> float:
        return float(self._meta().period_ms) / 1000

    @property
    def acceptance_window(self) -> float | None:
        window = self._meta().window_ms
        return None if window < 0 else window / 1000

    @property
    def auto_rotate(self) -> bool:
        return bool(self._meta().flags & lib.TLSR_RING_AUTO_ROTATE)

    # ---- operations ----------------------------------------------------------------

    def rotate(self, now: float | None = None) -> None:
        """Rotate now: next encrypts, current retires, a new next is drawn.

        Raises:
            TLSResumeError: the ring's keys come from a file (rotate by rewriting it),
                or the lock could not be taken within 2 s.
        """
        if self._watcher is not None:
            raise StateError(
                "this ring's keys come from a key file; rotate them by writing a new "
                "file (it is picked up automatically)"
            )
        _binding.check(
            lib.tlsr_ring_maintain(self._handle(), _now_ms(now), 1, _LOCK_TIMEOUT_MS),
            "rotating key ring",
        )

    def maybe_rotate(self, now: float | None = None) -> bool:
        """Rotate if the period is over and wipe keys past their window.

        Handshakes do this by themselves; call it from a timer to rotate and wipe
        on an idle server too. Returns whether the keys changed.
        """
        return bool(
            _binding.check(
                lib.tlsr_ring_maintain(self._handle(), _now_ms(now), 0, _LOCK_TIMEOUT_MS),
                "maintaining key ring",
            )
        )

    def keys(self) -> list[KeyStatus]:
        """The ring's keys, retired (oldest first), current, next: names and times only."""
        return [
            KeyStatus(
                name=info.name.hex(),
                role=_ROLES[info.role],
                size=16 + 2 * info.secret_len,
                created=info.created_ms / 1000,
                activated=info.activated_ms / 1000 if info.activated_ms else None,
                retired=info.retired_ms / 1000 if info.retired_ms else None,
            )
            for info in self._key_infos(with_secrets=False)
        ]

    def _key_infos(self, with_secrets: bool) -> list[_KeyInfo]:
        """The ring's keys as Python values. (Copied out while the C array lives: an
        element of a cffi array does not keep the array alive, so handing out
        ``out[i]`` would let callers read freed memory.)"""
        out = ffi.new("tlsr_key_info[]", lib.TLSR_RING_SLOTS)
        try:
            n = _binding.check(
                lib.tlsr_ring_get_keys(self._handle(), out, lib.TLSR_RING_SLOTS, int(with_secrets)),
                "reading key ring",
            )
            infos = []
            for i in range(n):
                c = out[i]
                k = int(c.secret_len)
                infos.append(
                    _KeyInfo(
                        bytes(c.name),
                        int(c.role),
                        k,
                        int(c.created_ms),
                        int(c.activated_ms),
                        int(c.retired_ms),
                        bytes(c.hmac)[:k] if with_secrets else b"",
                        bytes(c.aes)[:k] if with_secrets else b"",
                    )
                )
            return infos
        finally:
            ffi.memmove(out, b"\0" * ffi.sizeof(out), ffi.sizeof(out))  # secrets off the heap

    def records(self) -> list[KeyRecord]:
        """The keys with their secrets, roles and times, retired (oldest first),
        current, next. Handle with care; nothing else in tlsresume lets keys out."""
        out = []
        for info in self._key_infos(with_secrets=True):
            n = info.secret_len
            out.append(
                KeyRecord(
                    key=TicketKey(info.name, info.hmac[:n], info.aes[:n]),
                    role=_ROLES[info.role],
                    created=info.created_ms / 1000,
                    activated=info.activated_ms / 1000 if info.activated_ms else None,
                    retired=info.retired_ms / 1000 if info.retired_ms else None,
                )
            )
        return out

    def export_keys(self) -> tuple[list[TicketKey], int, int | None]:
        """The keys with their secrets: (keys oldest first, index of current, index of
        next or None)."""
        records = self.records()
        roles = [r.role for r in records]
        return (
            [r.key for r in records],
            roles.index("current"),
            roles.index("next") if "next" in roles else None,
        )

    def export(self, path: str | os.PathLike[str], format: str) -> None:
        """Write the keys to ``path`` (mode 0600, atomically) in ``format``.

        Single-key formats get the current key; ``haproxy`` gets them all, ordered so
        HAProxy encrypts with the current key and accepts the next.
        """
        from . import keyfile

        keys, current, nxt = self.export_keys()
        keyfile.write(path, keyfile.KeySet(tuple(keys), current, nxt), format)

    def load_keys(
        self,
        keys: Sequence[TicketKey],
        encrypt: int = 0,
        next: int | None = None,
        *,
        auto_rotate: bool | None = None,
    ) -> None:
        """Replace the ring's keys: ``keys[encrypt]`` encrypts, ``keys[next]`` is
        pre-published, the rest only decrypt (and never expire by time).

        Raises:
            ValueError: no keys, too many, or bad indices.
        """
        from .keyfile import KeySet

        self._load_keyset(KeySet(tuple(keys), encrypt, next), auto_rotate=auto_rotate)

    def _load_keyset(self, keyset: Any, *, auto_rotate: bool | None = None) -> None:
        now = time.time()
        records = []
        for i, key in enumerate(keyset.keys):
            if not isinstance(key, TicketKey):
                raise TypeError(f"keys must be TicketKey objects, not {type(key).__name__}")
            role = "current" if i == keyset.encrypt else "next" if i == keyset.next else "retired"
            records.append(
                KeyRecord(
                    key,
                    role,
                    now,
                    now if role == "current" else None,
                    now if role == "retired" else None,
                )
            )
        meta = self._meta()
        rotating = (
            bool(meta.flags & lib.TLSR_RING_AUTO_ROTATE) if auto_rotate is None else auto_rotate
        )
        # Keys given by the caller stay acceptable as long as they are in the ring,
        # unless the ring rotates (and so expires retired keys) by itself.
        window = meta.window_ms / 1000 if rotating else None
        self.load_records(records, acceptance_window=window, auto_rotate=rotating)

    def load_records(
        self,
        records: Sequence[KeyRecord],
        *,
        rotation_period: float | None = None,
        acceptance_window: float | None = None,
        auto_rotate: bool = False,
    ) -> None:
        """Replace the ring's keys with ``records`` as they are (roles and times kept):
        how a ring mirrors keys decided elsewhere (another machine, Redis).

        Args:
            records: exactly one ``current``, at most one ``next``, the rest ``retired``.
            rotation_period: seconds (default: keep the ring's).
            acceptance_window: seconds a retired key decrypts after its ``retired``
                time; ``None``: retired keys never expire by time.
            auto_rotate: let this ring rotate by itself from now on.

        Raises:
            ValueError: no current key, several, too many keys, or a bad role.
        """
        if not records:
            raise ValueError("a key ring needs at least one key")
        if len(records) > lib.TLSR_RING_SLOTS:
            raise ValueError(
                f"a key ring holds at most {lib.TLSR_RING_SLOTS} keys, got {len(records)}"
            )
        roles = [r.role for r in records]
        if (
            roles.count("current") != 1
            or roles.count("next") > 1
            or set(roles) - {"current", "next", "retired"}
        ):
            raise ValueError(
                "key records need exactly one 'current', at most one 'next', "
                f"and otherwise 'retired'; got {roles}"
            )
        period = (
            self._meta().period_ms
            if rotation_period is None
            else int(check_periods(rotation_period, 0)[0] * 1000)
        )
        window = -1 if acceptance_window is None else int(acceptance_window * 1000)
        infos = ffi.new("tlsr_key_info[]", len(records))
        codes = {v: k for k, v in _ROLES.items()}
        for info, rec in zip(infos, records, strict=True):
            key = rec.key
            half = len(key.aes_key)
            ffi.memmove(info.name, key.name, 16)
            ffi.memmove(info.hmac, key.hmac_key, half)
            ffi.memmove(info.aes, key.aes_key, half)
            info.secret_len = half
            info.role = codes[rec.role]
            info.created_ms = int(rec.created * 1000)
            info.activated_ms = int((rec.activated or 0) * 1000)
            info.retired_ms = int((rec.retired or 0) * 1000)
        flags = lib.TLSR_RING_AUTO_ROTATE if auto_rotate else 0
        try:
            _binding.check(
                lib.tlsr_ring_set_keys(
                    self._handle(), infos, len(records), period, window, flags, _LOCK_TIMEOUT_MS
                ),
                "loading keys",
            )
        finally:
            ffi.memmove(infos, b"\0" * ffi.sizeof(infos), ffi.sizeof(infos))

    def reload(self, *, changed_only: bool = False) -> bool:
        """Load the key file now (file-fed rings only); ``changed_only``: only if its
        inode, size or modification time changed since the last load, which is what
        the poller does (for a process that polls from its own loop rather than a
        thread, with ``poll_interval=None``). Returns whether new keys were loaded; a
        file that cannot be read or parsed keeps the old keys and is logged."""
        if self._watcher is None:
            raise StateError(
                "this ring is not fed from a key file; reload() is for rings "
                "made with TicketKeyRing.from_file()"
            )
        return self._watcher.check(force=not changed_only)

    def stats(self) -> dict[str, int]:
        """Counters aggregated over every process using this ring, plus its state.

        ``resumed_current`` / ``resumed_older_key`` count handshakes that finished
        resumed on a ticket under the current / an older key (OpenSSL's verdict, at
        handshake done); ``ticket_key_found_current`` / ``ticket_key_found_older_key``
        count tickets whose key the callback found, before OpenSSL checked their
        HMAC and session: the difference is tickets that failed those checks.
        """
        out = ffi.new("uint64_t[]", lib.TLSR_RING_NCOUNTERS)
        lib.tlsr_ring_stats(self._handle(), out, lib.TLSR_RING_NCOUNTERS)
        stats = {label: int(out[index]) for label, index in _COUNTERS}
        meta = self._meta()
        stats["keys"] = int(meta.nkeys)
        stats["generation"] = int(meta.generation)
        if self._watcher is not None:
            stats["file_reloads"] = self._watcher.reloads
            stats["file_errors"] = self._watcher.errors
        return stats

    def classify(self, key_name: bytes, now: float | None = None) -> str:
        """What the ring knows of a ticket's key name: "current", "next", "retired",
        "expired" (it was in the ring and is wiped or past its window) or "unknown"."""
        if not isinstance(key_name, (bytes, bytearray)) or len(key_name) < 16:
            raise ValueError("a ticket key name is 16 bytes (the start of a ticket)")
        role = lib.tlsr_ring_classify(self._handle(), bytes(key_name[:16]), _now_ms(now))
        return _ROLES.get(role) or {-1: "expired", -2: "unknown"}.get(role, "busy")

    # ---- lifetime ------------------------------------------------------------------

    @property
    def session_store(self) -> SessionStore | None:
        """The session store made beside this ring (``session_cache``), or ``None``.
        A ring joined with :meth:`attach` has the creator's, if it made one."""
        return self._store

    def unlink(self) -> None:
        """Remove the ring's name (and its session store's) so no new process can
        attach; those attached keep them."""
        super().unlink()
        if self._store is not None and self._store.name is not None:
            self._store.unlink()

    def _on_close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def __repr__(self) -> str:
        if self._ptr is None:
            return f"<TicketKeyRing {self._name or '(anonymous)'} closed>"
        meta = self._meta()
        return (
            f"<TicketKeyRing {self._name or '(anonymous)'} keys={meta.nkeys} "
            f"period={meta.period_ms / 1000:g}s>"
        )


def _companion_size(session_cache: bool | int | str) -> int:
    """The size of the store a ring makes beside itself (0: none)."""
    if session_cache is True:
        return DEFAULT_STORE_SIZE
    if session_cache is False or session_cache is None:
        return 0
    if isinstance(session_cache, (int, str)):
        return parse_size(session_cache)
    raise TypeError(
        "session_cache takes True (a 10M store), a size like '1M', or False, not "
        f"{type(session_cache).__name__}"
    )


def companion_name(ring_name: str) -> str:
    """The name of the session store a named ring makes beside itself:
    ``<ring name>.sessions`` (shortened with a digest when that would be too long),
    so that every process that opens or attaches the ring finds it, and a store the
    user names like the ring stays the user's."""
    suffix = ".sessions"
    if len(ring_name) + len(suffix) <= lib.TLSR_RING_NAME_MAX:
        return ring_name + suffix
    digest = hashlib.sha256(ring_name.encode()).hexdigest()[:8]
    return f"{ring_name[: lib.TLSR_RING_NAME_MAX - len(suffix) - 9]}-{digest}{suffix}"


def _open_companion(name: str | None, size: int) -> SessionStore:
    return SessionStore(size) if name is None else SessionStore.open(companion_name(name), size)


def _attach_companion(name: str) -> SessionStore | None:
    try:
        return SessionStore.attach(companion_name(name))
    except SharedMemoryError as exc:
        if exc.code == lib.TLSR_E_NOTFOUND:
            return None  # the creator made the ring with session_cache=False
        raise


class _FileWatcher:
    """Polls a key file and loads it into the ring when it changes."""

    def __init__(
        self, ring: TicketKeyRing, paths: Any, fmt: str, poll_interval: float | None
    ) -> None:
        self._ring = ring
        self._paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self._format = fmt
        self._stamp = self._fingerprint()
        self._stop = threading.Event()
        self._gate = ForkGate("the key file watcher")  # a fork waits for a reload
        self.reloads = 0
        self.errors = 0
        self._thread: threading.Thread | None = None
        if poll_interval is not None:
            if poll_interval <= 0:
                raise ValueError(f"poll_interval must be > 0 seconds or None, got {poll_interval}")
            self._thread = threading.Thread(
                target=self._run, args=(poll_interval,), name="tlsresume-keyfile", daemon=True
            )
            self._thread.start()

    def _fingerprint(self) -> tuple[Any, ...]:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._paths:
            try:
                st = os.stat(path)
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def check(self, force: bool = False) -> bool:
        from . import keyfile

        stamp = self._fingerprint()
        if stamp == self._stamp and not force:
            return False
        try:
            keyset = keyfile.read(
                self._paths if len(self._paths) > 1 else self._paths[0], self._format
            )
            self._ring._load_keyset(keyset)
        except (KeyFileError, TLSResumeError, ValueError) as exc:
            self.errors += 1
            log.warning("tlsresume: keeping the current ticket keys: %s", exc)
            return False
        self._stamp = stamp
        self.reloads += 1
        log.info("tlsresume: loaded new ticket keys from %s", ", ".join(map(str, self._paths)))
        return True

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._ring.closed:
                return
            try:
                with self._gate:
                    self.check()
            except RingClosedError:
                return

    def stop(self) -> None:
        self._stop.set()


class StaticTicketKey:
    """One fixed 80-byte key installed through OpenSSL's own ticket path.

    Exactly what Node's cluster fix does, for users who distribute a key themselves:
    no rotation, no shared memory. Replacing it invalidates every ticket at once.

    Args:
        key: a :class:`TicketKey` of 80 bytes, or its 80 raw bytes (name|hmac|aes).
    """

    def __init__(self, key: TicketKey | bytes) -> None:
        if isinstance(key, (bytes, bytearray, memoryview)):
            if len(key) != 80:
                raise ValueError(
                    f"a static ticket key is 80 bytes (name 16 | HMAC 32 | AES 32), got "
                    f"{len(key)}; OpenSSL 3 rejects the old 48-byte layout, use a "
                    "TicketKeyRing to serve 48-byte keys"
                )
            key = TicketKey.from_bytes(bytes(key))
        if not isinstance(key, TicketKey):
            raise TypeError(f"expected TicketKey or bytes, not {type(key).__name__}")
        if key.size != 80:
            raise ValueError(
                "OpenSSL's own ticket path takes only 80-byte keys; use a TicketKeyRing "
                "(TicketKeyRing.from_file or load_keys) for 48-byte keys"
            )
        self._key = key

    @classmethod
    def generate(cls) -> StaticTicketKey:
        return cls(TicketKey.generate(80))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], format: str) -> StaticTicketKey:
        """The encrypting key of a key file (see ``keyfile`` for formats)."""
        from . import keyfile

        keyset = keyfile.read(path, format)
        return cls(keyset.keys[keyset.encrypt])

    @property
    def key(self) -> TicketKey:
        return self._key

    def __repr__(self) -> str:
        return f"<StaticTicketKey name={self._key.name_hex}>"

"""Redis for a fleet: ticket keys and server sessions shared between machines.

Two independent pieces, and one call that wires both into a server:

* :class:`KeySync` mirrors a fleet-wide key ring kept in Redis into a local
  :class:`~tlsresume.TicketKeyRing` (the shared memory that handshakes read). A
  background thread polls Redis every ``refresh`` seconds. Rotation is leaderless:
  the first node that finds the current key past its period rotates *in Redis*
  inside an optimistic transaction (WATCH/MULTI/EXEC), drawing the new pre-published
  next key, so exactly one rotation happens per period fleet-wide. A node that polls
  late already holds the new current key as its "next", which decrypts: no fresh
  ticket is ever refused.
* :class:`SessionTier` is a :class:`~tlsresume.remote.RemoteTier`: the second tier
  behind a :class:`~tlsresume.SessionStore`. A local miss asks Redis with a hard
  bound on the wait (default 5 ms, on connections made in the background); stores
  and removals are queued to a writer thread (``SET PX`` with the session's own
  expiry). Redis down means misses and full handshakes, never errors, and a short
  back-off during which lookups do not even try.
* :func:`connect_server` starts both for a server's ring and store and returns a
  :class:`RedisLink` with ``stop()`` and ``stats()``.

Keys (and sessions) can be sealed in Redis under an operator's master key
(AES-256-GCM, the Redis key name as associated data). Without one, anyone who can
read Redis can decrypt every ticket and session, and anyone who can write it can
inject sessions: use a master key unless Redis is as trusted as the servers.

Who syncs: one :class:`KeySync` per machine is enough. In a pre-fork server the
master runs it and the workers share the ring's memory (the thread is not restarted
in forked children: they need none). Spawned workers (``--spawn``, uvicorn) attach
to the named ring and need no syncer either, when a master runs one; if every
worker runs its own, the syncs are redundant but correct. The session tier is per
process: a tier attached in a pre-fork master is inherited by forked workers and
restarts its writer thread and connections in each child; spawned workers attach
their own (:func:`connect_worker`).

Redis data (``NAME`` defaults to ``default``; one name per service):

* ``tlsresume:ring:NAME`` — the ring: JSON, or an encrypted envelope of that JSON.
* ``tlsresume:session:NAME:<session id hex>`` — one session's DER (or envelope),
  with the session's own expiry as the Redis TTL.
* ``tlsresume:session:NAME:check`` — a canary that tells a node whether sessions
  are sealed, and under which master key.

One module (over 500 lines) because it is a documented public path whose key sync
and session tier share the connection and sealing code; a ``fleet/`` split is planned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import mmap
import os
import queue
import random
import socket
import struct
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:
    import redis
    import redis.cluster
    from redis.exceptions import (
        AuthenticationError,
        RedisClusterException,
        RedisError,
        ResponseError,
    )
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "tlsresume.redis needs redis-py: pip install 'tlsresume[redis]' (or 'redis>=5')",
        name="redis",
    ) from _exc

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._forkgate import ForkGate
from ._redisconn import ConnectionSpec, connection_spec, no_retry, write_retry
from .errors import RingClosedError, StateError, TLSResumeError
from .keyring import TicketKeyRing
from .keys import TicketKey
from .policy import (
    KeyRecord,
    RingState,
    check_periods,
    encode_state,
    generation_check,
    merge_records,
    parse_state,
    rotate_state,
    rotation_due,
    seed_state,
    to_ms,
)
from .store import SessionStore

__all__ = [
    "KeySync",
    "SessionTier",
    "RedisLink",
    "connect_server",
    "connect_worker",
    "RedisBackendError",
    "MasterKeyError",
    "generate_master_key",
    "load_master_key",
    "RingState",
    "rotation_due",
    "rotate_state",
    "merge_records",
    "DEFAULT_REFRESH",
    "DEFAULT_TIMEOUT",
]

log = logging.getLogger("tlsresume")

DEFAULT_REFRESH = 5.0
DEFAULT_TIMEOUT = 0.005


# ======================================================================================
# Errors
# ======================================================================================


class RedisBackendError(TLSResumeError):
    """Redis cannot be used as configured: refused credentials, a value that is not
    ours, or (with ``require_redis=True``) no Redis at start."""


class MasterKeyError(RedisBackendError, ValueError):
    """The master key does not match what is in Redis: a different key, none where
    the data is sealed, or one where it is not."""


# Connection-level trouble: Redis down, stalled, restarting, unreachable. Not
# AuthenticationError (a subclass of ConnectionError in redis-py), which is a
# configuration error.
# Protocol garbage (something that is not Redis on the port, a proxy gone wrong) is
# treated like an unreachable Redis: the node serves with its own keys meanwhile.
_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.InvalidResponse,
    # A cluster client that cannot learn the slot map (no seed node answers).
    RedisClusterException,
    OSError,
)


def _spec(target: Any, timeout: float, client_kwargs: Mapping[str, Any] | None) -> ConnectionSpec:
    """This library's own connections for ``target`` (see :mod:`._redisconn`): its
    timeouts and no retries, then the caller's ``client_kwargs``."""
    overrides = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": no_retry()}
    return connection_spec(target, {**overrides, **dict(client_kwargs or {})})


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name or any(c.isspace() for c in name) or len(name) > 200:
        raise ValueError(f"invalid service name {name!r}: use 1-200 characters, no spaces")
    return name


def _check_seconds(label: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{label} must be a number of seconds, not {type(value).__name__}")
    if not low < value <= high:
        raise ValueError(f"{label} must be in ({low:g}, {high:g}] seconds, got {value}")
    return float(value)


# ======================================================================================
# Master key: sealing values in Redis
# ======================================================================================


def _check_sealing(master_key: object, insecure_unsealed: bool) -> None:
    """Sealing is the default: no master key is an error unless the caller opts out.

    Raises:
        MasterKeyError: neither a master key nor ``insecure_unsealed=True``.
        ValueError: both.
    """
    if master_key is None and not insecure_unsealed:
        raise MasterKeyError(
            "no master key: without one, whoever can read Redis decrypts every ticket and "
            "recorded session, and whoever can write it injects sessions past client-"
            "certificate checks. Give master_key= (the same on every node; make one with "
            "tlsresume.redis.generate_master_key(); serve: --redis-master-key-file FILE) "
            "or, knowingly, insecure_unsealed=True (serve: --redis-insecure-unsealed)"
        )
    if master_key is not None and insecure_unsealed:
        raise ValueError("give a master key or insecure_unsealed=True, not both")


_ENVELOPE = b"tlsr-sealed-1:"

# A single-use session (TLS 1.3: each ticket resumes once) is stored with this
# first byte, outside any seal, and the seal's associated data says so too (so the
# mark cannot be stripped). A lookup takes such a value atomically (read and
# delete in one server-side step), so two machines can never both resume it.
_ONCE = b"\x01"
_TAKE = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.byte(v, 1) == 1 then redis.call('DEL', KEYS[1]) end "
    "return v"
)
_TLS13 = 0x0304
# The ring is replaced only over the copy a node read (compare and set in one
# server-side step; WATCH/MULTI would not work on a cluster client).
_SWAP = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"
)


def _der_protocol(der: bytes) -> int | None:
    """The protocol version inside an OpenSSL session's DER (``SEQUENCE { INTEGER
    version, INTEGER ssl_version, ... }``), or None if it does not parse."""

    def length(at: int) -> tuple[int, int] | None:  # (length, where the value starts)
        if at >= len(der):
            return None
        first = der[at]
        if first < 0x80:
            return first, at + 1
        n = first & 0x7F
        if not 1 <= n <= 4 or at + 1 + n > len(der):
            return None
        return int.from_bytes(der[at + 1 : at + 1 + n], "big"), at + 1 + n

    if not der or der[0] != 0x30 or (outer := length(1)) is None:
        return None
    at = outer[1]
    value = None
    for _ in range(2):  # the format version, then the protocol version
        if at >= len(der) or der[at] != 0x02 or (inner := length(at + 1)) is None:
            return None
        size, start = inner
        if not 1 <= size <= 4 or start + size > len(der):
            return None
        value, at = int.from_bytes(der[start : start + size], "big"), start + size
    return value


def _single_use(der: bytes) -> bool:
    return _der_protocol(der) == _TLS13


_KID_LEN, _SALT_LEN, _NONCE_LEN = 8, 16, 12


def generate_master_key() -> str:
    """A fresh master key from the OS CSPRNG, as 64 hex digits (store it like a
    password: every node of the fleet needs the same one)."""
    return os.urandom(32).hex()


def _master_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 32:
            return raw
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            value = ""
    if not isinstance(value, str):
        raise TypeError(f"a master key is bytes or str, not {type(value).__name__}")
    text = value.strip()
    candidates: list[bytes] = []
    if len(text) == 64:
        try:
            candidates.append(bytes.fromhex(text))
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            candidates.append(decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError):
            pass
    for raw in candidates:
        if len(raw) == 32:
            return raw
    raise ValueError(
        "a master key is 32 random bytes, given as bytes, 64 hex digits or base64; "
        "make one with: python -c 'import tlsresume.redis as r; print(r.generate_master_key())'"
    )


def load_master_key(path: str | os.PathLike[str]) -> bytes:
    """Read a master key (hex or base64, surrounding whitespace ignored) from a file.

    Raises:
        OSError: the file cannot be read.
        ValueError: it does not hold a 32-byte key.
    """
    with open(path, "rb") as f:
        data = f.read()
    mode = os.stat(path).st_mode
    if mode & 0o077:
        log.warning(
            "tlsresume: master key file %s is readable by other users (mode %o); chmod 600 it",
            os.fspath(path),
            mode & 0o777,
        )
    return _master_bytes(data)


class _Sealer:
    """AES-256-GCM with a fresh subkey per value (HMAC-SHA256 of a random 128-bit
    salt under a purpose key derived from the master key), so the number of values
    sealed under one master key is not bounded by GCM's random-nonce limit."""

    def __init__(self, master: bytes | bytearray | memoryview | str, purpose: bytes) -> None:
        raw = _master_bytes(master)
        self.kid = hmac.new(raw, b"tlsresume master key id", hashlib.sha256).digest()[:_KID_LEN]
        self._key = hmac.new(raw, b"tlsresume " + purpose, hashlib.sha256).digest()

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def seal(self, data: bytes, ad: bytes) -> bytes:
        salt, nonce = os.urandom(_SALT_LEN), os.urandom(_NONCE_LEN)
        sub = hmac.new(self._key, salt, hashlib.sha256).digest()
        return _ENVELOPE + self.kid + salt + nonce + AESGCM(sub).encrypt(nonce, data, ad)

    def open(self, blob: bytes, ad: bytes) -> bytes:
        """Raises MasterKeyError (other key) or RedisBackendError (corrupt)."""
        head = len(_ENVELOPE)
        kid = blob[head : head + _KID_LEN]
        if kid != self.kid:
            raise MasterKeyError(
                f"sealed under master key id {kid.hex()}, but this node's master key has "
                f"id {self.kid.hex()}: every node needs the same master key"
            )
        salt = blob[head + _KID_LEN : head + _KID_LEN + _SALT_LEN]
        nonce_at = head + _KID_LEN + _SALT_LEN
        nonce = blob[nonce_at : nonce_at + _NONCE_LEN]
        sub = hmac.new(self._key, salt, hashlib.sha256).digest()
        try:
            return AESGCM(sub).decrypt(nonce, blob[nonce_at + _NONCE_LEN :], ad)
        except InvalidTag:
            raise RedisBackendError(
                "a sealed value failed authentication (corrupt, or moved from another Redis key)"
            ) from None


def _is_sealed(blob: bytes) -> bool:
    return blob.startswith(_ENVELOPE)


def decode_state(data: bytes, where: str = "Redis") -> RingState:
    """:func:`tlsresume.policy.parse_state`, with the error a fleet operator needs.

    Raises:
        RedisBackendError: not a tlsresume ring of a version this code reads.
    """
    try:
        return parse_state(data)
    except ValueError as exc:
        raise RedisBackendError(
            f"the value at {where} is not a tlsresume key ring ({exc}); delete it or "
            "choose another name"
        ) from None


# ======================================================================================
# Stats shared with forked children (the syncer runs in the master, workers report)
# ======================================================================================

_SYNC_FIELDS = (
    "syncs",
    "sync_failures",
    "rotations",
    "seeds",
    "last_sync_ms",
    "last_failure_ms",
    "redis_up",
    "local_rotation_active",
    "generation",
    "errors",
    "node_changes",
    "repairs",
)
_NODE_BYTES = 256  # room for the address of the Redis node the last sync reached


class _SharedCounters:
    """Counters in an anonymous shared mapping: written by the one thread that syncs,
    readable from every process forked after it was made."""

    def __init__(self, fields: Sequence[str]) -> None:
        self._fields = {name: i for i, name in enumerate(fields)}
        self._fmt = "<" + "q" * len(fields)
        self._text_at = struct.calcsize(self._fmt)
        # MAP_SHARED|MAP_ANONYMOUS: counters, then one short text (length, bytes).
        self._map = mmap.mmap(-1, self._text_at + 2 + _NODE_BYTES)

    def add(self, name: str, n: int = 1) -> None:
        self.set(name, self.get(name) + n)

    def set(self, name: str, value: int) -> None:
        struct.pack_into("<q", self._map, 8 * self._fields[name], int(value))

    def get(self, name: str) -> int:
        return int(struct.unpack_from("<q", self._map, 8 * self._fields[name])[0])

    def snapshot(self) -> dict[str, int]:
        values = struct.unpack_from(self._fmt, self._map, 0)
        return dict(zip(self._fields, (int(v) for v in values), strict=True))

    def set_text(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")[:_NODE_BYTES]
        self._map[self._text_at + 2 : self._text_at + 2 + len(raw)] = raw
        struct.pack_into("<H", self._map, self._text_at, len(raw))

    def get_text(self) -> str:
        (n,) = struct.unpack_from("<H", self._map, self._text_at)
        n = min(n, _NODE_BYTES)
        return bytes(self._map[self._text_at + 2 : self._text_at + 2 + n]).decode(
            "utf-8", "replace"
        )


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ======================================================================================
# Key sync
# ======================================================================================


class KeySync:
    """Keep a local key ring equal to the fleet's ring in Redis.

    Args:
        ring: the local ring handshakes read (the one given to ``install()``), or
            the name of a ring to attach to. The sync takes over its rotation: the
            ring stops rotating by itself and follows Redis.
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` for TLS (CA with
            ``?ssl_ca_certs=/path/ca.pem`` or ``client_kwargs``), ``unix://...``.
        name: the service's name; the ring is kept at ``tlsresume:ring:NAME``.
        key: the Redis key instead (overrides ``name``).
        refresh: seconds between polls; also the longest a node's ring lags the
            fleet. Must be shorter than the rotation period (a node must learn the
            next key before it encrypts).
        master_key: 32 bytes (or 64 hex digits / base64): keys are sealed in Redis
            with AES-256-GCM. Every node needs the same one. Required, unless
            ``insecure_unsealed``.
        insecure_unsealed: keep the keys in Redis in the clear, knowingly: whoever
            can read Redis then decrypts every ticket, and whoever can write it
            chooses the fleet's keys.
        local_rotation: while Redis is unreachable, let the local ring rotate by
            itself (forward secrecy kept, but nodes draw different keys, so tickets
            cross machines only again once Redis is back). Default: keep encrypting
            with the last current key until Redis is back.
        rotation_period, acceptance_window: the fleet's policy if this node is the
            first to publish the ring (default: the local ring's). Redis's policy
            wins afterwards.
        timeout: seconds each Redis operation of the sync may take.
        require_redis: raise at start if Redis cannot be reached (default: log a
            warning, serve with local keys, and converge when Redis is up).
        client_kwargs: extra keyword arguments for redis-py's connection (e.g.
            ``ssl_ca_certs``, ``ssl_certfile``, ``username``).
        start: run the background thread. ``False``: no thread; call :meth:`poll`
            from a loop of your own (a pre-fork master that must fork without
            threads does), or :meth:`sync` whenever you choose.

    The first sync happens in the constructor, so a server that syncs before its
    workers start never issues a ticket under a key the fleet does not know.

    Raises:
        ValueError, TypeError: bad arguments.
        MasterKeyError: the ring in Redis is sealed under another master key, sealed
            while no master key was given, or not sealed while one was.
        RedisBackendError: Redis refused the credentials, holds something else at
            the key, or (``require_redis``) cannot be reached.
    """

    def __init__(
        self,
        ring: TicketKeyRing | str,
        url: str | redis.Redis | redis.ConnectionPool,
        *,
        name: str = "default",
        key: str | None = None,
        refresh: float = DEFAULT_REFRESH,
        master_key: bytes | str | None = None,
        insecure_unsealed: bool = False,
        local_rotation: bool = False,
        rotation_period: float | None = None,
        acceptance_window: float | None = None,
        timeout: float = 2.0,
        require_redis: bool = False,
        client_kwargs: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        if isinstance(ring, str):
            ring = TicketKeyRing.attach(ring)
            self._owns_ring = True
        elif isinstance(ring, TicketKeyRing):
            self._owns_ring = False
        else:
            raise TypeError(
                f"ring must be a TicketKeyRing or a ring name, not {type(ring).__name__}"
            )
        if getattr(ring, "_watcher", None) is not None:
            raise ValueError(
                "this ring's keys come from a key file; a ring synced through "
                "Redis must be an ordinary TicketKeyRing"
            )
        self._ring = ring
        self._key = key if key is not None else f"tlsresume:ring:{_check_name(name)}"
        self._refresh = _check_seconds("refresh", refresh, 0, 86400)
        self._timeout = _check_seconds("timeout", timeout, 0, 60)
        self._period = (
            _check_seconds("rotation_period", rotation_period, 0, 1e9)
            if rotation_period is not None
            else ring.rotation_period
        )
        window = acceptance_window if acceptance_window is not None else ring.acceptance_window
        self._period, self._window = check_periods(self._period, window)
        if self._refresh >= self._period:
            raise ValueError(
                f"refresh ({self._refresh:g} s) must be shorter than the rotation period "
                f"({self._period:g} s), so every node learns the next key before it is used"
            )
        self._local_rotation = bool(local_rotation)
        _check_sealing(master_key, insecure_unsealed)
        self._sealer = None if master_key is None else _Sealer(master_key, b"ring")
        self._who = _who()
        self._stats = _SharedCounters(_SYNC_FIELDS)
        self._mirrored = False
        # Forward-only generations (generation_check): the newest this process
        # accepted, and the digest of its encoding.
        self._generation_seen = 0
        self._generation_digest: bytes | None = None
        self._accepted: RingState | None = None  # that generation, to repair Redis with
        self._due: float | None = None
        self._warned_policy = False
        self._failing: str | None = None  # the last failure's message while failing
        self._pid = os.getpid()
        # Held for each whole round, which uses OpenSSL (HMAC, AES-GCM, TLS with
        # rediss://): a fork waits for the round in progress (see _forkgate).
        self._round_lock = ForkGate("the Redis key sync", wait=max(5.0, 2 * self._timeout + 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        spec = _spec(url, self._timeout, client_kwargs)
        self._url = spec.where
        self._spec = spec
        # Any: redis-py types replies as bytes | str (it depends on decode_responses).
        # A cluster client is made at the first round: it talks to Redis when made.
        self._client_obj: Any = None if spec.is_cluster else spec.client()
        try:
            self._first_sync(require_redis)
        except BaseException:
            self._close_client()
            if self._owns_ring:
                ring.close()
            raise
        self._poll_at = time.time() + self._next_delay(time.time())
        if start:
            self._thread = threading.Thread(target=self._run, name="tlsresume-keysync", daemon=True)
            self._thread.start()

    # ---- public --------------------------------------------------------------------

    @property
    def ring(self) -> TicketKeyRing:
        return self._ring

    @property
    def key(self) -> str:
        """The Redis key holding the fleet's ring."""
        return self._key

    @property
    def refresh(self) -> float:
        return self._refresh

    def sync(self, now: float | None = None) -> bool:
        """One round now: read (seeding if empty), rotate in Redis if due, mirror into
        the ring. Returns whether the local ring changed.

        Raises:
            TLSResumeError: called in a forked child (the sync belongs to the
                process that started it; children share its ring).
            the error of the round (it is also counted and logged, as in the
            background).
        """
        self._check_process()
        return self._attempt(time.time() if now is None else now, raise_errors=True)

    def poll(self, now: float | None = None) -> float:
        """For a sync made with ``start=False``: run the round if it is due, exactly
        as the background thread would (a failure is counted and logged, never
        raised), and return the seconds until the next one is due.

        Raises:
            StateError: the sync runs its own thread, or this is a forked child.
        """
        self._check_process()
        if self._thread is not None:
            raise StateError("this KeySync runs its own thread; poll() is for start=False")
        now = time.time() if now is None else now
        if now >= self._poll_at and not self._stop.is_set():
            try:
                self._attempt(now, raise_errors=False)
            except RingClosedError:
                self._stop.set()
            self._poll_at = now + self._next_delay(now)
        return max(0.0, self._poll_at - now)

    def stats(self) -> dict[str, Any]:
        """Counters of this node's syncer; readable in processes forked after the
        sync started (the workers of a pre-fork server)."""
        s = self._stats.snapshot()
        last = s.pop("last_sync_ms")
        failed = s.pop("last_failure_ms")
        return {
            "syncs": s["syncs"],
            "sync_failures": s["sync_failures"],
            "rotations": s["rotations"],
            "seeds": s["seeds"],
            "errors": s["errors"],
            "last_sync": last / 1000 if last else None,
            "last_sync_age": max(0.0, time.time() - last / 1000) if last else None,
            "last_failure": failed / 1000 if failed else None,
            "redis_up": bool(s["redis_up"]),
            "local_rotation_active": bool(s["local_rotation_active"]),
            "generation": s["generation"],
            "redis_node": self._stats.get_text() or None,
            "node_changes": s["node_changes"],
            "repairs": s["repairs"],
            "refresh": self._refresh,
            "key": self._key,
        }

    def stop(self, timeout: float | None = None) -> None:
        """Stop syncing (idempotent). The ring keeps its last keys and does not rotate
        by itself; hand rotation back with
        ``ring.load_records(ring.records(), auto_rotate=True)`` if it keeps serving."""
        if os.getpid() != self._pid:
            return  # a forked child: no thread here, and the lock may be the parent's
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else 2 * self._timeout + 1)
        with self._round_lock:
            self._close_client()
            if self._owns_ring:
                self._ring.close()

    def __enter__(self) -> KeySync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<KeySync {self._key} at {self._url} every {self._refresh:g}s>"

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            self._client_obj = self._spec.client()
        return self._client_obj

    def _close_client(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise StateError(
                f"this KeySync runs in process {self._pid}; a forked child shares its ring "
                "and must not sync (start a KeySync of its own if it outlives the parent)"
            )

    # ---- rounds --------------------------------------------------------------------

    def _first_sync(self, require_redis: bool) -> None:
        try:
            self._attempt(time.time(), raise_errors=True)
        except (MasterKeyError, RedisBackendError):
            raise
        except AuthenticationError as exc:
            raise RedisBackendError(
                f"Redis at {self._url} refused the credentials ({exc}); check the "
                "password (redis://:PASSWORD@host:port/db) or user"
            ) from None
        except ResponseError as exc:
            raise RedisBackendError(
                f"Redis at {self._url} refused the key ring operations: {exc}"
            ) from None
        except _TRANSIENT as exc:
            if require_redis:
                raise RedisBackendError(
                    f"cannot reach Redis at {self._url}: {exc}; start it, fix "
                    "the URL, or drop require_redis to serve with local keys until it is up"
                ) from None
            # Only now is it true that the ring serves with its local keys until Redis
            # is up: say so.
            self._failed(exc)

    def _run(self) -> None:
        delay = self._next_delay(time.time())
        while not self._stop.wait(delay):
            now = time.time()
            try:
                self._attempt(now, raise_errors=False)
            except RingClosedError:
                return
            delay = self._next_delay(time.time())

    def _next_delay(self, now: float) -> float:
        delay = self._refresh * (1 + random.uniform(0, 0.1))  # spread the fleet's polls
        if self._due is not None and self._failing is None:
            delay = min(delay, max(0.0, self._due - now) + 0.001)
        return max(delay, 0.001)

    def _attempt(self, now: float, raise_errors: bool) -> bool:
        with self._round_lock:
            if self._stop.is_set() and not raise_errors:
                return False
            try:
                changed = self._round(now)
            except RingClosedError:
                raise
            except Exception as exc:
                self._count_failure(exc, now)
                if raise_errors:
                    raise  # the caller decides whether the node serves on (then reports)
                self._failed(exc)
                return False
            self._succeeded(now)
            return changed

    def _round(self, now: float) -> bool:
        raw = self._client.get(self._key)
        if raw is None:
            state = self._seed(now)
        else:
            state = self._repair(raw, self._decode(raw))
        if rotation_due(state, now):
            state = self._rotate(now)
        self._generation_seen = state.generation
        self._generation_digest = hashlib.sha256(encode_state(state)).digest()
        self._accepted = state
        self._stats.set("generation", state.generation)
        self._due = state.due()
        if not self._warned_policy and (
            abs(state.period - self._period) > 1e-3 or abs(state.window - self._window) > 1e-3
        ):
            self._warned_policy = True
            log.warning(
                "tlsresume: the fleet's ring at %s rotates every %g s and accepts "
                "retired keys for %g s; this node was configured for %g s / %g s "
                "and follows the fleet",
                self._key,
                state.period,
                state.window,
                self._period,
                self._window,
            )
        return self._mirror(state, now)

    def _decode(self, raw: bytes) -> RingState:
        where = f"{self._key} in Redis"
        if _is_sealed(raw):
            if self._sealer is None:
                raise MasterKeyError(
                    f"the key ring at {where} is sealed under a master key "
                    "(id "
                    + raw[len(_ENVELOPE) : len(_ENVELOPE) + _KID_LEN].hex()
                    + "); give this node the fleet's master key"
                )
            try:
                raw = self._sealer.open(raw, self._key.encode())
            except RedisBackendError as exc:
                raise type(exc)(f"the key ring at {where}: {exc}") from None
        elif self._sealer is not None:
            raise MasterKeyError(
                f"the key ring at {where} is not sealed, but this node has "
                "a master key: every node must use the same setting (to "
                "start sealing, delete the key and restart the fleet)"
            )
        return decode_state(raw, where)

    def _encode(self, state: RingState) -> bytes:
        plain = encode_state(state)
        return plain if self._sealer is None else self._sealer.seal(plain, self._key.encode())

    def _seed(self, now: float) -> RingState:
        self._pause_local_rotation()
        # A ring re-seeded after Redis lost its data continues this node's numbering,
        # so it is not refused as a rollback by nodes that saw the old generations.
        state = seed_state(
            self._ring.records(),
            self._period,
            self._window,
            now,
            self._who,
            self._generation_seen + 1,
        )
        if self._client.set(self._key, self._encode(state), nx=True):
            self._stats.add("seeds")
            log.info(
                "tlsresume: published this node's ticket keys as the fleet's ring at %s "
                "(current key %s)",
                self._key,
                state.current.key.name_hex,
            )
            return state
        raw = self._client.get(self._key)  # another node was first
        if raw is None:
            raise redis.ConnectionError("the ring appeared and vanished; retrying")
        return self._repair(raw, self._decode(raw))

    def _swap(self, expected: bytes, new: RingState) -> bool:
        """Replace the ring in Redis by ``new`` if it still holds ``expected``, in one
        step on the server (a script: it works alike on one server, behind Sentinel
        and on a cluster, where the ring is one key and so one slot)."""
        return bool(self._client.eval(_SWAP, 1, self._key, expected, self._encode(new)))

    def _rotate(self, now: float) -> RingState:
        for _ in range(16):
            raw = self._client.get(self._key)
            if raw is None:
                return self._seed(now)
            state = self._decode(raw)
            state = self._repair(raw, state)
            if not rotation_due(state, now):
                return state  # another node rotated first
            new = rotate_state(state, now, TicketKey.generate(state.current.key.size), self._who)
            if not self._swap(raw, new):
                continue  # it changed under us: read again
            self._stats.add("rotations")
            log.info(
                "tlsresume: rotated the fleet's ticket keys at %s: current key %s",
                self._key,
                new.current.key.name_hex,
            )
            return new
        raise RedisBackendError(f"could not rotate {self._key}: it kept changing")

    def _repair(self, raw: bytes, state: RingState) -> RingState:
        """``state`` if this node may accept it; else, if Redis went back to an older
        generation than this node accepted, put the accepted one back.

        Redis loses acknowledged writes when a replica that had not received them is
        promoted (a Sentinel or Cluster failover), or when it is restored from an old
        copy. The fleet must then not fork: nodes that saw the lost rotation would
        refuse the older ring, and a node that rotates it again would draw another
        next key. Writing back the newest state any node accepted (only over the
        older one just read) makes the highest accepted generation win, with exactly
        the keys it had. A lost rotation that another node has meanwhile re-done is
        accepted by :func:`~tlsresume.policy.generation_check` (same current key)."""
        why = generation_check(
            state, self._generation_seen, self._generation_digest, self._accepted
        )
        if why is None:
            return state
        accepted = self._accepted
        if state.generation < self._generation_seen and accepted is not None:
            if self._swap(raw, accepted):
                self._stats.add("repairs")
                log.warning(
                    "tlsresume: the fleet's ring at %s went back to generation %d (Redis "
                    "lost writes: a failover or a restore); put back generation %d, "
                    "which this node had accepted",
                    self._key,
                    state.generation,
                    accepted.generation,
                )
                return accepted
            raise redis.ConnectionError("the ring changed while it was repaired; retrying")
        raise RedisBackendError(
            f"the key ring at {self._key} in Redis was not applied: {why}. This node "
            "keeps its keys; if the fleet's ring was restored on purpose, restart "
            "this node (or delete the key so the fleet publishes a newer one)"
        )

    def _pause_local_rotation(self) -> None:
        """Stop the ring rotating by itself (and so drawing keys the fleet does not
        know) before reading its keys for a merge. Loading exactly the keys just read
        is safe even if the ring rotates in between: the promoted key stays as next
        (which decrypts), and the drawn one had encrypted nothing."""
        ring = self._ring
        if ring.auto_rotate:
            ring.load_records(
                ring.records(), acceptance_window=ring.acceptance_window, auto_rotate=False
            )
            self._stats.set("local_rotation_active", 0)

    def _mirror(self, state: RingState, now: float) -> bool:
        ring = self._ring
        self._pause_local_rotation()
        local = ring.records()
        # A pristine ring (first sync, no ticket issued yet) has nothing to keep.
        keep = self._mirrored or ring.stats()["tickets_issued"] > 0
        records = merge_records(state.keys, local, now, state.window, keep)
        self._mirrored = True
        if (
            _signature(records) == _signature(local)
            and abs(ring.rotation_period - state.period) < 1e-3
            and ring.acceptance_window is not None
            and abs(ring.acceptance_window - state.window) < 1e-3
        ):
            return False
        kept = [
            r.key.name_hex for r in records if r.key.name not in {k.key.name for k in state.keys}
        ]
        if kept:
            log.info(
                "tlsresume: keeping %d key(s) this node encrypted with that the fleet "
                "does not know, as retired: %s",
                len(kept),
                ", ".join(kept),
            )
        ring.load_records(
            records, rotation_period=state.period, acceptance_window=state.window, auto_rotate=False
        )
        return True

    # ---- bookkeeping ---------------------------------------------------------------

    def _succeeded(self, now: float) -> None:
        self._stats.add("syncs")
        self._stats.set("last_sync_ms", int(now * 1000))
        self._stats.set("redis_up", 1)
        node = self._node()
        if node is not None:
            seen = self._stats.get_text()
            if seen and seen != node:
                self._stats.add("node_changes")
                log.warning("tlsresume: the fleet's Redis is now %s (was %s)", node, seen)
            self._stats.set_text(node)
        if self._failing is not None:
            log.warning(
                "tlsresume: Redis at %s is reachable again; ticket keys converged with the fleet",
                self._url,
            )
            self._failing = None

    def _node(self) -> str | None:
        """The address of the Redis node this sync's connections reach now (with a
        Sentinel-managed master: the current master), or None if unknown."""
        if self._spec.is_cluster:
            try:
                node = self._client.get_node_from_key(self._key)
            except (RedisError, RedisClusterException):
                return None
            return f"{node.host}:{node.port}"
        pool = self._client.connection_pool
        try:
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py before 5.3 wants a command name
                conn = pool.get_connection("PING")
        except (RedisError, OSError):
            return None
        try:
            path = getattr(conn, "path", None)
            host, port = getattr(conn, "host", None), getattr(conn, "port", None)
        finally:
            pool.release(conn)
        if path:
            return f"unix:{path}"
        return f"{host}:{port}" if host else None

    def _count_failure(self, exc: BaseException, now: float) -> None:
        self._stats.add("sync_failures")
        self._stats.set("last_failure_ms", int(now * 1000))
        transient = isinstance(exc, _TRANSIENT) and not isinstance(exc, AuthenticationError)
        if transient:
            self._stats.set("redis_up", 0)
        elif not isinstance(exc, RedisError):
            self._stats.add("errors")

    def _failed(self, exc: BaseException) -> None:
        """Say that this node serves on with its own keys (it does: only called when
        the failure is not raised), and turn on local rotation if asked."""
        message = f"{type(exc).__name__}: {exc}"
        if message != self._failing:
            log.warning(
                "tlsresume: cannot sync ticket keys with Redis at %s (%s); serving "
                "with the keys this node has%s",
                self._url,
                message,
                ", rotating locally" if self._local_rotation else "",
            )
        self._failing = message
        if self._local_rotation:
            try:
                ring = self._ring
                if not ring.auto_rotate:
                    ring.load_records(
                        ring.records(), acceptance_window=ring.acceptance_window, auto_rotate=True
                    )
                    self._stats.set("local_rotation_active", 1)
            except (TLSResumeError, ValueError) as err:
                log.warning("tlsresume: cannot turn on local rotation: %s", err)


def _signature(records: Sequence[KeyRecord]) -> frozenset[tuple[Any, ...]]:
    return frozenset(
        (
            r.key.name,
            r.key.hmac_key,
            r.key.aes_key,
            r.role,
            to_ms(r.created),
            to_ms(r.activated),
            to_ms(r.retired),
        )
        for r in records
    )


# ======================================================================================
# Session tier
# ======================================================================================

_WAKE = ("wake",)
_TIER_COUNTERS = (
    "gets",
    "hits",
    "taken",
    "misses",
    "timeouts",
    "errors",
    "skipped_down",
    "no_connection",
    "undecryptable",
    "puts",
    "removes",
    "dropped",
    "written",
    "deleted",
    "write_errors",
    "expired_before_write",
    "connects",
    "connect_failures",
)


class _Runtime:
    """A tier's per-process state: rebuilt in a forked child, never shared."""

    def __init__(self, max_queue: int) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue(max_queue)
        self.idle: list[Any] = []
        self.open = 0  # get-connections alive (idle or in use)
        self.want = 1  # how many the writer should keep open
        self.down_until = 0.0  # monotonic; lookups skip Redis until then
        self.backoff = 0.0
        self.down = False
        self.stopping = threading.Event()
        # The writer holds it while it connects (TLS with rediss://) or writes
        # (sealing with AES-GCM): a fork waits for that (see _forkgate).
        self.gate = ForkGate("the Redis session tier's writer", wait=5.0)
        self.thread: threading.Thread | None = None
        self.writer: Any = None
        # Redis Cluster: the lookups' client (made by the writer thread, since it
        # learns the slot map when made) and each node's (down until, back-off).
        self.cluster: Any = None
        self.node_down: dict[str, tuple[float, float]] = {}
        self.write_failing = False
        self.counts = dict.fromkeys(_TIER_COUNTERS, 0)
        self.max_get = 0.0

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n


_tiers: weakref.WeakSet[SessionTier] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tier in list(_tiers):
        try:
            tier._restart_in_child()
        except Exception as exc:  # never break a fork
            log.warning("tlsresume: cannot restart the Redis session tier after fork: %s", exc)


os.register_at_fork(after_in_child=_after_fork_in_child)


class SessionTier:
    """Redis as the second tier of a :class:`~tlsresume.SessionStore`.

    Args:
        url: as for :class:`KeySync`.
        name: the service's name; sessions live at ``tlsresume:session:NAME:<id hex>``.
        prefix: the key prefix instead (overrides ``name``).
        timeout: the longest a handshake waits for Redis on a local miss, in seconds
            (default 5 ms). Lookups only use connections made beforehand by the
            writer thread, so no handshake ever waits for a connect or TLS handshake
            to Redis; a lookup that finds none free is a miss.
        max_queue: stores and removals waiting for the writer; beyond it they are
            dropped (and counted).
        connections: the most connections lookups use at once in this process.
        retry: longest back-off, in seconds, after Redis failed: meanwhile lookups
            are misses without trying and the writer waits. It starts at an eighth of
            this and doubles.
        write_timeout: seconds for the writer's operations and for making connections.
        master_key: seal sessions in Redis (AES-256-GCM, the Redis key as associated
            data). Required, unless ``insecure_unsealed``. A session DER holds the TLS
            master secret: without a seal, who reads Redis decrypts recorded
            traffic, and who writes it can inject sessions.
        insecure_unsealed: keep sessions in Redis in the clear, knowingly.
        client_kwargs: extra keyword arguments for redis-py's connections.
        start: start the writer thread now (default). ``False``: this process gets
            one at its first lookup, store or removal, and forked children get
            their own at fork either way; so a pre-fork master that only makes the
            tier for its workers runs no thread and forks without one.

    Thread-safe. Fork-safe: a child gets a fresh writer thread and fresh
    connections (queued writes of the parent stay with the parent).
    """

    def __init__(
        self,
        url: str | redis.Redis | redis.ConnectionPool,
        *,
        name: str = "default",
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_queue: int = 10000,
        connections: int = 4,
        retry: float = 1.0,
        write_timeout: float = 1.0,
        master_key: bytes | str | None = None,
        insecure_unsealed: bool = False,
        client_kwargs: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        self.timeout = _check_seconds("timeout", timeout, 0, 1)
        self.retry = _check_seconds("retry", retry, 0, 3600)
        self.write_timeout = _check_seconds("write_timeout", write_timeout, 0, 60)
        for label, value in (("max_queue", max_queue), ("connections", connections)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        self.prefix = prefix if prefix is not None else f"tlsresume:session:{_check_name(name)}:"
        self.max_queue = max_queue
        self.connections = connections
        _check_sealing(master_key, insecure_unsealed)
        self._sealer = None if master_key is None else _Sealer(master_key, b"session")
        self._spec = _spec(url, self.write_timeout, client_kwargs)
        self._url = self._spec.where
        self._stopped = False
        self._rt = self._new_runtime(writer=bool(start))
        _tiers.add(self)

    # ---- RemoteTier ----------------------------------------------------------------

    def get(self, session_id: bytes) -> bytes | None:
        """The session's DER from Redis, or None; returns within ``timeout``."""
        rt = self._runtime()
        rt.count("gets")
        if time.monotonic() < rt.down_until:
            rt.count("skipped_down")
            return None
        key = self.prefix + session_id.hex()
        start = time.monotonic()
        try:
            if self._spec.is_cluster:
                raw = self._cluster_lookup(rt, key)
            else:
                raw = self._lookup(rt, key)
        finally:
            elapsed = time.monotonic() - start
            if elapsed > rt.max_get:
                rt.max_get = elapsed
        if raw is None:
            return None
        raw = bytes(raw)
        once = raw[:1] == _ONCE
        der = self._unseal(rt, key, raw[1:] if once else raw, once)
        if der is not None and once != _single_use(der):
            rt.count("undecryptable")  # a mark that does not match what it marks
            der = None
        rt.count("hits" if der else "misses")
        if der and once:
            rt.count("taken")
        return der

    def _lookup(self, rt: _Runtime, key: str) -> Any:
        """One server (or a Sentinel-managed master): the take, on a connection the
        writer made beforehand. None for a miss or any failure (counted)."""
        with rt.lock:
            conn = rt.idle.pop() if rt.idle else None
            if conn is None:
                rt.want = min(self.connections, rt.open + 1)
        if conn is None:
            rt.count("no_connection")
            self._wake(rt)
            return None
        try:
            conn.send_command("EVAL", _TAKE, 1, key)
            raw = conn.read_response()
        except ResponseError as exc:  # the command failed, the connection is fine
            self._give_back(rt, conn)
            rt.count("errors")
            log.warning("tlsresume: Redis refused a session lookup: %s", exc)
            return None
        except (RedisError, OSError) as exc:
            self._discard(rt, conn)
            self._count_lookup_failure(rt, exc)
            self._mark_down(rt, exc)
            return None
        self._give_back(rt, conn)
        if raw is None:
            rt.count("misses")
        return raw

    def _cluster_lookup(self, rt: _Runtime, key: str) -> Any:
        """A Redis Cluster: the take goes to the node that holds the key's slot
        (redis-py's cluster client follows MOVED and ASK). A node that failed is
        skipped for its own back-off; the other nodes' sessions stay reachable."""
        client = rt.cluster
        if client is None:  # the writer has not learnt the slot map yet
            rt.count("no_connection")
            self._wake(rt)
            return None
        try:
            node = client.get_node_from_key(key).name
        except (RedisError, RedisClusterException) as exc:  # the slot has no node now
            rt.count("errors")
            self._mark_down(rt, exc)
            return None
        if time.monotonic() < rt.node_down.get(node, (0.0, 0.0))[0]:
            rt.count("skipped_down")
            return None
        try:
            raw = client.eval(_TAKE, 1, key)
        except ResponseError as exc:  # refused, or a redirection loop
            rt.count("errors")
            log.warning("tlsresume: Redis refused a session lookup: %s", exc)
            return None
        except (RedisError, RedisClusterException, OSError) as exc:
            self._count_lookup_failure(rt, exc)
            self._mark_node_down(rt, node, exc)
            return None
        if node in rt.node_down:
            with rt.lock:
                if rt.node_down.pop(node, None) is not None:
                    log.warning("tlsresume: Redis Cluster node %s is back", node)
        if raw is None:
            rt.count("misses")
        return raw

    @staticmethod
    def _count_lookup_failure(rt: _Runtime, exc: BaseException) -> None:
        timed_out = isinstance(exc, (redis.TimeoutError, TimeoutError))
        rt.count("timeouts" if timed_out else "errors")

    def put(self, session_id: bytes, der: bytes, expires: float) -> None:
        """Queue the session for Redis until ``expires`` (epoch s); never blocks."""
        rt = self._runtime()
        try:
            rt.queue.put_nowait(("put", session_id, der, expires))
            rt.count("puts")
        except queue.Full:
            rt.count("dropped")

    def remove(self, session_id: bytes) -> None:
        """Queue the session's removal from Redis; never blocks."""
        rt = self._runtime()
        try:
            rt.queue.put_nowait(("del", session_id))
            rt.count("removes")
        except queue.Full:
            rt.count("dropped")

    # ---- public --------------------------------------------------------------------

    def check(self, *, require_redis: bool = False) -> bool:
        """Check the credentials and the master key against Redis now (the canary
        ``PREFIX check``: it records whether sessions are sealed and under which
        key). Returns whether Redis answered.

        Raises:
            RedisBackendError: refused credentials; ``require_redis`` and no Redis.
            MasterKeyError: the fleet seals sessions under another key, or not at all
                while this node has one (or the other way round).
        """
        key = self.prefix + "check"
        mine = self._sealer.seal(b"tlsresume", key.encode()) if self._sealer else b"plain"
        client: Any = None
        try:
            client = self._spec.client()
            client.set(key, mine, nx=True)
            found = client.get(key)
        except AuthenticationError as exc:
            raise RedisBackendError(
                f"Redis at {self._url} refused the credentials "
                f"({exc}); check the password in the URL"
            ) from None
        except _TRANSIENT as exc:
            if require_redis:
                raise RedisBackendError(f"cannot reach Redis at {self._url}: {exc}") from None
            log.warning(
                "tlsresume: Redis at %s is not reachable yet (%s); sessions stay local until it is",
                self._url,
                exc,
            )
            return False
        finally:
            if client is not None:
                client.close()
        if found is None:
            return True
        if _is_sealed(found) and self._sealer is None:
            raise MasterKeyError(
                f"sessions under {self.prefix} are sealed under a master "
                "key; give this node the fleet's master key"
            )
        if not _is_sealed(found) and self._sealer is not None:
            raise MasterKeyError(
                f"sessions under {self.prefix} are not sealed, but this "
                "node has a master key: every node must use the same setting"
            )
        if self._sealer is not None:
            try:
                self._sealer.open(found, key.encode())
            except RedisBackendError as exc:
                raise type(exc)(f"sessions under {self.prefix}: {exc}") from None
        return True

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until queued writes reached Redis (or were dropped); returns whether
        the queue drained within ``timeout``."""
        rt = self._runtime(use=False)
        deadline = time.monotonic() + timeout
        while rt.queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def stats(self) -> dict[str, Any]:
        """This process's counters (each worker has its own tier)."""
        rt = self._runtime(use=False)
        with rt.lock:
            out: dict[str, Any] = dict(rt.counts)
            out.update(
                queued=rt.queue.qsize(),
                connections=rt.open,
                idle=len(rt.idle),
                redis_up=not rt.down,
                max_get_ms=round(rt.max_get * 1000, 3),
                timeout_ms=self.timeout * 1000,
            )
        return out

    def stop(self, flush: float = 0.5) -> None:
        """Stop the writer (after up to ``flush`` seconds of draining) and close the
        connections. Idempotent. A stopped tier answers every lookup with a miss."""
        if self._stopped:
            return
        if flush > 0 and self._rt.pid == os.getpid():
            self.flush(flush)
        self._stopped = True
        rt = self._rt
        rt.stopping.set()
        rt.down_until = float("inf")
        self._wake(rt)
        if (
            rt.thread is not None
            and rt.pid == os.getpid()
            and rt.thread is not threading.current_thread()
        ):
            rt.thread.join(self.write_timeout + 1)
        with rt.lock:
            idle, rt.idle = rt.idle, []
        for conn in idle:
            conn.disconnect()
        for client in (rt.writer, rt.cluster):
            if client is not None:
                client.close()
        _tiers.discard(self)

    def __enter__(self) -> SessionTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SessionTier {self.prefix}* at {self._url} timeout={self.timeout}s>"

    # ---- per-process runtime -------------------------------------------------------

    def _new_runtime(self, writer: bool = True) -> _Runtime:
        rt = _Runtime(self.max_queue)
        rt.gate.wait = 2 * self.write_timeout + 1.5  # a write and its one retry
        if not self._spec.is_cluster:  # a cluster's are made by the writer thread
            rt.writer = self._spec.client(retry=write_retry())
        if self._stopped:
            rt.stopping.set()
            rt.down_until = float("inf")
        elif writer:
            self._start_writer(rt)
        return rt

    def _start_writer(self, rt: _Runtime) -> None:
        rt.thread = threading.Thread(
            target=self._writer_loop, args=(rt,), name="tlsresume-redis-writer", daemon=True
        )
        rt.thread.start()

    def _runtime(self, use: bool = True) -> _Runtime:
        """This process's runtime; ``use``: about to look up, store or remove, so the
        writer must run (it starts here for a tier made with ``start=False``)."""
        rt = self._rt
        if rt.pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C)
            self._restart_in_child()
            rt = self._rt
        if use and rt.thread is None and not self._stopped:
            with rt.lock:
                if rt.thread is None and not rt.stopping.is_set():
                    self._start_writer(rt)
        return rt

    def _restart_in_child(self) -> None:
        """After fork: the parent's thread is gone and its sockets are the parent's.
        Drop them without touching them (no shutdown, no close_notify) and start over."""
        old = self._rt
        if old.pid == os.getpid():
            return
        old.idle.clear()  # their sockets close with the objects, in this process only
        old.cluster = old.writer = None
        self._rt = self._new_runtime()

    # ---- connections ---------------------------------------------------------------

    def _give_back(self, rt: _Runtime, conn: Any) -> None:
        with rt.lock:
            if rt.pid == os.getpid() and not rt.stopping.is_set():
                rt.idle.append(conn)
                return
        conn.disconnect()

    def _discard(self, rt: _Runtime, conn: Any) -> None:
        with rt.lock:
            rt.open -= 1
        conn.disconnect()

    def _connect(self, rt: _Runtime) -> bool:
        if self._spec.is_cluster:
            return self._connect_cluster(rt)
        conn = self._spec.connection_class(**self._spec.kwargs)
        try:
            conn.connect()  # AUTH, SELECT, TLS: with write_timeout, in this thread
        except (RedisError, OSError) as exc:
            conn.disconnect()
            rt.count("connect_failures")
            self._mark_down(rt, exc)
            return False
        # From now on each read waits at most the lookup bound.
        conn.socket_timeout = self.timeout
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            sock.settimeout(self.timeout)
        with rt.lock:
            rt.open += 1
            rt.idle.append(conn)
            rt.counts["connects"] += 1
        self._mark_up(rt)
        return True

    def _connect_cluster(self, rt: _Runtime) -> bool:
        """Learn the cluster's slot map and open a connection to every primary, for
        the writer (``write_timeout``) and for lookups (each read bounded by
        ``timeout``): in this thread, so that no handshake waits for it."""
        try:
            if rt.writer is None:
                rt.writer = self._spec.client(retry=write_retry())
            lookups = self._spec.client(
                socket_timeout=self.timeout, socket_connect_timeout=self.write_timeout
            )
            try:
                lookups.ping(target_nodes=lookups.PRIMARIES)
            except BaseException:
                lookups.close()
                raise
        except Exception as exc:  # the writer thread must survive whatever it meets
            rt.count("connect_failures")
            self._mark_down(rt, exc)
            return False
        with rt.lock:
            rt.cluster, rt.open = lookups, 1
            rt.counts["connects"] += 1
        self._mark_up(rt)
        return True

    def _mark_node_down(self, rt: _Runtime, node: str, exc: BaseException) -> None:
        """One cluster node failed a lookup: back off from it alone."""
        with rt.lock:
            backoff = rt.node_down.get(node, (0.0, 0.0))[1]
            backoff = min(self.retry, max(self.retry / 8, backoff * 2))
            was_down = node in rt.node_down
            rt.node_down[node] = (time.monotonic() + backoff, backoff)
        if not was_down:
            log.warning(
                "tlsresume: Redis Cluster node %s failed a session lookup (%s: %s); its "
                "sessions are misses for up to %g s",
                node,
                type(exc).__name__,
                exc,
                self.retry,
            )

    def _mark_down(self, rt: _Runtime, exc: BaseException) -> None:
        with rt.lock:
            rt.backoff = min(self.retry, max(self.retry / 8, rt.backoff * 2))
            rt.down_until = time.monotonic() + rt.backoff
            idle, rt.idle = rt.idle, []
            rt.open -= len(idle)
            was_down, rt.down = rt.down, True
        for conn in idle:  # they are likely dead too (Redis restarted or stalled)
            conn.disconnect()
        if not was_down:
            log.warning(
                "tlsresume: Redis session tier at %s failed (%s: %s); sessions "
                "stay local, retrying within %g s",
                self._url,
                type(exc).__name__,
                exc,
                self.retry,
            )

    def _mark_up(self, rt: _Runtime) -> None:
        with rt.lock:
            rt.backoff = 0.0
            rt.down_until = 0.0
            was_down, rt.down = rt.down, False
        if was_down:
            log.warning("tlsresume: Redis session tier at %s is back", self._url)

    def _wake(self, rt: _Runtime) -> None:
        try:
            rt.queue.put_nowait(_WAKE)
        except queue.Full:
            pass

    # ---- writer thread -------------------------------------------------------------

    def _writer_loop(self, rt: _Runtime) -> None:
        while not rt.stopping.is_set():
            wait = rt.down_until - time.monotonic()
            if wait > 0:
                rt.stopping.wait(min(wait, 1.0))
                continue
            with rt.gate:
                while rt.open < rt.want and not rt.stopping.is_set():
                    if not self._connect(rt):
                        break
            try:
                item = rt.queue.get(timeout=0.25)
            except queue.Empty:
                continue
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(rt.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(rt, [i for i in batch if i is not _WAKE])
            except Exception as exc:  # the writer must outlive anything redis-py raises
                rt.count("write_errors", len(batch))
                log.warning(
                    "tlsresume: a batch of session writes to Redis at %s failed "
                    "unexpectedly (%s: %s); the writer goes on",
                    self._url,
                    type(exc).__name__,
                    exc,
                )
                rt.stopping.wait(self.retry / 8)
            finally:
                for _ in batch:
                    rt.queue.task_done()

    def _write(self, rt: _Runtime, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        if time.monotonic() < rt.down_until:
            rt.stopping.wait(max(0.0, rt.down_until - time.monotonic()))
        with rt.gate:
            self._write_batch(rt, batch)

    def _write_batch(self, rt: _Runtime, batch: list[tuple[Any, ...]]) -> None:
        if rt.writer is None:  # a cluster whose slot map could not be learnt yet
            rt.count("write_errors", len(batch))
            return
        now = time.time()
        pipe = rt.writer.pipeline(transaction=False)
        ops = []
        for item in batch:
            key = self.prefix + item[1].hex()
            if item[0] == "put":
                ttl_ms = int((item[3] - now) * 1000)
                if ttl_ms <= 0:
                    rt.count("expired_before_write")
                    continue
                once = _single_use(item[2])
                value = (
                    item[2]
                    if self._sealer is None
                    else self._sealer.seal(item[2], _seal_ad(key, once))
                )
                pipe.set(key, _ONCE + value if once else value, px=ttl_ms)
                ops.append("written")
            else:
                pipe.delete(key)
                ops.append("deleted")
        if not ops:
            return
        try:
            results = pipe.execute(raise_on_error=False)
        except (RedisError, RedisClusterException, OSError) as exc:
            rt.count("write_errors", len(ops))
            if self._spec.is_cluster:
                # One master failing a batch must not stop lookups to the others
                # (they back off per node): only the writer pauses.
                if not rt.write_failing:
                    log.warning(
                        "tlsresume: Redis Cluster at %s failed a batch of session "
                        "writes (%s: %s); retrying",
                        self._url,
                        type(exc).__name__,
                        exc,
                    )
                rt.write_failing = True
                rt.stopping.wait(self.retry / 8)
            else:
                self._mark_down(rt, exc)
            return
        finally:
            pipe.reset()
        rt.write_failing = False
        for op, result in zip(ops, results, strict=False):
            rt.count("write_errors" if isinstance(result, Exception) else op)
        self._mark_up(rt)

    def _unseal(self, rt: _Runtime, key: str, raw: bytes, once: bool = False) -> bytes | None:
        if self._sealer is None:
            if _is_sealed(raw):
                rt.count("undecryptable")
                return None
            return raw
        if not _is_sealed(raw):
            rt.count("undecryptable")
            return None
        try:
            return self._sealer.open(raw, _seal_ad(key, once))
        except RedisBackendError:
            rt.count("undecryptable")
            return None


def _seal_ad(key: str, once: bool) -> bytes:
    """A sealed session's associated data: its Redis key, and whether it is single-use."""
    return key.encode() + (b"|once" if once else b"")


# ======================================================================================
# Wiring a server
# ======================================================================================


@dataclass
class RedisLink:
    """What :func:`connect_server` started: stop it when the server stops."""

    key_sync: KeySync | None
    session_tier: SessionTier | None
    store: SessionStore | None = None
    _stopped: bool = field(default=False, repr=False)

    def stats(self) -> dict[str, Any]:
        """``{"key_sync": {...} | None, "session_tier": {...} | None}``: the sync's
        counters are visible in forked workers; the tier's are this process's."""
        return {
            "key_sync": self.key_sync.stats() if self.key_sync else None,
            "session_tier": self.session_tier.stats() if self.session_tier else None,
        }

    def poll(self, now: float | None = None) -> float:
        """For a link made with ``start=False``: the key sync's round if due (see
        :meth:`KeySync.poll`); returns the seconds until the next one (``inf``
        without a key sync)."""
        if self.key_sync is None or self._stopped:
            return float("inf")
        return self.key_sync.poll(now)

    def stop(self) -> None:
        """Detach the tier from the store (in this process), stop both. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.store is not None and self.session_tier is not None:
            try:
                self.store.set_remote(None)
            except TLSResumeError:
                pass  # the store was closed first; its contexts keep the tier
        if self.session_tier is not None:
            self.session_tier.stop()
        if self.key_sync is not None:
            self.key_sync.stop()

    def __enter__(self) -> RedisLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connect_server(
    url: str | redis.Redis | redis.ConnectionPool,
    *,
    ring: TicketKeyRing | None = None,
    store: SessionStore | None = None,
    name: str = "default",
    refresh: float = DEFAULT_REFRESH,
    timeout: float = DEFAULT_TIMEOUT,
    master_key: bytes | str | None = None,
    insecure_unsealed: bool = False,
    local_rotation: bool = False,
    rotation_period: float | None = None,
    acceptance_window: float | None = None,
    max_queue: int = 10000,
    require_redis: bool = False,
    client_kwargs: Mapping[str, Any] | None = None,
    start: bool = True,
) -> RedisLink:
    """Share a server's ticket keys and sessions with every server using the same
    Redis and ``name``.

    Call it in the process that made the ring and store, after making them and
    BEFORE forking workers: the key sync runs in this process (workers share the
    ring's memory), and the session tier attached here is inherited by forked
    workers. Spawned workers call :func:`connect_worker` for their store.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://...`` (TLS).
        ring: the server's key ring (``None``: tickets off, sessions only).
        store: the server's session store (``None``: keys only).
        name: the service; servers share keys and sessions only with the same name.
        refresh: seconds between key polls (see :class:`KeySync`); the session tier
            retries Redis within ``min(refresh, 1)`` seconds after a failure.
        timeout: the longest a handshake waits for a Redis session lookup.
        master_key: seal keys and sessions in Redis under this key (required, unless
            ``insecure_unsealed``).
        insecure_unsealed: keep them in the clear, knowingly (see the module notes).
        local_rotation, rotation_period, acceptance_window: see :class:`KeySync`.
        max_queue: see :class:`SessionTier`.
        require_redis: raise if Redis cannot be reached at start.
        client_kwargs: extra redis-py connection arguments.
        start: run the key sync's thread and the tier's writer in this process
            (default). ``False`` starts no thread here: call :meth:`RedisLink.poll`
            from the master's loop; forked workers still get their writers. This is
            how a pre-fork master forks without threads (CPython 3.12+ warns when
            a multi-threaded process forks, and a child can inherit a held lock).

    Raises:
        ValueError, TypeError: bad arguments (including neither ring nor store).
        RedisBackendError, MasterKeyError: see :class:`KeySync`.
    """
    if ring is None and store is None:
        raise ValueError("connect_server() needs a ring, a store or both")
    if store is not None and not isinstance(store, SessionStore):
        raise TypeError(f"store must be a SessionStore, not {type(store).__name__}")
    sync = tier = None
    try:
        if ring is not None:
            sync = KeySync(
                ring,
                url,
                name=name,
                refresh=refresh,
                master_key=master_key,
                insecure_unsealed=insecure_unsealed,
                local_rotation=local_rotation,
                rotation_period=rotation_period,
                acceptance_window=acceptance_window,
                timeout=min(2.0, max(refresh, 0.05)),
                require_redis=require_redis,
                client_kwargs=client_kwargs,
                start=start,
            )
        if store is not None:
            tier = connect_worker(
                url,
                store=store,
                name=name,
                timeout=timeout,
                master_key=master_key,
                insecure_unsealed=insecure_unsealed,
                max_queue=max_queue,
                retry=min(refresh, 1.0),
                require_redis=require_redis,
                client_kwargs=client_kwargs,
                start=start,
            )
    except BaseException:
        if sync is not None:
            sync.stop()
        raise
    return RedisLink(sync, tier, store)


def connect_worker(
    url: str | redis.Redis | redis.ConnectionPool,
    *,
    store: SessionStore,
    name: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    master_key: bytes | str | None = None,
    insecure_unsealed: bool = False,
    max_queue: int = 10000,
    retry: float = 1.0,
    require_redis: bool = False,
    client_kwargs: Mapping[str, Any] | None = None,
    start: bool = True,
) -> SessionTier:
    """Attach a Redis session tier to ``store`` in this process (a spawned worker,
    or any process that was not forked from one that attached it). Returns the tier;
    ``tier.stop()`` and ``store.set_remote(None)`` undo it. ``start``: see
    :class:`SessionTier`.

    Raises:
        RedisBackendError, MasterKeyError: see :meth:`SessionTier.check`.
    """
    tier = SessionTier(
        url,
        name=name,
        timeout=timeout,
        master_key=master_key,
        insecure_unsealed=insecure_unsealed,
        max_queue=max_queue,
        retry=retry,
        client_kwargs=client_kwargs,
        start=start,
    )
    try:
        tier.check(require_redis=require_redis)
        store.set_remote(tier)
    except BaseException:
        tier.stop(flush=0)
        raise
    return tier

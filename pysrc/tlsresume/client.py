"""Client session cache: automatic TLS session resumption for Python clients.

One call gives a client context that resumes sessions on every new connection to a
server it has talked to before, with ``http.client``, urllib3/requests, httpx,
aiohttp or asyncio, unchanged::

    ctx = tlsresume.client_context()                 # an ssl.SSLContext
    urllib3.PoolManager(ssl_context=ctx)             # or httpx.Client(verify=ctx), ...

Sessions are OpenSSL session objects held by the C core, keyed by (namespace,
server hostname, port). OpenSSL's client new-session callback stores them (TLS 1.3
tickets too, which arrive after the handshake); wrapping a new connection sets the
best one on it directly (no DER round trip, no "same context" restriction). TLS 1.3
tickets are used once each; a TLS 1.2 session is reused until a newer one replaces
it.

**The safety rule.** A session is offered only to a connection with the same
namespace, server hostname and port, made through a context with the same client
certificate, and only if the connection that made the session authenticated the
server at least as strictly as the new context demands (levels: not verified <
chain verified < chain and hostname verified) under the same trust configuration
(every certificate and CRL in the context's store, CA or not; verify mode and flags;
hostname checking; CA directories by path and listing), and only to a connection
that could negotiate it (its version, cipher and extended master secret enabled,
the same SNI), so an offer never turns into a failed handshake. A session from an
unverified connection is therefore never offered to a verifying context: resuming it would skip the
certificate check the context asks for.

**Ports.** ``wrap_socket`` takes the port from :func:`session_port` if set, else
from the HTTP CONNECT tunnel being wrapped when the client is http.client,
urllib3/requests or httpx (the target's port, not the proxy's), else from the
socket's peer address. ``wrap_bio`` (asyncio, aiohttp, anyio/httpx async) has no
socket: the port is the ``port=`` argument of :meth:`ClientContext.wrap_bio`, else
the value set with :func:`session_port`, else a recognised tunnel's target port
(TLS in TLS through an HTTPS proxy), else 0, meaning "port unknown". Port-0 sessions are kept apart
from every real port, so plain sockets and asyncio never share, but all ports of
one host reached through ``wrap_bio`` share one bucket; give those contexts a
namespace per service (``session_namespace``) or use :func:`session_port` when
that matters.

Defaults: 256 servers (rustls's choice; Go keeps 64, Node's agent 100,
libwebsockets 10, all per client object, while one Python process often talks to
hundreds of hosts through one pool; a session is a few hundred bytes plus
certificates shared between tickets), 8 tickets per server (rustls; enough for a
pool opening several connections at once, since each TLS 1.3 ticket is used once),
a 16 MiB memory budget for all sessions (``max_bytes``; least recently used
servers are evicted to stay within it, whatever servers send), and no TTL of our
own: a session lives as long as its own lifetime and the server's
ticket lifetime hint allow, at most 7 days (RFC 8446).

One module (over 500 lines) because the cache, its file format and the drop-in
context share one C handle and its locking; splitting it into ``client/`` is planned.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._binding import check, ffi, lib, ssl_ctx_pointer
from ._clientkeys import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TICKETS_PER_HOST,
    KEY_SIZE,
    LEVEL_NAMES,
    NAME_MAX,
    VERIFY_CHAIN,
    VERIFY_HOSTNAME,
    VERIFY_NONE,
    CacheContextBase,
    CachedSession,
    _CacheSSLSocket,
    _check_max_bytes,
    _check_max_entries,
    _check_tickets,
    _check_ttl,
    _get_check_hostname,
    _get_host_flags,
    _get_verify_flags,
    _get_verify_mode,
    _name,
    default_context_as,
    generate_cache_key,
    read_cache_key,
    session_port,
)
from ._files import read_regular, write_private
from .errors import ContextError, CoreError

__all__ = [
    "ClientSessionCache",
    "ClientContext",
    "CachedSession",
    "client_context",
    "session_port",
    "offered",
    "offered_ticket",
    "generate_cache_key",
    "read_cache_key",
    "session_lifetime",
    "session_deadline",
    "may_offer",
    "Profile",
    "VERIFY_NONE",
    "VERIFY_CHAIN",
    "VERIFY_HOSTNAME",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TICKETS_PER_HOST",
    "DEFAULT_MAX_BYTES",
]

log = logging.getLogger("tlsresume.client")


#: Verification levels, weakest first.
_LEVEL_NAMES = LEVEL_NAMES
_PROTOCOLS = {0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}

_COUNTERS = (
    ("connections", lib.TLSR_CC_CONNECTIONS),
    ("offered", lib.TLSR_CC_OFFERED),
    ("resumed", lib.TLSR_CC_RESUMED),
    ("rejected", lib.TLSR_CC_REJECTED),
    ("incomplete", lib.TLSR_CC_INCOMPLETE),
    ("misses", lib.TLSR_CC_MISSES),
    ("withheld_unsafe", lib.TLSR_CC_UNSAFE),
    ("stored", lib.TLSR_CC_STORED),
    ("captured_at_close", lib.TLSR_CC_AT_CLOSE),
    ("loaded", lib.TLSR_CC_LOADED),
    ("replaced", lib.TLSR_CC_REPLACED),
    ("evicted", lib.TLSR_CC_EVICTED),
    ("expired", lib.TLSR_CC_EXPIRED),
    ("unusable", lib.TLSR_CC_UNUSABLE),
    ("disabled", lib.TLSR_CC_DISABLED),
    ("unfit", lib.TLSR_CC_UNFIT),
    ("oversize", lib.TLSR_CC_OVERSIZE),
)

# _ssl._SSLSocket: PyObject_HEAD, the socket weakref, then SSL *
# (docs/design.md, "Facts the code relies on").
_SSL_OFFSET = object.__basicsize__ + ffi.sizeof("void *")
_NAME_MAX = NAME_MAX
_ZERO_FP = bytes(64)

_FILE_MAGIC = b"TLSRCC1"
_MAGIC_SEALED = _FILE_MAGIC + b"E"
_MAGIC_PLAIN = _FILE_MAGIC + b"P"
_NONCE_SIZE = 12
_FORMAT = 1

# ---- policy (pure; the C core enforces exactly these) ---------------------------------


@dataclass(frozen=True)
class Profile:
    """How a session's server was authenticated, or what a context demands.

    Attributes:
        level: ``VERIFY_NONE``, ``VERIFY_CHAIN`` or ``VERIFY_HOSTNAME``.
        trust: SHA-256 fingerprint of the trust configuration.
        ident: SHA-256 fingerprint of the client certificate (zeros: none).
    """

    level: int
    trust: bytes = bytes(32)
    ident: bytes = bytes(32)


def _fp(profile: Profile) -> Any:
    fp = ffi.new("tlsr_client_fp *")
    ffi.memmove(fp.trust, profile.trust, 32)
    ffi.memmove(fp.ident, profile.ident, 32)
    return fp


def may_offer(session: Profile, context: Profile) -> bool:
    """The safety rule: may a session made under ``session`` be offered to a
    connection of a context demanding ``context``?

    Same client identity always; a level at least the context's; and, when the
    context verifies at all, the same trust configuration.
    """
    return bool(lib.tlsr_client_may_offer(session.level, _fp(session), context.level, _fp(context)))


def session_lifetime(now: float, time_: float, timeout: float, hint: float = 0) -> float:
    """Seconds a session still has at ``now``, from its own start ``time_`` and
    ``timeout`` and the server's ticket lifetime ``hint`` (0: none), at most 7 days."""
    life: int = lib.tlsr_client_session_life(int(now * 1000), int(time_), int(timeout), int(hint))
    return life / 1000


def session_deadline(stored: float, expires: float, ttl: float | None) -> float:
    """When a session stored at ``stored`` whose own lifetime ends at ``expires`` stops
    being offered under a cache TTL of ``ttl`` seconds (``None``: no TTL)."""
    ttl_ms = -1 if ttl is None else int(ttl * 1000)
    deadline: int = lib.tlsr_client_deadline(int(stored * 1000), int(expires * 1000), ttl_ms)
    return deadline / 1000


# ---- keys --------------------------------------------------------------------------


def check_cache_key(
    key: bytes | None,
    insecure_plaintext: bool,
    *,
    key_arg: str = "key",
    plaintext_arg: str = "insecure_plaintext",
) -> bytes | None:
    """The one check of a cache file key (``key_arg`` and ``plaintext_arg`` name the
    caller's parameters in the messages).

    Returns:
        ``key`` as bytes, or ``None`` when there is none and plaintext is allowed.

    Raises:
        ValueError: no key and no plaintext opt-in, or not 32 bytes.
        TypeError: ``key`` is not bytes.
    """
    if key is None:
        if not insecure_plaintext:
            raise ValueError(
                f"a session cache file holds the sessions' master secrets: give {key_arg}= "
                f"({KEY_SIZE} bytes, e.g. generate_cache_key()) or, knowingly, "
                f"{plaintext_arg}=True"
            )
        return None
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{key_arg} must be bytes, not {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"{key_arg} must be {KEY_SIZE} bytes (AES-256-GCM), not {len(key)}")
    return bytes(key)


# ---- the cache ---------------------------------------------------------------------


class ClientSessionCache:
    """TLS sessions of the servers a client talked to, for resuming new connections.

    (This is the C cache, ``backend == "c"``; on a Python whose OpenSSL the core
    cannot reach, ``tlsresume.ClientSessionCache`` is :mod:`tlsresume.pyclient`'s.)

    Keyed by (namespace, server hostname, port); servers are kept most recently used
    first and the least recently used is dropped when there are ``max_entries``.
    Thread-safe: the structure lives in C behind a mutex, and OpenSSL fills it from
    whatever thread reads the connection.

    Use it through :func:`client_context` (or :class:`ClientContext`); see the module
    documentation for the safety rule and how the port is found.

    Args:
        max_entries: servers kept (default 256).
        ttl: seconds after which a cached session is no longer offered, on top of
            the session's own lifetime and the server's ticket lifetime hint
            (``None``: those alone, at most 7 days).
        tickets_per_host: TLS 1.3 tickets kept per server, each used once (default
            8, at most 64).
        max_bytes: memory budget for all sessions together (default 16 MiB, at
            least 64 KiB). Each session is charged its encoded size (ticket,
            secrets, server certificate), the server's certificate chain and 1 KiB;
            least recently used servers are evicted to stay within it, and a
            session charged more than an eighth of it is not kept. A server
            cannot push the cache past it however many or large tickets it sends.
        clock: a function returning seconds since the epoch, for tests that drive
            time. Sessions captured inside OpenSSL are then stamped with the clock's
            value at the latest cache operation (the wrap that started the
            connection).

    Raises:
        ValueError: a limit is out of range.
    """

    backend = "c"

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float | None = None,
        *,
        tickets_per_host: int = DEFAULT_TICKETS_PER_HOST,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _check_max_entries(max_entries)
        _check_ttl(ttl)
        _check_max_bytes(max_bytes)
        _check_tickets(tickets_per_host)
        ptr = lib.tlsr_client_cache_new(
            max_entries, tickets_per_host, max_bytes, int(clock is not None)
        )
        if ptr == ffi.NULL:
            raise CoreError("cannot create a client session cache (out of memory?)")
        self._ptr = ffi.gc(ptr, lib.tlsr_client_cache_release)
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._tickets = tickets_per_host
        self._configure()

    # ---- configuration -----------------------------------------------------------

    def _now_ms(self, now: float | None = None) -> int:
        return int((self._clock() if now is None else now) * 1000)

    def _configure(self) -> None:
        ttl_ms = -1 if self._ttl is None else int(self._ttl * 1000)
        lib.tlsr_client_cache_configure(
            self._ptr, self._max_entries, self._max_bytes, ttl_ms, self._now_ms()
        )

    @property
    def max_entries(self) -> int:
        """Servers kept; lowering it drops the least recently used at once."""
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        _check_max_entries(value)
        self._max_entries = value
        self._configure()

    @property
    def max_bytes(self) -> int:
        """The memory budget in bytes; lowering it evicts at once."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        _check_max_bytes(value)
        self._max_bytes = value
        self._configure()

    @property
    def ttl(self) -> float | None:
        """Seconds a session is offered after it was stored (``None``: no TTL of our own)."""
        return self._ttl

    @ttl.setter
    def ttl(self, value: float | None) -> None:
        _check_ttl(value)
        self._ttl = value
        self._configure()

    @property
    def tickets_per_host(self) -> int:
        """TLS 1.3 tickets kept per server (fixed at creation)."""
        return self._tickets

    def disable(self, namespace: str) -> None:
        """Stop caching for ``namespace``: its sessions are dropped, and its
        connections are neither offered nor store sessions until :meth:`enable`."""
        check(
            lib.tlsr_client_cache_disable(self._ptr, _name(namespace, "namespace"), 1),
            f"disabling namespace {namespace!r}",
        )

    def enable(self, namespace: str) -> None:
        """Undo :meth:`disable` for ``namespace``."""
        lib.tlsr_client_cache_disable(self._ptr, _name(namespace, "namespace"), 0)

    def is_enabled(self, namespace: str) -> bool:
        """Whether ``namespace`` caches sessions."""
        return not lib.tlsr_client_cache_is_disabled(self._ptr, _name(namespace, "namespace"))

    # ---- looking at it -----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since creation, plus the current ``servers``, ``sessions`` and
        ``bytes`` (what the sessions are charged against ``max_bytes``).

        ``offered``: sessions set on new connections; ``resumed`` / ``rejected``:
        of those, accepted by the server or answered with a full handshake (counted
        when the outcome is known: at the first ticket, or when the connection is
        freed); ``incomplete``: offered but the handshake never finished;
        ``misses``: connections with nothing to offer; ``withheld_unsafe``:
        lookups that held a session back under the safety rule; ``stored``,
        ``captured_at_close`` (the fallback), ``loaded``: sessions in; ``replaced``,
        ``evicted``, ``expired``, ``unusable`` (OpenSSL marked them not resumable,
        e.g. after a fatal alert): sessions out; ``unfit``: lookups that skipped
        sessions the connection could not negotiate (cipher, version, extended
        master secret or server name differ: kept for the contexts that can);
        ``oversize``: sessions not kept because one alone exceeded an eighth of
        ``max_bytes``; ``disabled``: connections in a disabled namespace;
        ``connections``: connections registered.
        """
        out = ffi.new("uint64_t[]", lib.TLSR_CC_NCOUNTERS)
        lib.tlsr_client_stats(self._ptr, out, lib.TLSR_CC_NCOUNTERS)
        stats = {name: int(out[index]) for name, index in _COUNTERS}
        servers, sessions = ffi.new("size_t *"), ffi.new("size_t *")
        lib.tlsr_client_cache_size(self._ptr, servers, sessions)
        stats["servers"] = int(servers[0])
        stats["sessions"] = int(sessions[0])
        stats["bytes"] = int(lib.tlsr_client_cache_bytes(self._ptr))
        return stats

    def __len__(self) -> int:
        """The number of servers with at least one session."""
        return self.stats()["servers"]

    def _snapshot(self) -> list[_EntryRef]:
        n = self.stats()["sessions"] + 16
        while True:
            out = ffi.new("tlsr_client_entry[]", n)
            got = lib.tlsr_client_cache_snapshot(self._ptr, out, n)
            if got < n:
                return [_EntryRef(out, i) for i in range(max(got, 0))]
            for i in range(got):  # it grew meanwhile: try again, larger
                lib.tlsr_client_session_release(out[i].session)
            n *= 2

    def sessions(self) -> list[CachedSession]:
        """Every cached session: servers most recently used first, each server's
        sessions newest first."""
        result = []
        for ref in self._snapshot():
            e = ref.entry
            stored, expires = e.stored_ms / 1000, e.expires_ms / 1000
            result.append(
                CachedSession(
                    namespace=ffi.string(e.ns).decode(),
                    host=ffi.string(e.host).decode(),
                    port=e.port,
                    protocol=_PROTOCOLS.get(e.protocol, hex(e.protocol)),
                    verification=_LEVEL_NAMES.get(e.level, str(e.level)),
                    single_use=bool(e.single_use),
                    stored=stored,
                    expires=expires,
                    deadline=session_deadline(stored, expires, self._ttl),
                )
            )
            ref.release()
        return result

    def servers(self) -> list[tuple[str, str, int]]:
        """The (namespace, host, port) keys, most recently used first."""
        seen: dict[tuple[str, str, int], None] = {}
        for s in self.sessions():
            seen.setdefault((s.namespace, s.host, s.port), None)
        return list(seen)

    def purge(self, now: float | None = None) -> int:
        """Drop expired sessions now (lookups drop them as they meet them anyway).
        Returns how many."""
        return int(lib.tlsr_client_cache_purge(self._ptr, self._now_ms(now)))

    def clear(self) -> None:
        """Drop every session (counters are kept)."""
        lib.tlsr_client_cache_clear(self._ptr)

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<ClientSessionCache servers={s['servers']}/{self._max_entries} "
            f"sessions={s['sessions']} bytes={s['bytes']}/{self._max_bytes} "
            f"ttl={self._ttl}>"
        )

    # ---- connections ---------------------------------------------------------------

    def _attach(
        self, ctx: ClientContext, sslobj: Any, host: str, port: int, offer: bool, level: int
    ) -> int:
        ssl_ptr = ffi.cast("SSL **", id(sslobj) + _SSL_OFFSET)[0]
        rc: int = lib.tlsr_client_attach(
            self._ptr,
            ctx._tlsr_pointer(),
            ssl_ptr,
            ctx._tlsr_ns,
            host.encode("ascii"),
            port,
            level,
            ctx._tlsr_fingerprints(),
            int(offer),
            int(self._clock() * 1000),
        )
        if rc < 0:
            raise ContextError(
                "could not register the connection with the session cache (the SSL object "
                f"was not where this CPython {sys.version.split()[0]} was expected to keep it)"
            )
        return rc

    # ---- save and load ---------------------------------------------------------------

    def save(
        self,
        path: str | os.PathLike[str],
        key: bytes | None = None,
        *,
        insecure_plaintext: bool = False,
    ) -> int:
        """Write every live session to ``path``, atomically, mode 0600.

        The file holds each session's master secret: anyone who reads it can decrypt
        traffic of those sessions, and anyone who can write it can make this client
        resume a session they know, i.e. impersonate the server. So it is sealed with
        AES-256-GCM under ``key`` (32 bytes you keep elsewhere); plaintext needs the
        explicit ``insecure_plaintext=True``.

        Returns:
            The number of sessions written.

        Raises:
            ValueError, TypeError: no key (without the opt-in), or a bad key.
            OSError: the file cannot be written (the old file, if any, stays).
        """
        key = check_cache_key(key, insecure_plaintext)
        self.purge()
        records = []
        for ref in self._snapshot():
            e = ref.entry
            try:
                der = _session_der(e.session)
            finally:
                ref.release()
            if der is None:
                continue
            records.append(
                {
                    "ns": ffi.string(e.ns).decode(),
                    "host": ffi.string(e.host).decode(),
                    "port": e.port,
                    "level": e.level,
                    "ems": e.ems,
                    "stored_ms": e.stored_ms,
                    "expires_ms": e.expires_ms,
                    "trust": bytes(e.fp.trust).hex(),
                    "ident": bytes(e.fp.ident).hex(),
                    "der": base64.b64encode(der).decode("ascii"),
                }
            )
        payload = json.dumps(
            {"format": _FORMAT, "saved_ms": self._now_ms(), "sessions": records},
            separators=(",", ":"),
        ).encode()
        if key is None:
            blob = _MAGIC_PLAIN + payload
        else:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            nonce = os.urandom(_NONCE_SIZE)
            blob = _MAGIC_SEALED + nonce + AESGCM(key).encrypt(nonce, payload, _MAGIC_SEALED)
        write_private(os.fspath(path), blob)
        return len(records)

    def load(
        self,
        path: str | os.PathLike[str],
        key: bytes | None = None,
        *,
        insecure_plaintext: bool = False,
    ) -> int:
        """Add the sessions saved in ``path`` (expired ones are dropped).

        Never raises for the file's content: a missing file loads nothing; a
        corrupt, truncated or tampered file (too large, nested too deeply, values
        out of range), something else than a regular file (a FIFO, a device), the
        wrong key, or a plaintext file without ``insecure_plaintext=True`` logs a
        warning and loads nothing.

        Returns:
            The number of loaded sessions the cache holds afterwards (one evicted at
            once, by ``max_entries``, ``max_bytes`` or ``tickets_per_host``, does not
            count).

        Raises:
            ValueError, TypeError: no key (without the opt-in), or a bad key.
        """
        key = check_cache_key(key, insecure_plaintext)
        where = os.fspath(path)
        try:
            records = _read_records(where, key, insecure_plaintext)
        except FileNotFoundError:
            log.debug("no session cache file at %s", where)
            return 0
        except (OSError, ValueError) as exc:
            log.warning("session cache %s not loaded: %s", where, exc)
            return 0
        now = self._now_ms()
        added: collections.Counter[tuple[Any, ...]] = collections.Counter()
        entry = ffi.new("tlsr_client_entry *")
        for r in reversed(records):  # oldest first, so the newest ends up in front
            entry.ns = r["ns"]
            entry.host = r["host"]
            entry.port = r["port"]
            entry.level = r["level"]
            entry.ems = r["ems"]
            entry.stored_ms = r["stored_ms"]
            entry.expires_ms = r["expires_ms"]
            ffi.memmove(entry.fp.trust, r["trust"], 32)
            ffi.memmove(entry.fp.ident, r["ident"], 32)
            der = r["der"]
            if lib.tlsr_client_cache_insert(self._ptr, entry, der, len(der), now) == 1:
                added[_entry_key(entry)] += 1
        kept = self._still_held(added)
        log.debug("loaded %d of %d sessions from %s", kept, len(records), where)
        return kept

    def _still_held(self, inserted: collections.Counter[tuple[Any, ...]]) -> int:
        """How many of the ``inserted`` entries (by :func:`_entry_key`) the cache
        holds now: a later insert may have evicted an earlier one."""
        if not inserted:
            return 0
        left = collections.Counter(inserted)
        held = 0
        for ref in self._snapshot():
            key = _entry_key(ref.entry)
            ref.release()
            if left[key] > 0:
                left[key] -= 1
                held += 1
        return held

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        key: bytes | None = None,
        *,
        insecure_plaintext: bool = False,
        **kwargs: Any,
    ) -> ClientSessionCache:
        """A new cache (``kwargs`` as for the constructor) filled by :meth:`load`."""
        cache = cls(**kwargs)
        cache.load(path, key, insecure_plaintext=insecure_plaintext)
        return cache

    # ---- contexts ----------------------------------------------------------------------

    def attach(self, ctx: ssl.SSLContext, namespace: str | None = None) -> ClientContext:
        """Make an existing client ``ssl.SSLContext`` use this cache, in place.

        For contexts a library builds itself (e.g. urllib3's
        ``create_urllib3_context()``): the object becomes a :class:`ClientContext`
        with every setting kept. Returns it.

        Raises:
            TypeError: ``ctx`` is not an ``ssl.SSLContext``, or is another subclass.
            ContextError: ``ctx`` is a server context.
        """
        if type(ctx) is ssl.SSLContext:
            ctx.__class__ = ClientContext
        elif not isinstance(ctx, ClientContext):
            raise TypeError(
                "attach() converts plain ssl.SSLContext objects; for a subclass "
                f"({type(ctx).__qualname__}) use ClientContext or client_context()"
            )
        assert isinstance(ctx, ClientContext)
        if namespace is not None:
            ctx.session_namespace = namespace
        ctx.session_cache = self
        return ctx


class _EntryRef:
    """One snapshot entry whose session reference must be released once."""

    __slots__ = ("_array", "entry")

    def __init__(self, array: Any, index: int) -> None:
        self._array = array
        self.entry = array[index]

    def release(self) -> None:
        if self.entry.session != ffi.NULL:
            lib.tlsr_client_session_release(self.entry.session)
            self.entry.session = ffi.NULL

    def __del__(self) -> None:
        self.release()


def _entry_key(e: Any) -> tuple[Any, ...]:
    """What identifies one loaded session among the cache's entries."""
    return (
        ffi.string(e.ns),
        ffi.string(e.host),
        e.port,
        e.stored_ms,
        e.expires_ms,
        bytes(e.fp.trust),
        bytes(e.fp.ident),
    )


def _session_der(session: Any) -> bytes | None:
    n = lib.tlsr_client_session_der(session, ffi.NULL, 0)
    if n == 0:
        return None
    buf = ffi.new("uint8_t[]", n)
    if lib.tlsr_client_session_der(session, buf, n) != n:
        return None
    return bytes(ffi.buffer(buf, n))


#: Largest session cache file :meth:`ClientSessionCache.load` reads (the cache holds
#: at most 1 TiB only in theory; 16 MiB by default, and base64 adds a third).
MAX_CACHE_FILE_BYTES = 64 << 20

_INT64_MAX = (1 << 63) - 1


def _read_records(path: str, key: bytes | None, insecure_plaintext: bool) -> list[dict[str, Any]]:
    """Read, authenticate and validate a cache file. Raises ValueError with the reason
    (OSError if it cannot be read)."""
    blob, st = read_regular(path, MAX_CACHE_FILE_BYTES)
    if len(blob) > MAX_CACHE_FILE_BYTES:
        raise ValueError(f"larger than {MAX_CACHE_FILE_BYTES} bytes, not a session cache file")
    if blob.startswith(_MAGIC_SEALED):
        if key is None:
            raise ValueError("the file is encrypted and no key was given")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        head = len(_MAGIC_SEALED)
        nonce, sealed = blob[head : head + _NONCE_SIZE], blob[head + _NONCE_SIZE :]
        if len(nonce) != _NONCE_SIZE or len(sealed) < 16:
            raise ValueError("the file is truncated")
        try:
            payload = AESGCM(key).decrypt(nonce, sealed, _MAGIC_SEALED)
        except InvalidTag:
            raise ValueError("wrong key, or the file was truncated or tampered with") from None
    elif blob.startswith(_MAGIC_PLAIN):
        if not insecure_plaintext:
            raise ValueError(
                "the file is not encrypted; load it only with "
                "insecure_plaintext=True (anyone who could write it could "
                "impersonate the servers in it)"
            )
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError(
                "the plaintext file is writable by others or owned by another user; refusing it"
            )
        payload = blob[len(_MAGIC_PLAIN) :]
    else:
        raise ValueError("not a tlsresume session cache file (bad header)")
    try:
        doc = json.loads(payload)
    except RecursionError:  # the decoder's own bound on nesting (our files nest 3 deep)
        raise ValueError("malformed content (JSON nested too deeply)") from None
    try:
        if doc.get("format") != _FORMAT:
            raise ValueError(f"unsupported format {doc.get('format')!r}")
        return [_validate(r) for r in doc["sessions"]]
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed content ({type(exc).__name__}: {exc})") from None


def _validate(r: dict[str, Any]) -> dict[str, Any]:
    out = {
        "ns": _name(r["ns"], "namespace"),
        "host": _name(r["host"], "host"),
        "port": r["port"],
        "level": r["level"],
        # Files from before this field: assume the extended master secret was used,
        # so such a session is never offered where it would have to go without it.
        "ems": r.get("ems", 1),
        "stored_ms": r["stored_ms"],
        "expires_ms": r["expires_ms"],
        "trust": bytes.fromhex(r["trust"]),
        "ident": bytes.fromhex(r["ident"]),
        "der": base64.b64decode(r["der"], validate=True),
    }
    ints = ("port", "level", "ems", "stored_ms", "expires_ms")
    if (
        not all(type(out[k]) is int for k in ints)
        or not 0 <= out["port"] <= 65535
        or out["level"] not in _LEVEL_NAMES
        or out["ems"] not in (0, 1)
        or not 0 <= out["stored_ms"] <= _INT64_MAX
        or not 0 <= out["expires_ms"] <= _INT64_MAX
        or len(out["trust"]) != 32
        or len(out["ident"]) != 32
        or not out["der"]
    ):
        raise ValueError("malformed session record")
    return out


# ---- the client context -------------------------------------------------------------

_DEFAULT_PATHS = "<default verify paths>"


def _trust_dir(path: str) -> str | None:
    """The CA directory behind a trust path entry (the default one for the
    system's default verify paths, as OpenSSL finds it: SSL_CERT_DIR first)."""
    if path == _DEFAULT_PATHS:
        return ssl.get_default_verify_paths().capath
    return path


def _dir_listing_digest(path: str | None) -> bytes:
    """SHA-256 of a CA directory's listing: every entry's name, and the size,
    modification time and inode of what it points to.

    OpenSSL loads a CA directory lazily: a certificate enters the context's store
    only when a verification looks it up, so the store does not show what the
    directory makes the context trust. The listing does: two contexts reading
    the same directory with the same listing trust the same certificates, and a
    certificate added to or removed from it (``update-ca-certificates``) changes
    the fingerprint, so sessions verified before the change are not offered
    after it. O(entries); computed once per change of the context's trust."""
    digest = hashlib.sha256()
    if path is None:
        return digest.digest()
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        digest.update(f"unreadable {exc.errno}".encode())
        return digest.digest()
    for entry in entries:
        digest.update(entry.name.encode("utf-8", "surrogateescape") + b"\0")
        try:
            st = entry.stat()
        except OSError:
            digest.update(b"dangling\0")
            continue
        digest.update(b"%d %d %d\0" % (st.st_size, st.st_mtime_ns, st.st_ino))
    return digest.digest()


class ClientContext(CacheContextBase):
    """An ``ssl.SSLContext`` for clients that resumes sessions from a
    :class:`ClientSessionCache` on every new connection, through ``wrap_socket``
    and ``wrap_bio`` alike. Everything else is ``ssl.SSLContext``.

    Usually made by :func:`client_context`. Direct use::

        ctx = ClientContext(cache=ClientSessionCache())   # PROTOCOL_TLS_CLIENT
        ctx.load_verify_locations("ca.pem")

    Attributes:
        session_cache: the cache, or ``None`` (no caching).
        session_namespace: the namespace of this context's sessions (default ``""``).
            Contexts that should never share sessions with each other although they
            talk to the same servers get different namespaces.
    """

    sslsocket_class = _CacheSSLSocket

    _tlsr_cache: ClientSessionCache | None = None
    _tlsr_ns: bytes = b""
    _tlsr_ptr: Any = None
    _tlsr_fp: Any = None
    _tlsr_fp_key: Any = None
    _tlsr_generation = 0
    _tlsr_trust_paths: frozenset[str] = frozenset()

    # ---- configuration -----------------------------------------------------------

    @property
    def session_cache(self) -> ClientSessionCache | None:
        return self._tlsr_cache

    @session_cache.setter
    def session_cache(self, cache: ClientSessionCache | None) -> None:
        if cache is not None:
            if not isinstance(cache, ClientSessionCache):
                raise TypeError(
                    f"session_cache must be a ClientSessionCache or None, not "
                    f"{type(cache).__name__}"
                )
            if self.protocol == ssl.PROTOCOL_TLS_SERVER:
                raise ContextError("a session cache is for client contexts")
            check(lib.tlsr_client_ctx_enable(self._tlsr_pointer()), "enabling the session cache")
        self._tlsr_cache = cache

    def _tlsr_pointer(self) -> Any:
        if self._tlsr_ptr is None:
            self._tlsr_ptr = ssl_ctx_pointer(self)
        return self._tlsr_ptr

    def _tlsr_changed(self) -> None:
        self._tlsr_generation += 1

    def _tlsr_fingerprints(self) -> Any:
        """The context's trust and identity fingerprints, recomputed only after a
        trust or certificate load or a change of verify mode, verify or hostname
        flags or hostname checking.

        Trust: OpenSSL's view (tlsr_ctx_trust_digest: verify mode, verify flags
        including partial-chain and CRL checking, depth, hostflags, and every
        certificate and CRL in the X509_STORE, CA or not) plus what CPython keeps
        outside the SSL_CTX (``check_hostname``), the security level, and for CA
        directories, which OpenSSL reads lazily, their paths and listings (see
        :func:`_dir_listing_digest`)."""
        key = (
            _get_verify_mode(self),
            _get_verify_flags(self),
            _get_host_flags(self),
            _get_check_hostname(self),
            self._tlsr_generation,
        )
        if self._tlsr_fp_key != key:
            fp = ffi.new("tlsr_client_fp *")
            store = ffi.new("uint8_t[32]")
            check(
                lib.tlsr_ctx_trust_digest(self._tlsr_pointer(), 0, store),
                "computing the context's trust digest",
            )
            trust = hashlib.sha256(b"tlsresume client trust v2\0")
            trust.update(ffi.buffer(store, 32))
            trust.update(bytes([bool(key[3])]))
            trust.update(getattr(self, "security_level", -1).to_bytes(4, "big", signed=True))
            for path in sorted(self._tlsr_trust_paths):
                trust.update(b"\0path\0" + path.encode("utf-8", "surrogateescape"))
                trust.update(_dir_listing_digest(_trust_dir(path)))
            ffi.memmove(fp.trust, trust.digest(), 32)
            n = lib.tlsr_client_ctx_cert_der(self._tlsr_pointer(), ffi.NULL, 0)
            if n:
                buf = ffi.new("uint8_t[]", n)
                lib.tlsr_client_ctx_cert_der(self._tlsr_pointer(), buf, n)
                ffi.memmove(fp.ident, hashlib.sha256(ffi.buffer(buf, n)).digest(), 32)
            self._tlsr_fp, self._tlsr_fp_key = fp, key
        return self._tlsr_fp

    def profile(self, server_hostname: str | None = "x") -> Profile:
        """What this context demands of a session (for connections with a server
        hostname unless ``server_hostname`` is ``None``)."""
        fp = self._tlsr_fingerprints()
        return Profile(self._tlsr_level(server_hostname), bytes(fp.trust), bytes(fp.ident))

    # Trust and identity changes invalidate the fingerprints.

    def load_verify_locations(
        self, cafile: Any = None, capath: Any = None, cadata: Any = None
    ) -> None:
        # urllib3 and requests call this on every connection with the same file;
        # only a real change of the store (or a new CA path) costs a recomputation.
        before = self.cert_store_stats()
        super().load_verify_locations(cafile, capath, cadata)
        paths = self._tlsr_trust_paths
        if capath is not None:
            paths = paths | {os.fsdecode(capath)}
        if paths != self._tlsr_trust_paths or self.cert_store_stats() != before:
            self._tlsr_trust_paths = paths
            self._tlsr_changed()

    def set_default_verify_paths(self) -> None:
        super().set_default_verify_paths()
        self._tlsr_trust_paths = self._tlsr_trust_paths | {_DEFAULT_PATHS}
        self._tlsr_changed()

    def load_default_certs(self, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        super().load_default_certs(purpose)
        self._tlsr_trust_paths = self._tlsr_trust_paths | {_DEFAULT_PATHS}
        self._tlsr_changed()

    def load_cert_chain(self, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        super().load_cert_chain(certfile, keyfile, password)
        self._tlsr_changed()

    # ---- the hooks: what SSLContext.wrap_socket / wrap_bio call ----------------------

    def _wrap_socket(
        self,
        sock: Any,
        server_side: bool,
        server_hostname: str | None = None,
        *,
        owner: Any = None,
        session: Any = None,
    ) -> Any:
        sslobj = super()._wrap_socket(  # type: ignore[misc]
            sock,
            server_side,
            server_hostname,
            owner=owner,
            session=session,
        )
        cache = self._tlsr_cache
        if cache is not None and not server_side:
            host, port = self._tlsr_socket_key(sock, server_hostname)
            if port is not None and host is not None:
                self._tlsr_register(cache, sslobj, host, port, session is None, server_hostname)
        return sslobj

    def _wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool,
        server_hostname: str | None = None,
        *,
        owner: Any = None,
        session: Any = None,
    ) -> Any:
        sslobj = super()._wrap_bio(  # type: ignore[misc]
            incoming,
            outgoing,
            server_side,
            server_hostname,
            owner=owner,
            session=session,
        )
        cache = self._tlsr_cache
        if cache is not None and not server_side and server_hostname is not None:
            self._tlsr_register(
                cache,
                sslobj,
                server_hostname,
                self._tlsr_bio_port(),
                session is None,
                server_hostname,
            )
        return sslobj

    def _tlsr_register(
        self,
        cache: ClientSessionCache,
        sslobj: Any,
        host: str,
        port: int,
        offer: bool,
        server_hostname: str | None,
    ) -> None:
        key_host = self._tlsr_key_host(host)
        if key_host is None:
            return
        cache._attach(self, sslobj, key_host, port, offer, self._tlsr_level(server_hostname))


def client_context(
    cache: ClientSessionCache | None = None,
    *,
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    cafile: str | os.PathLike[str] | None = None,
    capath: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    namespace: str = "",
) -> ClientContext:
    """``ssl.create_default_context()`` with a session cache: a drop-in client context.

    The context is exactly what this Python's ``ssl.create_default_context`` makes
    (verification, hostname check, minimum version, flags, ``SSLKEYLOGFILE``), as a
    :class:`ClientContext`. It works unchanged with ``http.client``,
    urllib3/requests (``ssl_context=``), httpx (``verify=``), aiohttp (``ssl=``)
    and ``asyncio.open_connection(ssl=)``, and resumes from the second connection
    to a server on.

    Args:
        cache: the cache to use; ``None`` makes a new one with the defaults. Share
            one cache between contexts to share sessions (the safety rule applies).
        purpose: must be ``ssl.Purpose.SERVER_AUTH`` (a client authenticating servers).
        cafile, capath, cadata: as for ``ssl.create_default_context``.
        namespace: the namespace of this context's sessions.

    Raises:
        ValueError: ``purpose`` is not SERVER_AUTH.
    """
    ctx = default_context_as(ClientContext, purpose, cafile, capath, cadata)
    assert isinstance(ctx, ClientContext)
    paths = set()
    if capath is not None:
        paths.add(os.fsdecode(capath))
    if not (cafile or capath or cadata):
        paths.add(_DEFAULT_PATHS)
    ctx._tlsr_trust_paths = frozenset(paths)
    ctx.session_namespace = namespace
    ctx.session_cache = cache if cache is not None else ClientSessionCache()
    return ctx


def _ssl_pointer(conn: ssl.SSLSocket | ssl.SSLObject) -> Any:
    sslobj = getattr(conn, "_sslobj", None)
    if sslobj is None:
        return None
    return ffi.cast("SSL **", id(sslobj) + _SSL_OFFSET)[0]


def offered(conn: ssl.SSLSocket | ssl.SSLObject) -> bool | None:
    """Whether the session cache offered a session to this connection (``None``: the
    connection is not registered with a cache)."""
    pointer = _ssl_pointer(conn)
    if pointer is None:
        return None
    rc = lib.tlsr_client_offered(pointer)
    return None if rc < 0 else bool(rc)


def offered_ticket(conn: ssl.SSLSocket | ssl.SSLObject) -> bytes | None:
    """The ticket of the session the cache offered to this connection: ``None`` if it
    offered none, ``b""`` for a session without a ticket (resumed by session ID).
    Whatever the server then did (``conn.session`` is the server's answer)."""
    pointer = _ssl_pointer(conn)
    if pointer is None:
        return None
    n = lib.tlsr_client_offered_ticket(pointer, ffi.NULL, 0)
    if n <= 0:
        return None if n < 0 else b""
    buf = ffi.new("uint8_t[]", n)
    lib.tlsr_client_offered_ticket(pointer, buf, n)
    return bytes(ffi.buffer(buf, n))

"""The client session cache in pure Python, for Pythons whose OpenSSL the C core
cannot reach (python-build-standalone, the Pythons uv installs, link OpenSSL
statically with hidden symbols).

``tlsresume.ClientSessionCache``, ``ClientContext`` and ``client_context`` come
from here when the core cannot be bound; the API is the same, with the same
safety rule, on the public ``ssl`` API only: after a handshake (and, for TLS 1.3,
after the reads that bring the server's tickets) the connection's
``SSLSocket.session`` is kept; a new connection to the same (namespace, host,
port) is wrapped with ``session=``. What this path cannot do, and why:

* **One context per session.** CPython refuses a session on a connection of
  another ``SSLContext`` ("Session refers to a different SSLContext"), so sessions
  are offered only to the context that made them, never shared between contexts
  (the C cache shares them under the safety rule).
* **No persistence.** Python's ``ssl`` gives no access to a session's bytes, so
  :meth:`ClientSessionCache.save` and :meth:`~ClientSessionCache.load` raise
  :class:`~tlsresume.OpenSSLUnavailableError`.
* **Sizes are estimates.** ``max_bytes`` charges each session a fixed 4 KiB (its
  real size is not visible from Python).
* **Cost.** A TLS 1.3 connection reads ``SSLSocket.session`` after each of its
  first reads until a ticket has arrived (one ``SSL_get1_session`` each); a TLS 1.2
  connection once, after the handshake.

The safety rule here: a session is offered only to the context that made it, for
the same (namespace, host, port), while that context's trust and verification
settings are unchanged since (any ``load_verify_locations``,
``load_default_certs``, ``set_default_verify_paths``, ``load_cert_chain`` or change
of ``verify_mode``, ``verify_flags`` or ``check_hostname`` withholds the sessions
made before), and only if the connection that made it verified the server at
least as strictly as the new one would (none < chain < hostname).

One module (over 500 lines) because the cache, its connection hooks and the drop-in
context share one per-connection record and must stay in step with each other.
"""

from __future__ import annotations

import collections
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._clientkeys import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TICKETS_PER_HOST,
    LEVEL_NAMES,
    VERIFY_NONE,
    CacheContextBase,
    CachedSession,
    _CacheSSLSocket,
    _check_max_bytes,
    _check_max_entries,
    _check_tickets,
    _check_ttl,
    _name,
    default_context_as,
    generate_cache_key,
    read_cache_key,
    session_port,
)
from .errors import ContextError, OpenSSLUnavailableError

__all__ = [
    "ClientSessionCache",
    "ClientContext",
    "CachedSession",
    "client_context",
    "session_port",
    "generate_cache_key",
    "read_cache_key",
    "BACKEND",
]

#: Which implementation this module is (``tlsresume.client`` says ``"c"``).
BACKEND = "python"

_SESSION_CHARGE = 4096  # bytes charged per session (its real size is not visible)
_MAX_LIFETIME = 7 * 86400.0  # RFC 8446: no ticket lives longer
_TICKET_READS = 8  # reads of a TLS 1.3 connection that look for a ticket
_COUNTERS = (
    "connections",
    "offered",
    "resumed",
    "rejected",
    "incomplete",
    "misses",
    "withheld_unsafe",
    "stored",
    "captured_at_close",
    "loaded",
    "replaced",
    "evicted",
    "expired",
    "unusable",
    "disabled",
    "unfit",
    "oversize",
)
_NO_PERSISTENCE = (
    "this Python's OpenSSL cannot be reached by tlsresume's C core, and Python's ssl "
    "module gives no access to a session's bytes, so the pure-Python client cache "
    "cannot save or load sessions; use a Python whose ssl module loads a shared "
    "libssl (system, pyenv, official installers, distribution packages) to persist them"
)


@dataclass
class _Held:
    session: ssl.SSLSession
    context: weakref.ref[ssl.SSLContext]
    generation: int
    level: int
    protocol: str
    single_use: bool
    stored: float
    expires: float


class ClientSessionCache:
    """TLS sessions of the servers a client talked to (pure-Python path).

    The arguments, limits and methods are those of the C cache (see
    :class:`tlsresume.client.ClientSessionCache`); the module documentation says
    what differs. Thread-safe.
    """

    backend = BACKEND

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
        self._max_entries = max_entries
        self._ttl = ttl
        self._tickets = tickets_per_host
        self._max_bytes = max_bytes
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[bytes, str, int], list[_Held]] = (
            collections.OrderedDict()
        )
        self._disabled: set[bytes] = set()
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # ---- configuration -----------------------------------------------------------

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        _check_max_entries(value)
        with self._lock:
            self._max_entries = value
            self._fit()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        _check_max_bytes(value)
        with self._lock:
            self._max_bytes = value
            self._fit()

    @property
    def ttl(self) -> float | None:
        return self._ttl

    @ttl.setter
    def ttl(self, value: float | None) -> None:
        _check_ttl(value)
        self._ttl = value

    @property
    def tickets_per_host(self) -> int:
        return self._tickets

    def disable(self, namespace: str) -> None:
        """Stop caching for ``namespace`` (and drop what it holds)."""
        ns = _name(namespace, "namespace")
        with self._lock:
            self._disabled.add(ns)
            for key in [k for k in self._entries if k[0] == ns]:
                del self._entries[key]

    def enable(self, namespace: str) -> None:
        with self._lock:
            self._disabled.discard(_name(namespace, "namespace"))

    def is_enabled(self, namespace: str) -> bool:
        return _name(namespace, "namespace") not in self._disabled

    # ---- reading -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The same counters as the C cache, plus ``entries`` and ``sessions``."""
        with self._lock:
            out = dict(self._counts)
            out["entries"] = len(self._entries)
            out["sessions"] = sum(len(v) for v in self._entries.values())
            out["bytes"] = out["sessions"] * _SESSION_CHARGE
        return out

    def sessions(self) -> list[CachedSession]:
        """The cached sessions, most recently used server first."""
        with self._lock:
            items = [(k, list(v)) for k, v in reversed(self._entries.items())]
        return [
            CachedSession(
                namespace=ns.decode("utf-8"),
                host=host,
                port=port,
                protocol=h.protocol,
                verification=LEVEL_NAMES[h.level],
                single_use=h.single_use,
                stored=h.stored,
                expires=h.expires,
                deadline=self._deadline(h),
            )
            for (ns, host, port), held in items
            for h in held
        ]

    def servers(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return [(ns.decode("utf-8"), h, p) for ns, h, p in reversed(self._entries)]

    def purge(self, now: float | None = None) -> int:
        """Drop sessions past their deadline; returns how many went."""
        now = self._clock() if now is None else now
        gone = 0
        with self._lock:
            for key in list(self._entries):
                kept = [h for h in self._entries[key] if self._deadline(h) > now]
                gone += len(self._entries[key]) - len(kept)
                if kept:
                    self._entries[key] = kept
                else:
                    del self._entries[key]
            self._counts["expired"] += gone
        return gone

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # ---- what this path cannot do ---------------------------------------------------

    def save(self, *args: Any, **kwargs: Any) -> int:
        """Raises :class:`~tlsresume.OpenSSLUnavailableError`: see the module notes."""
        raise OpenSSLUnavailableError(_NO_PERSISTENCE)

    def load(self, *args: Any, **kwargs: Any) -> int:
        """Raises :class:`~tlsresume.OpenSSLUnavailableError`: see the module notes."""
        raise OpenSSLUnavailableError(_NO_PERSISTENCE)

    @classmethod
    def from_file(cls, *args: Any, **kwargs: Any) -> ClientSessionCache:
        raise OpenSSLUnavailableError(_NO_PERSISTENCE)

    def attach(self, ctx: ssl.SSLContext, namespace: str | None = None) -> ClientContext:
        """Turn a plain client ``ssl.SSLContext`` into a :class:`ClientContext` using
        this cache, in place (every setting kept); returns it."""
        if not isinstance(ctx, ssl.SSLContext):
            raise TypeError(f"ctx must be an ssl.SSLContext, not {type(ctx).__name__}")
        if ctx.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ContextError("a session cache is for client contexts")
        if not isinstance(ctx, ClientContext):
            if type(ctx) is not ssl.SSLContext:
                raise TypeError(
                    f"cannot attach to a {type(ctx).__name__}: only plain ssl.SSLContext "
                    "objects are converted in place"
                )
            ctx.__class__ = ClientContext
        assert isinstance(ctx, ClientContext)
        if namespace is not None:
            ctx.session_namespace = namespace
        ctx.session_cache = self
        return ctx

    # ---- the connection path --------------------------------------------------------

    def _deadline(self, h: _Held) -> float:
        end = min(h.expires, h.stored + _MAX_LIFETIME)
        return end if self._ttl is None else min(end, h.stored + self._ttl)

    def _take(self, ctx: ClientContext, key: tuple[bytes, str, int], level: int) -> Any:
        """The session to offer on a new connection of ``ctx`` to ``key``, or None."""
        now = self._clock()
        with self._lock:
            self._counts["connections"] += 1
            if key[0] in self._disabled:
                self._counts["disabled"] += 1
                return None
            held = self._entries.get(key)
            if not held:
                self._counts["misses"] += 1
                return None
            live = [h for h in held if self._deadline(h) > now]
            self._counts["expired"] += len(held) - len(live)
            fit = [
                h
                for h in live
                if h.context() is ctx and h.generation == ctx._tlsr_generation and h.level >= level
            ]
            if not fit:
                self._counts["withheld_unsafe" if live else "misses"] += 1
                if live:
                    self._entries[key] = live
                else:
                    del self._entries[key]
                return None
            best = fit[-1]  # the newest
            if best.single_use:
                live.remove(best)
            if live:
                self._entries[key] = live
                self._entries.move_to_end(key)
            else:
                del self._entries[key]
            self._counts["offered"] += 1
            return best.session

    def _keep(self, ctx: ClientContext, key: tuple[bytes, str, int], held: _Held) -> None:
        with self._lock:
            if key[0] in self._disabled:
                return
            old = self._entries.get(key, [])
            if held.single_use:
                kept = [h for h in old if h.single_use and h.context() is ctx]
                kept = kept[-(self._tickets - 1) :] if self._tickets > 1 else []
            else:  # a TLS 1.2 session replaces what the server had
                kept = []
                self._counts["replaced"] += bool(old)
            self._entries[key] = [*kept, held]
            self._entries.move_to_end(key)
            self._counts["stored"] += 1
            self._fit()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _fit(self) -> None:  # with the lock held
        budget = self._max_bytes // _SESSION_CHARGE
        while self._entries and (
            len(self._entries) > self._max_entries
            or sum(len(v) for v in self._entries.values()) > budget
        ):
            self._entries.popitem(last=False)
            self._counts["evicted"] += 1


# ---- the connection objects: capture sessions as they become resumable ------------------


class _Watch:
    """What one client connection remembers for the cache."""

    __slots__ = ("cache", "ctx", "key", "level", "offered", "reads", "last", "done")

    def __init__(
        self, cache: ClientSessionCache, ctx: ClientContext, key: Any, level: int, offered: bool
    ) -> None:
        self.cache, self.ctx, self.key, self.level = cache, ctx, key, level
        self.offered, self.reads, self.last, self.done = offered, 0, None, False


def _after_handshake(conn: Any) -> None:
    watch: _Watch | None = getattr(conn, "_tlsr_watch", None)
    if watch is None:
        return
    if watch.offered:
        watch.cache._count("resumed" if conn.session_reused else "rejected")
    _capture(conn, watch)


def _after_read(conn: Any) -> None:
    watch: _Watch | None = getattr(conn, "_tlsr_watch", None)
    if watch is None or watch.done:
        return
    watch.reads += 1
    if watch.reads > _TICKET_READS:
        watch.done = True
        return
    _capture(conn, watch)


def _capture(conn: Any, watch: _Watch) -> None:
    try:
        version = conn.version()
        session = conn.session
    except (ValueError, OSError, AttributeError):
        return
    if version is None or session is None:
        return
    tls13 = version == "TLSv1.3"
    if tls13 and not session.has_ticket:
        return  # the ticket has not arrived yet: look again after the next read
    if not tls13:
        watch.done = True  # TLS 1.2: the handshake's session is the one
    if watch.last is not None and session == watch.last:
        return  # the offered session itself (resumed), or one already kept
    watch.last = session
    level = watch.level
    if watch.ctx.verify_mode == ssl.CERT_OPTIONAL and not conn.getpeercert():
        level = VERIFY_NONE  # the handshake went on without a verified chain
    hint = float(getattr(session, "ticket_lifetime_hint", 0) or 0)
    lifetime = float(session.timeout)
    if hint:
        lifetime = min(lifetime, hint)
    now = watch.cache._clock()
    watch.cache._keep(
        watch.ctx,
        watch.key,
        _Held(
            session=session,
            context=weakref.ref(watch.ctx),
            generation=watch.ctx._tlsr_generation,
            level=level,
            protocol=version,
            single_use=tls13,
            stored=now,
            expires=float(session.time) + lifetime,
        ),
    )
    if tls13:
        watch.done = True


class _PySSLSocket(_CacheSSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _after_handshake(self)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        data = super().read(len, buffer)
        _after_read(self)
        return data


class _PySSLObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()
        _after_handshake(self)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        data = super().read(len, buffer)
        _after_read(self)
        return data


def _trust_property(name: str) -> property:
    base = getattr(ssl.SSLContext, name)

    def get(self: ClientContext) -> Any:
        return base.__get__(self)

    def set_(self: ClientContext, value: Any) -> None:
        # http.client and urllib3 set these on every connection, mostly to the
        # value they already have: only a real change withholds older sessions.
        before = base.__get__(self)
        base.__set__(self, value)
        if base.__get__(self) != before:
            self._tlsr_generation += 1

    return property(get, set_, doc=base.__doc__)


class ClientContext(CacheContextBase):
    """An ``ssl.SSLContext`` for clients that resumes sessions from a
    :class:`ClientSessionCache` on new connections (pure-Python path: see the
    module documentation). Everything else is ``ssl.SSLContext``."""

    sslsocket_class = _PySSLSocket
    sslobject_class = _PySSLObject
    backend = BACKEND

    _tlsr_cache: ClientSessionCache | None = None
    _tlsr_ns: bytes = b""
    _tlsr_generation = 0

    @property
    def session_cache(self) -> ClientSessionCache | None:
        return self._tlsr_cache

    @session_cache.setter
    def session_cache(self, cache: ClientSessionCache | None) -> None:
        if cache is not None and not isinstance(cache, ClientSessionCache):
            raise TypeError(
                f"session_cache must be a ClientSessionCache or None, not {type(cache).__name__}"
            )
        self._tlsr_cache = cache

    # Trust and verification changes withhold the sessions made before them.
    verify_mode = _trust_property("verify_mode")
    verify_flags = _trust_property("verify_flags")
    check_hostname = _trust_property("check_hostname")

    def load_verify_locations(
        self, cafile: Any = None, capath: Any = None, cadata: Any = None
    ) -> None:
        before = self.cert_store_stats()
        super().load_verify_locations(cafile, capath, cadata)
        if capath is not None or self.cert_store_stats() != before:
            self._tlsr_generation += 1

    def load_default_certs(self, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        super().load_default_certs(purpose)
        self._tlsr_generation += 1

    def set_default_verify_paths(self) -> None:
        super().set_default_verify_paths()
        self._tlsr_generation += 1

    def load_cert_chain(self, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        super().load_cert_chain(certfile, keyfile, password)
        self._tlsr_generation += 1

    def _tlsr_offer(
        self, host: str | None, port: int | None, server_hostname: str | None, session: Any
    ) -> tuple[Any, _Watch | None]:
        cache = self._tlsr_cache
        if cache is None or host is None or port is None:
            return session, None
        key_host = self._tlsr_key_host(host)
        if key_host is None:
            return session, None
        key = (self._tlsr_ns, key_host, port)
        level = self._tlsr_level(server_hostname)
        offered = None
        if session is None:
            offered = cache._take(self, key, level)
        watch = _Watch(cache, self, key, level, offered is not None)
        watch.last = offered
        return (offered if offered is not None else session), watch

    def _wrap_socket(
        self,
        sock: Any,
        server_side: bool,
        server_hostname: str | None = None,
        *,
        owner: Any = None,
        session: Any = None,
    ) -> Any:
        watch = None
        if not server_side:
            host, port = self._tlsr_socket_key(sock, server_hostname)
            session, watch = self._tlsr_offer(host, port, server_hostname, session)
        sslobj = super()._wrap_socket(  # type: ignore[misc]
            sock, server_side, server_hostname, owner=owner, session=session
        )
        if watch is not None and owner is not None:
            owner._tlsr_watch = watch
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
        watch = None
        if not server_side and server_hostname is not None:
            session, watch = self._tlsr_offer(
                server_hostname, self._tlsr_bio_port(), server_hostname, session
            )
        sslobj = super()._wrap_bio(  # type: ignore[misc]
            incoming, outgoing, server_side, server_hostname, owner=owner, session=session
        )
        if watch is not None and owner is not None:
            owner._tlsr_watch = watch
        return sslobj


def client_context(
    cache: ClientSessionCache | None = None,
    *,
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    cafile: str | os.PathLike[str] | None = None,
    capath: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    namespace: str = "",
) -> ClientContext:
    """``ssl.create_default_context()`` with a session cache (pure-Python path;
    the same call as :func:`tlsresume.client.client_context`)."""
    ctx = default_context_as(ClientContext, purpose, cafile, capath, cadata)
    assert isinstance(ctx, ClientContext)
    ctx.session_namespace = namespace
    ctx.session_cache = cache if cache is not None else ClientSessionCache()
    return ctx

"""What both client session caches share: their limits and argument checks, how
a connection's (host, port) key is found, the records :meth:`sessions` returns,
and cache keys. Pure Python: :mod:`tlsresume.client` (the C cache) and
:mod:`tlsresume.pyclient` (the fallback for Pythons whose OpenSSL the core cannot
reach) both build on it."""

from __future__ import annotations

import _ssl
import contextlib
import contextvars
import os
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 256
DEFAULT_TICKETS_PER_HOST = 8
#: Memory budget: bytes charged to all sessions together (see ClientSessionCache).
DEFAULT_MAX_BYTES = 16 << 20
# The C core's limits (csrc/tlsresume.h; tests/test_client_interop.py checks them).
MIN_MAX_BYTES = 65536  # TLSR_CLIENT_MIN_BYTES
MAX_TICKETS_PER_HOST = 64  # TLSR_CLIENT_MAX_TICKETS
NAME_MAX = 255  # TLSR_CLIENT_NAME_MAX: longest namespace or hostname, in bytes
KEY_SIZE = 32


def _check_tickets(value: int) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_TICKETS_PER_HOST
    ):
        raise ValueError(
            f"tickets_per_host must be an int from 1 to {MAX_TICKETS_PER_HOST}, not {value!r}"
        )


def _check_max_entries(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1 << 24:
        raise ValueError(
            f"max_entries must be an int from 1 to {1 << 24}, not {value!r}; "
            "to stop caching, use disable(namespace)"
        )


def _check_max_bytes(value: int) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not MIN_MAX_BYTES <= value <= 1 << 40
    ):
        raise ValueError(
            f"max_bytes must be an int from {MIN_MAX_BYTES} (64 KiB) to {1 << 40}, not {value!r}"
        )


def _check_ttl(value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
    ):
        raise ValueError(f"ttl must be a positive number of seconds or None, not {value!r}")


def _name(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    raw = value.encode("utf-8")
    if len(raw) > NAME_MAX or "\0" in value:
        raise ValueError(f"{what} must be at most {NAME_MAX} bytes without NUL: {value!r}")
    return raw


@dataclass(frozen=True)
class CachedSession:
    """One session in the cache, as :meth:`ClientSessionCache.sessions` shows it.

    Times are in the cache's clock (seconds since the epoch by default).
    """

    namespace: str
    host: str
    port: int
    protocol: str
    verification: str  # "none", "chain" or "hostname"
    single_use: bool
    stored: float
    expires: float  # end of the session's own lifetime
    deadline: float  # when it stops being offered (lifetime and TTL)


def generate_cache_key() -> bytes:
    """A fresh random 32-byte key for :meth:`ClientSessionCache.save`."""
    return os.urandom(KEY_SIZE)


def parse_cache_key(data: bytes | str) -> bytes | None:
    """The cache key in ``data``: 32 raw bytes, or 64 hexadecimal digits (whitespace
    ignored); ``None`` if it is neither. The one parser for key files and
    ``TLSRESUME_CACHE_KEY``."""
    if isinstance(data, bytes) and len(data) == KEY_SIZE:
        return data
    text = "".join((data.decode("ascii", "replace") if isinstance(data, bytes) else data).split())
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None
    return key if len(key) == KEY_SIZE else None


def read_cache_key(path: str | os.PathLike[str]) -> bytes:
    """Read a cache key file: 32 raw bytes, or 64 hexadecimal digits (whitespace ignored).

    Raises:
        ValueError: the file holds neither.
        OSError: it cannot be read.
    """
    with open(path, "rb") as f:
        key = parse_cache_key(f.read(4096))
    if key is None:
        raise ValueError(
            f"{os.fspath(path)!r} is not a cache key: expected 32 bytes or 64 hex digits "
            '(make one with: python -c "import os; print(os.urandom(32).hex())")'
        )
    return key


_bio_port: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tlsresume_session_port", default=None
)


@contextlib.contextmanager
def session_port(port: int) -> Iterator[None]:
    """Within this block, connections are keyed under ``port``: for ``wrap_bio``
    (asyncio, aiohttp, anyio) instead of 0 ("port unknown"), and for
    ``wrap_socket`` instead of the socket's peer port (which, through a proxy
    tunnel tlsresume does not recognise, is the proxy's)::

        with tlsresume.session_port(8443):
            reader, writer = await asyncio.open_connection(host, 8443, ssl=ctx)
    """
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535, not {port!r}")
    token = _bio_port.set(port)
    try:
        yield
    finally:
        _bio_port.reset(token)


_TUNNEL_SEARCH_DEPTH = 24


def _tunnel_port() -> int | None:
    """The target port of the HTTP CONNECT tunnel being wrapped, if a client we know
    is wrapping one: an ``http.client.HTTPConnection`` (urllib3 and requests
    subclass it) with ``set_tunnel()`` done, or httpcore's tunnel connection (httpx).

    Through a proxy the socket's peer is the proxy, so the peer port would key
    every target behind it under the proxy's port. Neither library hands the
    target port to ``wrap_socket``; they hold it in the object whose method is
    wrapping, a few frames up. Reading it is bounded (``_TUNNEL_SEARCH_DEPTH``
    frames) and only reads attributes; anything unexpected means "not found"."""
    import http.client

    frame: Any
    try:
        frame = sys._getframe(2)
    except ValueError:
        return None
    for _ in range(_TUNNEL_SEARCH_DEPTH):
        if frame is None:
            return None
        obj = frame.f_locals.get("self") if "self" in frame.f_code.co_varnames else None
        try:
            if isinstance(obj, http.client.HTTPConnection):
                # The connection doing the wrap: tunnelled or not, look no further.
                if not getattr(obj, "_tunnel_host", None):
                    return None
                port = getattr(obj, "_tunnel_port", None)
                return port if isinstance(port, int) else 443
            elif (
                obj is not None
                and type(obj).__module__.startswith("httpcore")
                and type(obj).__name__ == "TunnelHTTPConnection"
            ):
                port = obj._remote_origin.port
                return port if isinstance(port, int) else None
        except Exception:  # a foreign object's attribute raised: not ours to judge
            return None
        frame = frame.f_back
    return None


def _peer_port(sock: Any) -> int | None:
    try:
        peer = socket.socket.getpeername(sock)
    except (OSError, TypeError):
        peer = getattr(sock, "_tlsr_addr", None)  # SSLSocket.connect() wraps first
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[1], int):
        return int(peer[1])
    return None


def _peer_host(sock: Any) -> str | None:
    try:
        peer = socket.socket.getpeername(sock)
    except (OSError, TypeError):
        peer = getattr(sock, "_tlsr_addr", None)
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


class _CacheSSLSocket(ssl.SSLSocket):
    """SSLSocket that remembers the address it is connecting to: ``connect()`` on an
    unconnected SSLSocket wraps before the TCP connection exists."""

    def _real_connect(self, addr: Any, connect_ex: bool) -> Any:
        self._tlsr_addr = addr
        return super()._real_connect(addr, connect_ex)  # type: ignore[misc]


# ---- what both drop-in contexts share ------------------------------------------------

#: Verification levels, weakest first (the C core's TLSR_VERIFY_* have these values).
VERIFY_NONE, VERIFY_CHAIN, VERIFY_HOSTNAME = 0, 1, 2
LEVEL_NAMES = {VERIFY_NONE: "none", VERIFY_CHAIN: "chain", VERIFY_HOSTNAME: "hostname"}

# The raw C-level getters: the Python properties wrap them in enums on every read.
_get_verify_mode: Callable[[Any], int] = _ssl._SSLContext.__dict__["verify_mode"].__get__
_get_verify_flags: Callable[[Any], int] = _ssl._SSLContext.__dict__["verify_flags"].__get__
_get_check_hostname: Callable[[Any], bool] = _ssl._SSLContext.__dict__["check_hostname"].__get__
_get_host_flags: Callable[[Any], int] = _ssl._SSLContext.__dict__["_host_flags"].__get__


class CacheContextBase(ssl.SSLContext):
    """What both drop-in client contexts (the C cache's and the pure-Python one's)
    have in common: client-only construction, the namespace, the verification
    level a connection demands, how a connection's (host, port) key is found, and
    ``wrap_bio(port=)``. Subclasses give ``session_cache`` and the wrap hooks."""

    _tlsr_ns: bytes = b""

    def __new__(cls, protocol: int = ssl.PROTOCOL_TLS_CLIENT, *args: Any, **kwargs: Any) -> Any:
        from .errors import ContextError

        if protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ContextError(f"{cls.__name__} is for clients; PROTOCOL_TLS_SERVER was given")
        return super().__new__(cls, protocol, *args)

    def __init__(
        self,
        protocol: int = ssl.PROTOCOL_TLS_CLIENT,
        *,
        cache: Any = None,
        namespace: str = "",
    ) -> None:
        self.session_namespace = namespace
        self.session_cache = cache

    session_cache: Any  # a property of each subclass

    @property
    def session_namespace(self) -> str:
        return self._tlsr_ns.decode("utf-8")

    @session_namespace.setter
    def session_namespace(self, namespace: str) -> None:
        self._tlsr_ns = _name(namespace, "namespace")

    def _tlsr_level(self, server_hostname: str | None) -> int:
        if _get_verify_mode(self) == ssl.CERT_NONE:
            return VERIFY_NONE
        if server_hostname is not None and _get_check_hostname(self):
            return VERIFY_HOSTNAME
        return VERIFY_CHAIN

    @staticmethod
    def _tlsr_socket_key(sock: Any, server_hostname: str | None) -> tuple[str | None, int | None]:
        """(host, port) of a connection wrapped by ``wrap_socket``: the port from
        :func:`session_port`, a recognised CONNECT tunnel, or the peer address."""
        port = _bio_port.get()
        if port is None:
            port = _tunnel_port()
        if port is None:
            port = _peer_port(sock)
        host = server_hostname if server_hostname is not None else _peer_host(sock)
        return host, port

    @staticmethod
    def _tlsr_bio_port() -> int:
        """The port of a ``wrap_bio`` connection: :func:`session_port`'s, a
        recognised tunnel's (TLS in TLS through an HTTPS proxy), else 0 (unknown)."""
        port = _bio_port.get()
        if port is None:
            port = _tunnel_port()
        return 0 if port is None else port

    @staticmethod
    def _tlsr_key_host(host: str) -> str | None:
        key_host = host.lower().rstrip(".")
        if not key_host or len(key_host.encode()) > NAME_MAX or not key_host.isascii():
            return None
        return key_host

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
        *,
        port: int | None = None,
    ) -> ssl.SSLObject:
        """``ssl.SSLContext.wrap_bio``, plus ``port``: the server's port, for keying
        the session cache (default: :func:`session_port`'s value, else 0)."""
        if port is None:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        with session_port(port):
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def default_context_as(
    cls: type[Any],
    purpose: ssl.Purpose,
    cafile: Any,
    capath: Any,
    cadata: Any,
) -> Any:
    """``ssl.create_default_context()``, the same object turned into ``cls`` (every
    default of this Python kept).

    Raises:
        ValueError: ``purpose`` is not SERVER_AUTH.
    """
    if purpose != ssl.Purpose.SERVER_AUTH:
        raise ValueError(
            "client_context() makes client contexts: purpose must be ssl.Purpose.SERVER_AUTH"
        )
    ctx = ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
    ctx.__class__ = cls
    return ctx

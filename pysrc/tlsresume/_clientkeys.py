"""What both client session caches share: their limits and argument checks, how
a connection's (host, port) key is found, the records :meth:`sessions` returns,
and cache keys. Pure Python: :mod:`tlsresume.client` (the C cache) and
:mod:`tlsresume.pyclient` (the fallback for Pythons whose OpenSSL the core cannot
reach) both build on it."""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 256
DEFAULT_TICKETS_PER_HOST = 8
#: Memory budget: bytes charged to all sessions together (see ClientSessionCache).
DEFAULT_MAX_BYTES = 16 << 20
# The C core's limits (csrc/tlsresume.h; tests/test_client_fallback.py checks them).
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

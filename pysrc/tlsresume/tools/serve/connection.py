"""One TLS connection of a ``tlsresume serve`` worker: the worker's server context,
reading the request, answering, and closing with close_notify.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing


from tlsresume._tls import TLS_VERSIONS, send_close_notify

from .config import _LINGER_BYTES, STATS_PATH, ServerConfig
from .protocol import _find_head_end, build_response, parse_request_head

log = logging.getLogger("tlsresume.tools.serve")


# --------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------


def build_server_context(
    config: ServerConfig, ring: TicketKeyRing | None, store: SessionStore | None = None
) -> ssl.SSLContext:
    """The context one worker builds for itself, as real pre-fork servers do.

    Args:
        config: certificate, ciphers, version limits and ``tickets``.
        ring: the shared key ring to install, or ``None``.
        store: the shared session store to install, or ``None``. Both ``None`` is
            the baseline.

    Returns:
        A fresh server-side context.

    Raises:
        OSError, ssl.SSLError: the certificate or key cannot be loaded, or the
            cipher string selects nothing.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert config.cert is not None and config.key is not None
    ctx.load_cert_chain(config.cert, config.key)
    if config.ciphers:
        ctx.set_ciphers(config.ciphers)
    if config.tls_max:
        ctx.maximum_version = TLS_VERSIONS[config.tls_max]
    if not config.tickets:
        # TLS 1.2: no tickets at all; TLS 1.3: stateful tickets (IDs into the cache).
        ctx.options |= ssl.OP_NO_TICKET
        ring = None  # install() refuses keys on a context that issues no tickets
    if ring is not None or store is not None:
        import tlsresume

        tlsresume.install(
            ctx,
            ring,
            session_cache=store if store is not None else False,
            session_id_context=config.session_id_bytes(),
        )
    return ctx


def _read_head(tls: ssl.SSLSocket, limit: int) -> tuple[bytes, bool]:
    """Read a request head.

    Returns:
        ``(head, too_large)``; ``head`` is empty when the client closed without
        sending anything (``openssl s_client < /dev/null`` does that).
    """
    buf = bytearray()
    while True:
        end = _find_head_end(buf)
        if end >= 0:
            return bytes(buf[:end]), False
        if len(buf) > limit:
            return bytes(buf[:limit]), True
        try:
            chunk = tls.recv(4096)
        except ssl.SSLZeroReturnError:
            chunk = b""
        if not chunk:
            # Client half-closed: answer what it sent (a head missing its blank line
            # still gets a response), or nothing if it sent nothing.
            return bytes(buf), False
        buf += chunk


def _close_notify(tls: ssl.SSLSocket, linger: float) -> None:
    """Send close_notify, then close the TCP connection gracefully ("lingering close").

    :func:`tlsresume._tls.send_close_notify` writes our close_notify without waiting
    for the peer's; it is what keeps the client's TLS 1.2 session resumable (curl
    drops it otherwise).

    Then we half-close and read (and drop) whatever the client still sends, until it
    closes too, for at most ``linger`` seconds: closing a socket that has unread
    input makes the kernel answer with RST, and an RST can destroy the response and
    close_notify still on their way to the client. Every error is ignored; the
    connection is over either way.
    """
    send_close_notify(tls)
    try:
        fd = tls.fileno()
        if fd < 0:
            return
        # The plain socket's shutdown: the TLS layer has said its last word.
        socket.socket.shutdown(tls, socket.SHUT_WR)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + linger
        budget = _LINGER_BYTES
        while budget > 0:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return
            data = os.read(fd, 65536)
            if not data:
                return
            budget -= len(data)
    except OSError:
        pass


def _target_path(target: str) -> str:
    """The path of a request target, without query or fragment."""
    return target.split("?", 1)[0].split("#", 1)[0]


def _serve_connection(
    conn: socket.socket,
    ctx: ssl.SSLContext,
    config: ServerConfig,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Handshake, read one request, answer it, close cleanly; never raises.

    ``stats`` makes the JSON answered at :data:`STATS_PATH`.
    """
    tls: ssl.SSLSocket | None = None
    try:
        conn.settimeout(config.handshake_timeout)
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        tls.do_handshake()
        tls.settimeout(config.request_timeout)
        head, too_large = _read_head(tls, config.max_header_bytes)
        if head or too_large:
            request = parse_request_head(head)
            body = None
            if (
                stats is not None
                and request is not None
                and not too_large
                and _target_path(request.target) == STATS_PATH
            ):
                body = (json.dumps(stats(), indent=2) + "\n").encode("utf-8")
            tls.sendall(
                build_response(
                    request,
                    os.getpid(),
                    too_large=too_large,
                    reused=tls.session_reused,
                    body=body,
                    content_type="application/json",
                )
            )
        _close_notify(tls, config.shutdown_timeout)
    except Exception as exc:  # one bad client must never take a worker down
        log.debug("connection failed: %s: %s", type(exc).__name__, exc)
    finally:
        try:
            (tls if tls is not None else conn).close()
        except OSError:
            pass


class _ConnectionPool:
    """A few daemon threads serving accepted connections from a bounded queue.

    The queue is bounded so that a worker whose threads are all busy stops
    accepting (its ``put`` blocks) and leaves new connections to the other workers.
    """

    def __init__(self, threads: int, handle: Callable[[socket.socket], None]) -> None:
        self._handle = handle
        self._queue: queue.Queue[socket.socket] = queue.Queue(maxsize=threads * 2)
        for i in range(threads):
            threading.Thread(target=self._run, name=f"conn-{i}", daemon=True).start()

    def submit(self, conn: socket.socket) -> None:
        """Queue ``conn``; blocks while the queue is full."""
        self._queue.put(conn)

    def _run(self) -> None:
        while True:
            conn = self._queue.get()
            try:
                self._handle(conn)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for queued and running connections."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

"""The TLS connections of a ``tlsresume serve`` worker: the worker's server context,
reading the request, answering, and closing with close_notify.

A connection usually completes on the thread that accepted it (the worker's main
thread): handing every connection to another thread cost more than serving it
(a queue hand-off, a context switch and the GIL moving between threads, for every
connection). Only a client that does not keep up, whose handshake or request is not
complete within ``inline_timeout``, is handed to a pool thread, which finishes it
with the full timeouts; so a slow or idle client ties up a pool thread, never the
accepting one.
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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing


from tlsresume._tls import TLS_VERSIONS, send_close_notify

from .config import _LINGER_BYTES, STATS_PATH, ServerConfig
from .protocol import Request, _find_head_end, build_response, parse_request_head

log = logging.getLogger("tlsresume.tools.serve")


# --------------------------------------------------------------------------------------
# The worker's context
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


# --------------------------------------------------------------------------------------
# One connection, as a few resumable stages
# --------------------------------------------------------------------------------------

# Where a connection is. Each stage can be interrupted by a timeout on the accepting
# thread and resumed on a pool thread: the TLS state machine and the bytes read so far
# live in the _Connection, not on the stack.
_HANDSHAKE, _REQUEST, _ANSWER, _LINGER = 0, 1, 2, 3


class _Connection:
    """One accepted connection and how far it got."""

    __slots__ = ("tls", "stage", "deadline", "buf")

    def __init__(self, tls: ssl.SSLSocket, deadline: float) -> None:
        self.tls = tls
        self.stage = _HANDSHAKE
        self.deadline = deadline  # of the current stage, time.monotonic()
        self.buf = bytearray()  # request bytes read so far


def _needs_linger(head: bytes, request: Request | None, too_large: bool) -> bool:
    """Whether the client may still be sending when we close: a head too large (it
    is still sending it), garbage, or a request announcing a body we do not read."""
    if too_large or request is None:
        return True
    # No whitespace may precede a field name's colon (RFC 9112), so this finds them.
    lower = head.lower()
    return b"\ncontent-length:" in lower or b"\ntransfer-encoding:" in lower


def _drain_pending(fd: int) -> None:
    """Read and drop what the client has sent that is already here (its
    close_notify, pipelined bytes), without waiting: closing a socket with unread
    input sends RST instead of FIN. ``fd`` is non-blocking (the socket has a
    timeout)."""
    budget = _LINGER_BYTES
    try:
        while budget > 0:
            data = os.read(fd, 65536)
            if not data:
                return
            budget -= len(data)
    except OSError:  # BlockingIOError: nothing (more) unread
        pass


def _linger(tls: ssl.SSLSocket, deadline: float) -> None:
    """Lingering close: half-close, then read (and drop) whatever the client still
    sends until it closes too or ``deadline`` passes.

    Closing a socket that has unread input makes the kernel answer with RST, and an
    RST can destroy the response and close_notify still on their way to the client.
    Only for clients that may still be sending (:func:`_needs_linger`): the others
    close at once. Every error is ignored; the connection is over either way.
    """
    try:
        fd = tls.fileno()
        if fd < 0:
            return
        # The plain socket's shutdown: the TLS layer has said its last word.
        socket.socket.shutdown(tls, socket.SHUT_WR)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
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


T = TypeVar("T")


class _ConnectionPool(Generic[T]):
    """Daemon threads finishing the connections the accepting thread handed off.

    The queue is bounded; when it is full (every thread busy with slow clients and
    ``limit`` more waiting) a hand-off is refused and the caller closes that slow
    connection. Queued connections keep their deadlines, so a connection that
    waited past its timeout is closed when a thread gets to it.
    """

    def __init__(self, threads: int, handle: Callable[[T], None], limit: int) -> None:
        self._handle = handle
        self._queue: queue.Queue[T] = queue.Queue(maxsize=limit)
        for i in range(threads):
            threading.Thread(target=self._run, name=f"conn-{i}", daemon=True).start()

    def submit(self, item: T) -> bool:
        """Queue ``item`` without waiting; ``False`` if the queue is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._handle(item)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for queued and running connections."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)


class ConnectionServer:
    """Serves one worker's connections: inline on the accepting thread while the
    client keeps up, on a pool thread once it does not.

    Args:
        ctx: the worker's context.
        config: timeouts, limits, ``threads`` (the pool) and ``inline_timeout``.
        stats: makes the JSON answered at :data:`STATS_PATH`; ``None``: no stats.
    """

    def __init__(
        self,
        ctx: ssl.SSLContext,
        config: ServerConfig,
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._config = config
        self._stats = stats
        self._pid = os.getpid()
        # The few distinct answers (HTTP version, HEAD or not, resumed or not, ...)
        # are built once; building them cost as much as the request's reading.
        self._responses: dict[tuple[str | None, bool, bool, bool | None, bool], bytes] = {}
        self.pool: _ConnectionPool[_Connection] = _ConnectionPool(
            config.threads, self._finish_slow, limit=max(64, config.threads * 16)
        )

    def serve(self, conn: socket.socket) -> None:
        """Serve ``conn`` on this (the accepting) thread, waiting for the client at
        most a few times ``inline_timeout`` in all; then hand it to the pool.
        Never raises an :class:`Exception`."""
        config = self._config
        c: _Connection | None = None
        try:
            # One timeout for every wait of the inline attempt: the socket is
            # non-blocking underneath, and a wait that times out hands off.
            conn.settimeout(config.inline_timeout)
            now = time.monotonic()
            tls = self._ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            c = _Connection(tls, now + config.handshake_timeout)
            if self._advance(c, now + config.inline_timeout):
                return
        except Exception as exc:  # one bad client must never take a worker down
            log.debug("connection failed: %s: %s", type(exc).__name__, exc)
        else:
            if self.pool.submit(c):
                return
            log.debug("every connection thread is busy: closing a slow client")
        try:
            (c.tls if c is not None else conn).close()
        except OSError:
            pass

    def _finish_slow(self, c: _Connection) -> None:
        """On a pool thread: take ``c`` to its end with the full timeouts."""
        try:
            self._advance(c, None)
        except Exception as exc:
            log.debug("connection failed: %s: %s", type(exc).__name__, exc)
        try:
            c.tls.close()
        except OSError:
            pass

    def _advance(self, c: _Connection, inline_end: float | None) -> bool:
        """Take ``c`` through its stages.

        Args:
            inline_end: on the accepting thread, when to give up and hand off
                (the socket's timeout is then ``inline_timeout``); ``None`` on a
                pool thread, where each wait gets what is left of its stage's
                deadline.

        Returns:
            ``True`` when the connection is done and closed; ``False`` when the
            inline attempt ran out of time (the caller hands ``c`` off).

        Raises:
            Exception: the client failed (the caller closes the connection).
        """
        tls, config = c.tls, self._config
        inline = inline_end is not None
        try:
            if c.stage == _HANDSHAKE:
                if not inline:
                    tls.settimeout(_left(c.deadline))
                tls.do_handshake()
                c.stage = _REQUEST
                c.deadline = time.monotonic() + config.request_timeout
            if c.stage == _REQUEST:
                head, too_large = self._read_head(c, inline_end)
                c.stage = _ANSWER  # from here on a timeout is the client's failure
                linger = self._answer(tls, head, too_large, inline)
                send_close_notify(tls)
                if not linger:
                    _drain_pending(tls.fileno())
                    tls.close()
                    return True
                c.stage = _LINGER
                c.deadline = time.monotonic() + config.shutdown_timeout
                if inline:
                    return False  # lingering would hold the accepting thread
            _linger(tls, c.deadline)
            tls.close()
            return True
        except TimeoutError:
            if inline and c.stage <= _REQUEST:
                return False
            raise

    def _read_head(self, c: _Connection, inline_end: float | None) -> tuple[bytes, bool]:
        """Read the request head into ``c.buf``.

        Returns:
            ``(head, too_large)``; ``head`` is empty when the client closed without
            sending anything (``openssl s_client < /dev/null`` does that).

        Raises:
            TimeoutError: the client went quiet; ``c.buf`` keeps what it sent.
        """
        tls, buf, limit = c.tls, c.buf, self._config.max_header_bytes
        while True:
            if inline_end is None:
                tls.settimeout(_left(c.deadline))
            elif buf and time.monotonic() > inline_end:
                raise TimeoutError("the request is trickling in: hand it off")
            try:
                chunk = tls.recv(4096)
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:
                # Client half-closed: answer what it sent (a head missing its blank
                # line still gets a response), or nothing if it sent nothing.
                return bytes(buf), False
            if not buf:
                end = _find_head_end(chunk)
                if end >= 0:  # the usual case: the whole head in one record
                    return chunk[:end], False
            buf += chunk
            end = _find_head_end(buf)
            if end >= 0:
                return bytes(buf[:end]), False
            if len(buf) > limit:
                return bytes(buf[:limit]), True

    def _answer(self, tls: ssl.SSLSocket, head: bytes, too_large: bool, inline: bool) -> bool:
        """Send the response to ``head`` (nothing if the client sent nothing).

        The answer is small, so it fits the socket's empty send buffer at once: an
        inline send does not wait for the client.

        Returns:
            Whether the client may still be sending (:func:`_needs_linger`).
        """
        if not (head or too_large):
            return False
        request = parse_request_head(head)
        reused = tls.session_reused
        if (
            self._stats is not None
            and request is not None
            and not too_large
            and request.target.startswith(STATS_PATH)
            and _target_path(request.target) == STATS_PATH
        ):
            body = (json.dumps(self._stats(), indent=2) + "\n").encode("utf-8")
            tls.sendall(
                build_response(
                    request,
                    self._pid,
                    too_large=too_large,
                    reused=reused,
                    body=body,
                    content_type="application/json",
                    served="inline" if inline else "pool",
                )
            )
            return _needs_linger(head, request, too_large)
        key = (
            request.version if request is not None else None,
            request is not None and request.method == "HEAD",
            too_large,
            reused,
            inline,
        )
        response = self._responses.get(key)
        if response is None:
            response = build_response(
                request,
                self._pid,
                too_large=too_large,
                reused=reused,
                served="inline" if inline else "pool",
            )
            self._responses[key] = response
        tls.sendall(response)
        return _needs_linger(head, request, too_large)


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; a deadline already past is a timeout now."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the client's time is up")
    return left

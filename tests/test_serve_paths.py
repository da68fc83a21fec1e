"""``tlsresume serve``'s two paths: the accepting thread serves clients that keep up
(``X-Served: inline``) and hands slow ones to a connection thread (``X-Served:
pool``); idle clients never stall the others; only clients that may still be
sending get a lingering close. Real servers in subprocesses, real sockets.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from .support import ServeProcess, client_context, https_get, parse_response


def _read_to_close_notify(tls: ssl.SSLSocket) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it ended with close_notify."""
    data = bytearray()
    while True:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            return bytes(data), True
        except ssl.SSLEOFError:
            return bytes(data), False
        if not chunk:
            return bytes(data), True
        data += chunk


def _slow_get(server: ServeProcess, ctx: ssl.SSLContext, pause: float, where: str) -> str:
    """A GET that pauses ``pause`` seconds before its ClientHello (``where`` is
    ``"hello"``) or between handshake and request (``"request"``); returns the
    response's ``X-Served``."""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        if where == "hello":
            time.sleep(pause)
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            if where == "request":
                time.sleep(pause)
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, clean = _read_to_close_notify(tls)
    status, headers, body = parse_response(data)
    assert status == "HTTP/1.1 200 OK" and body.startswith(b"worker ") and clean
    return headers["x-served"]


@pytest.mark.parametrize("where", ["hello", "request"])
def test_slow_clients_go_to_the_pool_quick_ones_stay_inline(serve, server_cert, where) -> None:  # type: ignore[no-untyped-def]
    """A client that keeps up is served on the accepting thread; one that pauses
    (before its ClientHello, or before its request) is finished by a connection
    thread, with the same answer and close_notify."""
    server = serve("--workers", "2", "--no-share")
    ctx = client_context(server_cert.cafile)
    quick = [https_get(server.host, server.port, ctx) for _ in range(6)]
    assert all(r.clean_close for r in quick)
    # Control: without a pause, (nearly) every client is served inline; a loaded
    # machine may deschedule a client past the inline timeout now and then.
    assert sum(r.headers["x-served"] == "inline" for r in quick) >= 4
    assert _slow_get(server, ctx, 0.2, where) == "pool"


def test_idle_clients_do_not_stall_a_normal_client(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """More idle connections than connection threads (they connect and send
    nothing) tie up the pool, yet a normal client is still answered promptly by
    both workers; the control shows the pool really is full: a client that is
    itself slow waits behind the idle ones."""
    server = serve("--workers", "2", "--no-share", "--threads", "2")
    ctx = client_context(server_cert.cafile)
    idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(6)]
    try:
        time.sleep(0.3)  # every idle connection has been handed to the pool
        start = time.monotonic()
        seen = [https_get(server.host, server.port, ctx, timeout=5) for _ in range(6)]
        assert time.monotonic() - start < 3.0
        assert all(r.status_line == "HTTP/1.1 200 OK" and r.clean_close for r in seen)
        assert len({r.headers["x-worker"] for r in seen}) == 2
        # Control: a slow client needs a connection thread, and all of them are
        # held by idle clients (10 s handshake timeout), so it is not served.
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            time.sleep(0.2)
            with pytest.raises((TimeoutError, ssl.SSLError, OSError)):
                raw.settimeout(1.0)
                ctx.wrap_socket(raw, server_hostname="localhost").close()
    finally:
        for s in idle:
            s.close()


def _poke_after_close(tls: ssl.SSLSocket) -> bytes | None:
    """After the server's close_notify and FIN: send raw bytes, wait, and read.
    Returns what ``recv`` gave (``b""``: the server read them, or was gone without
    a word), ``None`` when the server answered with RST (it had closed)."""
    socket.socket.settimeout(tls, 5)
    assert socket.socket.recv(tls, 100) == b""  # its FIN follows its close_notify
    try:
        socket.socket.sendall(tls, b"late bytes")
        time.sleep(0.3)
        socket.socket.sendall(tls, b"more late bytes")
        time.sleep(0.1)
        return socket.socket.recv(tls, 100)
    except ConnectionResetError:
        return None
    except BrokenPipeError:
        return None


def test_lingering_close_only_for_clients_still_sending(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A request announcing a body we do not read gets the whole response and
    close_notify although the client keeps sending (the lingering close reads it,
    so the kernel sends no RST); a bodyless GET is closed at once: bytes sent after
    it meet a closed socket (RST), the negative control."""
    server = serve("--workers", "1", "--no-share")
    ctx = client_context(server_cert.cafile)
    body = b"x" * 150_000  # unread at close, and under the linger budget (256 KiB)
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            tls.sendall(
                b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            tls.sendall(body)
            data, clean = _read_to_close_notify(tls)
            status, headers, answer = parse_response(data)
            assert status == "HTTP/1.1 200 OK" and answer.startswith(b"worker ") and clean
            assert _poke_after_close(tls) == b""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, clean = _read_to_close_notify(tls)
            assert parse_response(data)[0] == "HTTP/1.1 200 OK" and clean
            assert _poke_after_close(tls) is None


def test_sigterm_finishes_a_connection_in_the_pool(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A client handed to the pool when SIGTERM arrives still gets its answer (the
    worker drains); new connections are refused once it stopped (the control)."""
    server = serve("--workers", "1", "--no-share")
    ctx = client_context(server_cert.cafile)
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            time.sleep(0.2)  # handed to a connection thread
            server.proc.terminate()
            time.sleep(0.3)
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, clean = _read_to_close_notify(tls)
    status, headers, _ = parse_response(data)
    assert status == "HTTP/1.1 200 OK" and headers["x-served"] == "pool" and clean
    assert server.proc.wait(timeout=10) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()

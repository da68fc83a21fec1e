"""Handshake helpers for the core tests: in-memory pairs and a tiny pre-fork server.

In-memory pairs (MemoryBIO) run client and server in one thread: right for pinning
what the callback does with keys. The pre-fork server runs real worker processes
on loopback, each building its own SSLContext, as servers do.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def pump(
    client: ssl.SSLObject,
    server: ssl.SSLObject,
    bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO, ssl.MemoryBIO, ssl.MemoryBIO],
) -> None:
    """Drive both handshakes to completion, moving bytes between the memory BIOs
    (client in, client out, server in, server out)."""
    c_in, c_out, s_in, s_out = bios
    done = [False, False]
    for _ in range(20):
        for i, (obj, out, peer) in enumerate(((client, c_out, s_in), (server, s_out, c_in))):
            if not done[i]:
                try:
                    obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer.write(out.read())
        if all(done):
            return
    raise AssertionError("handshake did not complete")


def memory_pair(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    hostname: str = "localhost",
) -> tuple[ssl.SSLSession, bool]:
    """One full client+server handshake through memory BIOs.

    Returns the client's session after it read the server's tickets, and whether
    the server resumed.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname, session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    pump(client, server, (c_in, c_out, s_in, s_out))
    server.write(b"x")  # TLS 1.3 tickets arrive with the first application data
    c_in.write(s_out.read())
    assert client.read(1) == b"x"
    session_out = client.session
    assert session_out is not None
    return session_out, server.session_reused


def server_context(cert, ring=None, max_version=None) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    import tlsresume

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    if ring is not None:
        tlsresume.install(ctx, ring)
    return ctx


@dataclass
class Fleet:
    port: int
    pids: list[int]


def read_request(tls: ssl.SSLSocket) -> bytes:
    """Read an HTTP request head (up to the blank line, or until the peer closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer_pid(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"%d\n" % os.getpid())


def answer_http(tls: ssl.SSLSocket) -> None:
    """Read the request, answer 200 "ok"."""
    read_request(tls)
    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@contextmanager
def prefork(
    make_context: Callable[[], ssl.SSLContext],
    workers: int = 4,
    clean_close: bool = True,
    answer: Callable[[ssl.SSLSocket], None] = answer_pid,
) -> Iterator[Fleet]:
    """Fork ``workers`` processes behind one loopback socket; each calls
    ``make_context()`` itself and answers every connection with its pid (or with
    ``answer(tls)``). ``clean_close=False`` closes the socket without close_notify,
    as most Python servers do."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    ready_r, ready_w = os.pipe()  # each worker writes one byte once it can accept
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                os.close(ready_r)
                ctx = make_context()
                os.write(ready_w, b"r")
                os.close(ready_w)
                while True:
                    conn, _ = listener.accept()
                    conn.settimeout(5)
                    try:
                        with ctx.wrap_socket(conn, server_side=True) as tls:
                            answer(tls)
                            if clean_close:
                                tls.unwrap()
                    except (OSError, ssl.SSLError):
                        pass
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    port = listener.getsockname()[1]
    listener.close()
    os.close(ready_w)
    _wait_ready(ready_r, workers)
    try:
        yield Fleet(port, pids)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)


def _wait_ready(fd: int, workers: int, timeout: float = 10.0) -> None:
    """Wait until every worker has built its context (so the first connections do
    not all land on the one that was quickest), or until all that could have
    failed (EOF) or the timeout passed; tests of failing contexts see the failure."""
    got = 0
    deadline = time.monotonic() + timeout
    try:
        while got < workers:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, workers)
            if not chunk:
                break
            got += len(chunk)
    finally:
        os.close(fd)


def fetch(
    port: int,
    client_ctx: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    clean_close: bool = True,
) -> tuple[ssl.SSLSession, bool, int]:
    """Connect, read the worker's pid, close (cleanly unless told not to).
    Returns (session, resumed, pid)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            data = b""
            while not data.endswith(b"\n"):
                chunk = tls.recv(64)
                if not chunk:
                    break
                data += chunk
            resumed = tls.session_reused
            sess = tls.session
            if clean_close:
                try:
                    tls.unwrap()
                except (OSError, ssl.SSLError):
                    pass
    assert sess is not None
    return sess, resumed, int(data)


@dataclass
class Reconnections:
    resumed: int = 0
    same_worker: int = 0  # reconnections that reached the session's own worker
    cross_resumed: int = 0  # resumed on a worker other than the session's
    pids: set[int] | None = None


def reconnect_detail(
    port: int, client_ctx: ssl.SSLContext, n: int, clean_close: bool = True
) -> Reconnections:
    """Connect n+1 times, each offering the previous connection's session."""
    session, _, last = fetch(port, client_ctx, clean_close=clean_close)
    out = Reconnections(pids={last})
    for _ in range(n):
        session, was_resumed, pid = fetch(port, client_ctx, session, clean_close)
        out.resumed += was_resumed
        out.same_worker += pid == last
        out.cross_resumed += was_resumed and pid != last
        out.pids.add(pid)  # type: ignore[union-attr]
        last = pid
    return out


def reconnect(
    port: int, client_ctx: ssl.SSLContext, n: int, clean_close: bool = True
) -> tuple[int, set[int]]:
    """Connect n+1 times reusing the latest session; (resumed count, worker pids)."""
    r = reconnect_detail(port, client_ctx, n, clean_close)
    return r.resumed, r.pids or set()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def s_client_reconnect(port: int, n: int, cafile: str, *extra: str) -> Reconnections:
    """``openssl s_client -sess_out`` once, then ``-sess_in`` (and ``-sess_out`` again,
    so each run offers the previous run's session) n times."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sess = os.path.join(tmp, "sess.pem")
        out = Reconnections(pids=set())
        last = None
        for i in range(n + 1):
            args = [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                cafile,
                "-ign_eof",
                "-sess_out",
                sess,
                *extra,
            ]
            if i:
                args += ["-sess_in", sess]
            text = subprocess.run(
                args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
            ).stdout
            pid = next((int(line) for line in text.splitlines() if line.strip().isdigit()), None)
            if pid is not None:
                out.pids.add(pid)  # type: ignore[union-attr]
            if i:
                was_resumed = "Reused," in text
                out.resumed += was_resumed
                out.same_worker += pid == last
                out.cross_resumed += was_resumed and pid != last
            last = pid
        return out

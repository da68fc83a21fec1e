"""``tlsresume serve``: a pre-fork HTTPS server that behaves like real Python servers.

One master process binds ONE listening socket, makes the shared state (the ticket
key ring, and with ``--session-cache`` a session store), and starts N workers that
all accept on that socket. Every worker builds its own ``ssl.SSLContext`` (as
gunicorn, uvicorn ``--workers`` or hypercorn do), so without tlsresume each worker
has its own random ticket keys and its own session cache: a client that reconnects
to another worker cannot resume. With tlsresume each worker installs the shared ring
(and store) on its context and any worker resumes any session.

What is shared:

* default: the key ring (stateless tickets, TLS 1.2 and 1.3).
* ``--session-cache SIZE``: also one :class:`~tlsresume.SessionStore` of SIZE bytes,
  for clients that resume by session ID (curl over TLS 1.2, ``s_client -no_ticket``).
* ``--no-tickets``: ``ssl.OP_NO_TICKET`` on every worker context and no ring; TLS 1.3
  tickets become stateful (IDs into the store), so only ``--session-cache`` shares
  anything. ``--single-use`` makes those stateful tickets resume once.
* ``--no-share``: no tlsresume at all, the baseline every Python pre-fork server
  has today (``--no-tickets`` still applies; ``--session-cache`` is refused).

The ring and store are always NAMED regions, ``serve-<master pid>``
(``/dev/shm/tlsresume.ring.serve-<pid>``, ``tlsresume.store.serve-<pid>``), so that
``tlsresume stats`` can read them from any process of the same user; the master
removes the names when it stops. Workers also answer ``GET /.well-known/tlsresume/stats``
(:data:`STATS_PATH`) with the counters as JSON.

Two ways to start workers, matching the two ways real servers do it:

* fork (default): workers inherit the master's mapping of the regions.
* ``--spawn``: workers are fresh interpreters (``subprocess``) that attach to the
  regions by name and receive the listening socket by file-descriptor inheritance.

Across machines, ``--redis URL``: the master links the ring (and the store) to Redis
with :func:`tlsresume.redis.connect_server` after making them and before any worker
exists, so the first key sync is done before a ticket is issued. Forked workers
inherit the link (each restarts its own session tier); ``--spawn`` workers attach a
session tier of their own (:func:`tlsresume.redis.connect_worker`) and read the keys
the master's sync puts into the named ring. Several ``serve --redis URL`` instances
(their own process groups, shared memory and ports) then resume each other's
sessions. The master key comes from a file (``--redis-master-key-file``), never from
the command line; spawned workers get it from the master through a pipe. Redis down
at start is a warning (the instance serves with its own keys and converges when Redis
comes); a URL redis-py cannot use, refused credentials or a master key that does not
match the fleet's stop the start with an error. See docs/redis.md.

Each worker answers every HTTP/1.0 or 1.1 request with ``worker <pid>`` and closes
the connection with close_notify, because an OpenSSL client (curl) refuses to reuse a
TLS 1.2 session from a connection that ended without one (DESIGN.md section 3).

The server logic is importable: build a :class:`ServerConfig` and call :func:`run`.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import queue
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing

__all__ = [
    "ServerConfig",
    "Request",
    "run",
    "build_server_context",
    "parse_request_head",
    "build_response",
    "LISTENING_PREFIX",
    "STATS_PATH",
    "stats_payload",
    "ListeningLine",
    "parse_listening_line",
    "child_env",
    "die_with_parent",
]

log = logging.getLogger("tlsresume.serve")

#: The master prints one line starting with this once every worker is ready;
#: scripts and tests parse the port and worker pids from it.
LISTENING_PREFIX = "tlsresume serve: listening on "

#: Workers answer this path with the shared counters as JSON (see :func:`stats_payload`).
STATS_PATH = "/.well-known/tlsresume/stats"

#: The ``server`` field of the stats JSON; ``tlsresume check`` looks for it.
STATS_SERVER_ID = "tlsresume serve"

#: At most this much unread client input is drained before closing (lingering close).
_LINGER_BYTES = 1 << 18

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# tlsresume.redis's defaults (DEFAULT_REFRESH, DEFAULT_TIMEOUT), here so that checking
# the options needs neither redis-py nor the core.
_REDIS_REFRESH = 5.0
_REDIS_TIMEOUT = 0.005

# A worker's last word on the ready pipe: its session tier's counters, as JSON.
_TIER_REPORT = b"redis-tier "

# accept() errors that say "no resources right now" or "that client already left":
# the worker backs off or moves on instead of dying.
_TRANSIENT_ACCEPT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
)


@dataclass
class ServerConfig:
    """Everything ``tlsresume serve`` needs; the CLI only fills this in.

    Attributes:
        cert: PEM certificate chain; ``None`` (with ``key`` ``None``) makes a throwaway
            self-signed certificate.
        key: PEM private key for ``cert``.
        host: address to bind (IPv4 or IPv6 literal, or a name).
        port: TCP port; 0 picks a free one (printed on the listening line).
        workers: number of worker processes.
        spawn: start workers as separate interpreters that attach to the named
            regions, instead of forking them.
        share: install tlsresume (the key ring, and the store if ``session_cache``)
            on every worker's context; ``False`` is the baseline every Python
            pre-fork server has today: no tlsresume at all.
        tickets: issue session tickets; ``False`` sets ``ssl.OP_NO_TICKET`` on every
            worker context (no key ring; TLS 1.3 tickets become stateful).
        session_cache: size of the shared session store (``"10M"``, bytes); ``None``
            shares no session cache.
        single_use: a TLS 1.3 stateful ticket resumes only once (needs
            ``session_cache`` and ``tickets=False``).
        rotate: ticket key rotation period in seconds; ``None`` keeps the ring default.
        ciphers: OpenSSL cipher string for TLS 1.2 (``SSLContext.set_ciphers``).
        tls_max: highest TLS version offered, ``"1.2"`` or ``"1.3"``; ``None`` = 1.3.
        threads: connection threads per worker, so one slow client cannot stall it.
        handshake_timeout: seconds a client gets to finish the TLS handshake.
        request_timeout: seconds a client gets to send its request headers.
        shutdown_timeout: after our close_notify, seconds to wait for the client to
            close its side (its input is drained meanwhile, so closing does not turn
            into an RST that could destroy the response); short, because a client
            that ignores ``Connection: close`` only holds a connection thread.
        max_header_bytes: request head size limit; larger heads get a 431 answer.
        backlog: ``listen()`` backlog of the shared socket.
        log_level: logging level name for the master and workers (``"WARNING"``).
        redis: Redis URL (``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://...``,
            ``unix://...``): share the ring and store with every instance that uses
            the same Redis and ``redis_name``; ``None`` shares nothing beyond this
            instance.
        redis_name: the service's name in Redis (``None``: ``"default"``).
        redis_refresh: seconds between key polls, the longest this instance lags the
            fleet's ring (``None``: 5); shorter than the rotation period.
        redis_timeout: the longest a handshake waits for a Redis session lookup, in
            seconds (``None``: 0.005).
        redis_master_key_file: a file holding the fleet's master key (64 hex digits
            or base64): keys and sessions are sealed in Redis under it.
        redis_local_rotation: while Redis is unreachable, let the ring rotate by
            itself (see :class:`tlsresume.redis.KeySync`).
    """

    cert: str | None = None
    key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 4
    spawn: bool = False
    share: bool = True
    tickets: bool = True
    session_cache: str | None = None
    single_use: bool = False
    rotate: float | None = None
    ciphers: str | None = None
    tls_max: str | None = None
    threads: int = 8
    handshake_timeout: float = 10.0
    request_timeout: float = 10.0
    shutdown_timeout: float = 1.0
    max_header_bytes: int = 16384
    backlog: int = 128
    log_level: str = "WARNING"
    redis: str | None = None
    redis_name: str | None = None
    redis_refresh: float | None = None
    redis_timeout: float | None = None
    redis_master_key_file: str | None = None
    redis_local_rotation: bool = False

    def validate(self) -> None:
        """Check the values before anything is bound or forked.

        Raises:
            ValueError: a value is out of range or inconsistent, naming the option.
        """
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both --cert and --key, or neither (for a throwaway cert)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, not {self.port}")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"--workers must be between 1 and 256, not {self.workers}")
        if self.rotate is not None and not self.rotate > 0:
            raise ValueError(f"--rotate must be a positive number of seconds, not {self.rotate}")
        if self.rotate is not None and not self.tickets:
            raise ValueError(
                "--rotate sets ticket key rotation; with --no-tickets there are no keys"
            )
        if self.session_cache is not None:
            if not self.share:
                raise ValueError(
                    "--session-cache is tlsresume's shared store; --no-share runs without "
                    "tlsresume (drop one of them)"
                )
            try:
                from tlsresume.store import parse_size
            except ImportError:  # the core cannot load: start() reports that clearly
                pass
            else:
                try:
                    parse_size(self.session_cache)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"--session-cache: {exc}") from None
        if self.single_use and self.session_cache is None:
            raise ValueError("--single-use needs --session-cache (it is a property of the store)")
        if self.single_use and self.tickets:
            raise ValueError(
                "--single-use applies to TLS 1.3 stateful tickets, which need --no-tickets "
                "(stateless tickets from the key ring cannot be made single-use)"
            )
        if self.tls_max is not None and self.tls_max not in _TLS_VERSIONS:
            raise ValueError(f"--tls-max must be 1.2 or 1.3, not {self.tls_max!r}")
        if self.threads < 1:
            raise ValueError(f"threads per worker must be at least 1, not {self.threads}")
        for name in ("handshake_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0, not {self.shutdown_timeout}")
        if self.max_header_bytes < 64:
            raise ValueError(f"max_header_bytes must be at least 64, not {self.max_header_bytes}")
        self._validate_redis()

    def _validate_redis(self) -> None:
        """The ``--redis*`` options; the URL itself is redis-py's to judge (at start)."""
        given = {
            "--redis-name": self.redis_name is not None,
            "--redis-refresh": self.redis_refresh is not None,
            "--redis-timeout-ms": self.redis_timeout is not None,
            "--redis-master-key-file": self.redis_master_key_file is not None,
            "--redis-local-rotation": self.redis_local_rotation,
        }
        if self.redis is None:
            for option, on in given.items():
                if on:
                    raise ValueError(f"{option} needs --redis URL")
            return
        if not self.share:
            raise ValueError(
                "--redis shares tlsresume's keys and sessions between instances; --no-share "
                "runs without tlsresume (drop one of them)"
            )
        if not self.tickets and self.session_cache is None:
            raise ValueError(
                "--redis has nothing to share with --no-tickets and no --session-cache "
                "(add --session-cache SIZE to share sessions)"
            )
        if self.redis_local_rotation and not self.tickets:
            raise ValueError(
                "--redis-local-rotation rotates ticket keys; with --no-tickets there are none"
            )
        if not self.redis.strip():
            raise ValueError("--redis needs a URL, e.g. redis://:PASSWORD@HOST:6379/0")
        name = self.redis_name
        if name is not None and (not name or len(name) > 200 or any(c.isspace() for c in name)):
            raise ValueError(f"--redis-name {name!r}: use 1-200 characters, no spaces")
        timeout = self.redis_timeout
        if timeout is not None and not 0 < timeout <= 1:
            raise ValueError(
                f"--redis-timeout-ms must be more than 0 and at most 1000, not {timeout * 1000:g}"
            )
        refresh = self.redis_refresh
        if refresh is not None and not 0 < refresh <= 86400:
            raise ValueError(f"--redis-refresh must be in (0, 86400] seconds, not {refresh:g}")
        if self.tickets:
            period = self.rotate
            if period is None:
                try:
                    from tlsresume.keyring import DEFAULT_ROTATION_PERIOD
                except ImportError:  # the core cannot load: start() reports that clearly
                    return
                period = DEFAULT_ROTATION_PERIOD
            if (refresh if refresh is not None else _REDIS_REFRESH) >= period:
                raise ValueError(
                    f"--redis-refresh must be shorter than the rotation period ({period:g} s, "
                    "--rotate), so every instance learns the next key before it is used"
                )

    def redis_settings(self) -> tuple[str, float, float]:
        """``(name, refresh, timeout)`` for ``--redis``, defaults filled in."""
        return (
            self.redis_name if self.redis_name is not None else "default",
            self.redis_refresh if self.redis_refresh is not None else _REDIS_REFRESH,
            self.redis_timeout if self.redis_timeout is not None else _REDIS_TIMEOUT,
        )


@dataclass(frozen=True)
class ListeningLine:
    """What the master's listening line says."""

    host: str
    port: int
    pids: tuple[int, ...]
    fields: dict[str, str]


def parse_listening_line(line: str) -> ListeningLine | None:
    """Parse ``tlsresume serve: listening on https://HOST:PORT/ key=value ...``.

    Returns:
        The parsed line, or ``None`` if ``line`` is not the listening line.
    """
    if not line.startswith(LISTENING_PREFIX):
        return None
    url, *rest = line[len(LISTENING_PREFIX) :].split()
    hostport = url.removeprefix("https://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    fields = dict(item.split("=", 1) for item in rest if "=" in item)
    pids = tuple(int(p) for p in fields.get("pids", "").split(",") if p)
    return ListeningLine(host.strip("[]"), int(port), pids, fields)


def child_env() -> dict[str, str]:
    """``os.environ``, plus a ``PYTHONPATH`` that finds this very copy of tlsresume.

    A child interpreter (a ``--spawn`` worker, the servers ``demo`` starts) must
    import the same tlsresume as its parent, wherever that came from: an installed
    wheel, or a source tree put on ``sys.path`` by hand or by a test. A package in
    site-packages needs nothing (and putting site-packages on ``PYTHONPATH`` would
    rank it above the standard library).
    """
    import site

    env = dict(os.environ)
    pkg_parent = os.path.realpath(Path(__file__).parent.parent)
    site_dirs = {os.path.realpath(p) for p in site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        site_dirs.add(os.path.realpath(site.getusersitepackages()))
    if pkg_parent not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    return env


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies.

    For ``subprocess.Popen(preexec_fn=...)``: a server started by a script or a test
    then stops (and stops its workers) even if that script is killed with SIGKILL.
    Does nothing where ``prctl`` is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------------------
# HTTP: pure functions, testable without sockets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """The parts of a request line the server cares about."""

    method: str
    target: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"


def parse_request_head(head: bytes) -> Request | None:
    """Parse the request line of an HTTP/1.x request head.

    Args:
        head: the bytes before the blank line ending the headers (or whatever a
            client sent before it went quiet).

    Returns:
        The request, or ``None`` if the first line is not ``METHOD TARGET HTTP/1.x``
        (garbage, a TLS-in-TLS probe, an HTTP/2 preface, ...).
    """
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        return None
    if not method or not method.isalpha() or not method.isupper() or not target:
        return None
    try:
        return Request(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"))
    except UnicodeDecodeError:
        return None


def build_response(
    request: Request | None,
    pid: int,
    *,
    too_large: bool = False,
    reused: bool | None = None,
    body: bytes | None = None,
    content_type: str = "text/plain",
) -> bytes:
    """Build the complete response for one request.

    Args:
        request: the parsed request, or ``None`` for garbage (answered with 400).
        pid: the worker's process id, named in the body and ``X-Worker``.
        too_large: the head exceeded the limit (answered with 431).
        reused: whether the TLS session was resumed; sent as ``X-Session-Reused``
            so a client can see the server's side of it. ``None`` omits the header.
        body: the body of a 200 answer instead of ``worker <pid>``.
        content_type: the ``Content-Type`` of ``body``.

    Returns:
        Status line, headers and body, ready to send. The connection always closes
        after it (``Connection: close``).
    """
    version = request.version if request is not None else "HTTP/1.1"
    if too_large:
        status, payload = "431 Request Header Fields Too Large", b"request header too large\n"
    elif request is None:
        status, payload = "400 Bad Request", b"bad request\n"
    else:
        status = "200 OK"
        payload = f"worker {pid}\n".encode("ascii") if body is None else body
    custom = body is not None and status == "200 OK"
    headers = [
        f"{version} {status}",
        f"Content-Type: {content_type if custom else 'text/plain'}",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        f"X-Worker: {pid}",
    ]
    if custom:
        headers.append("Cache-Control: no-store")  # live counters, never cached
    if reused is not None:
        headers.append(f"X-Session-Reused: {'yes' if reused else 'no'}")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("ascii")
    if request is not None and request.method == "HEAD":
        return head
    return head + payload


def stats_payload(
    ring: TicketKeyRing | None,
    store: SessionStore | None,
    *,
    master_pid: int,
    workers: int,
    tickets: bool,
    worker_pid: int | None = None,
    redis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object served at :data:`STATS_PATH`.

    Args:
        ring: the shared key ring, or ``None`` (``--no-tickets``, ``--no-share``).
        store: the shared session store, or ``None``.
        master_pid: the master's pid (the regions are named after it).
        workers: configured worker count.
        tickets: whether workers issue tickets.
        worker_pid: the worker answering (default: this process).
        redis: the Redis link's report (``--redis``), or ``None``.

    Returns:
        ``{"server": "tlsresume serve", "version", "pid", "worker", "workers",
        "tickets", "ring": region | None, "store": region | None, "redis": link |
        None}``, each region as :func:`tlsresume.stats.region_report` describes it:
        counters are totals over every worker since the server started. ``redis`` is
        ``{"url" (without its password), "name", "key_sync", "session_tier"}``:
        ``key_sync`` holds the master's sync counters (``None`` in a ``--spawn``
        worker: only the master has them, and prints them when it stops), and
        ``session_tier`` the answering worker's own tier (each worker has one).
    """
    payload: dict[str, Any] = {
        "server": STATS_SERVER_ID,
        "version": _package_version(),
        "pid": master_pid,
        "worker": os.getpid() if worker_pid is None else worker_pid,
        "workers": workers,
        "tickets": tickets,
        "ring": None,
        "store": None,
        "redis": redis,
    }
    if ring is not None or store is not None:
        from tlsresume.stats import region_report

        if ring is not None:
            payload["ring"] = region_report("ring", ring)
        if store is not None:
            payload["store"] = region_report("store", store)
    return payload


@functools.lru_cache(maxsize=1)
def _package_version() -> str | None:
    """tlsresume's version, without importing the core (``--no-share`` needs none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlsresume")
    except PackageNotFoundError:
        return None


def _find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending a request head, or -1 if not there yet."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")  # tolerate bare-LF clients (printf | s_client)
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


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
        ctx.maximum_version = _TLS_VERSIONS[config.tls_max]
    if not config.tickets:
        # TLS 1.2: no tickets at all; TLS 1.3: stateful tickets (IDs into the cache).
        ctx.options |= ssl.OP_NO_TICKET
        ring = None  # install() refuses keys on a context that issues no tickets
    if ring is not None or store is not None:
        import tlsresume

        tlsresume.install(ctx, ring, session_cache=store)
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

    ``unwrap()`` on a non-blocking socket writes our close_notify in its first
    ``SSL_shutdown`` and gives up at once instead of waiting for the peer's, which
    many clients never send. The close_notify already sent is what keeps the
    client's TLS 1.2 session resumable (curl drops it otherwise).

    Then we half-close and read (and drop) whatever the client still sends, until it
    closes too, for at most ``linger`` seconds: closing a socket that has unread
    input makes the kernel answer with RST, and an RST can destroy the response and
    close_notify still on their way to the client. Every error is ignored; the
    connection is over either way.
    """
    try:
        tls.setblocking(False)
        tls.unwrap()
    except (OSError, ValueError):
        pass
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


# --------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------


class _RedisView:
    """What one process knows of the Redis link (``--redis``): for the stats URL and
    the master's shutdown lines.

    ``key_sync`` is the master's sync, whose counters live in memory that forked
    workers share; a ``--spawn`` worker has none (only the master syncs). The session
    tier is this process's own: each worker has one.
    """

    def __init__(self, url: str, name: str, key_sync: Any, session_tier: Any) -> None:
        self.url = url  # without its password
        self.name = name
        self.key_sync = key_sync
        self.session_tier = session_tier

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "name": self.name,
            "key_sync": self.key_sync.stats() if self.key_sync is not None else None,
            "session_tier": self.session_tier.stats() if self.session_tier is not None else None,
        }

    def stop_tier(self, report_fd: int) -> None:
        """In a stopping worker: flush and stop this process's session tier, and send
        its final counters to the master on ``report_fd`` (one line, an atomic pipe
        write). Never raises: the worker is exiting either way."""
        tier = self.session_tier
        if tier is None:
            return
        try:
            tier.stop(flush=0.5)  # queued writes reach Redis before the worker exits
            line = _TIER_REPORT + json.dumps(tier.stats(), separators=(",", ":")).encode()
            os.write(report_fd, line + b"\n")  # well under PIPE_BUF: one atomic write
        except Exception as exc:
            log.debug("could not stop or report the Redis session tier: %s", exc)


def _sum_tier_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of several processes' session tier counters (gauges are left out,
    ``max_get_ms`` is the largest)."""
    gauges = {"queued", "connections", "idle", "redis_up", "timeout_ms"}
    total: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key == "max_get_ms":
                total[key] = max(total.get(key, 0.0), value)
            elif key not in gauges and isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _key_values(stats: dict[str, Any]) -> str:
    return " ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in stats.items())


class _Stop(BaseException):
    """Raised in a worker's main thread by SIGTERM; not an Exception, so no
    connection handler can swallow it."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def _watch_master(death_fd: int) -> None:
    """Exit the worker when the master dies: the master holds the only write end of
    this pipe and never writes, so EOF means it is gone (even after SIGKILL)."""
    try:
        while os.read(death_fd, 1):
            pass
    except OSError:
        pass
    os._exit(0)


def _worker_main(
    sock: socket.socket,
    config: ServerConfig,
    ring: TicketKeyRing | None,
    store: SessionStore | None,
    master_pid: int,
    death_fd: int,
    ready_fd: int,
    redis: _RedisView | None = None,
) -> int:
    """Body of every worker, forked or spawned.

    ``redis`` is this worker's view of the Redis link; with a session tier, the
    worker keeps ``ready_fd`` open to report the tier's final counters when it stops.

    Returns:
        The exit status (0 after SIGTERM).
    """
    # The master turns Ctrl-C into SIGTERM for every worker, so a terminal's SIGINT
    # to the whole process group must not interrupt workers mid-response.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    pool: _ConnectionPool | None = None
    try:
        ctx = build_server_context(config, ring, store)

        def stats() -> dict[str, Any]:
            return stats_payload(
                ring,
                store,
                master_pid=master_pid,
                workers=config.workers,
                tickets=config.tickets,
                redis=redis.stats() if redis is not None else None,
            )

        threading.Thread(
            target=_watch_master, args=(death_fd,), name="watch-master", daemon=True
        ).start()
        pool = _ConnectionPool(
            config.threads, lambda conn: _serve_connection(conn, ctx, config, stats)
        )
        # Tell the master we are ready; one short line is an atomic pipe write.
        try:
            os.write(ready_fd, f"{os.getpid()}\n".encode("ascii"))
        except BrokenPipeError:  # the master is gone; the watchdog ends us
            pass
        if redis is None or redis.session_tier is None:
            os.close(ready_fd)  # else kept for the tier's last report (stop_tier)
        while True:
            # A plain blocking accept: Linux queues blocked acceptors FIFO and wakes
            # one per connection, so connections go round-robin across idle workers,
            # which is exactly what makes "each worker has its own keys" visible.
            try:
                conn, _peer = sock.accept()
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT_ERRNOS:
                    log.debug("accept failed, backing off: %s", exc)
                    time.sleep(0.05)
                    continue
                raise
            pool.submit(conn)
    except _Stop:
        sock.close()
        if pool is not None:
            pool.drain(timeout=2.0)
        if redis is not None:
            redis.stop_tier(ready_fd)
        return 0


def _spawned_worker(spec_json: str) -> int:
    """Entry point of a ``--spawn`` worker (a fresh interpreter).

    Args:
        spec_json: JSON with the config, the inherited fds, the master's pid, the
            names of the ring and store, and the Redis master key (hex) if any. It
            arrives on stdin, not argv, so that no worker's entry in the process
            list shows the master key or the Redis URL with its password.

    Returns:
        The exit status.
    """
    spec = json.loads(spec_json)
    config = ServerConfig(**spec["config"])
    logging.basicConfig(level=config.log_level, format=_LOG_FORMAT)
    ring: TicketKeyRing | None = None
    store: SessionStore | None = None
    if spec["ring"] is not None or spec["store"] is not None:
        import tlsresume

        if spec["ring"] is not None:
            ring = tlsresume.TicketKeyRing.attach(spec["ring"])
        if spec["store"] is not None:
            store = tlsresume.SessionStore.attach(spec["store"])
    redis = None
    if config.redis is not None:
        # The ring needs nothing here: the master's key sync writes into its memory.
        # The session tier is per process, so this worker attaches its own.
        from tlsresume.redis import _redact, connect_worker

        name, refresh, timeout = config.redis_settings()
        tier = None
        if store is not None:
            key = spec.get("redis_master_key")
            tier = connect_worker(
                config.redis,
                store=store,
                name=name,
                timeout=timeout,
                master_key=bytes.fromhex(key) if key else None,
                retry=min(refresh, 1.0),  # as connect_server does for the master's tier
            )
        redis = _RedisView(_redact(config.redis), name, None, tier)
    sock = socket.socket(fileno=spec["listen_fd"])
    return _worker_main(
        sock, config, ring, store, spec["master_pid"], spec["death_fd"], spec["ready_fd"], redis
    )


_LOG_FORMAT = "%(asctime)s tlsresume[%(process)d] %(levelname)s %(message)s"

# What a --spawn worker runs; its spec comes on stdin (see _spawned_worker). os._exit
# skips joining the daemon connection threads.
_SPAWN_CODE = (
    "import os, sys\n"
    "from tlsresume.serve import _spawned_worker\n"
    "code = _spawned_worker(sys.stdin.read())\n"
    "sys.stdout.flush(); sys.stderr.flush()\n"
    "os._exit(code)\n"
)


# --------------------------------------------------------------------------------------
# The master process
# --------------------------------------------------------------------------------------


@dataclass
class _WorkerProc:
    pid: int
    popen: subprocess.Popen[bytes] | None = None  # set for --spawn workers


class ServeError(RuntimeError):
    """The server could not start (a worker failed before it was ready, ...)."""


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """Bind the one listening socket every worker accepts on."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, socktype, proto, _canon, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        # Lets a restarted server rebind at once while old connections sit in
        # TIME_WAIT; it does not let two servers share the port (that is SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"https://{host}:{port}/"


class _Master:
    """Owns the socket, the ring and store, the worker processes and their lifecycle."""

    def __init__(self, config: ServerConfig, out: TextIO) -> None:
        self.config = config
        self.out = out
        self.workers: dict[int, _WorkerProc] = {}
        self.master_pid = os.getpid()
        self.sock: socket.socket | None = None
        self.ring: TicketKeyRing | None = None
        self.store: SessionStore | None = None
        self.cert_dir: Any = None
        self.link: Any = None  # tlsresume.redis.RedisLink with --redis
        self.redis: _RedisView | None = None
        self.redis_master_key: bytes | None = None
        self.tier_reports: list[dict[str, Any]] = []  # stopped workers' tier counters
        self.stop_signal: int | None = None
        self.respawns: list[float] = []
        self._death_r = self._death_w = self._ready_r = self._ready_w = -1

    def say(self, message: str) -> None:
        print(f"tlsresume serve: {message}", file=self.out, flush=True)

    # -- start --------------------------------------------------------------------

    def start(self) -> None:
        """Make the certificate, socket, ring, store and workers; wait until all are
        ready.

        Raises:
            ServeError: a worker died before it was ready.
            Exception: whatever binding, loading the core or making the ring raised.
        """
        config = self.config
        if config.redis_master_key_file is not None:
            self.redis_master_key = _read_master_key(config.redis_master_key_file)
        if config.cert is None:
            from tlsresume.selfsigned import make_self_signed

            self.cert_dir = make_self_signed()
            config = self.config = dataclasses.replace(
                config, cert=str(self.cert_dir.cert), key=str(self.cert_dir.key)
            )
            self.say(
                f"no --cert/--key given; using a throwaway self-signed certificate "
                f"{config.cert} (key {config.key}), removed on exit"
            )
        # Load the certificate once here so a bad path or key fails with one clear
        # message instead of N dying workers.
        build_server_context(config, None)

        self.sock = _bind(config.host, config.port, config.backlog)
        if config.share and (config.tickets or config.session_cache is not None):
            self._make_regions()
        if config.redis is not None:
            self._connect_redis()

        self._death_r, self._death_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for _ in range(config.workers):
            self._start_worker()
        self._wait_ready(timeout=30.0)
        # Respawned workers report on the same pipe; nobody waits for them, so the
        # master only drains it (non-blocking) to keep it from filling up.
        os.set_blocking(self._ready_r, False)

        pids = ",".join(str(pid) for pid in self.workers)
        ring = self.ring.name if self.ring is not None else "none"
        store = self.store.name if self.store is not None else "none"
        self.say(
            f"listening on {_url(self.sock)} workers={len(self.workers)} "
            f"mode={'spawn' if config.spawn else 'fork'} "
            f"sharing={'on' if config.share else 'off'} ring={ring} store={store} "
            f"tickets={'on' if config.tickets else 'off'} "
            f"redis={'on' if self.link is not None else 'off'} pids={pids}"
        )

    def _make_regions(self) -> None:
        """Make the named ring and store, BEFORE any worker exists: forked workers
        inherit the mappings, spawned ones attach by name, ``tlsresume stats``
        attaches from anywhere."""
        import tlsresume
        from tlsresume.stats import KINDS, region_path

        config = self.config
        name = f"serve-{os.getpid()}"
        if any(os.path.exists(region_path(kind, name)) for kind in KINDS):
            # No live process has our pid, so these are an earlier server's, killed
            # before it could remove them. Leave them alone (they may be someone's
            # evidence) and take a fresh name.
            fresh = f"{name}-{secrets.token_hex(3)}"
            self.say(
                f"/dev/shm holds tlsresume regions named {name} left by an earlier server "
                f"with this pid; using {fresh} (remove the old ones with "
                f"rm /dev/shm/tlsresume.*.{name})"
            )
            name = fresh
        if config.tickets:
            kwargs: dict[str, Any] = {}
            if config.rotate is not None:
                kwargs["rotation_period"] = config.rotate
            self.ring = tlsresume.TicketKeyRing(name=name, **kwargs)
        if config.session_cache is not None:
            self.store = tlsresume.SessionStore(
                config.session_cache, name=name, single_use=config.single_use
            )

    def _connect_redis(self) -> None:
        """Link the ring and store to Redis, after making them and BEFORE any worker
        exists: the first key sync is done before a worker can issue a ticket, and
        forked workers inherit the link.

        Raises:
            ServeError: redis-py cannot use the URL (the message has no password).
            TLSResumeError: refused credentials, a master key that does not match
                the fleet's, something else at the Redis key (see
                :func:`tlsresume.redis.connect_server`).
        """
        from tlsresume.errors import TLSResumeError
        from tlsresume.redis import _redact, connect_server

        config = self.config
        assert config.redis is not None
        url = config.redis
        name, refresh, timeout = config.redis_settings()
        try:
            self.link = connect_server(
                url,
                ring=self.ring,
                store=self.store,
                name=name,
                refresh=refresh,
                timeout=timeout,
                master_key=self.redis_master_key,
                local_rotation=config.redis_local_rotation,
            )
        except TLSResumeError:
            raise  # its message names the URL without the password, and what to do
        except (ValueError, TypeError) as exc:
            # redis-py refusing the URL: an unknown scheme, a bad port or option.
            raise ServeError(f"--redis {_redact(url)}: {_scrub(str(exc), url)}") from None
        link = self.link
        self.redis = _RedisView(_redact(url), name, link.key_sync, link.session_tier)
        if link.session_tier is not None:
            # Let this process's tier make its first connection (a TLS handshake with
            # rediss://) before the workers fork, for the reason _hold_key_sync gives.
            deadline = time.monotonic() + link.session_tier.write_timeout + 0.5
            while time.monotonic() < deadline:
                tier = link.session_tier.stats()
                if tier["connects"] + tier["connect_failures"] > 0:
                    break
                time.sleep(0.005)
        shared = " and ".join(
            what
            for what, part in (("ticket keys", link.key_sync), ("sessions", link.session_tier))
            if part is not None
        )
        line = (
            f"sharing {shared} through Redis at {_redact(url)} name={name} "
            f"refresh={refresh:g}s timeout={timeout * 1000:g}ms "
            f"sealed={'yes' if self.redis_master_key is not None else 'no'}"
        )
        if link.key_sync is not None and not link.key_sync.stats()["redis_up"]:
            line += "; Redis is not reachable yet: serving with this instance's own keys"
        self.say(line)

    def _drain_reports(self) -> None:
        """Read what workers wrote on the ready pipe without waiting: ready lines
        (of respawned workers) are dropped, session tier reports are kept."""
        if self._ready_r < 0:
            return
        os.set_blocking(self._ready_r, False)
        data = b""
        while True:
            try:
                chunk = os.read(self._ready_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        for line in data.split(b"\n"):
            if line.startswith(_TIER_REPORT):
                try:
                    self.tier_reports.append(json.loads(line[len(_TIER_REPORT) :]))
                except ValueError:
                    log.debug("garbled session tier report: %r", line)

    def _stop_redis(self) -> None:
        """Print the link's counters, then stop it: the key sync (it writes into the
        ring, so before the ring goes) and the master's session tier."""
        assert self.redis is not None
        try:
            own = self.redis.stats()
            if own["key_sync"] is not None:
                self.say("redis key_sync stats: " + _key_values(own["key_sync"]))
            if own["session_tier"] is not None:
                reports = [own["session_tier"], *self.tier_reports]
                self.say(
                    f"redis session_tier stats (master and {len(self.tier_reports)} "
                    "workers): " + _key_values(_sum_tier_reports(reports))
                )
        except Exception as exc:  # stats are informative; never block shutdown
            log.debug("could not read the Redis link's stats: %s", exc)
        try:
            self.link.stop()
        except Exception as exc:
            self.say(f"could not stop the Redis link: {exc}")
        self.link = None

    def _start_worker(self) -> int:
        if self.config.spawn:
            return self._spawn_worker()
        return self._fork_worker()

    def _fork_worker(self) -> int:
        assert self.sock is not None
        # Nothing buffered may be written twice (once by the child).
        sys.stdout.flush()
        sys.stderr.flush()
        # Block the stop signals across fork so the child cannot run the master's
        # handler before it installs its own.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        sync_lock = self._hold_key_sync()
        try:
            pid = os.fork()
        except BaseException:
            if sync_lock is not None:
                sync_lock.release()
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            raise
        if pid == 0:
            code = 1
            try:
                os.close(self._death_w)
                os.close(self._ready_r)
                code = _worker_main(
                    self.sock,
                    self.config,
                    self.ring,
                    self.store,
                    self.master_pid,
                    self._death_r,
                    self._ready_w,
                    self.redis,
                )
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        if sync_lock is not None:
            sync_lock.release()
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.workers[pid] = _WorkerProc(pid)
        return pid

    def _hold_key_sync(self) -> Any:
        """With ``--redis``, wait until the key sync thread is between rounds and keep
        it there (returns the held lock, to release after ``fork``; ``None`` if there is
        nothing to hold).

        The master forks while that thread runs. A round uses OpenSSL (HMAC and
        AES-GCM with a master key, TLS with ``rediss://``): a fork in the middle of one
        could leave a child with an OpenSSL lock held by a thread it does not have,
        and its first handshake would hang forever.
        """
        sync = self.link.key_sync if self.link is not None else None
        # KeySync holds this lock for each whole round (tlsresume.redis).
        lock = getattr(sync, "_round_lock", None)
        if lock is None:
            return None
        # A round is bounded by the sync's Redis timeouts; never stall a respawn longer.
        if lock.acquire(timeout=5.0):
            return lock
        log.warning("the Redis key sync is busy; forking a worker anyway")
        return None

    def _spawn_worker(self) -> int:
        assert self.sock is not None
        spec = {
            "config": dataclasses.asdict(self.config),
            "listen_fd": self.sock.fileno(),
            "death_fd": self._death_r,
            "ready_fd": self._ready_w,
            "master_pid": self.master_pid,
            "ring": self.ring.name if self.ring is not None else None,
            "store": self.store.name if self.store is not None else None,
            "redis_master_key": (
                self.redis_master_key.hex() if self.redis_master_key is not None else None
            ),
        }
        sys.stdout.flush()
        sys.stderr.flush()
        popen = subprocess.Popen(
            [sys.executable, "-c", _SPAWN_CODE],
            pass_fds=(self.sock.fileno(), self._death_r, self._ready_w),
            stdin=subprocess.PIPE,
            env=child_env(),
        )
        self.workers[popen.pid] = _WorkerProc(popen.pid, popen)
        # On stdin, not argv: the worker's entry in the process list must show neither
        # the master key nor the Redis URL's password. A few hundred bytes fit the
        # pipe: this never blocks.
        assert popen.stdin is not None
        try:
            popen.stdin.write(json.dumps(spec).encode("utf-8"))
            popen.stdin.close()
        except BrokenPipeError:  # it died at once; _wait_ready or _reap reports that
            pass
        return popen.pid

    def _wait_ready(self, timeout: float) -> None:
        ready: set[int] = set()
        pending = b""
        deadline = time.monotonic() + timeout
        while len(ready) < len(self.workers):
            if self.stop_signal is not None:
                raise ServeError("interrupted while starting workers")
            for pid, status in self._reap():
                raise ServeError(
                    f"worker {pid} exited ({_describe_status(status)}) before it was "
                    "ready; its error is printed above"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServeError(
                    f"only {len(ready)} of {len(self.workers)} workers were ready after "
                    f"{timeout:.0f} s"
                )
            readable, _, _ = select.select([self._ready_r], [], [], min(left, 0.1))
            if readable:
                pending += os.read(self._ready_r, 4096)
                *lines, pending = pending.split(b"\n")
                ready.update(int(line) for line in lines if line.strip().isdigit())

    # -- run ----------------------------------------------------------------------

    def _reap(self) -> list[tuple[int, int]]:
        """Collect workers that exited: ``[(pid, wait status)]``."""
        gone = []
        for pid, proc in list(self.workers.items()):
            if proc.popen is not None:
                code = proc.popen.poll()
                if code is None:
                    continue
                # Popen already reaped it; rebuild a wait status for the message.
                status = (-code) & 0x7F if code < 0 else (code & 0xFF) << 8
            else:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done == 0:
                    continue
            del self.workers[pid]
            gone.append((pid, status))
        return gone

    def serve_until_signal(self) -> None:
        """Keep the workers alive until SIGTERM or SIGINT arrives."""
        while self.stop_signal is None:
            for pid, status in self._reap():
                now = time.monotonic()
                self.respawns = [t for t in self.respawns if now - t < 10.0] + [now]
                if len(self.respawns) > 2 * self.config.workers:
                    self.say(
                        f"worker {pid} exited ({_describe_status(status)}); too many "
                        "workers died in 10 s, stopping"
                    )
                    return
                new = self._start_worker()
                self.say(f"worker {pid} exited ({_describe_status(status)}); started {new}")
            self._drain_reports()
            # A signal interrupts nothing here (PEP 475 resumes the sleep), so poll.
            time.sleep(0.1)

    # -- stop ---------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after ``grace`` s) and clean up."""
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.workers and time.monotonic() < deadline:
            self._reap()
            if self.workers:
                time.sleep(0.02)
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.workers:
            for proc in list(self.workers.values()):
                if proc.popen is not None:
                    proc.popen.wait()
                else:
                    try:
                        os.waitpid(proc.pid, 0)
                    except ChildProcessError:
                        pass
                del self.workers[proc.pid]
        self._drain_reports()  # the stopped workers' last words
        for fd in (self._death_r, self._death_w, self._ready_r, self._ready_w):
            if fd >= 0:
                os.close(fd)
        self._death_r = self._death_w = self._ready_r = self._ready_w = -1
        if self.sock is not None:
            self.sock.close()
        if self.link is not None:
            self._stop_redis()
        # Counters first (the workers are gone, so they are final), then the names.
        for kind, region in (("ring", self.ring), ("store", self.store)):
            if region is None:
                continue
            try:
                stats = region.stats()
                self.say(f"{kind} stats: " + " ".join(f"{k}={v}" for k, v in stats.items()))
            except Exception as exc:  # stats are informative; never block shutdown
                log.debug("could not read %s stats: %s", kind, exc)
            try:
                region.unlink()
            except Exception as exc:
                self.say(f"could not remove the {kind} named {region.name}: {exc}")
            try:
                region.close()
            except Exception as exc:
                log.debug("could not close the %s: %s", kind, exc)
        self.ring = self.store = None
        if self.cert_dir is not None:
            self.cert_dir.cleanup()


def _read_master_key(path: str) -> bytes:
    """The Redis master key from ``--redis-master-key-file``.

    Raises:
        ServeError: the file cannot be read or holds no 32-byte key.
    """
    from tlsresume.redis import load_master_key

    try:
        return load_master_key(path)
    except (OSError, ValueError) as exc:
        raise ServeError(f"--redis-master-key-file {path}: {exc}") from None


def _scrub(message: str, url: str) -> str:
    """``message`` without the URL's password, should redis-py have quoted it."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return message.replace(password, "***") if password else message


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def run(config: ServerConfig, *, out: TextIO | None = None) -> int:
    """Run the pre-fork server until SIGTERM or SIGINT; the body of ``tlsresume serve``.

    Must be called from the main thread (it installs signal handlers) of a process
    that has started no other threads yet (it forks).

    Args:
        config: what to serve and how.
        out: where the status lines go (default ``sys.stdout``).

    Returns:
        0 after a clean stop on a signal, 1 if the server could not start or its
        workers kept dying.

    Raises:
        ValueError: ``config`` is invalid.
    """
    config.validate()
    logging.basicConfig(level=config.log_level, format=_LOG_FORMAT)
    master = _Master(config, out if out is not None else sys.stdout)

    def on_signal(signum: int, frame: object) -> None:
        master.stop_signal = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            master.start()
        except Exception as exc:
            print(f"tlsresume serve: error: {exc}", file=sys.stderr, flush=True)
            return 1
        master.serve_until_signal()
        return 0 if master.stop_signal is not None else 1
    finally:
        master.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if master.stop_signal is not None:
            master.say(f"stopped on {signal.Signals(master.stop_signal).name}")

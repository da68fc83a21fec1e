"""HTTP for ``tlsresume serve``: pure functions (request head parsing, responses,
the stats payload), testable without sockets.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing


from .config import STATS_SERVER_ID

log = logging.getLogger("tlsresume.tools.serve")


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
    served: str | None = None,
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
        served: sent as ``X-Served`` (``"inline"``: on the accepting thread,
            ``"pool"``: by a connection thread), so tests can see which path served
            a client. ``None`` omits the header.

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
    if served is not None:
        headers.append(f"X-Served: {served}")
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
    supervisor: dict[str, Any] | None = None,
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
        supervisor: the master's worker restart counters
            (:meth:`~tlsresume.tools.serve.supervisor.SupervisorCounters.report`),
            or ``None``.

    Returns:
        ``{"server": "tlsresume serve", "version", "pid", "worker", "workers",
        "tickets", "ring": region | None, "store": region | None, "redis": link |
        None, "supervisor": counters | None}``, each region as
        :func:`tlsresume.regions.region_report` describes it: counters are totals
        over every worker since the server started. ``redis`` is
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
        "supervisor": supervisor,
    }
    if ring is not None or store is not None:
        from tlsresume.regions import region_report

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
    if crlf < 0:
        lf = buf.find(b"\n\n")  # tolerate bare-LF clients (printf | s_client)
        return lf + 2 if lf >= 0 else -1
    # A bare-LF end can only come first if it starts before the CRLF one ends.
    lf = buf.find(b"\n\n", 0, crlf + 3)
    return lf + 2 if lf >= 0 else crlf + 4
